"""The render stage: section contexts from the stages' outputs, then the post and its preview."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from tlreport.engine.stage import BuildContext
from tlreport.errors import UserError
from tlreport.pipeline.development_choices import candidate_grids, development_choices
from tlreport.pipeline.provenance import _provenance
from tlreport.pipeline.reproduce import config_name, reproduce_context, site_repository
from tlreport.report.references import dataset_reference
from tlreport.util.files import atomic_write_text, read_json
from tlreport.util.paths import shipped_path

# ----------------------------------------------------------------------------- render


def render_inputs(ctx: BuildContext) -> dict:
    # the whole config: the post's provenance box prints its hash and the backbone list
    from tlreport.pipeline.data import dataset_credit, transfer_use
    from tlreport.pipeline.provenance import render_git
    from tlreport.report.templating import templates_fingerprint

    return {"post": ctx.config.post, "config": ctx.config.hash(),
            "templates": templates_fingerprint(_user_templates(ctx)),
            "shipped": [ctx.file_hash(shipped_path("data", name)) for name in
                        ("literature.toml", "seed_post.toml", "references.toml", "development_choices.toml")],
            # a post rendered from uncommitted code says so; once committed, it is rendered again to say not
            # (the commit itself is no input: a later commit that changes nothing here leaves the post as is)
            "uncommitted": ctx.once("render_git", render_git)["modified"],
            "site_config": site_repository(ctx), "config_name": config_name(ctx),
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
    from tlreport.report.references import backbone_reference_keys

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
    seed = _seed_post()
    if res["backbone"] == "inception_2015":       # the seed's own model: show its panda beside the seed's list
        seed_top = {n: p for n, p in seed["panda"]["top5"]}
        for r in rows:
            if r["name"] == "cropped_panda":
                panda = item(r, f"{r['name']} ({r['ref']}), the image that ships with the 2015 graph")
                panda["rows"] = [{"name": n, "prob": p, "seed": f"{seed_top[n]:.4f}" if n in seed_top else "–"}
                                 for n, p in r["top"]]
        rows = [r for r in rows if r["name"] != "cropped_panda"]
    # another network on a panda of the dataset, beside the seed's quoted result for its cropped_panda
    own_panda = None
    pandas = [r for r in rows if r["ref"].startswith("dataset:") and "panda" in r["ref"].lower()]
    if panda is None and pandas:
        r = pandas[0]
        own_panda = item(r, f"{r['ref'].split(':', 1)[1]}, a photo of the dataset's panda class")
        printed = seed["panda"].get("printed", {})
        own_panda["seed_top"] = [(as_printed(n, printed.get(n)), p) for n, p in seed["panda"]["top5"]]
        rows = [x for x in rows if x is not r]
    images = [item(r, f"{r['name']} ({r['ref']})") for r in rows]
    oov = None
    if res["oov"]:
        oov = item(res["oov"], f"{res['oov_label']} ({res['oov']['ref']})")
        oov["label"] = res["oov_label"]
    return {"spec": spec, "num_classes": 1000 if spec.num_classes in (1000, 1001, 1008) else spec.num_classes,
            "preprocess": describe_preprocessing(spec), "top_k": res["top_k"],
            "images": images, "oov": oov, "panda": panda, "own_panda": own_panda,
            "seed_oov": seed["stegosaurus"]["top2"][0],
            "ref_keys": list(backbone_reference_keys(spec))}


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


def as_printed(name: str, printed: str | None) -> str:
    """A label as a quotation shows it: the letters the source left off in brackets.

    >>> as_printed("earthstar", "earthsta"), as_printed("indri", None)
    ('earthsta[r]', 'indri')
    """
    if not printed or printed == name:
        return name
    return f"{printed}[{name[len(printed):]}]" if name.startswith(printed) else f"{printed} [{name}]"


def _seed_post() -> dict:
    import tomllib

    from tlreport.util.paths import shipped_path

    return tomllib.loads(shipped_path("data", "seed_post.toml").read_text(encoding="utf-8"))


def _val_minus_test(metrics: dict, history: Path) -> dict:
    """Validation minus test accuracy, its 95% interval as a difference of two independent draws, and
    what choosing the epoch on the validation images was worth to them.

    That worth is the chosen epoch's validation accuracy minus its mean over the second half of the
    epochs run: near zero when validation accuracy had levelled off, whichever epoch was chosen.
    """
    import pandas as pd

    from tlreport.heads.metrics import difference_interval

    val, test = metrics["validation"], metrics["test"]
    hits = [round(m["accuracy"] * m["n"]) for m in (val, test)]
    out = {"diff": val["accuracy"] - test["accuracy"],
           "ci": difference_interval(hits[0], val["n"], hits[1], test["n"]), "n": val["n"]}
    if history.is_file():
        curve = pd.read_csv(history)["val_accuracy"].to_numpy()
        half = len(curve) // 2
        # in points, to the tenth the post prints (+ 0.0: never "-0.0")
        out["epoch_choice"] = {"gain": round((val["accuracy"] - float(curve[half:].mean())) * 100, 1) + 0.0,
                               "from": half + 1, "to": len(curve)}
    return out


def _test_minus_seed(test: dict, seed: dict) -> dict:
    """This build's test accuracy minus the seed's, with 95% intervals as a difference of two draws.

    The seed measured its accuracy on its held-out 40% (validation and test together, about 3,658
    images) without saying how they divide; the interval is given for all of them and for half.
    """
    from tlreport.heads.metrics import difference_interval

    hits = round(test["accuracy"] * test["n"])
    n_all = round(seed["held_out"] * seed["images"])
    return {"n_all": n_all,
            "ci_all": difference_interval(hits, test["n"], round(seed["accuracy"] * n_all), n_all),
            "ci_half": difference_interval(hits, test["n"], round(seed["accuracy"] * (n_all // 2)), n_all // 2)}


def _transfer_context(ctx: BuildContext, slug: str, site_out: Path) -> dict | None:
    from tlreport.backbones import get_spec
    from tlreport.report import escape
    from tlreport.report.references import backbone_reference_keys

    d = ctx.outputs.get("train")
    if d is None or "figures" not in ctx.outputs:
        return None
    res = read_json(d / "train.json")
    fig = _copy_figures(ctx, slug, site_out, "transfer")
    fmeta = read_json(ctx.outputs["figures"] / "transfer.json")
    counts = [(k, res["counts"][k]) for k in ("train", "validation", "test")]
    total = sum(n for _, n in counts)
    from tlreport.pipeline import data as pipeline_data

    demo = None
    if res["dataset"] == "demo":
        demo = {"classes": len(res["classes"]), "per_class": round(total / max(1, len(res["classes"])))}
    seed = _seed_post()["transfer"]
    credit = pipeline_data.dataset_credit(ctx, res["dataset"])
    dataset_ref = dataset_reference(res["dataset"] + " " + credit[0])
    # the seed's 92.47% is on all of Caltech-101's classes; like for like also holds out its 40% for testing
    seed_comparable = demo is None and dataset_ref == "caltech101" and len(res["classes"]) == seed["classes"]
    pairs = [{**p, "thumb_true_url": fig[p["thumb_true"]], "thumb_pred_url": fig[p["thumb_pred"]]}
             for p in fmeta["pairs"]]
    ex = res["example"]
    galleries = {k: [{**it, "src": fig[it["thumb"]]} for it in fmeta.get(k, [])] for k in ("grid", "misclassified")}
    noise = dict(fmeta.get("label_noise") or {})
    noise["items"] = [{**it, "src": fig[it["thumb"]]} for it in noise.get("items", [])]
    noise["to_class"] = {res["classes"][int(k)]: v for k, v in noise.get("suggested_counts", {}).items()}
    return {
        "backbone": res["backbone"], "backbones": res.get("backbones", [res["backbone"]]),
        "dims": res.get("dims", [res["features_dim"]]), "dim": res["features_dim"], "n_classes": len(res["classes"]),
        "demo": demo, "dataset": pipeline_data.dataset_name(res["dataset"]), "summary": res["manifest_summary"],
        "credit": credit[0], "credit_url": credit[1],
        "skipped": res.get("skipped_files", [])[:SKIPS_SHOWN], "skipped_total": res.get("skipped", 0),
        "counts": counts, "total": total, "params": res["params"], "best_epoch": res["best_epoch"],
        "epochs_run": res["epochs_run"], "train_seconds": res["train_seconds"],
        "test": res["metrics"]["test"], "val": res["metrics"]["validation"], "seed": seed,
        "val_minus_test": _val_minus_test(res["metrics"], d / "history.csv"),
        "diff": res["metrics"]["test"]["accuracy"] - seed["accuracy"],
        "test_minus_seed": _test_minus_seed(res["metrics"]["test"], seed),
        "seed_comparable": seed_comparable,
        "like_for_like": seed_comparable and abs(float(res["params"]["fractions"][2]) - seed["held_out"]) < 0.005,
        "fractions": [float(f) for f in res["params"]["fractions"]],
        "dataset_ref": dataset_ref,
        "fig": fig, "pairs": pairs, "figures": fmeta, "galleries": galleries, "per_class": fmeta["per_class"],
        "label_noise": noise, "classes": res["classes"],
        "ref_keys": list(dict.fromkeys(k for b in res.get("backbones", [res["backbone"]])
                                       for k in backbone_reference_keys(get_spec(b)))),
        "example": {"relpath": ex["relpath"], "label": ex["label"], "src": fig["example"],
                    "drawn_from_right": ex.get("drawn_from_right", ex["top"][0][0] == ex["label"]),
                    "top": [(n, p) for n, p in ex["top"]]},
        "escape": escape,
    }


#: the seed post's two tables: the literature key, the name, the settings and the test cap of each, so that
#: a post shows both halves of the seed even when its build ran neither (see configs/seed-replication.toml)
SEED_TABLES = (
    {"literature": "caltech101", "name": "Caltech-101", "settings": (15, 30), "test_cap": 50},
    {"literature": "caltech256", "name": "Caltech-256", "settings": (15, 30, 45, 60), "test_cap": 25},
)


def _replication_context(ctx: BuildContext, slug: str, site_out: Path) -> dict | None:
    import pandas as pd

    from tlreport.report.tables import (
        TIE_POINTS,
        chosen_sentence,
        claims,
        lead_rule,
        literature_rows,
        results_table,
    )

    d = ctx.outputs.get("experiments")
    if d is None or "figures" not in ctx.outputs:
        return None
    e = ctx.config.experiments
    agg = pd.read_csv(d / "aggregate.csv")
    splits = pd.read_csv(d / "results.csv")
    fig = _copy_figures(ctx, slug, site_out, "replication")
    fjobs = {j["id"]: j for j in read_json(ctx.outputs["features"] / "features.json")["jobs"]}
    tables_meta = read_json(d / "tables.json")
    dropped, table_classes = tables_meta["dropped"], tables_meta["classes"]
    from tlreport.heads import get_head
    from tlreport.pipeline import data as pipeline_data

    head_objs = [get_head(h) for h in e.heads]
    # each head's candidates for what it chooses ("l2=0.003" -> its l2_grid), so the post can say when a
    # choice sits at an end of them
    chosen_grids = candidate_grids(e.heads)
    tables = []
    for i, t in enumerate(e.tables):
        ds = f"table{i}"
        lit = literature_rows(t.literature) if t.literature else []
        name = t.name or pipeline_data.dataset_name(t.dataset)
        job = fjobs.get(pipeline_data.table_use(ctx, t).id, {})
        tables.append({
            "name": name, "settings": t.settings, "test_cap": t.test_cap, "literature": t.literature, "run": True,
            "summary": job.get("summary", ""),
            "table": results_table(agg, splits, lit, t.settings, dataset=ds, num_classes=table_classes[i]),
            "claims": claims(agg, splits, lit, t.settings, ds, num_classes=table_classes[i]),
            "chosen": chosen_sentence(splits, ds, chosen_grids),
            "figure": fig[f"table{i}"], "has_literature": bool(lit),
            "dropped": [{"name": n, "images": k} for n, k in dropped[i]], "need": max(t.settings) + 1,
        })
    ran = {t["literature"] for t in tables} | {t.dataset for t in e.tables}
    for seed_table in SEED_TABLES:
        if {seed_table["literature"], "artifact:" + seed_table["literature"]} & ran:
            continue
        lit = literature_rows(seed_table["literature"])
        tables.append({**seed_table, "run": False, "artifact": seed_table["literature"],
                       # quoted rows only: no split of this build to compare, so no class count enters
                       "table": results_table(agg.iloc[0:0], splits.iloc[0:0], lit, seed_table["settings"],
                                              num_classes=0),
                       "claims": [], "has_literature": True})
    from tlreport.report.names import backbone_title, head_title

    heads = [{"name": head_title(h), "text": head.description} for h, head in zip(e.heads, head_objs, strict=True)]
    concatenated = [backbone_title(b) for b in dict.fromkeys(agg["backbone"]) if "+" in str(b)]
    return {"tables": tables, "n_splits": e.n_splits, "heads": heads, "flip": e.flip, "lead_rule": lead_rule(e.n_splits), "tie_points": TIE_POINTS,
            "config_name": config_name(ctx), "concatenated": ", ".join(concatenated)}


def _summary_context(sections: dict, prov: dict) -> dict | None:
    """The box at the top of the post: the answers only, each from a section's results."""
    transfer, replication = sections.get("transfer"), sections.get("replication")
    if not transfer and not replication:
        return None
    tables = replication["tables"] if replication else []
    return {"transfer": transfer, "tables": [t for t in tables if t["run"]],
            "not_run": [t for t in tables if not t["run"]],
            "n_splits": replication["n_splits"] if replication else 0,
            "pretrained": all(b.get("pretrained", True) for b in prov["backbones"])}


def _excerpt(summary: dict | None, fallback: str) -> str:
    """The index's one paragraph: the post's headline number, else its description."""
    from tlreport.report.numbers import percent
    from tlreport.report.templating import fmt_mean_std  # "92.7 ± 0.4", the mean alone for one split

    if summary:
        for t in summary["tables"]:
            if t["claims"]:
                c = t["claims"][-1]
                head = f"{t['name']}, {c['n']} training images per class: "
                spread = (f"mean per-class accuracy over {c['k']} splits, ± one standard deviation" if c["k"] > 1
                          else "mean per-class accuracy on one split")
                level = {r["title"]: r for r in c["level_rows"]}
                # the rows named are those the excerpt can tell apart from the rest: a tie at the top is two rows
                named = ([c["top"], c["closest"]["title"]] if c["decided"] and c["tie"] and c["closest"]
                         else c["best"] if c["decided"] and len(c["best"]) == 2 else [c["top"]])
                rest = len(c["best"]) - len(named)           # other rows not shown behind the named ones
                others = (f"{rest} of the other {c['rows'] - len(named)} rows not shown behind "
                          f"{'it' if len(named) == 1 else 'them'}" if c["decided"] and rest > 0
                          else "ahead of every other row" if c["decided"] and len(named) == 1 else "")
                if len(named) == 2:
                    best = " and ".join(f"{r}, {fmt_mean_std(level[r])}%," for r in named)
                    text = (f"{head}{best} share the top {spread}" if c["tie"] else
                            f"{head}{best} lead in {spread}, not shown apart") + (f" ({others})" if others else "")
                else:
                    text = f"{head}{fmt_mean_std(c)}% top {spread} ({c['top']}{'; ' + others if others else ''})"
                if c["seed"]:
                    text += f", against {c['seed']['cell']}% for the seed post's best row ({c['seed']['label']})"
                # a "±" kept with both its numbers where the index wraps the line (no-break spaces)
                return text.replace(" ± ", "\u00a0±\u00a0") + ". " + fallback
        if summary["transfer"] and not summary["transfer"]["demo"]:
            t = summary["transfer"]
            return f"A new softmax layer classifies {percent(t['test']['accuracy'], 2)} of {t['dataset']}'s test images. " + fallback
    return fallback


SECTION_CONTEXTS = {"classify": _classify_context, "transfer": _transfer_context,
                    "replication": _replication_context}


def render_run(ctx: BuildContext, out: Path) -> None:
    from tlreport.report.templating import markdown_to_preview, render_post

    post = dataclasses.asdict(ctx.config.post)   # a dict: the post gets its excerpt below
    slug = post["slug"]
    site_out = out / "site"
    sections = {name: fn(ctx, slug, site_out) for name, fn in SECTION_CONTEXTS.items()}
    for name in ("transfer", "replication"):
        sections.setdefault(name, None)
    prov = _provenance(ctx)
    summary = _summary_context(sections, prov)
    post["excerpt"] = _excerpt(summary, post["description"])
    context = {"post": post, "prov": prov, "summary": summary, "seed_post": _seed_post()["post"],
               "reproduce": reproduce_context(ctx, prov), **sections,
               "development_choices": development_choices(ctx, sections)}
    context["figure_meta"] = figure_meta(site_out, slug)     # charts' phone variants and text sizes
    user = _user_templates(ctx)
    md_jekyll = render_post(context, user_dir=user, target="jekyll")
    md_preview = render_post(context, user_dir=user, target="preview")
    atomic_write_text(site_out / "_posts" / f"{post['date']}-{slug}.md", md_jekyll)
    atomic_write_text(site_out / "preview" / f"{slug}.html",
                      markdown_to_preview(md_preview, title=post["title"], user_dir=user,
                                          images_from=site_out / "preview"))


def figure_meta(site_out: Path, slug: str) -> dict[str, dict]:
    """Each chart of the post (site-relative URL) -> its phone variant's URL and both variants' smallest text.

    ``text_px`` is read from the PNG (:func:`tlreport.report.style.read_text_px`); the figure macro puts it
    in the page as ``data-text-px``, so a browser check can tell the text size a reader sees.
    """
    from tlreport.report.style import read_text_px

    root = site_out / "images" / slug
    out: dict[str, dict] = {}
    for png in sorted(root.rglob("*.png")) if root.is_dir() else []:
        if png.name.endswith(".phone.png"):
            continue
        url = png.relative_to(site_out).as_posix()
        meta: dict = {"text_px": read_text_px(png)}
        phone = png.with_name(png.name[: -len(".png")] + ".phone.png")
        if phone.is_file():
            meta.update(phone=phone.relative_to(site_out).as_posix(), phone_text_px=read_text_px(phone))
        out[url] = meta
    return out


SKIPS_SHOWN = 20  # skipped files listed in the post; the manifest in the cache lists them all
