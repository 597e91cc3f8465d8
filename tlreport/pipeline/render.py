"""The render stage: section contexts from the stages' outputs, then the post and its preview."""

from __future__ import annotations

import dataclasses
import functools
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from tlreport.config import Config
from tlreport.engine.stage import BuildContext
from tlreport.errors import UserError
from tlreport.pipeline.provenance import _provenance
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
            "site_config": _site_repository(ctx), "config_name": _config_name(ctx),
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


def _development_choices(ctx: BuildContext, sections: dict) -> list[dict]:
    """The settings of this build that were first chosen while looking at Caltech-101 test accuracies
    (``data/development_choices.toml``), for a post on Caltech-101: what each is and how it was re-checked
    without a test image."""
    import tomllib

    from tlreport.backbones import get_spec
    from tlreport.pipeline.feature_sets import feature_jobs
    from tlreport.util.paths import shipped_path

    transfer, replication = sections.get("transfer"), sections.get("replication")
    on_caltech101 = bool(transfer and transfer["dataset_ref"] == "caltech101") or any(
        _dataset_reference(f"{t.dataset} {t.literature or ''} {t.name or ''}") == "caltech101"
        for t in (ctx.config.experiments.tables if replication else ()))
    if not on_caltech101:
        return []
    families = {get_spec(variant.backbone).family for _, variant in feature_jobs(ctx)}
    grids = _head_grids(ctx.config.experiments.heads) if replication else {}
    choices = tomllib.loads(shipped_path("data", "development_choices.toml").read_text(encoding="utf-8"))["choice"]
    return choices_that_apply(choices, families, dataclasses.asdict(ctx.config.train) if transfer else None, grids)


def _head_grids(heads: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """Each grid head's candidates for what it chooses on its hold-out (``softmax_sgd`` -> its ``l2_grid``)."""
    from tlreport.heads import get_head

    grids = {}
    for head in (get_head(h) for h in heads):
        for attr in ("l2_grid", "C_grid"):
            if hasattr(head, attr):
                grids[head.name] = tuple(getattr(head, attr))
    return grids


def choices_that_apply(choices: list[dict], families: set[str], train: dict | None,
                       grids: dict[str, Sequence[float]] | None = None) -> list[dict]:
    """The entries of ``data/development_choices.toml`` whose ``when`` holds: a backbone family the build
    uses, train settings that all match (``train`` is None when the build trains no single split), and a
    grid head choosing from the same values (``grids``: a head's name -> its candidates, for a build with
    a Zeiler & Fergus table).

    >>> c = [{"what": "w", "recheck": "r", "when": {"train": {"l2": 0.001}}}]
    >>> choices_that_apply(c, set(), {"l2": 0.001}), choices_that_apply(c, set(), {"l2": 0.0}), choices_that_apply(c, set(), None)
    ([{'what': 'w', 'recheck': 'r'}], [], [])
    >>> g = [{"what": "w", "recheck": "r", "when": {"grid": {"head": "h", "values": [0.1, 1.0]}}}]
    >>> choices_that_apply(g, set(), None, {"h": (1.0, 0.1)}), choices_that_apply(g, set(), None, {"h": (1.0,)})
    ([{'what': 'w', 'recheck': 'r'}], [])
    """
    chosen = []
    for c in choices:
        when = c["when"]
        if "backbone_family" in when and when["backbone_family"] not in families:
            continue
        if "train" in when and (train is None or any(train.get(k) != v for k, v in when["train"].items())):
            continue
        if "grid" in when:
            values = (grids or {}).get(when["grid"]["head"])
            if values is None or sorted(values) != sorted(when["grid"]["values"]):
                continue
        chosen.append({"what": c["what"], "recheck": c["recheck"]})
    return chosen


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
    dataset_ref = _dataset_reference(res["dataset"] + " " + credit[0])
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


def _dataset_reference(text: str) -> str | None:
    """The references.toml key of a Caltech dataset named in ``text`` (its path, artifact or credit line).

    >>> _dataset_reference("artifact:caltech256"), _dataset_reference("x Caltech-101: Li Fei-Fei"), _dataset_reference("flowers")
    ('caltech256', 'caltech101', None)
    """
    t = text.lower().replace("-", "")
    if "caltech256" in t or "256_objectcategories" in t:
        return "caltech256"
    if "caltech101" in t or "101_objectcategories" in t:
        return "caltech101"
    return None


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
    chosen_grids = _head_grids(e.heads)
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
            "config_name": _config_name(ctx), "concatenated": ", ".join(concatenated)}


def _config_name(ctx: BuildContext) -> str:
    """The config file as a reader types it: relative to the repository (or folder) it lives in."""
    path = ctx.config.path
    if path is None:
        return "tlreport.toml"
    top = _repository_top(path.parent)
    for base in (Path(top) if top else None, Path.cwd()):
        if base is not None and path.is_relative_to(base.resolve()):
            return path.relative_to(base.resolve()).as_posix()
    return path.name


@functools.cache
def _repository_top(folder: Path) -> str:
    """The top of the git repository holding ``folder`` ("" outside one): asked of git once per folder."""
    import subprocess

    try:
        return subprocess.run(["git", "-C", str(folder), "rev-parse", "--show-toplevel"], capture_output=True,
                              text=True, timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _reproduce_context(ctx: BuildContext, prov: dict, site_out: Path) -> dict:
    """The exact commands that rebuild this post, and where the exported classifier lands."""
    from tlreport.artifacts.registry import load_registry
    from tlreport.pipeline.data import dataset_name, is_folder_ref

    dataset = ctx.config.dataset.path
    # a build given --dataset read that in place of the config's dataset (the tables' too, where they name it);
    # --dataset naming the config's own folder is no override
    given = ctx.dataset_override
    if given and (given == dataset or (is_folder_ref(given) and is_folder_ref(dataset)
                                       and Path(given).resolve() == ctx.config.resolve(dataset).resolve())):
        given = None
    override = None
    if given:
        arg = "PATH" if is_folder_ref(given) else given
        override = {"name": dataset_name(given), "arg": arg, "instead_of": dataset_name(dataset),
                    "config_artifact": dataset.split(":", 1)[1] if dataset.startswith("artifact:") else ""}
    fetch = []
    refs = [dataset] + [t.dataset for t in ctx.config.experiments.tables] if ctx.config.experiments.enabled else [dataset]
    for ref in dict.fromkeys(given if given and ref == dataset else ref for ref in refs):
        if ref.startswith("artifact:"):
            fetch.append(ref.split(":", 1)[1])
    names = {b["name"] for b in prov["backbones"]}
    registry = load_registry()
    fetch += sorted(n for n in names if n in registry)
    in_source = _in_tlreport_source(ctx.config.path)
    # a project of one's own runs its commands in the config's folder: the config by its name there
    config = _config_name(ctx) if in_source or ctx.config.path is None else ctx.config.path.name
    return {"config": config, "config_hash": prov["config_hash"], "version": prov["version"],
            "in_source": in_source,
            "dataset_outside": is_folder_ref(dataset) and not given and _outside_repository(ctx, dataset),
            "auto": resolved_auto_settings(ctx.config, prov),
            "git": prov["rendered"]["commit"] or prov["git"], "modified": prov["rendered"]["modified"],
            "fetch": fetch, "repository": _site_repository(ctx),
            "dataset": dataset, "dataset_name": dataset_name(dataset), "override": override,
            "classifier": ctx.config.train.enabled}


def _in_tlreport_source(config_path: Path | None) -> bool:
    """Whether the config lies in tlreport's own source tree (a clone, installed with ``pip install -e``): there
    the post's commands install tlreport from that tree; a project of one's own (``tlreport init``) has no
    ``pyproject.toml`` of tlreport's to install from."""
    import tlreport

    source = Path(tlreport.__file__).resolve().parents[1]
    if not (source / "pyproject.toml").is_file():            # an installed tlreport, not a source tree
        return False
    return config_path is None or config_path.resolve().is_relative_to(source)


def _outside_repository(ctx: BuildContext, dataset: str) -> bool:
    """Whether the dataset folder lies outside the git repository holding the config (then publishing the
    repository does not publish the images); False where the config is in no repository (nothing to say)."""
    if ctx.config.path is None:
        return False
    top = _repository_top(ctx.config.path.parent)
    return bool(top) and not ctx.config.resolve(dataset).resolve().is_relative_to(Path(top).resolve())


def resolved_auto_settings(config: Config, prov: dict) -> list[dict[str, str]]:
    """The config's ``auto`` settings, each with what this machine resolved it to and what moves where another
    machine resolves it otherwise (``{"setting", "moves"}``, in words)."""
    auto = []
    if config.features.engine == "auto" and prov.get("engine"):
        auto.append({"setting": f'`features.engine = "auto"` chose {prov["engine"]}',
                     "moves": "the features, and so every number, can differ slightly"})
    if config.experiments.enabled and config.experiments.precision == "auto" and prov.get("head_precision"):
        auto.append({"setting": f'`experiments.precision = "auto"` chose {prov["head_precision"]["precision"]}',
                     "moves": "the softmax (SGD) rows can differ in their last digits"})
    return auto


def _site_repository(ctx: BuildContext) -> str:
    """``repository:`` of the site's ``_config.yml`` (``owner/name`` or a URL), else ``""``."""
    cfg = ctx.config.resolve(ctx.config.site_dir) / "_config.yml"
    try:
        text = cfg.read_text(encoding="utf-8")
    except OSError:
        return ""
    m = re.search(r"^repository:[ \t]*[\"']?([^\"'\s#]+)", text, flags=re.M)
    if not m:
        return ""
    repo = m.group(1)
    return repo if "://" in repo else f"https://github.com/{repo}"


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
               "reproduce": _reproduce_context(ctx, prov, site_out), **sections,
               "development_choices": _development_choices(ctx, sections)}
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
