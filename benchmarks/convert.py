"""Benchmark the OpenVINO conversion of a backbone (``features.engine = "openvino"``, first build only).

    python benchmarks/convert.py [--backbones efficientnet_lite0,efficientnet_lite1,efficientnet_lite2] [--rounds 2]
                                 [--random-weights]

For each backbone, interleaved ``--rounds`` times (median reported), from the same Keras model:

1. the earlier route, the features sub-model exported as a TF SavedModel on disk and converted from it;
2. tlreport's route (:func:`tlreport.features.engines._convert`), the sub-model traced in memory.

It prints both times and their ratio, and checks that the two IRs hold the same weights (the ``.bin``
files' sha256) and give the same features, bit for bit, on random images.  Building the Keras
model itself is timed apart: with a conversion cached, extraction no longer builds the model.
``--random-weights`` checks backbones whose weights are not on this machine (the Inceptions): the
routes' sameness does not depend on the weights' values.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from tlreport.backbones import get_spec, load_model
from tlreport.features import engines


def saved_model_route(keras_model, xml: Path) -> None:
    """(1) the conversion as tlreport did it before: a SavedModel on disk, converted by path."""
    import openvino as ov

    sub = engines.features_submodel(keras_model)
    with tempfile.TemporaryDirectory() as d:
        sub.export(str(Path(d) / "saved_model"), format="tf_saved_model", verbose=False)
        ov_model = ov.convert_model(str(Path(d) / "saved_model"))
    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov_model, str(xml), compress_to_fp16=False)


def features_of(xml: Path, x: np.ndarray) -> np.ndarray:
    import openvino as ov

    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32", "NUM_STREAMS": 1,
                                                          "INFERENCE_NUM_THREADS": 1})
    return np.concatenate([compiled(x[i:i + 1])[0] for i in range(len(x))])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbones", default="efficientnet_lite0,efficientnet_lite1,efficientnet_lite2")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cache-dir", default=".tlreport", help="where the backbones' converted weights are cached")
    ap.add_argument("--random-weights", action="store_true", help="randomly initialised networks")
    args = ap.parse_args(argv)
    print(f"openvino {engines.openvino_version()}")
    total = {"saved model": 0.0, "in memory": 0.0}
    for name in args.backbones.split(","):
        spec = get_spec(name)
        t = time.perf_counter()
        model = load_model(spec, cache_dir=Path(args.cache_dir), random_weights=args.random_weights)
        build = time.perf_counter() - t
        times: dict[str, list[float]] = {"saved model": [], "in memory": []}
        with tempfile.TemporaryDirectory() as d:
            xmls = {}
            for r in range(args.rounds):
                for label, route in (("saved model", saved_model_route), ("in memory", engines._convert)):
                    xml = Path(d) / f"{label.replace(' ', '-')}-{r}" / "model.xml"
                    t = time.perf_counter()
                    route(model, xml)
                    times[label].append(time.perf_counter() - t)
                    xmls[label] = xml
            same_bin = len({hashlib.sha256(x.with_suffix(".bin").read_bytes()).hexdigest()
                            for x in xmls.values()}) == 1
            s = int(spec.input_size)
            x = np.random.default_rng(0).uniform(0, 255, (4, s, s, 3)).astype(np.float32)
            a, b = (features_of(xmls[k], x) for k in ("saved model", "in memory"))
        old, new = (statistics.median(times[k]) for k in ("saved model", "in memory"))
        total["saved model"] += old
        total["in memory"] += new
        print(f"{name}: Keras model built in {build:.1f}s; conversion through a SavedModel {old:.1f}s, "
              f"in memory {new:.1f}s ({old / new:.2f}x); same weights: {same_bin}; "
              f"same features: {bool(np.array_equal(a, b))} (max |diff| {float(np.abs(a - b).max()):.1e})")
    print(f"all: {total['saved model']:.1f}s -> {total['in memory']:.1f}s "
          f"({total['saved model'] / total['in memory']:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
