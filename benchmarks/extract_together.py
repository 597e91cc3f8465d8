"""Several backbones over one dataset: one pass that decodes each image once, against a pass per backbone.

    python benchmarks/extract_together.py --data DIR [--limit 1024] [--engines tensorflow openvino]

For each engine x precision (TensorFlow float32; OpenVINO float32, and bfloat16 where the CPU has it),
the three EfficientNet-Lites over the same ``--limit`` images (spread over the classes), interleaved
round-robin, median of ``--rounds``:

1. model only: each backbone on preloaded, prepared batches, the three times summed (the ceiling);
2. a pass per backbone: :func:`extract_features` once per backbone, each decoding every image (how
   the ``features`` stage ran before ``extract_features_many``);
3. one pass: :func:`extract_features_many`, each image decoded once and prepared for all three.

Prints images/s for all three backbones together, (3)/(2), the share of the model-only rate each pass
reaches ("loader overlap"), and every engine as a ratio to TensorFlow float32's one pass.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from tlreport.backbones import get_spec, load_model
from tlreport.datasets.images import load_prepared
from tlreport.datasets.scan import Manifest, scan_dataset
from tlreport.features.cache import FeatureStore, backbone_key
from tlreport.features.extract import Extraction, batch_function, extract_features, extract_features_many

BACKBONES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def _spread(entries: list, n: int) -> list:
    if n >= len(entries):
        return list(entries)
    return [entries[i] for i in np.linspace(0, len(entries) - 1, n).round().astype(int)]


def model_only(prepared: list[np.ndarray], fns: list, batch: int) -> float:
    """(1) seconds for every backbone over its preloaded images, summed."""
    t = time.perf_counter()
    for x, fn in zip(prepared, fns, strict=True):
        for i in range(0, len(x), batch):
            fn(x[i:i + batch])
    return time.perf_counter() - t


def per_backbone(m: Manifest, jobs: list[Extraction], batch: int) -> float:
    """(2) one extract_features pass per backbone, each into a fresh store."""
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        for i, job in enumerate(jobs):
            extract_features(m, job.spec, FeatureStore(Path(d) / str(i)), model=job.model, batch_size=batch,
                             progress=False, key=job.key)
        return time.perf_counter() - t


def together(m: Manifest, jobs: list[Extraction], batch: int) -> float:
    """(3) extract_features_many: one pass, each image decoded once."""
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        extract_features_many(m, jobs, FeatureStore(d), batch_size=batch, progress=False)
        return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--limit", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--engines", nargs="+", default=["tensorflow", "openvino"], choices=["tensorflow", "openvino"])
    ap.add_argument("--cache-dir", default=".tlreport")
    args = ap.parse_args(argv)

    from tlreport.util.cpu import cpu_flags, cpu_has_bf16

    load0 = os.getloadavg()
    full = scan_dataset(args.data, hash_cache_path=Path(args.cache_dir) / "bench-scan.json", progress=False)
    m = Manifest(full.root, full.classes, _spread(full.entries, args.limit), [])
    n = len(m.entries)
    specs = [get_spec(b) for b in BACKBONES]
    models = [load_model(s, cache_dir=Path(args.cache_dir)) for s in specs]
    prepared = [np.stack([load_prepared(os.path.join(m.root, *e.relpath.split("/")), s) for e in m.entries])
                for s in specs]
    variants: dict[str, list[Extraction]] = {}
    workdir = tempfile.TemporaryDirectory()
    for engine in args.engines:
        precisions = ("float32", "bfloat16") if engine == "openvino" and cpu_has_bf16() else ("float32",)
        for precision in precisions:
            jobs = []
            for spec, model in zip(specs, models, strict=True):
                s = spec if engine == "tensorflow" else spec.with_engine(engine).with_precision(precision)
                key = backbone_key(s, weights_sha256="bench")
                if engine == "openvino":
                    from tlreport.features.engines import openvino_backbone

                    model = openvino_backbone(s, build_keras=lambda m=model: m, cache_dir=Path(workdir.name),
                                              key=key)
                jobs.append(Extraction(s, model, key))
            variants[f"{engine} {precision}"] = jobs
    fns = {label: [batch_function(j.model, j.spec) for j in jobs] for label, jobs in variants.items()}
    for label in variants:                                  # trace / warm up outside the timings
        for x, fn in zip(prepared, fns[label], strict=True):
            fn(x[:args.batch])
    res: dict[str, dict[str, list[float]]] = {label: {"model": [], "apart": [], "together": []} for label in variants}
    for r in range(args.rounds):
        for label, jobs in variants.items():
            res[label]["model"].append(model_only(prepared, fns[label], args.batch))
            res[label]["apart"].append(per_backbone(m, jobs, args.batch))
            res[label]["together"].append(together(m, jobs, args.batch))
            print(f"round {r + 1} {label}: " + ", ".join(f"{k} {n / v[-1]:.1f} img/s" for k, v in res[label].items()),
                  flush=True)
    isa = "AVX-512" if "avx512f" in cpu_flags() else "AVX2" if "avx2" in cpu_flags() else "no AVX2"
    amx = " with AMX" if "amx_bf16" in cpu_flags() else ""
    print(f"\n{n} images, 3 backbones ({', '.join(BACKBONES)}), batch {args.batch}, {args.rounds} rounds, "
          f"{isa}{amx}; images/s count an image once for all three backbones")
    base = None
    for label in variants:
        med = {k: n / statistics.median(v) for k, v in res[label].items()}
        base = base or med["together"]
        print(f"{label:20s} model only {med['model']:7.1f}   pass per backbone {med['apart']:7.1f} "
              f"({med['apart'] / med['model']:.0%})   one pass {med['together']:7.1f} ({med['together'] / med['model']:.0%})"
              f"   one/per-backbone {med['together'] / med['apart']:.2f}x   vs tensorflow float32 {med['together'] / base:.2f}x")
    print(f"load average {load0[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end on {os.cpu_count()} CPUs")
    workdir.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
