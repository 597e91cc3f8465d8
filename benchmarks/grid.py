"""The Zeiler & Fergus grid under two ways of choosing the heads' penalties, on the same features.

* ``cv3`` (the grid's selection before the hold-out): 3-fold cross-validation
  inside each training split -- ``logreg`` walks C with warm starts on every
  fold, ``softmax_sgd`` trains every candidate with SGD on every fold;
* ``holdout`` (what the heads do now, :mod:`tlreport.heads.penalty`): one
  held-out third, L-BFGS warm starts along the grid (``softmax_sgd`` on its
  exact twin), then one fit per configuration.

Printed: seconds per head and feature set and in total for each, then every
row's mean under both and the paired per-split differences (holdout - cv3).

    python benchmarks/grid.py --config configs/caltech101-offline.toml --dataset PATH   # a built config's features
    python benchmarks/grid.py --features f.npz        # features (N, D), labels, [class_names]
    python benchmarks/grid.py                         # small synthetic features (a smoke run)

``--feature-sets 0,3`` keeps some of a config's feature sets; ``--only holdout``
skips the baseline (the Caltech-101 cv3 grid takes about 20 minutes on 2 cores); ``--precision
bfloat16`` runs ``softmax_sgd``'s products as a build with ``precision = "auto"`` does on a CPU with
bf16 arithmetic (float32 otherwise).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from common import table_context, table_rows

from tlreport.heads.base import Predictor, _full_proba
from tlreport.heads.grid import run_grid
from tlreport.heads.logreg import LogRegHead
from tlreport.heads.softmax import predict_proba, train_softmax_penalties
from tlreport.heads.softmax_sgd import SoftmaxSGDHead


@dataclass(frozen=True)
class CV3LogRegHead(LogRegHead):
    """``logreg`` with its C cross-validated on 3 folds (warm starts along the grid on each fold, stopping
    after ``patience`` worse values), the final fit warm-started from the folds' mean solution."""

    def _fit(self, X: np.ndarray, y: np.ndarray, *, num_classes: int, seed: int) -> Predictor:
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold
        from sklearn.preprocessing import StandardScaler

        X = np.asarray(X, dtype=self.dtype)
        grid = sorted(self.C_grid)
        folds = list(StratifiedKFold(3, shuffle=True, random_state=int(seed) % (2**32)).split(X, y))
        parts = []
        for tr, va in folds:
            sc = StandardScaler().fit(X[tr])
            parts.append((sc.transform(X[tr]).astype(self.dtype), y[tr], sc.transform(X[va]).astype(self.dtype), y[va]))
        models = [LogisticRegression(C=grid[0], tol=self.tol_select, max_iter=self.max_iter, warm_start=True)
                  for _ in folds]
        best_key, best_C, best_sol, worse = None, grid[0], None, 0
        k = int(y.max()) + 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for C in grid:
                accs, losses, sols = [], [], []
                for model, (Xa, ya, Xv, yv) in zip(models, parts, strict=True):
                    model.set_params(C=C).fit(Xa, ya)
                    p = _full_proba(model.predict_proba(Xv), model.classes_, k)
                    accs.append(np.mean(p.argmax(1) == yv))
                    losses.append(-np.mean(np.log(np.clip(p[np.arange(yv.size), yv], 1e-12, None))))
                    sols.append((model.coef_.copy(), model.intercept_.copy()))
                key = (float(np.mean(accs)), -float(np.mean(losses)), -C)
                if best_key is None or key > best_key:
                    best_key, best_C, best_sol, worse = key, C, sols, 0
                else:
                    worse += 1
                    if worse >= self.patience:
                        break
            sc = StandardScaler().fit(X)
            model = LogisticRegression(C=best_C, tol=self.tol, max_iter=self.max_iter, warm_start=True)
            model.coef_ = np.mean([s[0] for s in best_sol], axis=0)
            model.intercept_ = np.mean([s[1] for s in best_sol], axis=0)
            model.fit(sc.transform(X).astype(self.dtype), y)

        def predict(Xq: np.ndarray) -> np.ndarray:
            return _full_proba(model.predict_proba(sc.transform(Xq).astype(self.dtype)), model.classes_, num_classes)

        predict.chosen = {"C": best_C}  # type: ignore[attr-defined]
        return predict


@dataclass(frozen=True)
class CV3SoftmaxSGDHead(SoftmaxSGDHead):
    """``softmax_sgd`` with its l2 cross-validated on 3 folds: every candidate trained by SGD on every fold
    (the folds of one shape side by side, a fold's candidates in one kernel), then the final SGD fit."""

    def fit_many(self, Xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], *, num_classes: int,
                 seeds: Sequence[int]) -> list[Predictor]:
        from sklearn.model_selection import StratifiedKFold

        Xs = [np.asarray(X, np.float32) for X in Xs]
        grid = sorted(self.l2_grid, reverse=True)
        jobs = [(k, tr, va) for k, (X, y) in enumerate(zip(Xs, ys, strict=True))
                for tr, va in StratifiedKFold(3, shuffle=True, random_state=int(seeds[k]) % (2**32)).split(X, y)]
        acc = np.zeros((len(Xs), len(grid)))
        loss = np.zeros((len(Xs), len(grid)))
        by_shape: dict[tuple[int, int], list[int]] = {}
        for i, (_, tr, va) in enumerate(jobs):
            by_shape.setdefault((tr.size, va.size), []).append(i)
        empty = np.zeros((0, Xs[0].shape[1]), np.float32), np.zeros(0, np.int32)
        for members in by_shape.values():
            heads = train_softmax_penalties([(Xs[jobs[i][0]][jobs[i][1]], ys[jobs[i][0]][jobs[i][1]], *empty)
                                             for i in members], seeds=[int(seeds[jobs[i][0]]) for i in members],
                                            num_classes=num_classes, l2s=grid, **self._kwargs())
            for i, per_penalty in zip(members, heads, strict=True):
                k, _, va = jobs[i]
                for j, head in enumerate(per_penalty):
                    p = predict_proba(head, Xs[k][va])
                    acc[k, j] += np.mean(p.argmax(1) == ys[k][va])
                    loss[k, j] -= np.mean(np.log(np.clip(p[np.arange(va.size), ys[k][va]], 1e-12, None)))
        l2s = [grid[max(range(len(grid)), key=lambda j, k=k: (round(acc[k, j], 9), -loss[k, j]))]
               for k in range(len(Xs))]
        return self.train(Xs, ys, l2s, num_classes=num_classes, seeds=seeds)


SELECTIONS = {"cv3": [CV3SoftmaxSGDHead(), CV3LogRegHead()], "holdout": [SoftmaxSGDHead(), LogRegHead()]}


def synthetic(seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray, list[str], dict]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(12), 40)
    means = rng.normal(size=(12, 64)).astype(np.float32)
    X = np.maximum(means[labels] + 1.5 * rng.normal(size=(labels.size, 64)).astype(np.float32), 0.0)
    return ({"synthetic": X}, labels, [f"c{i}" for i in range(12)],
            dict(settings=[5, 10], test_cap=15, n_splits=3, seed=seed, keys=None))


def compare(feats: dict[str, np.ndarray], labels: np.ndarray, classes: list[str], grid: dict,
            selections: Sequence[str]) -> dict[str, pd.DataFrame]:
    results = {}
    for name in selections:
        t0 = time.perf_counter()
        df = run_grid(feats, labels, classes, heads=SELECTIONS[name], **grid)
        wall = time.perf_counter() - t0
        print(f"\n{name}: {len(df)} fits in {wall:.1f} s wall")
        secs = df.groupby(["head", "backbone"], sort=False)["seconds"].sum()
        for (head, backbone), s in secs.items():
            print(f"  {head:<12} {backbone:<60} {s:7.1f} s")
        for head, s in df.groupby("head", sort=False)["seconds"].sum().items():
            print(f"  {head:<12} {'(all feature sets)':<60} {s:7.1f} s")
        results[name] = df
    return results


def paired(results: dict[str, pd.DataFrame]) -> None:
    keys = ["backbone", "head", "n_train", "split"]
    both = results["holdout"].merge(results["cv3"], on=keys, suffixes=("", "_cv3"))
    both["diff"] = (both["mean_per_class_accuracy"] - both["mean_per_class_accuracy_cv3"]) * 100
    print("\nrow (mean per-class accuracy, %)                          cv3   holdout  diff (per split: mean, min..max)")
    rows = []
    for (backbone, head, n), g in both.groupby(["backbone", "head", "n_train"], sort=False):
        old, new = g["mean_per_class_accuracy_cv3"].mean() * 100, g["mean_per_class_accuracy"].mean() * 100
        rows.append(new - old)
        print(f"  {backbone[:34]:<34} {head:<12} {n:>3}  {old:7.2f}  {new:7.2f}  {new - old:+6.2f}"
              f"  ({g['diff'].min():+.2f}..{g['diff'].max():+.2f})")
    print(f"largest row change {max(rows, key=abs):+.2f}; mean change {np.mean(rows):+.3f} over {len(rows)} rows")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--config", help="a config whose features the cache holds (run tlreport build first)")
    src.add_argument("--features", help="npz with features (N, D), labels (N,) and optionally class_names")
    ap.add_argument("--dataset", help="with --config: the dataset folder, as for tlreport build --dataset")
    ap.add_argument("--feature-sets", help="comma-separated indices of the config's feature sets to keep")
    ap.add_argument("--only", choices=sorted(SELECTIONS), help="run one selection only")
    ap.add_argument("--precision", choices=["float32", "bfloat16"], default="float32",
                    help="softmax_sgd's matrix products (a build's precision = \"auto\" picks bfloat16 on CPUs "
                         "with AMX or AVX-512 BF16)")
    args = ap.parse_args(argv)
    for heads in SELECTIONS.values():
        heads[:] = [dataclasses.replace(h, precision=args.precision) if hasattr(h, "precision") else h
                    for h in heads]
    if args.config:
        feats, labels, classes, keys, protocol = table_rows(*table_context(args.config, args.dataset))
        grid = {**protocol, "keys": keys}
    elif args.features:
        with np.load(args.features) as z:
            labels = np.asarray(z["labels"])
            classes = [str(c) for c in z["class_names"]] if "class_names" in z else [
                f"c{i}" for i in range(int(labels.max()) + 1)]
            feats = {"features": np.asarray(z["features"], np.float32)}
        grid = dict(settings=[15, 30], test_cap=50, n_splits=5, seed=0, keys=None)
    else:
        feats, labels, classes, grid = synthetic()
    if args.feature_sets:
        keep = [int(i) for i in args.feature_sets.split(",")]
        feats = {b: f for i, (b, f) in enumerate(feats.items()) if i in keep}
    print(f"{len(labels)} images, {len(classes)} classes; feature sets: "
          + ", ".join(f"{b} ({f.shape[1]}-d)" for b, f in feats.items()))
    selections = [args.only] if args.only else ["cv3", "holdout"]
    print("softmax_sgd's products: " + ", ".join(f"{name} {h.precision}" for name in selections
                                                 for h in SELECTIONS[name] if hasattr(h, "precision")))
    results = compare(feats, labels, classes, grid, selections)
    if len(results) == 2:
        paired(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
