"""Check tlreport's Keras EfficientNet-Lite0, -Lite1 and -Lite2 against PyTorch on the same weights.

Verification only: torch is not a dependency of tlreport.  Run it with the
project's Python and point ``--torch-python`` at an interpreter that has torch
(and, optionally, the ``efficientnet-lite-pytorch`` reference package)::

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch numpy efficientnet-lite-pytorch
    .venv/bin/python benchmarks/verify_efficientnet_lite_vs_torch.py \\
        --torch-python /tmp/torchvenv/bin/python [--backbone efficientnet_lite1 ...]

The Keras side builds the model through the registry (weights read by
tlreport's torch-free unpickler).  The torch side loads the same ``.pth`` with
``torch.load`` and runs (a) an independent functional forward written here with
TensorFlow-style static "same" padding and, for contrast, with symmetric
``k // 2`` padding, and (b) the ``efficientnet_lite_pytorch`` reference model
when that package is importable.  Inputs: five random images and skimage's
coffee and chelsea photos.  Prints the max |difference| of logits and features;
exits non-zero when the same-padding forward differs from Keras by more than
``--tol`` (default 1e-4) on the logits.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

# (expand, kernel, first stride, out, repeats), EfficientNet-B0 stages.
_BLOCKS = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
           (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
# width, depth, input size: the TPU repository's efficientnet_lite_builder, written out again here
_SCALING = {"efficientnet_lite0": (1.0, 1.0, 224), "efficientnet_lite1": (1.0, 1.1, 240),
            "efficientnet_lite2": (1.1, 1.2, 260)}


def _stages(width: float, depth: float) -> list[tuple[int, int, int, int, int]]:
    """The stages scaled as the Lite models are: first and last stage kept at one block, stem/head unscaled."""
    def filters(f: int) -> int:
        if width == 1.0:
            return f
        new = max(8, int(f * width + 4) // 8 * 8)
        return new + 8 if new < 0.9 * f * width else new

    last = len(_BLOCKS) - 1
    return [(e, k, s, filters(c), r if i in (0, last) else int(math.ceil(depth * r)))
            for i, (e, k, s, c, r) in enumerate(_BLOCKS)]


def _torch_side(inputs_path: str, pth: str, out_path: str, backbone: str = "efficientnet_lite0") -> None:
    """Runs under the torch interpreter: writes logits/features of each torch variant."""
    import torch
    import torch.nn.functional as F

    sd = torch.load(pth, map_location="cpu", weights_only=True)
    x = torch.from_numpy(np.load(inputs_path)["x"])          # NHWC, [0, 255]
    x = ((x - 127.0) / 128.0).permute(0, 3, 1, 2).contiguous()

    def pad(t, k: int, s: int, mode: str):
        if mode == "symmetric":
            return F.pad(t, [k // 2] * 4)
        ih = t.shape[-1]
        total = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
        return F.pad(t, [total // 2, total - total // 2] * 2)

    def bn(t, p: str):
        return F.batch_norm(t, sd[f"{p}.running_mean"], sd[f"{p}.running_var"],
                            sd[f"{p}.weight"], sd[f"{p}.bias"], False, 0.0, 1e-3)

    def forward(t, mode: str):
        relu6 = F.relu6
        t = relu6(bn(F.conv2d(pad(t, 3, 2, mode), sd["_conv_stem.weight"], stride=2), "_bn0"))
        i, cin = 0, 32
        width, depth, _ = _SCALING[backbone]
        for expand, k, stride, cout, repeats in _stages(width, depth):
            for r in range(repeats):
                s = stride if r == 0 else 1
                b = f"_blocks.{i}"
                h = t
                if expand != 1:
                    h = relu6(bn(F.conv2d(h, sd[f"{b}._expand_conv.weight"]), f"{b}._bn0"))
                w = sd[f"{b}._depthwise_conv.weight"]
                h = relu6(bn(F.conv2d(pad(h, k, s, mode), w, stride=s, groups=w.shape[0]), f"{b}._bn1"))
                h = bn(F.conv2d(h, sd[f"{b}._project_conv.weight"]), f"{b}._bn2")
                t = h + t if s == 1 and cin == cout else h
                i, cin = i + 1, cout
        t = relu6(bn(F.conv2d(t, sd["_conv_head.weight"]), "_bn1"))
        feats = t.mean(dim=(2, 3))
        return F.linear(feats, sd["_fc.weight"], sd["_fc.bias"]), feats

    results: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for mode in ("same", "symmetric"):
            logits, feats = forward(x, mode)
            results[f"{mode}_logits"], results[f"{mode}_features"] = logits.numpy(), feats.numpy()
        sd = {k: v.double() if v.is_floating_point() else v for k, v in sd.items()}
        logits, feats = forward(x.double(), "same")
        results["same64_logits"], results["same64_features"] = logits.numpy(), feats.numpy()
        sd = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            pass
        else:
            ref = EfficientNet.from_name(backbone.replace("_", "-"))
            ref.load_state_dict(sd, strict=True)
            ref.eval()
            results["reference_logits"] = ref(x).numpy()
            results["reference_features"] = ref.extract_features(x).mean(dim=(2, 3)).numpy()
    np.savez(out_path, **results)


def _images(size: int = 224) -> tuple[np.ndarray, list[str]]:
    from PIL import Image
    from skimage import data

    def prep(a: np.ndarray) -> np.ndarray:
        im = Image.fromarray(a)
        w, h = im.size
        s = size / 0.875 / min(w, h)
        im = im.resize((round(w * s), round(h * s)), Image.Resampling.BICUBIC)
        w, h = im.size
        left, top = (w - size) // 2, (h - size) // 2
        return np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.float32)

    rng = np.random.default_rng(0)
    rand = rng.uniform(0, 255, size=(5, size, size, 3)).astype(np.float32)
    photos = np.stack([prep(data.coffee()), prep(data.chelsea())])
    return np.concatenate([rand, photos]), [f"random{i}" for i in range(5)] + ["coffee", "chelsea"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--torch-python", default="/tmp/torchvenv/bin/python")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--cache-dir", default=None, help="tlreport cache (default: a temp dir)")
    ap.add_argument("--backbone", action="append", choices=sorted(_SCALING),
                    help="repeatable; default: all three")
    ap.add_argument("--_torch-side", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._torch_side:
        _torch_side(*args._torch_side)
        return 0
    failed = [b for b in (args.backbone or sorted(_SCALING)) if not _check(b, args)]
    print("OK: all within tolerance" if not failed else f"FAIL: {', '.join(failed)}")
    return 1 if failed else 0


def _check(backbone: str, args: argparse.Namespace) -> bool:
    """Compare one backbone; print its report; True when within ``--tol``."""

    import keras

    from tlreport.backbones import get_spec, load_model
    from tlreport.backbones.efficientnet_lite import _weights_file

    print(f"== {backbone}")
    spec = get_spec(backbone)
    x, names = _images(spec.input_size)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(args.cache_dir or tmp)
        model = load_model(spec, cache_dir=cache)
        both = keras.Model(model.inputs, [model.get_layer("logits").output,
                                          model.get_layer("avg_pool").output])
        k_logits, k_feats = (np.asarray(a) for a in both.predict(x, verbose=0))
        inputs, out = Path(tmp) / "inputs.npz", Path(tmp) / "torch.npz"
        np.savez(inputs, x=x)
        subprocess.run([args.torch_python, __file__, "--_torch-side", str(inputs),
                        str(_weights_file(spec)), str(out), backbone], check=True, cwd=REPO)
        with np.load(out) as z:
            t = {k: z[k] for k in z.files}

    report: dict[str, dict[str, float]] = {}
    for variant in ("same", "same64", "symmetric", "reference"):
        if f"{variant}_logits" not in t:
            continue
        tl = t[f"{variant}_logits"]
        report[variant] = {
            "max_abs_logits": float(np.abs(tl - k_logits).max()),
            "max_abs_features": float(np.abs(t[f"{variant}_features"] - k_feats).max()),
            "top1_agree": float(np.mean(tl.argmax(1) == k_logits.argmax(1))),
        }
    labels = [ln.split("\t")[1] for ln in (REPO / "data/imagenet_classes.tsv").read_text().splitlines()]
    for name, row in zip(names[-2:], k_logits[-2:], strict=True):
        print(f"keras top-1 {name}: {labels[int(row.argmax())]}")
    for name in ("same", "symmetric"):
        p = t[f"{name}_logits"][-2:]
        p = np.exp(p - p.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        print(f"torch {name:9s} photo top-1 prob: " + ", ".join(
            f"{n}={labels[int(r.argmax())]} {r.max():.3f}" for n, r in zip(names[-2:], p, strict=True)))
    print(json.dumps(report, indent=2))
    ok = report["same"]["max_abs_logits"] <= args.tol
    print("OK" if ok else f"FAIL: max |logits diff| {report['same']['max_abs_logits']:.3g} > {args.tol}")
    return ok


if __name__ == "__main__":
    sys.exit(main())
