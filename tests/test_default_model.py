"""The bundled default model: offline, sha256-checked, and the README's first command improves the
examples made from held-out photographs."""

import numpy as np
from click.testing import CliRunner
from PIL import Image
from skimage import data

from deblurkit.cli import cli
from deblurkit.engine import DEFAULT_MODEL
from deblurkit.models import load_model
from deblurkit.zoo import get_entry, zoo_dir

EXAMPLES = zoo_dir().parent / "examples"


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b) ** 2)))


def test_default_is_the_bundled_model():
    entry = get_entry(DEFAULT_MODEL)
    assert entry.weights.bundled
    assert entry.weights.sha256
    assert entry.weights.size_bytes <= 5 * 2**20
    model = load_model(DEFAULT_MODEL)  # HF_HUB_OFFLINE is set: no Hub involved
    assert sum(p.numel() for p in model.parameters()) < 1.3e6


def test_readme_first_command_deblurs_the_examples(tmp_path):
    out = tmp_path / "restored"
    result = CliRunner().invoke(cli, ["deblur", str(EXAMPLES), "-o", str(out), "--compare", "--quiet"])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert "chelsea-motion-blur.png" in names
    assert "chelsea-motion-blur.compare.jpg" in names
    assert "clock_motion.png" in names
    sharp = {"chelsea": data.chelsea(), "coffee": data.coffee()}
    for name, blur in (("chelsea", "chelsea-motion-blur.png"), ("coffee", "coffee-defocus-blur.png")):
        before = np.asarray(Image.open(EXAMPLES / blur))
        after = np.asarray(Image.open(out / blur))
        assert after.shape == before.shape
        assert _psnr(after, sharp[name]) > _psnr(before, sharp[name]) + 0.5
