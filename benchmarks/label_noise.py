"""Which Caltech-101 images look mislabelled?  Confident learning on a build's cached features.

Run by hand, after a build of the config has cached its features (nothing is extracted here)::

    .venv/bin/python benchmarks/label_noise.py                          # the Caltech-101 config, ../shared copy
    .venv/bin/python benchmarks/label_noise.py --components 0 256 512   # 0: no PCA; each setting timed
    .venv/bin/python benchmarks/label_noise.py --C 0.01 0.03 0.1

Loads the concatenated features (``--entry``, EfficientNet-Lite0 + Lite1 + Lite2 by default) and
the labels of the config's first table's dataset, runs
:func:`tlreport.heads.label_noise.out_of_fold_probabilities` (5 stratified folds) for every
``--components`` x ``--C`` and prints its time and out-of-fold accuracy, then, for the last one,
:func:`~tlreport.heads.label_noise.find_label_issues`: how many images are flagged, the most
frequent (given -> suggested) pairs and the ``--top`` flagged images, most suspicious first.
"""

from __future__ import annotations

import argparse
import collections
import time
from pathlib import Path

import numpy as np
from common import table_context

from tlreport.heads.label_noise import find_label_issues, out_of_fold_probabilities

ROOT = Path(__file__).resolve().parent.parent     # the checkout: its configs and the shared datasets beside it

CONCAT = "efficientnet_lite0+efficientnet_lite1+efficientnet_lite2"


def load(config: Path, dataset: str | None, entry: str) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """(features, labels, class names, relpaths) of the config's first table, from the cache only."""
    from tlreport.errors import UserError
    from tlreport.pipeline import data as pipeline_data
    from tlreport.pipeline import feature_sets

    ctx, _, use = table_context(config, dataset)
    for b in feature_sets.table_parts(entry):
        missing = feature_sets.missing_count(ctx, use, feature_sets.FeatureVariant(b))
        if missing:
            raise UserError(f"{b}: {missing} images have no cached features; run tlreport build first")
    m = pipeline_data.manifest(ctx, use)
    X = feature_sets.table_features(ctx, use, entry)
    return X, m.labels(), list(m.classes), [e.relpath for e in m.entries]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "caltech101-offline.toml")
    ap.add_argument("--dataset", default=str(ROOT.parent / "shared" / "datasets" / "caltech101" / "101_ObjectCategories"))
    ap.add_argument("--entry", default=CONCAT, help="a feature row, as in experiments.backbones")
    ap.add_argument("--components", type=int, nargs="+", default=[512], help="PCA components (0: none)")
    ap.add_argument("--C", type=float, nargs="+", default=[0.03])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--save", type=Path, help="write the last probabilities, labels and relpaths here (.npz)")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    X, y, classes, relpaths = load(args.config, args.dataset, args.entry)
    print(f"{X.shape[0]} images x {X.shape[1]} features, {len(classes)} classes ({args.entry}); "
          f"loaded in {time.perf_counter() - t0:.1f} s")
    probs = None
    for comp in args.components:
        for C in args.C:
            t0, c0 = time.perf_counter(), time.process_time()
            probs = out_of_fold_probabilities(X, y, len(classes), folds=args.folds, seed=args.seed, C=C,
                                              components=comp or None)
            secs, cpu = time.perf_counter() - t0, time.process_time() - c0
            pred = probs.argmax(1)
            loss = -np.mean(np.log(np.clip(probs[np.arange(y.size), y], 1e-12, None)))
            per_class = np.mean([np.mean(pred[y == k] == k) for k in range(len(classes))])
            print(f"out_of_fold_probabilities: components={comp or 'none'} C={C:g}: {secs:.1f} s wall, {cpu:.1f} s CPU, "
                  f"out-of-fold accuracy {np.mean(pred == y):.4f} (mean per class {per_class:.4f}), "
                  f"log-loss {loss:.3f}", flush=True)
    assert probs is not None
    if args.save:
        np.savez_compressed(args.save, probs=probs, y=y, relpaths=np.array(relpaths), classes=np.array(classes))

    t0 = time.perf_counter()
    issues = find_label_issues(probs, y)
    secs = time.perf_counter() - t0
    wrong = int(np.sum(probs.argmax(1) != y))
    print(f"find_label_issues: {len(issues)} flagged ({len(issues) / y.size:.1%} of the images; "
          f"{wrong} misclassified out of fold) in {secs:.2f} s")
    pairs = collections.Counter((classes[i.given], classes[i.suggested]) for i in issues)
    print("most frequent (given -> suggested):",
          "; ".join(f"{g} -> {s} {n}" for (g, s), n in pairs.most_common(10)))
    by_given = collections.Counter(classes[i.given] for i in issues)
    print("most flagged given labels:", "; ".join(f"{c} {n}" for c, n in by_given.most_common(8)))
    print(f"top {args.top}:")
    width = max((len(relpaths[i.index]) for i in issues[: args.top]), default=0)
    for rank, i in enumerate(issues[: args.top], 1):
        print(f"{rank:3d}. {relpaths[i.index]:<{width}}  given {classes[i.given]:<18} "
              f"suggested {classes[i.suggested]:<18} self-confidence {i.self_confidence:.4f}  "
              f"(suggested {i.suggested_probability:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
