"""The train stage: a new softmax layer on a stratified train/validation/test split."""

from __future__ import annotations

from pathlib import Path

from tlreport.engine.stage import BuildContext
from tlreport.errors import UserError
from tlreport.pipeline.feature_sets import feature_identity
from tlreport.util.files import atomic_write_json
from tlreport.util.text import display_name

# ----------------------------------------------------------------------------- train


def train_inputs(ctx: BuildContext) -> dict:
    from tlreport.pipeline import data as pipeline_data
    from tlreport.pipeline import feature_sets

    use = pipeline_data.transfer_use(ctx)
    classes = pipeline_data.manifest(ctx, use).classes
    if len(classes) < 2:                        # said while planning, not after the features are extracted
        raise UserError(f"the dataset has {len(classes)} class{'' if len(classes) == 1 else 'es'} to train on"
                        f"{' (' + display_name(classes[0]) + ')' if classes else ''}; a classifier needs at least "
                        f"two: add class folders, or name more classes in dataset.include or fewer in dataset.exclude")
    backbones = feature_sets.table_parts(ctx.config.train.backbone)
    return {"train": ctx.config.train, "seed": ctx.config.seed, "dataset": use.id,
            # covers the skipped files too, which the post lists
            "features": [feature_identity(ctx, use, feature_sets.FeatureVariant(b)) for b in backbones],
            # it exports backbone(s) + head: the code that builds each backbone is part of the result
            "backbone_code": [feature_sets.backbone_code(feature_sets.resolved_spec(ctx, b)) for b in backbones]}


def train_run(ctx: BuildContext, out: Path) -> None:
    import numpy as np

    from tlreport.datasets.splits import empty_held_out_part, split_by_hash
    from tlreport.heads.export import export_classifier
    from tlreport.heads.metrics import evaluate
    from tlreport.heads.softmax import predict_proba, seed_everything, train_softmax
    from tlreport.pipeline import data as pipeline_data
    from tlreport.pipeline import feature_sets

    t = ctx.config.train
    seed = ctx.config.seed
    use = pipeline_data.transfer_use(ctx)
    m = pipeline_data.manifest(ctx, use)
    x = feature_sets.table_features(ctx, use, t.backbone)
    y = m.labels()
    shas = [e.sha256 for e in m.entries]
    parts = split_by_hash(shas, y, t.fractions, seed=seed)
    C = len(m.classes)
    missing = [m.classes[c] for c in range(C) if not np.any((parts == 0) & (y == c))]
    if missing:
        raise UserError(f"train.fractions leaves no training image for class(es) "
                        f"{', '.join(display_name(c) for c in missing[:5])}")
    if (part := empty_held_out_part(parts)) is not None:
        raise UserError(f"{len(y)} images are too few for train.fractions = {list(t.fractions)}: the {part} "
                        f"part is empty; add images or give it a larger fraction")
    seed_everything(seed)
    head = train_softmax(x[parts == 0], y[parts == 0], x[parts == 1], y[parts == 1], num_classes=C,
                         lr=float(t.learning_rate), momentum=float(t.momentum), schedule=t.schedule,
                         batch_size=t.batch_size, epochs=t.epochs, l2=float(t.l2),
                         patience=t.patience or None, seed=seed, standardize=t.standardize)
    test_idx = np.flatnonzero(parts == 2)
    val_idx = np.flatnonzero(parts == 1)
    probs = predict_proba(head, x[test_idx]).astype(np.float32)
    metrics = {"test": evaluate(probs, y[test_idx], C),
               "validation": evaluate(predict_proba(head, x[val_idx]), y[val_idx], C)}
    head.history.to_csv(out / "history.csv", index=False, float_format="%.6g")
    np.savez(out / "predictions.npz", test_idx=test_idx.astype(np.int64), probs=probs,
             y=y[test_idx].astype(np.int64))
    np.save(out / "parts.npy", parts.astype(np.int8))
    counts = {name: int((parts == i).sum()) for i, name in enumerate(("train", "validation", "test"))}
    # the exported classifier: backbone(s) + new head in one .keras file, then a held-out example
    backbones = feature_sets.table_parts(t.backbone)
    export_classifier([feature_sets.model(ctx, b) for b in backbones], head, m.classes, out / "classifier.keras",
                      backbone="+".join(feature_sets.resolved_spec(ctx, b).name for b in backbones))
    # the example: a random held-out image the new layer classifies correctly (any one, if none is)
    rng = np.random.default_rng(seed)
    right = test_idx[probs.argmax(axis=1) == y[test_idx]]
    ex = int(rng.choice(right if len(right) else test_idx))
    from tlreport.heads.export import classify_files

    (_, top), = classify_files(out / "classifier.keras", [Path(m.paths()[ex])], top_k=5)
    atomic_write_json(out / "label_noise.json", label_noise(x, y, C, seed=seed, test_idx=test_idx,
                                                            test_pred=probs.argmax(axis=1), parts=parts,
                                                            relpaths=[e.relpath for e in m.entries]))
    atomic_write_json(out / "train.json", {
        "backbone": t.backbone, "backbones": backbones,
        "dims": [int(feature_sets.features(ctx, use, feature_sets.FeatureVariant(b)).shape[1]) for b in backbones],
        "dataset": use.ref, "classes": m.classes, "counts": counts,
        "per_class": {"train": np.bincount(y[parts == 0], minlength=C).tolist()},
        "metrics": metrics, "best_epoch": head.best_epoch, "epochs_run": int(len(head.history)),
        "train_seconds": round(head.seconds, 2), "params": t, "features_dim": int(x.shape[1]),
        # drawn from the right answers when there are any (the exported model's own top-5 may differ a hair)
        "example": {"index": ex, "relpath": m.entries[ex].relpath, "label": m.entries[ex].label,
                    "drawn_from_right": bool(len(right)), "top": [[n, round(p, 6)] for n, p in top]},
        "manifest_summary": m.summary(), "skipped": len(m.skipped),
        "skipped_files": [[display_name(sk.label), display_name(sk.relpath), sk.reason] for sk in m.skipped]})
    ctx.count("train.fits")


#: folds of the cross-validation that gives every image an out-of-fold probability, and its model: logistic
#: regression at a fixed C on the standardised features' first principal components (the post says so)
LABEL_NOISE_FOLDS = 5
LABEL_NOISE_C = 0.03
LABEL_NOISE_COMPONENTS = 512
#: flagged images kept in label_noise.json (the post shows the first few; the count covers all)
LABEL_NOISE_KEPT = 200


def label_noise(x, y, num_classes: int, *, seed: int, test_idx, test_pred, parts, relpaths) -> dict:
    """Images whose label is probably wrong, over the whole dataset, and how many test mistakes they explain.

    Every image gets class probabilities from a model that never saw it (cross-validation over all the
    images, not the training part alone: a mislabelled test image is the case that matters), then
    confident learning flags the images whose given label those probabilities contradict
    (:mod:`tlreport.heads.label_noise`).  A dataset with a class too small for the folds is reported
    as skipped, not an error.
    """
    import numpy as np

    from tlreport.heads.label_noise import find_label_issues, out_of_fold_probabilities, projected_components

    try:
        oof = out_of_fold_probabilities(x, y, num_classes, folds=LABEL_NOISE_FOLDS, seed=seed, C=LABEL_NOISE_C,
                                        components=LABEL_NOISE_COMPONENTS)
    except ValueError as e:
        return {"skipped": str(e)}
    issues = find_label_issues(oof, y)
    flagged = {i.index for i in issues}
    wrong = {int(i) for i in np.asarray(test_idx)[np.asarray(test_pred) != y[test_idx]]}
    part_names = ("train", "validation", "test")
    return {
        "folds": LABEL_NOISE_FOLDS, "C": LABEL_NOISE_C,
        "components": projected_components(len(y), x.shape[1], folds=LABEL_NOISE_FOLDS,
                                           components=LABEL_NOISE_COMPONENTS),
        "n_images": int(len(y)),
        "oof_accuracy": float((oof.argmax(axis=1) == y).mean()),
        "n_flagged": len(issues),
        "suggested_counts": {str(k): int(v) for k, v in
                             zip(*np.unique([i.suggested for i in issues], return_counts=True), strict=True)}
        if issues else {},
        "misclassified_test": len(wrong), "misclassified_test_flagged": len(wrong & flagged),
        "flagged": [{"index": i.index, "relpath": relpaths[i.index], "given": i.given, "suggested": i.suggested,
                     "self_confidence": round(i.self_confidence, 6),
                     "suggested_probability": round(i.suggested_probability, 6),
                     "part": part_names[int(parts[i.index])], "misclassified": i.index in wrong}
                    for i in issues[:LABEL_NOISE_KEPT]],
    }

