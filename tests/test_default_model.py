"""The bundled default model: offline, sha256-checked, within its size budget, and the README's first
command visibly improves the held-out real GoPro crop in examples/."""

import numpy as np
import torch
from click.testing import CliRunner
from PIL import Image

from deblurkit.cli import cli
from deblurkit.inference.batch import DEFAULT_MODEL
from deblurkit.zoo.cards import get_entry, zoo_dir
from deblurkit.zoo.models import load_model

EXAMPLES = zoo_dir().parent / "examples"
REAL = "gopro-GOPR0374-802-real-blur.png"


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b) ** 2)))


def test_default_is_the_bundled_model_and_matches_its_file():
    entry = get_entry(DEFAULT_MODEL)
    assert entry.weights.bundled and entry.weights.sha256
    assert entry.weights.size_bytes <= 20 * 2**20
    model = load_model(DEFAULT_MODEL)  # HF_HUB_OFFLINE is set: no Hub involved
    assert model.work_pixels == entry.inference["work_pixels"]
    # The self-describing file and the card build the same model.
    from_file = load_model(zoo_dir() / entry.weights.filename)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), from_file(x))


def test_large_photos_run_at_the_working_resolution_small_ones_at_their_own():
    model = load_model(DEFAULT_MODEL)
    assert model.work_scale_for(360, 400) == 1.0
    assert abs(model.work_scale_for(720, 1280) - (model.work_pixels / (720 * 1280)) ** 0.5) < 1e-9
    assert model.work_scale_for(4000, 6000) == model.min_work_scale


def test_readme_first_command_deblurs_the_examples(tmp_path):
    out = tmp_path / "restored"
    result = CliRunner().invoke(cli, ["deblur", str(EXAMPLES), "-o", str(out), "--compare", "--quiet"])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.glob("[!.]*"))
    assert names == sorted(
        [REAL, REAL.replace(".png", ".compare.jpg"), "clock_motion.png", "clock_motion.compare.jpg"]
    )
    sharp = np.asarray(Image.open(EXAMPLES / "reference" / REAL))
    before = np.asarray(Image.open(EXAMPLES / REAL))
    after = np.asarray(Image.open(out / REAL))
    assert after.shape == before.shape
    assert _psnr(after, sharp) > _psnr(before, sharp) + 3.0
