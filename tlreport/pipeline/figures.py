"""The figures stage: the transfer section's and the tables' figures."""

from __future__ import annotations

from pathlib import Path

from tlreport.engine.stage import BuildContext
from tlreport.util.files import atomic_write_json, read_json
from tlreport.util.paths import shipped_path

# ----------------------------------------------------------------------------- figures


def figures_inputs(ctx: BuildContext) -> dict:
    pass

    return {"grid": ctx.config.train.grid_size, "seed": ctx.config.seed,
            "literature": ctx.file_hash(shipped_path("data", "literature.toml"))}


def _transfer_figures(ctx: BuildContext, out: Path) -> None:
    import numpy as np

    from tlreport.datasets.images import BadImage, load_prepared
    from tlreport.pipeline import data as pipeline_data
    from tlreport.pipeline import feature_sets
    from tlreport.report.charts import (
        feature_grid_shape,
        pick_grid,
        plot_bottleneck,
        plot_history,
        prediction_gallery,
        thumbnail,
        top_mistakes,
    )
    from tlreport.report.confusion import confused_pairs, cut_at_a_tie, plot_confusion
    from tlreport.report.per_class import per_class_accuracy, plot_per_class

    d = ctx.outputs["train"]
    res = read_json(d / "train.json")
    pred = np.load(d / "predictions.npz", allow_pickle=False)
    test_idx, probs, y = pred["test_idx"], pred["probs"], pred["y"]
    names = res["classes"]
    use = pipeline_data.transfer_use(ctx)
    m = pipeline_data.manifest(ctx, use)
    # the photos are shown as the (first) backbone saw them
    spec = feature_sets.resolved_spec(ctx, feature_sets.table_parts(res["backbone"])[0])
    paths = m.paths()
    yhat = probs.argmax(axis=1)
    conf = probs.max(axis=1)

    def image(i: int) -> np.ndarray:
        try:
            return load_prepared(paths[int(i)], spec)
        except BadImage:
            return np.full((spec.input_size, spec.input_size, 3), 200, np.uint8)

    import pandas as pd

    o = out / "transfer"
    o.mkdir(parents=True, exist_ok=True)
    hist = pd.read_csv(d / "history.csv")
    plot_history(hist, o / "history", best_epoch=res["best_epoch"])
    for metric in ("loss", "accuracy"):
        (o / f"history_{metric}.png").rename(o / f"{metric}.png")
        (o / f"history_{metric}.phone.png").rename(o / f"{metric}.phone.png")
    confusion_files = plot_confusion(y, yhat, names, o / "confusion")
    per_class = per_class_accuracy(y, yhat, names)
    n_worst = min(len(per_class), 12, max(3, len(per_class) // 3))   # per_class: the classes with test images
    plot_per_class(per_class, o / "per_class", worst=n_worst)
    g = ctx.config.train.grid_size
    pick, n_grid_wrong = pick_grid(y, yhat, g * g, ctx.config.seed)
    grid = prediction_gallery(lambda i: image(test_idx[i]), pick, probs, y, names, o / "grid", "grid", size=2 * PRED_PX)
    mistakes = prediction_gallery(lambda i: image(test_idx[i]), top_mistakes(y, yhat, conf, k=12), probs, y, names,
                                  o / "misclassified", "misclassified", size=2 * PRED_PX)
    # the images most likely mislabelled (the train stage's confident learning), as thumbnails
    noise = read_json(d / "label_noise.json") if (d / "label_noise.json").is_file() else {}
    noise_items = []
    for k, f in enumerate(noise.get("flagged", [])[:LABEL_NOISE_SHOWN]):
        thumbnail(image(f["index"]), o / "label_noise" / f"{k:02d}.jpg", size=2 * PRED_PX)
        noise_items.append({**f, "given_name": names[f["given"]], "suggested_name": names[f["suggested"]],
                            "thumb": f"label_noise/{k:02d}"})
    x = feature_sets.table_features(ctx, use, res["backbone"])
    ex = res["example"]["index"]
    plot_bottleneck(image(ex), x[ex], o / "bottleneck")
    thumbnail(image(ex), o / "example.jpg", size=2 * EXAMPLE_PX)
    pairs = []
    labels = m.labels()
    parts = np.load(d / "parts.npy", allow_pickle=False)
    train_rows = np.flatnonzero(parts == 0)
    shown, pairs_left = cut_at_a_tie(confused_pairs(y, yhat, names, k=None), PAIRS_SHOWN)
    for k, row in shown.iterrows():
        thumbs = {}
        for side, cname in (("true", row["true"]), ("pred", row["predicted"])):
            ci = names.index(cname)
            first = train_rows[labels[train_rows] == ci]
            rel = f"pairs/{k:02d}-{side}"
            thumbnail(image(first[0]) if len(first) else image(test_idx[0]), o / f"{rel}.jpg", size=2 * PAIR_PX)
            thumbs[side] = rel
        pairs.append({"true": row["true"], "pred": row["predicted"], "count": int(row["count"]),
                      "rate": float(row["rate"]), "thumb_true": thumbs["true"], "thumb_pred": thumbs["pred"]})
    rows, cols = feature_grid_shape(x.shape[1])
    n_wrong = int((y != yhat).sum())
    # the numbers the figures' captions quote; the captions themselves are prose, in the templates
    atomic_write_json(out / "transfer.json", {
        "pairs": pairs, "pairs_left": pairs_left, "n_test": len(y), "n_classes": len(names), "n_wrong": n_wrong, "n_grid": len(pick),
        "n_grid_wrong": n_grid_wrong, "grid": grid, "misclassified": mistakes, "pred_px": PRED_PX,
        "dim": int(x.shape[1]), "grid_rows": rows, "grid_cols": cols,
        "label_noise": {**{k: v for k, v in noise.items() if k != "flagged"}, "items": noise_items},
        "confusion_full": any(p.name == "confusion_full.png" for p in confusion_files), "example_px": EXAMPLE_PX, "pair_px": PAIR_PX,
        "per_class": {"n_classes": len(per_class), "n_worst": n_worst, "untested": len(names) - len(per_class),
                      "perfect": int((per_class["accuracy"] == 1.0).sum()),
                      "median": float(per_class["accuracy"].median()) if len(per_class) else 0.0,
                      "worst": [{"class": r["class"], "n": int(r["n"]), "accuracy": float(r["accuracy"]),
                                 "confused_with": r["confused_with"], "confused_count": int(r["confused_count"]),
                                 "confused_tied": int(r["confused_tied"])}
                                for _, r in per_class.head(n_worst).iterrows()]},
    })


# shown sizes in CSS pixels; the files hold twice as many for high-DPI screens
EXAMPLE_PX = 240
PAIR_PX = 64
PAIRS_SHOWN = 15  # the most confused pairs in the post's table at most (fewer where a tie would be cut)
PRED_PX = 144     # a prediction gallery's images: two columns on a phone, four or five on a laptop
LABEL_NOISE_SHOWN = 12    # images most likely mislabelled, shown in their own gallery


def _replication_figures(ctx: BuildContext, out: Path) -> None:
    import pandas as pd

    from tlreport.report.charts import plot_table_accuracy
    from tlreport.report.tables import literature_rows

    agg = pd.read_csv(ctx.outputs["experiments"] / "aggregate.csv")
    o = out / "replication"
    o.mkdir(parents=True, exist_ok=True)
    for i, t in enumerate(ctx.config.experiments.tables):
        lit = literature_rows(t.literature) if t.literature else None
        plot_table_accuracy(agg, o / f"table{i}", lit, dataset=f"table{i}")


def figures_run(ctx: BuildContext, out: Path) -> None:
    from tlreport.report.style import MISSING_GLYPHS

    MISSING_GLYPHS.clear()
    if "train" in ctx.outputs:
        _transfer_figures(ctx, out)
    if "experiments" in ctx.outputs:
        _replication_figures(ctx, out)
    if MISSING_GLYPHS:
        shown = " ".join(f"{c} (U+{ord(c):04X})" for c in sorted(MISSING_GLYPHS)[:5])
        more = f" and {len(MISSING_GLYPHS) - 5} more" if len(MISSING_GLYPHS) > 5 else ""
        ctx.log(f"warning: no installed font draws {shown}{more}: the charts show a box for each; "
                "a font with them (Noto Sans CJK, for one) is used once installed")
