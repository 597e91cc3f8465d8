"""The stages of a build: classify, features, train, experiments, figures, render.

Each stage is a :class:`tlreport.build.Stage`: a cheap ``inputs`` function
(hashes only, no TensorFlow) and a ``run`` function that writes its outputs
into the folder it is given.  Heavy imports live inside ``run``.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from tlreport.build import BuildContext, Stage
from tlreport.cache import atomic_write_json, atomic_write_text, hash_obj, read_json, sha256_file
from tlreport.errors import UserError

# ----------------------------------------------------------------------------- helpers


def weights_id(spec) -> str:
    w = spec.weights
    return w.sha256 or w.md5 or w.artifact or w.kind


def _classify_sources(ctx: BuildContext):
    from tlreport.sources import resolve_image

    c = ctx.config["classify"]
    base = ctx.config.base_dir
    imgs = [resolve_image(r, base_dir=base, data_root=ctx.data_root) for r in c["images"]]
    oov = (resolve_image(c["out_of_vocabulary"], base_dir=base, data_root=ctx.data_root)
           if c["out_of_vocabulary"] else None)
    return imgs, oov


def _file_hash(ctx: BuildContext, path: Path) -> str:
    """sha256 of a file, memoised per build by (path, size, mtime)."""
    st = path.stat()
    return ctx.once(f"sha:{path}:{st.st_size}:{st.st_mtime_ns}", lambda: sha256_file(path))


def _version(dist: str, *alts: str) -> str:
    for d in (dist, *alts):
        try:
            return metadata.version(d)
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


# ----------------------------------------------------------------------------- classify


def classify_inputs(ctx: BuildContext) -> dict:
    from tlreport.backbones import get_spec

    c = ctx.config["classify"]
    spec = get_spec(c["backbone"])
    imgs, oov = ctx.once("classify.sources", lambda: _classify_sources(ctx))
    return {
        "spec": spec.fingerprint(), "weights": weights_id(spec), "top_k": c["top_k"],
        "images": [(s.ref, _file_hash(ctx, s.path)) for s in imgs],
        "oov": (oov.ref, _file_hash(ctx, oov.path), c["out_of_vocabulary_label"]) if oov else None,
    }


def _display_copy(src: Path, dest: Path, *, max_side: int = 480) -> tuple[int, int]:
    """A web-sized JPEG of a photo for the post; returns its size."""
    from PIL import Image

    from tlreport.datasets import BadImage, load_rgb

    try:
        img = load_rgb(src)
    except BadImage as e:
        raise UserError(f"cannot decode image {src}: {e}") from None
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    dest.parent.mkdir(parents=True, exist_ok=True)
    img.save(dest, "JPEG", quality=88, optimize=True)
    return img.size


def classify_images(spec, paths: list[Path], *, cache_dir: Path, data_root: str | None,
                    top_k: int) -> list[list[tuple[str, float]]]:
    """Top-k ImageNet predictions for each image file, on ``spec``'s network."""
    import numpy as np

    from tlreport.datasets import BadImage, load_prepared
    from tlreport.labels import label_names
    from tlreport.labels import top_k as topk

    if spec.family == "inception_2015":
        from tlreport import fetch
        from tlreport.backbones.inception_2015 import Inception2015

        root = fetch.ensure("inception_2015", fetch.data_root(data_root))
        with Inception2015(Path(root)) as net:
            return [net.top_k(net.predict_jpeg(p.read_bytes())[1], top_k) for p in paths]
    batch = []
    for p in paths:
        try:
            batch.append(load_prepared(p, spec))
        except BadImage as e:
            raise UserError(f"cannot decode image {p}: {e}") from None
    from tlreport.backbones import load_model

    model = load_model(spec, cache_dir=cache_dir, data_root=data_root)
    probs = np.asarray(model(np.stack(batch).astype("float32"), training=False)["probs"])
    names = label_names(spec.label_set)
    return [topk(row, names, top_k) for row in probs]


def classify_run(ctx: BuildContext, out: Path) -> None:
    from tlreport.backbones import get_spec

    c = ctx.config["classify"]
    spec = get_spec(c["backbone"])
    imgs, oov = ctx.once("classify.sources", lambda: _classify_sources(ctx))
    allsrc = imgs + ([oov] if oov else [])
    tops = classify_images(spec, [s.path for s in allsrc], cache_dir=ctx.cache_dir,
                           data_root=ctx.data_root, top_k=c["top_k"])
    rows = []
    for i, (s, top) in enumerate(zip(allsrc, tops, strict=True)):
        fname = f"{i:02d}-{_safe_name(s.name)}.jpg"
        w, h = _display_copy(s.path, out / "img" / fname)
        rows.append({"ref": s.ref, "name": s.name, "file": fname, "size": [w, h],
                     "sha256": _file_hash(ctx, s.path), "top": [[n, round(p, 6)] for n, p in top]})
        ctx.count("classify.images")
    atomic_write_json(out / "classify.json", {
        "backbone": spec.name, "top_k": c["top_k"],
        "images": rows[: len(imgs)], "oov": rows[-1] if oov else None,
        "oov_label": c["out_of_vocabulary_label"]})


def _safe_name(s: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in s)
    return keep.strip("-")[:40] or "image"


# ----------------------------------------------------------------------------- render


def render_inputs(ctx: BuildContext) -> dict:
    from tlreport.render import templates_fingerprint

    # the whole config: the post's provenance box prints its hash and the backbone list
    return {"post": ctx.config["post"], "config": ctx.config.hash(),
            "templates": templates_fingerprint(_user_templates(ctx))}


def _user_templates(ctx: BuildContext) -> Path | None:
    t = ctx.config["post"]["templates"]
    if not t:
        return None
    p = ctx.config.resolve(t)
    if not p.is_dir():
        raise UserError(f"post.templates: folder not found (got {t!r})")
    return p


def _git_commit() -> str:
    here = Path(__file__).resolve().parent.parent
    if not (here / ".git").exists():
        return ""
    try:
        r = subprocess.run(["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"],
                           capture_output=True, text=True, timeout=5)
        return r.stdout.strip() if r.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()}"


def _classify_context(ctx: BuildContext, slug: str, site_out: Path) -> dict | None:
    from tlreport.backbones import get_spec

    d = ctx.outputs.get("classify")
    if d is None:
        return None
    res = read_json(d / "classify.json")
    spec = get_spec(res["backbone"])
    img_dir = site_out / "images" / slug / "classify"
    img_dir.mkdir(parents=True, exist_ok=True)

    def item(r: dict, caption: str) -> dict:
        shutil.copy2(d / "img" / r["file"], img_dir / r["file"])
        return {"title": r["name"].replace("_", " "), "src": f"images/{slug}/classify/{r['file']}",
                "caption": caption, "width": min(r["size"][0], 360),
                "top": [(n, p) for n, p in r["top"]]}

    panda = None
    rows = res["images"]
    if res["backbone"] == "inception_2015":       # the seed's own model: show its panda beside the seed's list
        seed_top = {n: p for n, p in _seed_post()["panda"]["top5"]}
        for r in rows:
            if r["name"] == "cropped_panda":
                panda = item(r, f"{r['name']} ({r['ref']}), the image that ships with the 2015 graph")
                panda["rows"] = [{"name": n, "prob": p, "seed": f"{seed_top[n]:.4f}" if n in seed_top else "–"}
                                 for n, p in r["top"]]
        rows = [r for r in rows if r["name"] != "cropped_panda"]
    images = [item(r, f"{r['name']} ({r['ref']})") for r in rows]
    oov = None
    if res["oov"]:
        oov = item(res["oov"], f"{res['oov_label']} ({res['oov']['ref']})")
        oov["label"] = res["oov_label"]
    return {"spec": spec, "num_classes": 1000 if spec.num_classes in (1000, 1001, 1008) else spec.num_classes,
            "preprocess": describe_preprocessing(spec), "top_k": res["top_k"],
            "images": images, "oov": oov, "panda": panda}


def describe_preprocessing(spec) -> str:
    """How an image reaches the network, in words, from the spec."""
    s = spec.input_size
    if spec.resize == "center_crop":
        return (f"resized ({spec.interpolation}) so its shorter side is {round(s / spec.crop_fraction)} px, "
                f"centre-cropped to {s}×{s}")
    if spec.resize == "squash":
        return f"resized ({spec.interpolation}) to {s}×{s}"
    return f"fed as JPEG bytes to the graph, which decodes it and resizes it to {s}×{s} itself"


def _provenance(ctx: BuildContext) -> dict:
    from tlreport import __version__
    from tlreport.backbones import get_spec

    names = []
    if ctx.config["classify"]["enabled"]:
        names.append(ctx.config["classify"]["backbone"])
    for b in ctx.config["features"]["backbones"]:
        if b not in names:
            names.append(b)
    backbones = []
    for n in names:
        s = get_spec(n)
        backbones.append({"name": n, "sha256": weights_id(s), "source": s.weights.describe(), "licence": s.licence})
    timings = []
    for name, d in ctx.outputs.items():
        meta = d / "_meta.json"
        if meta.is_file():
            timings.append((name, read_json(meta)["seconds"]))
    return {
        "version": __version__, "git": _git_commit(), "config_hash": ctx.config.hash(),
        "seed": ctx.config["seed"], "python": platform.python_version(),
        "tensorflow": _version("tensorflow-cpu", "tensorflow"), "keras": _version("keras"),
        "numpy": _version("numpy"), "sklearn": _version("scikit-learn"),
        "backbones": backbones, "datasets": ctx.memo.get("provenance.datasets", []),
        "machine": _machine(), "timings": timings,
    }


def _copy_figures(ctx: BuildContext, slug: str, site_out: Path, sub: str) -> dict[str, str]:
    """Copy the figures stage's files for a section into the site; name -> site-relative URL."""
    src = ctx.outputs["figures"] / sub
    dest = site_out / "images" / slug / sub
    out = {}
    for f in sorted(src.rglob("*")):
        if f.is_file():
            rel = f.relative_to(src)
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dest / rel)
            out[rel.with_suffix("").as_posix()] = f"images/{slug}/{sub}/{rel.as_posix()}"
    return out


def _seed_post() -> dict:
    import tomllib

    from tlreport.paths import shipped_path

    return tomllib.loads(shipped_path("data", "seed_post.toml").read_text(encoding="utf-8"))


def _transfer_context(ctx: BuildContext, slug: str, site_out: Path) -> dict | None:
    from tlreport import escape
    from tlreport.demo_dataset import DESCRIPTION

    d = ctx.outputs.get("train")
    if d is None or "figures" not in ctx.outputs:
        return None
    res = read_json(d / "train.json")
    fig = _copy_figures(ctx, slug, site_out, "transfer")
    fmeta = read_json(ctx.outputs["figures"] / "transfer.json")
    counts = [(k, res["counts"][k]) for k in ("train", "validation", "test")]
    total = sum(n for _, n in counts)
    demo = None
    if res["dataset"] == "demo":
        n = len(res["classes"])
        demo = DESCRIPTION.format(n=n, per=round(total / max(1, n)))
    seed = _seed_post()["transfer"]
    diff = res["metrics"]["test"]["accuracy"] - seed["accuracy"]
    pairs = [{**p, "thumb_true_url": fig[p["thumb_true"]], "thumb_pred_url": fig[p["thumb_pred"]]}
             for p in fmeta["pairs"]]
    ex = res["example"]
    return {
        "backbone": res["backbone"], "dim": res["features_dim"], "n_classes": len(res["classes"]),
        "demo": demo, "dataset": res["dataset"], "summary": res["manifest_summary"],
        "skipped": res.get("skipped_files", [])[:SKIPS_SHOWN], "skipped_total": res.get("skipped", 0),
        "counts": counts, "total": total, "params": res["params"], "best_epoch": res["best_epoch"],
        "epochs_run": res["epochs_run"], "train_seconds": res["train_seconds"],
        "test": res["metrics"]["test"], "val": res["metrics"]["validation"], "seed": seed,
        "diff_text": (f"{abs(diff) * 100:.2f} points {'above' if diff >= 0 else 'below'} the seed, "
                      "on a split that also holds out a validation set"),
        "fig": fig, "pairs": pairs,
        "confusion_caption": fmeta["confusion_caption"], "grid_caption": fmeta["grid_caption"],
        "bottleneck_caption": fmeta["bottleneck_caption"],
        "example": {"relpath": ex["relpath"], "src": fig["example"],
                    "caption": f"A held-out test image of class {ex['label']} ({ex['relpath']})",
                    "top": [(n, p) for n, p in ex["top"]]},
        "escape": escape,
    }


HEAD_TEXT = {
    "softmax_sgd": "the seed's head, a softmax layer trained with SGD with momentum on cross-entropy "
                   "(standardised features, fixed epochs with a cosine schedule; no validation data is "
                   "taken from the n training images)",
    "logreg": "L2-regularised multinomial logistic regression (scikit-learn, lbfgs) on standardised "
              "features, its C chosen by 3-fold cross-validation on the training images only",
}


FLIP_TEXT = ("the same head and the same fit, tested on the average of its class probabilities for the image "
             "and for its left-right mirror image (the mirror's features are extracted once and cached)")


def _replication_context(ctx: BuildContext, slug: str, site_out: Path) -> dict | None:
    import pandas as pd

    from tlreport import escape
    from tlreport.experiments import comparison_sentences, literature_rows, table_rows

    d = ctx.outputs.get("experiments")
    if d is None or "figures" not in ctx.outputs:
        return None
    e = ctx.config["experiments"]
    agg = pd.read_csv(d / "aggregate.csv")
    fig = _copy_figures(ctx, slug, site_out, "replication")
    fjobs = {j["id"]: j for j in read_json(ctx.outputs["features"] / "features.json")["jobs"]}
    from tlreport import datastage

    tables = []
    for i, t in enumerate(e["tables"]):
        ds = f"table{i}"
        lit = literature_rows(t["literature"]) if t["literature"] else []
        rows, best = table_rows(agg, lit, t["settings"], dataset=ds)
        cells = []
        for row, flags in zip(rows, best, strict=True):
            out = [escape.md(row[0])]
            for c, b in zip(row[1:], flags, strict=True):
                out.append(f"**{escape.md(c)}**" if b else escape.md(c))
            cells.append(out)
        name = t["name"] or t["dataset"]
        job = fjobs.get(datastage.table_use(ctx, t).id, {})
        tables.append({
            "name": name, "settings": t["settings"], "test_cap": t["test_cap"],
            "summary": f"{name}: {job.get('summary', '')}",
            "header": ["# Train"] + [f"Acc(%) {n}/class" for n in t["settings"]],
            "rows": cells, "sentences": comparison_sentences(agg, lit, ds) if lit else [],
            "figure": fig[f"table{i}"],
            "figure_caption": (f"{name}: mean per-class accuracy against training images per class; "
                               f"error bars are ± one standard deviation over {e['n_splits']} splits"
                               + ("; dashed lines are the published rows." if lit else ".")),
        })
    heads = [{"name": h, "text": HEAD_TEXT.get(h, h)} for h in e["heads"] if h in HEAD_TEXT]
    if e["flip"]:
        heads.append({"name": "+flip", "text": FLIP_TEXT})
    return {"tables": tables, "n_splits": e["n_splits"], "heads": heads}


SECTION_CONTEXTS = {"classify": _classify_context, "transfer": _transfer_context,
                    "replication": _replication_context}


def render_run(ctx: BuildContext, out: Path) -> None:
    from tlreport.render import markdown_to_preview, render_post

    post = dict(ctx.config["post"])
    slug = post["slug"]
    site_out = out / "site"
    sections = {name: fn(ctx, slug, site_out) for name, fn in SECTION_CONTEXTS.items()}
    for name in ("transfer", "replication"):
        sections.setdefault(name, None)
    post["intro"] = ("This post reproduces a classic TensorFlow tutorial on transfer learning with "
                     "tlreport: every number, table and figure below was computed by the build from the "
                     "config next to it, and none was typed in.")
    post["excerpt"] = post["description"]
    context = {"post": post, "prov": _provenance(ctx), **sections}
    user = _user_templates(ctx)
    md_jekyll = render_post(context, user_dir=user, target="jekyll")
    md_preview = render_post(context, user_dir=user, target="preview")
    atomic_write_text(site_out / "_posts" / f"{post['date']}-{slug}.md", md_jekyll)
    atomic_write_text(site_out / "preview" / f"{slug}.html",
                      markdown_to_preview(md_preview, title=post["title"], user_dir=user))




# ----------------------------------------------------------------------------- features


def features_inputs(ctx: BuildContext) -> dict:
    from tlreport import datastage

    return {"jobs": [feature_identity(ctx, use, b) for use, b in datastage.feature_jobs(ctx)]}


def feature_identity(ctx: BuildContext, use: Any, backbone: str) -> dict:
    """What one (dataset, backbone) feature matrix depends on: the manifest and the backbone's cache key."""
    from tlreport import datastage
    from tlreport.features import backbone_key

    spec = datastage.resolved_spec(ctx, backbone)
    return {"dataset": use.id, "manifest": datastage.manifest(ctx, use).hash(), "backbone": backbone,
            "key": backbone_key(spec), "max_pixels": ctx.config["dataset"]["max_pixels"]}


def features_detail(ctx: BuildContext) -> str:
    from tlreport import datastage

    new: dict[str, int] = {}
    for use, b in datastage.feature_jobs(ctx):
        new[b] = new.get(b, 0) + datastage.missing_count(ctx, use, b)
    parts = [f"{b} {n:,} new image{'s' if n != 1 else ''}" for b, n in new.items() if n]
    return ", ".join(parts) if parts else "reindex (all cached)"


def features_run(ctx: BuildContext, out: Path) -> None:
    from tlreport import datastage
    from tlreport.features import backbone_key

    jobs = []
    for use, b in datastage.feature_jobs(ctx):
        m = datastage.manifest(ctx, use)
        x = datastage.features(ctx, use, b)
        spec = datastage.resolved_spec(ctx, b)
        atomic_write_text(out / f"manifest-{use.id}.json", m.to_json())
        jobs.append({"dataset": use.ref, "id": use.id, "backbone": b, "key": backbone_key(spec),
                     "precision": spec.precision, "images": int(x.shape[0]), "dim": int(x.shape[1]),
                     "summary": m.summary(), "manifest_hash": m.hash(),
                     "skipped": [[s.relpath, s.label, s.reason] for s in m.skipped]})
    atomic_write_json(out / "features.json", {"jobs": jobs})


# ----------------------------------------------------------------------------- train


def train_inputs(ctx: BuildContext) -> dict:
    from tlreport import datastage

    use = datastage.transfer_use(ctx)
    skipped = [[s.relpath, s.label, s.reason] for s in datastage.manifest(ctx, use).skipped]
    return {"train": ctx.config["train"], "seed": ctx.config["seed"], "dataset": use.id,
            "features": feature_identity(ctx, use, ctx.config["train"]["backbone"]),
            "skipped": hash_obj(skipped)}    # the post lists them


def train_run(ctx: BuildContext, out: Path) -> None:
    import numpy as np

    from tlreport import datastage
    from tlreport.datasets import display_name
    from tlreport.training import (
        evaluate,
        export_classifier,
        predict_proba,
        seed_everything,
        split_by_hash,
        train_softmax,
    )

    t = ctx.config["train"]
    seed = ctx.config["seed"]
    use = datastage.transfer_use(ctx)
    m = datastage.manifest(ctx, use)
    x = datastage.features(ctx, use, t["backbone"])
    y = m.labels()
    shas = [e.sha256 for e in m.entries]
    parts = split_by_hash(shas, y, t["fractions"], seed=seed)
    C = len(m.classes)
    missing = [m.classes[c] for c in range(C) if not np.any((parts == 0) & (y == c))]
    if missing:
        raise UserError(f"train.fractions leaves no training image for class(es) {', '.join(missing[:5])}")
    seed_everything(seed)
    head = train_softmax(x[parts == 0], y[parts == 0], x[parts == 1], y[parts == 1], num_classes=C,
                         lr=float(t["learning_rate"]), momentum=float(t["momentum"]), schedule=t["schedule"],
                         batch_size=t["batch_size"], epochs=t["epochs"], l2=float(t["l2"]),
                         patience=t["patience"] or None, seed=seed)
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
    # the exported classifier: backbone + new head in one .keras file, then a held-out example
    spec = datastage.resolved_spec(ctx, t["backbone"])
    net = datastage.model(ctx, t["backbone"])
    export_classifier(net, head, m.classes, out / "classifier.keras", backbone=spec.name)
    rng = np.random.default_rng(seed)
    ex = int(rng.choice(test_idx))
    from tlreport.training import classify_files

    (_, top), = classify_files(out / "classifier.keras", [Path(m.paths()[ex])], top_k=5)
    atomic_write_json(out / "train.json", {
        "backbone": t["backbone"], "dataset": use.ref, "classes": m.classes, "counts": counts,
        "per_class": {"train": np.bincount(y[parts == 0], minlength=C).tolist()},
        "metrics": metrics, "best_epoch": head.best_epoch, "epochs_run": int(len(head.history)),
        "train_seconds": round(head.seconds, 2), "params": t, "features_dim": int(x.shape[1]),
        "example": {"index": ex, "relpath": m.entries[ex].relpath, "label": m.entries[ex].label,
                    "top": [[n, round(p, 6)] for n, p in top]},
        "manifest_summary": m.summary(), "skipped": len(m.skipped),
        "skipped_files": [[display_name(sk.label), display_name(sk.relpath), sk.reason] for sk in m.skipped]})
    ctx.count("train.fits")


SKIPS_SHOWN = 20  # skipped files listed in the post; the manifest in the cache lists them all


# ----------------------------------------------------------------------------- experiments


def experiments_inputs(ctx: BuildContext) -> dict:
    from tlreport import datastage

    e = ctx.config["experiments"]
    uses = [datastage.table_use(ctx, t) for t in e["tables"]]
    return {"experiments": e, "seed": ctx.config["seed"], "tables": [u.id for u in uses],
            "features": [feature_identity(ctx, u, b) for u in uses for b in datastage.table_backbones(ctx)]}


def experiments_run(ctx: BuildContext, out: Path) -> None:
    import pandas as pd

    from tlreport import datastage
    from tlreport.experiments import aggregate, run_grid
    from tlreport.progress import bar

    e = ctx.config["experiments"]
    frames = []
    for i, t in enumerate(e["tables"]):
        use = datastage.table_use(ctx, t)
        m = datastage.manifest(ctx, use)
        feats = {b: datastage.features(ctx, use, b) for b in e["backbones"]}
        flips = {b: datastage.features(ctx, use, b + datastage.FLIP) for b in e["backbones"]} if e["flip"] else None
        heads = e["heads"]
        name = t["name"] or t["dataset"]
        total = len(feats) * len(heads) * len(t["settings"]) * e["n_splits"]
        with bar(total=total, desc=f"experiments {name}", unit="fit", enabled=not ctx.quiet) as pbar:

            def progress(done: int, total: int, desc: str, pbar=pbar) -> None:
                pbar.set_postfix_str(desc, refresh=False)
                pbar.update(1)

            df = run_grid(feats, m.labels(), m.classes, settings=t["settings"], test_cap=t["test_cap"],
                          n_splits=e["n_splits"], seed=ctx.config["seed"], heads=heads,
                          keys=[x.sha256 for x in m.entries], dataset=f"table{i}", progress=progress,
                          features_flip=flips)
        ctx.count("experiments.fits", len(df))
        frames.append(df)
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    timing = df.pop("seconds") if "seconds" in df else None
    df.to_csv(out / "results.csv", index=False, float_format="%.6f")
    df["seconds"] = timing if timing is not None else 0.0
    agg = aggregate(df) if len(df) else pd.DataFrame()
    agg_seconds = agg.pop("seconds") if "seconds" in agg else None
    agg.to_csv(out / "aggregate.csv", index=False, float_format="%.4f")
    atomic_write_json(out / "results.json", {"splits": df.drop(columns="seconds").to_dict(orient="records"),
                                             "aggregate": agg.to_dict(orient="records")})
    atomic_write_json(out / "timing.json", {
        "grid_seconds": round(float(timing.sum()), 2) if timing is not None else 0.0,
        "mean_fit_seconds": agg_seconds.round(3).tolist() if agg_seconds is not None else []})


# ----------------------------------------------------------------------------- figures


def figures_inputs(ctx: BuildContext) -> dict:
    return {"grid": ctx.config["train"]["grid_size"], "seed": ctx.config["seed"]}


def _transfer_figures(ctx: BuildContext, out: Path) -> None:
    import numpy as np

    from tlreport import datastage, figures
    from tlreport.datasets import BadImage, load_prepared

    d = ctx.outputs["train"]
    res = read_json(d / "train.json")
    pred = np.load(d / "predictions.npz", allow_pickle=False)
    test_idx, probs, y = pred["test_idx"], pred["probs"], pred["y"]
    names = res["classes"]
    use = datastage.transfer_use(ctx)
    m = datastage.manifest(ctx, use)
    spec = datastage.resolved_spec(ctx, res["backbone"])
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
    figures.plot_history(hist, o / "history", best_epoch=res["best_epoch"])
    (o / "history_loss.png").rename(o / "loss.png")
    (o / "history_accuracy.png").rename(o / "accuracy.png")
    figures.plot_confusion(y, yhat, names, o / "confusion")
    rng = np.random.default_rng(ctx.config["seed"])
    g = ctx.config["train"]["grid_size"]
    pick = np.sort(rng.choice(len(test_idx), size=min(g * g, len(test_idx)), replace=False))
    figures.plot_prediction_grid([image(test_idx[i]) for i in pick], [names[y[i]] for i in pick],
                                 [names[yhat[i]] for i in pick], conf[pick], o / "grid", cols=g)

    class Lazy:
        def __getitem__(self, i: int) -> np.ndarray:
            return image(test_idx[i])

    figures.plot_misclassified(Lazy(), y, yhat, conf, names, o / "misclassified", k=12, cols=4)
    x = datastage.features(ctx, use, res["backbone"])
    ex = res["example"]["index"]
    figures.plot_bottleneck(image(ex), x[ex], o / "bottleneck")
    figures.thumbnail(image(ex), o / "example.png", size=224)
    pairs = []
    labels = m.labels()
    parts = np.load(d / "parts.npy", allow_pickle=False)
    train_rows = np.flatnonzero(parts == 0)
    for k, row in figures.confused_pairs(y, yhat, names, k=15).iterrows():
        thumbs = {}
        for side, cname in (("true", row["true"]), ("pred", row["predicted"])):
            ci = names.index(cname)
            first = train_rows[labels[train_rows] == ci]
            rel = f"pairs/{k:02d}-{side}"
            figures.thumbnail(image(first[0]) if len(first) else image(test_idx[0]), o / f"{rel}.png", size=64)
            thumbs[side] = rel
        pairs.append({"true": row["true"], "pred": row["predicted"], "count": int(row["count"]),
                      "rate": float(row["rate"]), "thumb_true": thumbs["true"], "thumb_pred": thumbs["pred"]})
    rows, cols = figures.feature_grid_shape(x.shape[1])
    n_wrong = int((y != yhat).sum())
    atomic_write_json(out / "transfer.json", {
        "pairs": pairs,
        "confusion_caption": (f"Confusion matrix of the {len(y):,} test images over {len(names)} classes, "
                              "each row normalised to its class; classes are ordered by hierarchical "
                              f"clustering so that confusions sit near the diagonal. {n_wrong:,} images "
                              "are off the diagonal."),
        "grid_caption": (f"{len(pick)} random test images, each with the class the new layer predicted, its "
                         "probability and the true class; wrong ones have a dashed border and ✗."),
        "bottleneck_caption": (f"One held-out image and its {x.shape[1]:,}-d bottleneck vector, drawn as a "
                               f"{rows}×{cols} grid as the seed post does: this vector is all the new layer sees."),
    })


def _replication_figures(ctx: BuildContext, out: Path) -> None:
    import pandas as pd

    from tlreport.experiments import literature_rows, plot_accuracy_vs_ntrain

    agg = pd.read_csv(ctx.outputs["experiments"] / "aggregate.csv")
    o = out / "replication"
    o.mkdir(parents=True, exist_ok=True)
    for i, t in enumerate(ctx.config["experiments"]["tables"]):
        lit = literature_rows(t["literature"]) if t["literature"] else None
        plot_accuracy_vs_ntrain(agg, o / f"table{i}", lit, dataset=f"table{i}")


def figures_run(ctx: BuildContext, out: Path) -> None:
    if "train" in ctx.outputs:
        _transfer_figures(ctx, out)
    if "experiments" in ctx.outputs:
        _replication_figures(ctx, out)


STAGES: list[Stage] = [
    Stage("classify", "1", (), classify_inputs, classify_run,
          enabled=lambda ctx: ctx.config["classify"]["enabled"]),
    Stage("features", "1", (), features_inputs, features_run,
          enabled=lambda ctx: ctx.config["train"]["enabled"] or (
              ctx.config["experiments"]["enabled"] and bool(ctx.config["experiments"]["tables"])),
          detail=features_detail),
    Stage("train", "1", (), train_inputs, train_run, after=("features",),
          enabled=lambda ctx: ctx.config["train"]["enabled"]),
    Stage("experiments", "1", (), experiments_inputs, experiments_run, after=("features",),
          enabled=lambda ctx: ctx.config["experiments"]["enabled"] and bool(ctx.config["experiments"]["tables"])),
    Stage("figures", "1", ("train", "experiments"), figures_inputs, figures_run,
          enabled=lambda ctx: ctx.config["train"]["enabled"] or ctx.config["experiments"]["enabled"]),
    Stage("render", "1", ("classify", "train", "experiments", "figures"), render_inputs, render_run),
]
