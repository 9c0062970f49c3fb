"""The HTML report: its files, links, escaping and crop choice; then the page itself in headless Chromium.

The browser tests need Debian's ``chromium`` + ``chromium-driver`` and the ``selenium`` package. Without
them they skip, unless ``DEBLURKIT_CI=1`` (CI installs them), where they fail. Set
``DEBLURKIT_SCREENSHOT=path.png`` to keep a screenshot of the page.
"""

from __future__ import annotations

import html
import os
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
from PIL import Image

from deblurkit.evaluation.html_report import ReportImage, most_different_window, write_html_report

try:
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # the browser fixture skips (or fails under DEBLURKIT_CI=1)
    webdriver = None

_WAIT = 60  # seconds a browser condition may take on a loaded 2-core machine (waits end when met)
COLUMNS = ("psnr", "ssim", "sharpness", "seconds")
MEANS = {
    "input": {"psnr": 24.0, "ssim": 0.71, "sharpness": 0.2},
    "alpha": {"psnr": 30.5, "ssim": 0.90, "sharpness": 0.5, "seconds": 0.12},
    "beta": {"psnr": 29.0, "ssim": 0.93, "sharpness": 0.6, "seconds": 0.40},
}


# -- synthetic images --------------------------------------------------------------------------------


def scene(width: int, height: int, seed: int) -> np.ndarray:
    """A sharp test picture: gradients, a few bright rectangles and a fine checkerboard corner."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([xx * 200 / width, yy * 200 / height, (xx + yy) * 100 / (width + height) + 60], axis=2)
    for _ in range(4):
        x0, y0 = rng.integers(0, width - 10), rng.integers(0, height - 10)
        image[y0 : y0 + rng.integers(5, 40), x0 : x0 + rng.integers(5, 40)] = rng.integers(0, 256, 3)
    image[: height // 4, : width // 4] = ((xx + yy) % 2 * 255)[: height // 4, : width // 4, None]
    return np.clip(image, 0, 255).astype(np.uint8)


def box_blur(image: np.ndarray, radius: int = 2) -> np.ndarray:
    padded = np.pad(image.astype(np.float32), ((radius, radius), (radius, radius), (0, 0)), mode="edge")
    out = np.zeros(image.shape, np.float32)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out += padded[dy : dy + image.shape[0], dx : dx + image.shape[1]]
    return np.rint(out / (2 * radius + 1) ** 2).astype(np.uint8)


def save(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def make_images(
    folder: Path,
    count: int,
    size: tuple[int, int] = (240, 160),
    models: tuple[str, ...] = ("alpha", "beta"),
    reference: bool = True,
) -> list[ReportImage]:
    images = []
    for index in range(count):
        sharp = scene(*size, seed=index)
        blurry = box_blur(sharp)
        outputs = {}
        for number, model in enumerate(models):
            restored = blurry.astype(np.int16) + (sharp.astype(np.int16) - blurry) * (number + 1) // 3
            outputs[model] = save(folder / model / f"{index:03d}.png", restored.clip(0, 255).astype(np.uint8))
        scores = {row: {k: v + index * 0.01 for k, v in values.items()} for row, values in MEANS.items()}
        images.append(
            ReportImage(
                name=f"scene_{index:02d}/frame.png",
                input=save(folder / "blurry" / f"{index:03d}.png", blurry),
                outputs=outputs,
                reference=save(folder / "sharp" / f"{index:03d}.png", sharp) if reference else None,
                scores=scores,
            )
        )
    return images


class _Links(HTMLParser):
    """Every src/href, every id, every start tag of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        found = dict(attrs)
        self.attrs.append((tag, found))
        self.links += [value for key, value in attrs if key in ("src", "href") and value is not None]
        if found.get("id"):
            self.ids.add(found["id"])


def parse(page: Path) -> _Links:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def crop_window(page: Path, index: int = 0) -> tuple[int, ...]:
    windows = [found["data-window"] for tag, found in parse(page).attrs if "data-window" in found]
    return tuple(int(v) for v in windows[index].split(","))


# -- files, links, escaping ---------------------------------------------------------------------------


def test_writes_page_and_downscaled_pictures(tmp_path):
    images = make_images(tmp_path / "in", 2, size=(300, 200))
    page = write_html_report(
        tmp_path / "out" / "report.html",
        title="Bench",
        images=images,
        means=MEANS,
        columns=COLUMNS,
        max_side=120,
    )
    assert page == tmp_path / "out" / "report.html"
    folder = tmp_path / "out" / "report_files"
    for sub in ("001", "002"):
        names = {p.name for p in (folder / sub).iterdir()}
        assert {"input.jpg", "model-1.jpg", "model-2.jpg", "sharp.jpg", "thumb.jpg"} <= names
        assert {"crop-input.png", "crop-model-1.png", "crop-model-2.png", "crop-sharp.png"} <= names
        assert {"error-input.jpg", "error-model-1.jpg", "error-model-2.jpg"} <= names
        with Image.open(folder / sub / "model-1.jpg") as shown:
            assert shown.format == "JPEG" and shown.size == (120, 80)
        with Image.open(folder / sub / "thumb.jpg") as thumb:
            assert max(thumb.size) <= 160
    assert not list(tmp_path.rglob("*.tmp")), "temporary files left behind"


def test_links_are_relative_and_exist(tmp_path):
    page = write_html_report(
        tmp_path / "report.html",
        title="t",
        images=make_images(tmp_path / "in", 3),
        means=MEANS,
        columns=COLUMNS,
    )
    text = page.read_text(encoding="utf-8")
    assert "http://" not in text.lower() and "https://" not in text.lower()
    found = parse(page)
    assert found.links
    root = tmp_path.resolve()
    for link in found.links:
        parts = urlparse(link)
        assert not parts.scheme and not parts.netloc, link
        if link.startswith("#"):
            assert link[1:] in found.ids, link
            continue
        assert not link.startswith("/"), link
        target = (page.parent / unquote(parts.path)).resolve()
        assert target.is_relative_to(root / "report_files") and target.is_file(), link
    # the stylesheet and script are inline
    assert "link" not in found.tags and found.tags.count("script") == 1 and found.tags.count("style") == 1
    assert all(tag != "script" or "src" not in attrs for tag, attrs in found.attrs)
    assert all(attrs.get("loading") == "lazy" for tag, attrs in found.attrs if tag == "img")


def test_names_and_text_are_escaped(tmp_path):
    hostile = "<script>alert('x')</script> & \"q\""
    images = make_images(tmp_path / "in", 1, models=("<b>m&m</b>",))
    images = [ReportImage(hostile, images[0].input, images[0].outputs, images[0].reference, images[0].scores)]
    means = {"input": {"psnr": 20.0}, "<b>m&m</b>": {"psnr": 21.0}}
    page = write_html_report(
        tmp_path / "r.html", title="<i>T</i>", images=images, means=means, columns=("psnr",), notes=["a<b>c"]
    )
    text = page.read_text(encoding="utf-8")
    for raw in (hostile, "<b>m&m</b>", "<i>T</i>", "a<b>c"):
        assert raw not in text
    assert html.escape(hostile) in text
    assert "&lt;b&gt;m&amp;m&lt;/b&gt;" in text and "&lt;i&gt;T&lt;/i&gt;" in text
    tags = parse(page).tags
    assert tags.count("script") == 1 and "b" not in tags and "i" not in tags


def test_missing_values_show_a_dash(tmp_path):
    page = write_html_report(
        tmp_path / "r.html", title="t", images=make_images(tmp_path / "in", 1), means=MEANS, columns=COLUMNS
    )
    text = page.read_text(encoding="utf-8")
    means_html = text[text.index('id="means-table"') : text.index("</table>", text.index('id="means-table"'))]
    rows = means_html.split("<tr>")[2:]
    assert [row.split(">")[1].split("<")[0] for row in rows] == ["input", "alpha", "beta"]
    assert "–" in rows[0] and "–" not in rows[1]  # the input has no seconds


def test_most_different_window_finds_the_spot():
    base = np.full((200, 300, 3), 100, np.uint8)
    other = base.copy()
    other[120:150, 40:70] = 180  # the only difference: 30×30 at x 40..70, y 120..150
    x, y, w, h = most_different_window([base, other, base], size=64)
    assert (w, h) == (64, 64)
    assert x <= 40 and x + w >= 70 and y <= 120 and y + h >= 150
    assert abs((x + w / 2) - 55) <= 1 and abs((y + h / 2) - 135) <= 1  # centred on the spot
    assert most_different_window([base], size=64) == (118, 68, 64, 64)
    assert most_different_window([base[:50, :40], other[:50, :40]], size=64)[2:] == (40, 50)


def test_report_crop_covers_where_models_disagree(tmp_path):
    sharp = scene(320, 240, seed=5)
    blurry = box_blur(sharp)
    alpha = sharp.copy()
    beta = sharp.copy()
    beta[30:70, 200:240] = 255 - beta[30:70, 200:240]  # the models differ only here
    blurry_path = save(tmp_path / "blurry.png", blurry)
    outputs = {"alpha": save(tmp_path / "a.png", alpha), "beta": save(tmp_path / "b.png", beta)}
    item = ReportImage("one", blurry_path, outputs, save(tmp_path / "sharp.png", sharp))
    page = write_html_report(tmp_path / "full.html", title="t", images=[item], means={}, columns=COLUMNS)
    x, y, w, h = crop_window(page)
    assert (w, h) == (128, 128) and x <= 200 and x + w >= 240 and y <= 30 and y + h >= 70
    # at half size the window is found in the shrunk picture
    page = write_html_report(
        tmp_path / "half.html", title="t", images=[item], means={}, columns=COLUMNS, max_side=160
    )
    x, y, w, h = crop_window(page)
    assert (w, h) == (128, 120) and x <= 100 and x + w >= 120
    with Image.open(tmp_path / "half_files" / "001" / "crop-model-2.png") as crop:
        assert crop.size == (128, 120)


def test_one_model_without_reference(tmp_path):
    images = make_images(tmp_path / "in", 2, models=("solo",), reference=False)
    page = write_html_report(
        tmp_path / "r.html", title="t", images=images, means={"input": {"psnr": 1.0}}, columns=COLUMNS
    )
    text = page.read_text(encoding="utf-8")
    assert "Error against" not in text and 'value="sharp"' not in text
    assert not list((tmp_path / "r_files").rglob("error-*"))
    assert not list((tmp_path / "r_files").rglob("*sharp*"))
    assert "the output differs most from the input" in text
    # the single model is the default right layer
    right = [a for tag, a in parse(page).attrs if tag == "img" and a.get("class") == "layer-right"]
    assert right[0]["src"] == "r_files/001/model-1.jpg"


def test_no_images_still_gives_a_page(tmp_path):
    page = write_html_report(tmp_path / "r.html", title="empty", images=[], means=MEANS, columns=COLUMNS)
    assert "means-table" in page.read_text(encoding="utf-8") and (tmp_path / "r_files").is_dir()


def test_16_bit_inputs_are_shown_as_8_bit(tmp_path):
    ramp = (np.arange(64 * 48, dtype=np.uint32).reshape(48, 64) * 21).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    item = ReportImage("deep", path, {"m": path})
    write_html_report(tmp_path / "r.html", title="t", images=[item], means={}, columns=())
    with Image.open(tmp_path / "r_files" / "001" / "crop-input.png") as crop:
        shown = np.asarray(crop.convert("RGB"))
    expected = ((ramp.astype(np.uint32) + 128) // 257).astype(np.uint8)
    assert shown.shape == (48, 64, 3) and np.array_equal(shown[:, :, 1], expected)


# -- the page in a real browser ----------------------------------------------------------------------


def _unavailable(reason: str) -> None:
    if os.environ.get("DEBLURKIT_CI") == "1":
        pytest.fail(f"{reason}; DEBLURKIT_CI=1 requires the browser tests to run", pytrace=False)
    pytest.skip(reason)


def _which(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Debian Chromium through Selenium; skips when absent (fails when DEBLURKIT_CI=1)."""
    if webdriver is None:
        _unavailable("selenium is not installed")
    chromium = _which("chromium", "chromium-browser")
    driver_path = _which("chromedriver") or next(
        (p for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver") if Path(p).is_file()), None
    )
    if chromium is None or driver_path is None:
        _unavailable("chromium and chromedriver are not installed (Debian: chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1000",
        "--force-device-scale-factor=1",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:  # the Service path keeps Selenium Manager from looking for (or downloading) a driver
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    except WebDriverException as err:
        _unavailable(f"chromium did not start: {err.msg}")
    driver.set_page_load_timeout(_WAIT)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def report_url(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("report")
    images = make_images(folder / "in", 4, size=(400, 264))
    notes = ["Synthetic images; alpha and beta are stand-ins for models."]
    page = write_html_report(
        folder / "bench report.html", title="deblurkit eval — synthetic", images=images, means=MEANS,
        columns=COLUMNS, notes=notes,
    )  # fmt: skip
    return page.resolve().as_uri()


def _open(driver, url: str) -> None:
    driver.get("about:blank")
    driver.get_log("browser")  # drop what earlier tests left
    driver.get(url)
    WebDriverWait(driver, _WAIT).until(lambda d: d.execute_script("return document.readyState") == "complete")


def _severe(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def _first_column(driver, table_id: str) -> list[str]:
    return [
        cell.text for cell in driver.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr > :first-child")
    ]


def test_browser_loads_every_picture_offline_without_errors(browser, report_url):
    _open(browser, report_url)
    for section in browser.find_elements(By.CSS_SELECTOR, "section.image"):
        browser.execute_script("arguments[0].scrollIntoView()", section)
    all_loaded = "return [...document.images].every(i => i.complete && i.naturalWidth > 0)"
    WebDriverWait(browser, _WAIT).until(lambda d: d.execute_script(all_loaded))
    per_image = 1 + 2 + 4 + 3  # thumbnail, slider layers, crops, error maps
    assert browser.execute_script("return document.images.length") == 4 * per_image
    sources = browser.execute_script("return [...document.images].map(i => i.currentSrc)")
    assert all(url.startswith(report_url.rsplit("/", 1)[0] + "/") for url in sources)
    assert _severe(browser) == []


def test_browser_sorts_the_means_table(browser, report_url):
    _open(browser, report_url)
    assert _first_column(browser, "means-table") == ["input", "alpha", "beta"]
    psnr = browser.find_element(By.CSS_SELECTOR, "#means-table thead th[data-col='1']")
    psnr.find_element(By.TAG_NAME, "button").click()
    assert psnr.get_attribute("aria-sort") == "ascending"
    assert _first_column(browser, "means-table") == ["input", "beta", "alpha"]
    psnr.find_element(By.TAG_NAME, "button").click()
    assert psnr.get_attribute("aria-sort") == "descending"
    assert _first_column(browser, "means-table") == ["alpha", "beta", "input"]
    seconds = browser.find_element(By.CSS_SELECTOR, "#means-table thead th[data-col='4']")
    seconds.find_element(By.TAG_NAME, "button").send_keys(Keys.ENTER)  # keyboard works too
    assert seconds.get_attribute("aria-sort") == "ascending" and psnr.get_attribute("aria-sort") is None
    assert _first_column(browser, "means-table") == ["alpha", "beta", "input"]  # missing value last
    # the per-image table sorts as well: by the input's PSNR, descending
    heading = browser.find_element(By.CSS_SELECTOR, "#images-table thead th[data-col='2'] button")
    heading.click()
    heading.click()
    assert _first_column(browser, "images-table") == ["4", "3", "2", "1"]
    assert _severe(browser) == []


def test_browser_slider_moves(browser, report_url):
    _open(browser, report_url)
    section = browser.find_element(By.ID, "img-001")
    browser.execute_script("arguments[0].scrollIntoView()", section)
    left = section.find_element(By.CSS_SELECTOR, ".layer-left")
    line = section.find_element(By.CSS_SELECTOR, ".split")
    slider = section.find_element(By.CSS_SELECTOR, "input.split-range")
    assert left.value_of_css_property("clip-path") == "inset(0px 50% 0px 0px)"
    slider.send_keys(Keys.ARROW_RIGHT * 5)
    assert slider.get_attribute("value") == "55"
    assert left.value_of_css_property("clip-path") == "inset(0px 45% 0px 0px)"
    assert line.get_attribute("style") == "left: 55%;"
    browser.execute_script(
        "arguments[0].value = 20; arguments[0].dispatchEvent(new Event('input', {bubbles: true}))", slider
    )
    assert left.value_of_css_property("clip-path") == "inset(0px 80% 0px 0px)"
    # a click on the picture moves the split there (pointer events)
    stage = section.find_element(By.CSS_SELECTOR, ".stage")
    actions = webdriver.ActionChains(browser)
    actions.move_to_element_with_offset(stage, stage.size["width"] // 4, 0).click().perform()
    assert int(slider.get_attribute("value")) == 75
    # the selects swap the layers
    section.find_element(By.CSS_SELECTOR, ".pick-right option[value='sharp']").click()
    right = section.find_element(By.CSS_SELECTOR, ".layer-right")
    assert right.get_attribute("src").endswith("/001/sharp.jpg")
    assert section.find_element(By.CSS_SELECTOR, ".tag-right").text == "Sharp (reference)"
    browser.execute_script("window.scrollTo(0, 0)")
    assert _severe(browser) == []
    shot = os.environ.get("DEBLURKIT_SCREENSHOT")
    if shot:  # one image's section under the thumbnail strip
        browser.set_window_size(1280, 1400)
        _open(browser, report_url + "#img-001")
        visible = (
            "return [...document.images].filter(i => i.getBoundingClientRect().top < innerHeight)"
            ".every(i => i.complete && i.naturalWidth > 0)"
        )
        WebDriverWait(browser, _WAIT).until(lambda d: d.execute_script(visible))
        time.sleep(0.2)
        Path(shot).parent.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(shot))
        browser.set_window_size(1280, 1000)


def test_browser_thumbnail_jumps_to_its_image(browser, report_url):
    _open(browser, report_url)
    browser.find_element(By.CSS_SELECTOR, ".strip a[href='#img-003']").click()
    WebDriverWait(browser, _WAIT).until(lambda d: d.execute_script("return location.hash") == "#img-003")
    strip_bottom = browser.execute_script(
        "return document.querySelector('.strip').getBoundingClientRect().bottom"
    )
    top = browser.execute_script("return document.getElementById('img-003').getBoundingClientRect().top")
    assert strip_bottom - 1 <= top <= strip_bottom + 20, "the image should sit just below the thumbnail strip"
    WebDriverWait(browser, _WAIT).until(
        lambda d: (
            d.find_element(By.CSS_SELECTOR, ".strip a[href='#img-003']").get_attribute("aria-current")
            == "true"
        )
    )
    assert _severe(browser) == []
