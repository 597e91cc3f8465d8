"""How tlreport's costs grow with the dataset: 10k, 30k and 100k small images in 1,000 classes.

Run by hand (it writes the images under ``--work``, about 1 KB each)::

    .venv/bin/python benchmarks/scale.py                         # 10k, 30k, 100k
    .venv/bin/python benchmarks/scale.py --sizes 10000,30000

For each size, in a fresh process, printed in seconds and per image:

1. the dataset scan, first (every file hashed and decoded) and again (the hash cache);
2. a feature-store lookup of every image (the store pre-filled with ``tiny_random``-shaped
   features, as a build that had extracted them would leave it);
3. the build with every feature cached (classify and train off; the replication grid at
   5 images/class, 2 splits, ``logreg``), its peak memory, and the grid's time per fit;
4. the no-op rebuild: ``tlreport build`` in a new process with nothing to do.

Per-image figures should stay flat from 10k to 100k (within 1.5x); the no-op rebuild at
100k images should stay under 5 s.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CLASSES = 1000

CONFIG = """
seed = 1
cache_dir = "cache"
site_dir = "site"
[post]
title = "Scale benchmark"
slug = "scale"
[classify]
enabled = false
[dataset]
path = "images"
[train]
enabled = false
[experiments]
backbones = ["tiny_random"]
heads = ["logreg"]
n_splits = 2
[[experiments.tables]]
dataset = "images"
name = "Synthetic"
settings = [5]
test_cap = 5
"""


def make_images(root: Path, n: int) -> None:
    """``n`` distinct 24x24 JPEGs in 1,000 class folders (kept between runs: only the missing ones are written)."""
    from PIL import Image

    rng = np.random.default_rng(n)
    per = n // CLASSES
    for c in range(CLASSES):
        d = root / f"class_{c:04d}"
        d.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 256, 3)
        for i in range(per):
            f = d / f"{i:05d}.jpg"
            if not f.exists():
                px = np.clip(base + rng.normal(0, 40, (24, 24, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(px).save(f, quality=90)


def child(work: Path) -> dict:
    """One size, in this (fresh) process: scan, lookups, the cached build; returns the timings."""
    from tlreport.config import load_config
    from tlreport.engine.stage import BuildContext
    from tlreport.engine.store import StageStore
    from tlreport.pipeline import build, feature_sets
    from tlreport.pipeline import data as pipeline_data
    from tlreport.pipeline.feature_sets import FeatureVariant

    cfg = load_config(work / "tlreport.toml")
    ctx = BuildContext(config=cfg, store=StageStore(cfg.cache_dir / "stages"), quiet=True)
    use = pipeline_data.transfer_use(ctx)
    out: dict = {}
    t = time.perf_counter()
    m = pipeline_data.manifest(ctx, use)                           # the first scan: hash + decode every file
    out["scan_first"] = time.perf_counter() - t
    n = len(m.entries)
    out["images"] = n
    store = feature_sets.store(ctx)
    key = feature_sets.feature_key(ctx, FeatureVariant("tiny_random"))
    shas = [e.sha256 for e in m.entries]
    rng = np.random.default_rng(0)
    labels = m.labels()
    for i in range(0, n, 4096):                                  # what an extraction would have left
        block = labels[i:i + 4096]
        feats = rng.normal(size=(block.size, 32)).astype(np.float32) + np.eye(32, dtype=np.float32)[block % 32]
        store.add_shard(key, shas[i:i + 4096], feats)
    from tlreport.backbones import get_spec

    spec = get_spec("tiny_random")
    store.write_meta(key, {"name": spec.name, "fingerprint": spec.fingerprint(), "precision": spec.precision,
                           "engine": spec.engine, "weights_sha256": spec.weights.sha256, "feature_dim": 32,
                           "dtype": "float32"})
    t = time.perf_counter()
    found, _ = store.lookup(key, shas)
    out["lookup"] = time.perf_counter() - t
    assert found.all()
    t = time.perf_counter()
    r = build(cfg, quiet=True)
    out["build_cached"] = time.perf_counter() - t
    assert r.counters.get("features.extracted", 0) == 0, r.counters
    timing = json.loads(next((cfg.cache_dir / "stages" / "experiments").glob("*/timing.json")).read_text())
    out["fit_seconds"] = timing["mean_fit_seconds"][0]
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    ctx2 = BuildContext(config=cfg, store=StageStore(cfg.cache_dir / "stages"), quiet=True)
    pipeline_data.manifest(ctx2, use)
    out["scan_cached"] = time.perf_counter() - t
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,30000,100000")
    ap.add_argument("--work", type=Path, default=Path("/tmp/tlreport-scale"))
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child)))
        return 0
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        work = args.work / f"n{n}"
        t = time.perf_counter()
        make_images(work / "images", n)
        made = time.perf_counter() - t
        (work / "tlreport.toml").write_text(CONFIG)
        for stale in ("cache", "site"):
            subprocess.run(["rm", "-rf", str(work / stale)], check=True)
        r = subprocess.run([sys.executable, __file__, "--child", str(work)], capture_output=True, text=True)
        if r.returncode:
            print(r.stderr[-3000:], file=sys.stderr)
            return 1
        row = json.loads(r.stdout.strip().splitlines()[-1])
        t = time.perf_counter()
        noop = subprocess.run([sys.executable, "-m", "tlreport", "build", "--config", str(work / "tlreport.toml")],
                              capture_output=True, text=True, cwd=REPO)
        row["noop"] = time.perf_counter() - t
        assert noop.returncode == 0 and "nothing to do" in noop.stdout, noop.stdout + noop.stderr
        rows.append(row)
        print(f"{row['images']:>7,} images (written in {made:.0f} s): scan {row['scan_first']:.1f} s first, "
              f"{row['scan_cached']:.2f} s cached; lookup {row['lookup']:.2f} s; cached build "
              f"{row['build_cached']:.1f} s, peak {row['peak_rss_mib']:.0f} MiB; grid {row['fit_seconds']:.2f} s/fit; "
              f"no-op rebuild {row['noop']:.2f} s", flush=True)
    if len(rows) > 1:
        print("\nper image (microseconds; memory in KiB), and the largest size against the smallest:")
        first, last = rows[0], rows[-1]
        for k in ("scan_first", "scan_cached", "lookup", "build_cached", "peak_rss_mib", "noop"):
            scale = 1024 if k == "peak_rss_mib" else 1e6
            per = [r[k] * scale / r["images"] for r in rows]
            print(f"  {k:13s} " + "  ".join(f"{p:9.2f}" for p in per)
                  + f"   x{per[-1] / per[0]:.2f} per image ({last['images'] // first['images']}x the images)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
