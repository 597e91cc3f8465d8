"""The render stage: section contexts from the stages' outputs, then the post and its preview."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

from tlreport.engine.stage import BuildContext
from tlreport.errors import UserError
from tlreport.pipeline.provenance import _provenance
from tlreport.util.files import atomic_write_text, read_json

# ----------------------------------------------------------------------------- render


def render_inputs(ctx: BuildContext) -> dict:
    # the whole config: the post's provenance box prints its hash and the backbone list
    from tlreport.pipeline.resources import dataset_credit, shipped_hash, transfer_use
    from tlreport.report.render import templates_fingerprint

    return {"post": ctx.config.post, "config": ctx.config.hash(),
            "templates": templates_fingerprint(_user_templates(ctx)),
            "shipped": [shipped_hash(ctx, "data", name) for name in ("literature.toml", "seed_post.toml")],
            "credit": dataset_credit(ctx, transfer_use(ctx).ref) if ctx.config.train.enabled else None}


def _user_templates(ctx: BuildContext) -> Path | None:
    t = ctx.config.post.templates
    if not t:
        return None
    p = ctx.config.resolve(t)
    if not p.is_dir():
        raise UserError(f"post.templates: folder not found (got {t!r})")
    return p


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
        w, h = r["size"]
        shown = min(w, 360)
        return {"title": r["name"].replace("_", " "), "ref": r["ref"], "src": f"images/{slug}/classify/{r['file']}",
                "caption": caption, "width": shown, "height": max(1, round(h * shown / max(1, w))),
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

    from tlreport.util.paths import shipped_path

    return tomllib.loads(shipped_path("data", "seed_post.toml").read_text(encoding="utf-8"))


def _transfer_context(ctx: BuildContext, slug: str, site_out: Path) -> dict | None:
    from tlreport.report import escape

    d = ctx.outputs.get("train")
    if d is None or "figures" not in ctx.outputs:
        return None
    res = read_json(d / "train.json")
    fig = _copy_figures(ctx, slug, site_out, "transfer")
    fmeta = read_json(ctx.outputs["figures"] / "transfer.json")
    counts = [(k, res["counts"][k]) for k in ("train", "validation", "test")]
    total = sum(n for _, n in counts)
    from tlreport.pipeline import resources

    demo = None
    if res["dataset"] == "demo":
        demo = {"classes": len(res["classes"]), "per_class": round(total / max(1, len(res["classes"])))}
    seed = _seed_post()["transfer"]
    credit = resources.dataset_credit(ctx, res["dataset"])
    pairs = [{**p, "thumb_true_url": fig[p["thumb_true"]], "thumb_pred_url": fig[p["thumb_pred"]]}
             for p in fmeta["pairs"]]
    ex = res["example"]
    return {
        "backbone": res["backbone"], "backbones": res.get("backbones", [res["backbone"]]),
        "dims": res.get("dims", [res["features_dim"]]), "dim": res["features_dim"], "n_classes": len(res["classes"]),
        "demo": demo, "dataset": resources.dataset_name(res["dataset"]), "summary": res["manifest_summary"],
        "credit": credit[0], "credit_url": credit[1],
        "skipped": res.get("skipped_files", [])[:SKIPS_SHOWN], "skipped_total": res.get("skipped", 0),
        "counts": counts, "total": total, "params": res["params"], "best_epoch": res["best_epoch"],
        "epochs_run": res["epochs_run"], "train_seconds": res["train_seconds"],
        "test": res["metrics"]["test"], "val": res["metrics"]["validation"], "seed": seed,
        "diff": res["metrics"]["test"]["accuracy"] - seed["accuracy"],
        "fig": fig, "pairs": pairs, "figures": fmeta, "per_class": fmeta["per_class"],
        "example": {"relpath": ex["relpath"], "label": ex["label"], "src": fig["example"],
                    "top": [(n, p) for n, p in ex["top"]]},
        "escape": escape,
    }


def _replication_context(ctx: BuildContext, slug: str, site_out: Path) -> dict | None:
    import pandas as pd

    from tlreport.report import escape
    from tlreport.report.tables import (
        chosen_sentence,
        comparison_sentences,
        literature_rows,
        margin_sentences,
        table_rows,
    )

    d = ctx.outputs.get("experiments")
    if d is None or "figures" not in ctx.outputs:
        return None
    e = ctx.config.experiments
    agg = pd.read_csv(d / "aggregate.csv")
    splits = pd.read_csv(d / "results.csv")
    fig = _copy_figures(ctx, slug, site_out, "replication")
    fjobs = {j["id"]: j for j in read_json(ctx.outputs["features"] / "features.json")["jobs"]}
    dropped = read_json(d / "tables.json")["dropped"]
    from tlreport.pipeline import resources
    from tlreport.report.tables import best_by_setting

    tables = []
    for i, t in enumerate(e.tables):
        ds = f"table{i}"
        lit = literature_rows(t.literature) if t.literature else []
        rows, best = table_rows(agg, lit, t.settings, dataset=ds)
        cells = []
        for row, flags in zip(rows, best, strict=True):
            # a line may break after each "+" inside a concatenation's long name, rather than inside a name
            out = [re.sub(r"(?<! )\+(?! )", "+<wbr>", escape.md(row[0]))]
            for c, b in zip(row[1:], flags, strict=True):
                out.append(f"**{escape.md(c)}**" if b else escape.md(c))
            cells.append(out)
        name = t.name or t.dataset
        job = fjobs.get(resources.table_use(ctx, t).id, {})
        tables.append({
            "name": name, "settings": t.settings, "test_cap": t.test_cap,
            "summary": f"{name}: {job.get('summary', '')}",
            "header": ["Features + head"] + [f"Acc(%) {n}/class" for n in t.settings],
            "rows": cells,
            "sentences": ((comparison_sentences(agg, lit, ds) if lit else []) + margin_sentences(splits, ds, t.settings)
                          + [s for s in [chosen_sentence(splits, ds)] if s]),
            "figure": fig[f"table{i}"], "has_literature": bool(lit),
            "dropped": [{"name": n, "images": k} for n, k in dropped[i]], "need": max(t.settings) + 1,
            "best": best_by_setting(agg, lit, t.settings, dataset=ds),
        })
    from tlreport.heads import get_head

    heads = [{"name": h, "text": get_head(h).description} for h in e.heads]
    return {"tables": tables, "n_splits": e.n_splits, "heads": heads, "flip": e.flip}


def _summary_context(sections: dict, prov: dict) -> dict | None:
    """The box at the top of the post: the headline numbers, each from a section's results."""
    transfer, replication = sections.get("transfer"), sections.get("replication")
    if not transfer and not replication:
        return None
    total = sum(s for _, s in prov["timings"])
    backbones = [b["name"] for b in prov["backbones"]]
    return {"transfer": transfer, "tables": replication["tables"] if replication else [],
            "n_splits": replication["n_splits"] if replication else 0,
            "backbones": backbones, "pretrained": all(b.get("pretrained", True) for b in prov["backbones"]),
            "build_seconds": total, "machine": prov["machine"],
            "features_cached": prov.get("features_extracted") == 0}


SECTION_CONTEXTS = {"classify": _classify_context, "transfer": _transfer_context,
                    "replication": _replication_context}


def render_run(ctx: BuildContext, out: Path) -> None:
    from tlreport.report.render import markdown_to_preview, render_post

    post = dataclasses.asdict(ctx.config.post)   # a dict: the post gets its excerpt below
    slug = post["slug"]
    site_out = out / "site"
    sections = {name: fn(ctx, slug, site_out) for name, fn in SECTION_CONTEXTS.items()}
    for name in ("transfer", "replication"):
        sections.setdefault(name, None)
    post["excerpt"] = post["description"]
    prov = _provenance(ctx)
    context = {"post": post, "prov": prov, "summary": _summary_context(sections, prov),
               "seed_post": _seed_post()["post"], **sections}
    user = _user_templates(ctx)
    md_jekyll = render_post(context, user_dir=user, target="jekyll")
    md_preview = render_post(context, user_dir=user, target="preview")
    atomic_write_text(site_out / "_posts" / f"{post['date']}-{slug}.md", md_jekyll)
    atomic_write_text(site_out / "preview" / f"{slug}.html",
                      markdown_to_preview(md_preview, title=post["title"], user_dir=user))


SKIPS_SHOWN = 20  # skipped files listed in the post; the manifest in the cache lists them all
