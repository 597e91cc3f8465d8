"""Benchmark bottleneck-feature extraction.

    python benchmarks/extract.py --data DIR --backbone NAME [--random-weights] [--limit N] [--batch 32]

Measures, interleaved (round-robin, ``--rounds`` times, median reported):

1. the seed's loop: one image at a time (read, decode, preprocess, ``model(x)`` on a batch of 1);
2. the model-only ceiling: a ``tf.function`` model on preloaded tensors at the pipeline's batch size;
3. the tlreport pipeline end to end, files -> a fresh temporary FeatureStore;
4. machine peak: a large float32 GEMM in numpy and in TensorFlow,
5. with ``--openvino``: the same model converted by OpenVINO (``features.engine = "openvino"``), in float32
   and, where the CPU has bf16, in bfloat16, model only and end to end, with each one's max abs difference
   and lowest cosine against TensorFlow float32's features on the same batches,

and prints images/s, the ratios (3)/(1) and (3)/(2), achieved GFLOP/s from
``spec.gflops``, peak RSS and the load average (other processes share the CPUs).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from tlreport.backbones import get_spec, load_model
from tlreport.datasets.images import load_prepared
from tlreport.datasets.scan import Manifest, scan_dataset
from tlreport.features.cache import FeatureStore, backbone_key
from tlreport.features.extract import batch_function, extract_features


def _spread(entries: list, n: int) -> list:
    """n entries spread evenly over the (class-sorted) list, so every class is represented."""
    if n >= len(entries):
        return list(entries)
    idx = np.linspace(0, len(entries) - 1, n).round().astype(int)
    return [entries[i] for i in idx]


def seed_loop(m: Manifest, entries: list, spec, model) -> float:
    """(1) one image at a time, eager ``model(x)`` on a batch of one."""
    t = time.perf_counter()
    for e in entries:
        with open(os.path.join(m.root, *e.relpath.split("/")), "rb") as fh:
            data = fh.read()
        x = load_prepared(data, spec)[None].astype(np.float32)
        np.asarray(model(x, training=False)["features"])
    return len(entries) / (time.perf_counter() - t)


def model_only(batches: list, fn, n_images: int) -> float:
    """(2) the tf.function model on preloaded tensors."""
    done, i = 0, 0
    t = time.perf_counter()
    while done < n_images:
        b = batches[i % len(batches)]
        fn(b).numpy()
        done += int(b.shape[0])
        i += 1
    return done / (time.perf_counter() - t)


def pipeline(m: Manifest, entries: list, spec, model, batch: int, workers: int | None, loader: str) -> float:
    """(3) files -> features in a fresh temporary FeatureStore."""
    sub = Manifest(m.root, m.classes, entries, [])
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        feats = extract_features(sub, spec, FeatureStore(d), model=model, batch_size=batch, progress=False,
                                 workers=workers, loader=loader, key=backbone_key(spec, weights_sha256="bench"))
        dt = time.perf_counter() - t
    assert feats.shape == (len(entries), spec.feature_dim)
    return len(entries) / dt


def gemm_peak(n: int = 2048, reps: int = 3) -> tuple[float, float]:
    """(4) achieved float32 GFLOP/s of an n x n GEMM in numpy and in TensorFlow (best of reps)."""
    import tensorflow as tf

    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    flops = 2.0 * n ** 3
    a @ b
    best_np = min(_timed(lambda: a @ b) for _ in range(reps))
    ta, tb = tf.constant(a), tf.constant(b)
    mm = tf.function(lambda x, y: tf.matmul(x, y))
    mm(ta, tb).numpy()
    best_tf = min(_timed(lambda: mm(ta, tb).numpy()) for _ in range(reps))
    return flops / best_np / 1e9, flops / best_tf / 1e9


class _Done:
    """Lets model_only time a numpy-returning engine the way it times a tf.function (``.numpy()``)."""

    def __init__(self, a: np.ndarray) -> None:
        self.a = a

    def numpy(self) -> np.ndarray:
        return self.a


def _timed(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--random-weights", action="store_true")
    ap.add_argument("--limit", type=int, default=0, help="images per pipeline round (0 = all)")
    ap.add_argument("--seed-images", type=int, default=64, help="images per seed-loop round")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--loader", choices=["tfdata", "threads"], default="tfdata")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cache-dir", default=".tlreport")
    ap.add_argument("--openvino", action="store_true", help="also time the OpenVINO engine, as ratios to TF")
    args = ap.parse_args(argv)

    import tensorflow as tf

    load0 = os.getloadavg()
    spec = get_spec(args.backbone)
    t = time.perf_counter()
    m = scan_dataset(args.data, hash_cache_path=Path(args.cache_dir) / "bench-scan.json", progress=False)
    print(f"dataset: {m.summary()} (scan {time.perf_counter() - t:.2f}s)")
    t = time.perf_counter()
    model = load_model(spec, cache_dir=Path(args.cache_dir), random_weights=args.random_weights)
    print(f"model: {spec.name} ({'random' if args.random_weights else 'pretrained'} weights, "
          f"{spec.gflops} GFLOP/img) built in {time.perf_counter() - t:.1f}s")

    n = args.limit or len(m.entries)
    pipe_entries = _spread(m.entries, n)
    seed_entries = _spread(m.entries[1::2], min(args.seed_images, n))
    s = spec.input_size
    pre = [load_prepared(os.path.join(m.root, *e.relpath.split("/")), spec) for e in pipe_entries[:args.batch * 2]]
    batches = [tf.constant(np.stack(pre[i:i + args.batch])) for i in range(0, len(pre), args.batch)]
    batches = [b for b in batches if b.shape[0] == args.batch] or batches

    @tf.function(input_signature=[tf.TensorSpec([None, s, s, 3], tf.uint8)], reduce_retracing=True)
    def fn(x):
        return model(tf.cast(x, tf.float32), training=False)["features"]

    fn(batches[0]).numpy()  # trace once, outside the timings
    batch_function(model, spec)(batches[0].numpy())  # the pipeline's own tf.function, traced once too
    model(np.zeros((1, s, s, 3), np.float32), training=False)

    res: dict[str, list[float]] = {"seed": [], "model": [], "pipeline": []}
    engines: dict[str, tuple] = {}               # label -> (spec, model, batch function)
    if args.openvino:
        from tlreport.features.engines import openvino_backbone, openvino_version
        from tlreport.util.cpu import cpu_has_bf16

        with tempfile.TemporaryDirectory() as d:   # fresh conversions, timed
            for precision in ("float32", "bfloat16") if cpu_has_bf16() else ("float32",):
                ov_spec = spec.with_engine("openvino").with_precision(precision)
                t = time.perf_counter()
                ov_model = openvino_backbone(ov_spec, build_keras=lambda: model, cache_dir=Path(d),
                                             key=backbone_key(ov_spec, weights_sha256="b"))
                label = {"float32": "ov fp32", "bfloat16": "ov bf16"}[precision]
                print(f"openvino {openvino_version()} {precision}: converted and compiled in "
                      f"{time.perf_counter() - t:.1f}s")
                engines[label] = (ov_spec, ov_model, batch_function(ov_model, ov_spec))
        for label, (_, _, ov_fn) in engines.items():
            got = [(ov_fn(b.numpy()), fn(b).numpy()) for b in batches]
            diff = max(float(np.abs(g - r).max()) for g, r in got)
            cos = min(float(c) for g, r in got for c in
                      (g * r).sum(1) / (np.linalg.norm(g, axis=1) * np.linalg.norm(r, axis=1)))
            print(f"{label} vs tensorflow fp32 features on {sum(int(b.shape[0]) for b in batches)} images: "
                  f"max abs difference {diff:.2e}, lowest cosine {cos:.5f}")
            res.update({f"{label} model": [], f"{label} pipeline": []})
    for r in range(args.rounds):
        res["seed"].append(seed_loop(m, seed_entries, spec, model))
        res["model"].append(model_only(batches, fn, min(n, args.batch * 8)))
        res["pipeline"].append(pipeline(m, pipe_entries, spec, model, args.batch, args.workers, args.loader))
        for label, (ov_spec, ov_model, ov_fn) in engines.items():
            res[f"{label} model"].append(model_only([b.numpy() for b in batches],
                                                    lambda x, f=ov_fn: _Done(f(x)), min(n, args.batch * 8)))
            res[f"{label} pipeline"].append(pipeline(m, pipe_entries, ov_spec, ov_model, args.batch,
                                                     args.workers, args.loader))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} img/s" for k, v in res.items()), flush=True)
    np_gflops, tf_gflops = gemm_peak()

    med = {k: statistics.median(v) for k, v in res.items()}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print()
    print(f"backbone {spec.name}, batch {args.batch}, loader {args.loader}, workers {args.workers or os.cpu_count()}, "
          f"{len(pipe_entries)} images/pipeline round, {len(seed_entries)} images/seed round, {args.rounds} rounds")
    print(f"(1) seed loop, batch of 1    {med['seed']:8.1f} img/s  {med['seed'] * spec.gflops:7.1f} GFLOP/s")
    print(f"(2) model only (tf.function) {med['model']:8.1f} img/s  {med['model'] * spec.gflops:7.1f} GFLOP/s")
    print(f"(3) tlreport pipeline        {med['pipeline']:8.1f} img/s  {med['pipeline'] * spec.gflops:7.1f} GFLOP/s")
    print(f"(4) GEMM 2048^3 float32 peak: numpy {np_gflops:.1f} GFLOP/s, tensorflow {tf_gflops:.1f} GFLOP/s")
    print(f"(3)/(1) = {med['pipeline'] / med['seed']:.2f}x   (target >= 2.5x)")
    print(f"(3)/(2) = {med['pipeline'] / med['model']:.0%}    (target >= 90%)")
    print(f"model share of GEMM peak: {med['model'] * spec.gflops / tf_gflops:.0%}")
    for label in engines:
        mo, pi = med[f"{label} model"], med[f"{label} pipeline"]
        print(f"(5) {label} model only      {mo:8.1f} img/s  x{mo / med['model']:.2f} of (2)")
        print(f"(5) {label} pipeline        {pi:8.1f} img/s  x{pi / med['pipeline']:.2f} of (3); "
              f"{pi / mo:.0%} of its model-only rate")
    print(f"peak RSS {rss:.0f} MiB; load average {load0[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end "
          f"on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
