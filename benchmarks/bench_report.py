"""Size and load time of the HTML report for a synthetic benchmark (default: 100 images, 640×480, 2 models).

Makes sharp / blurry / restored PNGs from scikit-image's bundled photographs in a temporary folder,
times ``write_html_report``, adds up the page and its ``_files`` folder, then opens the page from
``file://`` in headless Chromium (Debian's ``chromium`` + ``chromium-driver``, through ``selenium``)
and reads the navigation timing: DOMContentLoaded and load, median of ``--loads`` fresh loads.
Prints one JSON object.

    python benchmarks/bench_report.py [--images 100] [--width 640] [--height 480] [--models 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage import data

from deblurkit.evaluation.html_report import ReportImage, write_html_report

COLUMNS = ("psnr", "ssim", "sharpness", "seconds")


def make_images(folder: Path, count: int, width: int, height: int, models: int) -> list[ReportImage]:
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.immunohistochemistry()]
    rng = np.random.default_rng(0)
    names = [f"model-{chr(ord('a') + m)}" for m in range(models)]
    for sub in ("sharp", "blurry", *names):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    images = []
    for i in range(count):
        photo = photos[i % len(photos)]
        reps = (-(-height // photo.shape[0]) + 1, -(-width // photo.shape[1]) + 1, 1)
        sharp = np.roll(np.tile(photo, reps), shift=(11 * i, 17 * i), axis=(0, 1))[:height, :width]
        sharp = sharp.astype(np.float32)
        blurry = ndimage.gaussian_filter(sharp, (2.0, 2.0, 0))
        paths = {}
        for m, name in enumerate(names):
            detail = (m + 1) / (models + 1)  # each model restores a little more of the lost detail
            restored = blurry + detail * (sharp - blurry) + rng.normal(0, 2.0 + m, sharp.shape)
            paths[name] = _save(folder / name / f"{i:03d}.png", restored)
        images.append(
            ReportImage(
                name=f"scene_{i // 10:02d}/{i:06d}.png",
                input=_save(folder / "blurry" / f"{i:03d}.png", blurry),
                outputs=paths,
                reference=_save(folder / "sharp" / f"{i:03d}.png", sharp),
                scores={
                    "input": {"psnr": 24 + rng.normal(), "ssim": 0.7 + 0.05 * rng.random()},
                    **{
                        n: {"psnr": 27 + m + rng.normal(), "ssim": 0.8 + 0.05 * rng.random(), "seconds": 0.1}
                        for m, n in enumerate(names)
                    },
                },
            )
        )
    return images


def _save(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8)).save(path, compress_level=1)
    return path


def _means(images: list[ReportImage]) -> dict[str, dict[str, float]]:
    rows = images[0].scores.keys()
    return {
        row: {c: float(np.mean([i.scores[row][c] for i in images])) for c in images[0].scores[row]}
        for row in rows
    }


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def browser_timing(url: str, loads: int) -> dict[str, float]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="bench-report-chromium-")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
    ):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,1000")
    options.add_argument(f"--user-data-dir={profile}")
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    timing = (
        "const n = performance.getEntriesByType('navigation')[0]; "
        "return [n.domContentLoadedEventEnd, n.loadEventEnd]"
    )
    try:
        dcl, load = [], []
        for _ in range(loads):
            driver.get("about:blank")
            driver.get(url)
            while (values := driver.execute_script(timing))[1] == 0:
                time.sleep(0.01)
            dcl.append(values[0])
            load.append(values[1])
        images = driver.execute_script("return document.images.length")
        loaded = driver.execute_script("return [...document.images].filter(i => i.complete).length")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return {
        "dom_content_loaded_ms": round(statistics.median(dcl), 1),
        "load_ms": round(statistics.median(load), 1),
        "first_load_ms": round(load[0], 1),
        "img_elements": images,
        "img_loaded_at_load": loaded,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--models", type=int, default=2)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--no-browser", action="store_true", help="skip the Chromium timing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        folder = Path(tmp)
        images = make_images(folder / "in", args.images, args.width, args.height, args.models)
        start = time.perf_counter()
        page = write_html_report(
            folder / "report.html",
            title="Synthetic benchmark",
            images=images,
            means=_means(images),
            columns=COLUMNS,
        )
        written = time.perf_counter() - start
        files = folder / "report_files"
        result = {
            "images": args.images,
            "size": f"{args.width}x{args.height}",
            "models": args.models,
            "write_seconds": round(written, 2),
            "page_bytes": page.stat().st_size,
            "files_bytes": folder_size(files),
            "files_count": sum(1 for p in files.rglob("*") if p.is_file()),
        }
        result["total_bytes"] = result["page_bytes"] + result["files_bytes"]
        if not args.no_browser:
            result.update(browser_timing(page.resolve().as_uri(), args.loads))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
