"""Section contexts built from stage outputs (no TensorFlow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tlreport.backbones import get_spec
from tlreport.config import validate
from tlreport.engine.stage import BuildContext
from tlreport.engine.store import StageStore
from tlreport.pipeline.render import _classify_context, describe_preprocessing
from tlreport.report.templating import render_post


def _classify_output(tmp_path, backbone: str, rows: list[dict]):
    d = tmp_path / "classify"
    (d / "img").mkdir(parents=True)
    for r in rows:
        (d / "img" / r["file"]).write_bytes(b"jpeg")
    (d / "classify.json").write_text(json.dumps({"backbone": backbone, "top_k": 5, "images": rows,
                                                 "oov": None, "oov_label": ""}))
    return d


def _render(*, classify=None, replication=None, prov=None, development_choices=None) -> str:
    """The post for one section context, with placeholder post metadata and provenance."""
    return render_post({"post": {"title": "t", "date": "2026-01-01", "author": "a", "description": "d",
                                 "excerpt": "e", "tags": [], "intro": "i"},
                        "classify": classify, "transfer": None, "replication": replication, "summary": None,
                        "development_choices": development_choices or [],
                        "seed_post": {"title": "A tutorial", "source": "https://example.org/blog"},
                        "prov": {"version": "0", "git": "", "rendered": {"commit": "", "modified": False}, "config_hash": "0" * 64, "seed": 1, "python": "3",
                                 "tensorflow": "2", "keras": "3", "numpy": "2", "scipy": "1", "sklearn": "1",
                                 "backbones": [], "engine": "TensorFlow", "computed_on": "", "precision": "float32", "head_precision": {}, "datasets": [],
                                 "machine": "m", "timings": [], **(prov or {})}},
                       user_dir=None, target="jekyll")


def _render_with_prov(**prov) -> str:
    """The post with these provenance fields (its other fields placeholders)."""
    return _render(prov=prov)


def _row(name: str, top: list) -> dict:
    return {"ref": f"x:{name}.jpg", "name": name, "file": f"{name}.jpg", "size": [100, 80], "sha256": "0",
            "top": top}


def test_panda_on_the_2015_graph_is_shown_beside_the_seed(tmp_path):
    top = [["giant panda", 0.89], ["indri", 0.009], ["sloth bear", 0.002]]
    d = _classify_output(tmp_path, "inception_2015", [_row("cropped_panda", top), _row("cat", top)])
    ctx = BuildContext(config=validate({}), store=StageStore(tmp_path / "s"))
    ctx.outputs["classify"] = d
    c = _classify_context(ctx, "slug", tmp_path / "site")
    assert [i["title"] for i in c["images"]] == ["cat"]
    rows = c["panda"]["rows"]
    assert rows[0] == {"name": "giant panda", "prob": 0.89, "seed": "0.8923"}     # from data/seed_post.toml
    assert rows[2]["seed"] == "–"                                                 # not in the seed's top 5
    md = _render(classify=c)
    assert "| 0.8900 | giant panda | 0.8923 |" in md
    assert "fed as JPEG bytes to the graph" in md


def test_other_backbones_show_no_panda_row(tmp_path):
    d = _classify_output(tmp_path, "efficientnet_lite0", [_row("cropped_panda", [["giant panda", 0.9]])])
    ctx = BuildContext(config=validate({}), store=StageStore(tmp_path / "s"))
    ctx.outputs["classify"] = d
    c = _classify_context(ctx, "slug", tmp_path / "site")
    assert c["panda"] is None and len(c["images"]) == 1


def test_durations_round_once():
    from tlreport.report.templating import fmt_seconds

    assert ([fmt_seconds(s) for s in (59.94, 59.97, 60.0, 119.7, 3599.6)]
            == ["59.9 s", "1 min 0 s", "1 min 0 s", "2 min 0 s", "60 min 0 s"])


def test_the_classify_command_names_any_example_path_as_one_argument():
    from tlreport.report.templating import _shell

    assert _shell("cats/1.jpg") == "cats/1.jpg" and _shell("my cats/1.jpg") == "'my cats/1.jpg'"
    assert _shell("-n/1.jpg") == "./-n/1.jpg"                  # not an option to tlreport classify
    assert _shell("caf\udce9/\x1b.png") == "$'caf\\xe9/\\x1b.png'"


def test_preprocessing_is_described_from_the_spec():
    assert describe_preprocessing(get_spec("efficientnet_lite0")) == "resized (bicubic) to 224×224"
    assert describe_preprocessing(get_spec("efficientnet_lite2")) == "resized (bicubic) to 260×260"
    assert "299×299" in describe_preprocessing(get_spec("inception_v3"))


def test_caltech256_table_renders_from_a_synthetic_stand_in(tmp_path):
    """Four settings, literature rows from data/, our rows from an aggregate CSV; best values bold."""
    import pandas as pd

    from tlreport.pipeline.render import _replication_context

    cfg = validate({"experiments": {"backbones": ["efficientnet_lite0"], "tables": [
        {"dataset": "c256", "name": "Caltech-256", "literature": "caltech256",
         "settings": [15, 30, 45, 60], "test_cap": 25}]}})
    ctx = BuildContext(config=cfg, store=StageStore(tmp_path / "s"))
    exp, figs, feats = tmp_path / "exp", tmp_path / "fig", tmp_path / "feat"
    for d in (exp, figs / "replication", feats):
        d.mkdir(parents=True)
    rows = [{"dataset": "table0", "backbone": "efficientnet_lite0", "head": h, "n_train": n,
             "mean": m + n / 10, "std": 0.3, "n_splits": 5, "accuracy": m}
            for h, m in (("softmax_sgd", 78.0), ("logreg", 80.0)) for n in (15, 30, 45, 60)]
    pd.DataFrame(rows).to_csv(exp / "aggregate.csv", index=False)
    fits = [{"dataset": "table0", "backbone": "efficientnet_lite0", "head": h, "n_train": 15, "split": s,
             "mean_per_class_accuracy": m + s / 100, "chosen": c, "n_test": 6425}
            for h, m, c in (("softmax_sgd", 0.79, "l2=0.01"), ("logreg", 0.815, "C=0.1")) for s in range(5)]
    pd.DataFrame(fits).to_csv(exp / "results.csv", index=False)
    (exp / "tables.json").write_text(json.dumps({"dropped": [[]], "classes": [257]}))
    (figs / "replication" / "table0.png").write_bytes(b"png")
    (feats / "features.json").write_text(json.dumps({"jobs": []}))
    ctx.outputs.update({"experiments": exp, "figures": figs, "features": feats})
    rep = _replication_context(ctx, "slug", tmp_path / "site")
    t = rep["tables"][0]
    groups = {g["title"]: g["rows"] for g in t["table"]["groups"]}
    assert list(groups) == ["This build", "Quoted from the seed post", "From the papers the seed post quotes"]
    ours = {r["label"]: r for r in groups["This build"]}
    # logreg leads softmax (SGD) by 2.5 points on every one of the 5 paired splits: bold alone at 15/class
    lr = ours["EfficientNet-Lite0 with logistic regression"]
    assert lr["cells"] == ["81.5 ± 0.3", "83.0 ± 0.3", "84.5 ± 0.3", "86.0 ± 0.3"]
    assert lr["bold"] == [True, False, False, False]
    assert ours["EfficientNet-Lite0 with softmax (SGD)"]["bold"] == [False] * 4
    # quoted rows are never bold, and name their source
    resnet = next(r for r in groups["Quoted from the seed post"] if r["label"] == "Inception-ResNet v2")
    assert resnet["cells"][3] == "86.7 ± 0.7" and not any(resnet["bold"]) and resnet["ref"] == "seed_post"
    assert (tmp_path / "site" / "images" / "slug" / "replication" / "table0.png").is_file()
    # the seed's other table (Caltech-101) is shown as not run, with its rows and the commands that run it
    (c101,) = [x for x in rep["tables"] if not x["run"]]
    assert c101["name"] == "Caltech-101" and c101["settings"] == (15, 30)
    md = _render(replication=rep)
    assert "| Features and head | Acc(%) 15/class | Acc(%) 30/class | Acc(%) 45/class | Acc(%) 60/class |" in md
    assert "| ***This build*** | | | | |" in md
    # a cell that wraps on a phone breaks before its "±", never after it
    assert ("| EfficientNet-Lite0 with logistic regression | **81.5 ±&nbsp;0.3** | 83.0 ±&nbsp;0.3 | 84.5 ±&nbsp;0.3 "
            "| 86.0 ±&nbsp;0.3 |") in md
    assert "| Sohn et al., 2011 [\\[" in md and "](#ref-" in md
    assert ("EfficientNet-Lite0 with logistic regression is best, 81.5 ± 0.3%; it leads the next row, "
            "EfficientNet-Lite0 with softmax (SGD), by 2.50 ± 0.00 points, ahead on 5 of 5 paired splits.") in md
    # quoted rows with their noise, as printed
    assert ("The seed post's best row here, Inception-ResNet v2, has 81.0 ± 0.8; the best published row it quotes, "
            "Zeiler &#38; Fergus, 2013, 65.7 ± 0.2 (as printed).") in md
    assert "softmax (SGD)'s l2=0.01 in 5 of 5 fits; logistic regression's C=0.1 in 5 of 5 fits." in md
    assert "### Caltech-101 (not run here) {#caltech-101-not-run-here}" in md
    assert "tlreport fetch caltech101" in md and 'dataset = "artifact:caltech101"' in md
    assert "## References {#references}" in md and md.count('<li id="ref-') >= 6


def _summary_md(summary: dict) -> str:
    from tlreport.report.templating import get_env

    return get_env(None, target="jekyll").get_template("sections/summary.md.j2").render(summary=summary, reproduce=None)


def _transfer_stub(n_classes: int, accuracy: float) -> dict:
    from tlreport.pipeline.render import _test_minus_seed

    seed = {"accuracy": 0.9247, "classes": 102, "held_out": 0.4, "images": 9145}
    test = {"accuracy": accuracy, "n": 1830}
    return {"backbone": "efficientnet_lite0", "backbones": ["efficientnet_lite0"], "test": test, "demo": None,
            "dataset": "101_ObjectCategories", "n_classes": n_classes, "seed": seed,
            "diff": accuracy - seed["accuracy"], "test_minus_seed": _test_minus_seed(test, seed)}


def test_summary_box_states_the_answers_with_their_noise():
    from tlreport.pipeline.render import _summary_context

    def claim(n, best, mean, std, **kw):
        # each level row its own number: the second 0.2 below the first, with another spread
        level = [{"title": t, "mean": mean - 0.2 * i, "std": std + 0.2 * i} for i, t in enumerate(best)]
        seed = {"label": "Inception-ResNet v2", "mean": 87.8 if n == 15 else 90.1,
                "cell": "87.8 ± 0.8" if n == 15 else "90.1 ± 0.5"}
        return {"n": n, "top": best[0] if best else "x", "best": best, "decided": True, "mean": mean, "std": std,
                "k": 5, "clear_lead": None, "closest": None, "paper": None, "only": False, "rows": 8,
                "level_rows": level, "tie": False, "seed": seed, **kw}

    concat = "Lite0 + Lite1 + Lite2"
    claims = [claim(15, [f"{concat} with softmax (SGD)", f"{concat} with logistic regression"], 92.8, 0.5),
              claim(30, [f"{concat} with logistic regression"], 94.3, 0.6, clear_lead={"over": "x"})]
    prov = {"timings": [("features", 600.0)], "machine": "AMD EPYC, 2 cores, Linux",
            "backbones": [{"name": "efficientnet_lite0"}]}
    c256 = {"name": "Caltech-256", "literature": "caltech256", "run": False}
    transfer = {**_transfer_stub(102, 0.9377), "like_for_like": True, "seed_comparable": True}
    transfer["test"]["accuracy_ci"] = [0.9260, 0.9480]
    summary = _summary_context({"transfer": transfer, "replication": {
        "tables": [{"name": "Caltech-101", "run": True, "claims": claims}, c256], "n_splits": 5}}, prov)
    md = _summary_md(summary)
    assert md.startswith('<aside class="post-summary" markdown="1">')
    # level rows are named as level; a clear best is bold with its noise
    assert (f"{concat} with softmax (SGD) (92.8 ± 0.5%) and {concat} with logistic regression (92.6 ± 0.7%) are "
            "level at the top (mean per-class accuracy, ± its standard deviation over 5 splits)") in md
    # the seed's row with its noise, as printed
    assert "the seed post's best row, Inception-ResNet v2, has 87.8 ± 0.8." in md
    assert f"**94.3 ± 0.6%** mean per-class accuracy: {concat} with logistic regression, ahead of every other row" in md
    assert "**93.77%** of 1,830 test images right (95% interval 92.6%–94.8%)" in md
    # the seed's number has its noise too: the difference's interval, the seed counted as all of its 40%
    ci = transfer["test_minus_seed"]["ci_all"]
    assert transfer["test_minus_seed"]["n_all"] == 3658 and ci[0] < 0.013 < ci[1]
    half = transfer["test_minus_seed"]["ci_half"]
    assert ("all 102 classes, 40% of the images held out as in the seed (drawn afresh): 1.30 points above the seed post's 92.47% "
            f"(95% interval of the difference {ci[0] * 100:+.1f} to {ci[1] * 100:+.1f} if the seed counted all "
            f"its 40%, {half[0] * 100:+.1f} to {half[1] * 100:+.1f} if half;") in md
    assert "**Caltech-256** (the seed's second table) was not run by this build" in md
    assert "(#caltech-256-not-run-here)" in md
    # answers only: no build time, no machine
    assert "AMD EPYC" not in md and "stage time" not in md
    # a subset of the classes is not compared with the seed's 102-class number
    sub = {**_transfer_stub(13, 0.835), "like_for_like": False, "seed_comparable": False}
    sub["test"]["accuracy_ci"] = [0.75, 0.9]
    md = _summary_md(_summary_context({"transfer": sub, "replication": None}, prov))
    assert "not comparable" in md and "points above" not in md
    # too few splits: no row is called best
    one = [claim(15, [], 92.7, 0.0, decided=False, k=1)]
    md = _summary_md(_summary_context({"transfer": None, "replication": {
        "tables": [{"name": "C", "run": True, "claims": one}], "n_splits": 1}}, prov))
    assert "too few splits to call any row best" in md
    # one split has no spread: the mean alone, never "± nan"
    nan = [claim(15, ["A"], 92.7, float("nan"), decided=False, k=1, only=True)]
    md = _summary_md(_summary_context({"transfer": None, "replication": {
        "tables": [{"name": "C", "run": True, "claims": nan}], "n_splits": 1}}, prov))
    assert "**92.7%** mean per-class accuracy: A (the only row)" in md and "nan" not in md
    assert _summary_context({"transfer": None, "replication": None}, prov) is None


def test_classification_is_a_grid_of_cards_with_bars(tmp_path):
    top = [["Egyptian cat", 0.7709], ["tiger cat", 0.1015], ["tabby", 0.0767]]
    d = _classify_output(tmp_path, "efficientnet_lite0", [_row(f"cat{i}", top) for i in range(3)])
    ctx = BuildContext(config=validate({}), store=StageStore(tmp_path / "s"))
    ctx.outputs["classify"] = d
    c = _classify_context(ctx, "slug", tmp_path / "site")
    assert (c["images"][0]["width"], c["images"][0]["height"]) == (100, 80)
    md = _render(classify=c)
    assert md.count('<figure class="topk-card">') == 3 and '<div class="topk-grid">' in md
    assert '<span class="topk-name">Egyptian cat</span> <span class="topk-p">0.7709</span>' in md
    assert 'style="width: 77.1%"' in md
    # the first row of photos is in the first screen; the rest load lazily
    assert md.count('loading="lazy"') == 1
    block = md[md.index('<div class="topk-grid">'):md.index("</div>")]
    assert "\n\n" not in block          # no blank line: both Markdown parsers keep the HTML block whole


def test_a_dataset_is_credited_from_its_folder_else_from_the_registry(tmp_path, monkeypatch):
    """The Caltech-101 post, built from a local copy (``--dataset``) of the registry's artifact, credits
    Caltech-101 as the registry does; a CREDIT.txt in the folder says it instead."""
    from tlreport.pipeline.data import dataset_credit

    folder = tmp_path / "101_ObjectCategories"
    folder.mkdir()
    registry = tmp_path / "artifacts.toml"
    registry.write_text('[cal]\nkind = "dataset"\nurls = []\nfilename = "c.zip"\ntitle = "Caltech-101"\n'
                        'citation = "F.-F. et al., 2004."\nlicence = "CC BY 4.0"\n'
                        'homepage = "https://data.example.org/records/1"\n')
    monkeypatch.setenv("TLREPORT_ARTIFACTS", str(registry))
    ctx = BuildContext(config=validate({"dataset": {"path": "artifact:cal"}}), store=StageStore(tmp_path / "s"),
                       dataset_override=str(folder))
    assert dataset_credit(ctx, str(folder)) == ("Caltech-101: F.-F. et al., 2004. Licence: CC BY 4.0.",
                                                "https://data.example.org/records/1")
    (folder / "CREDIT.txt").write_text("Photos by us, CC0.\n")
    assert dataset_credit(ctx, str(folder)) == ("Photos by us, CC0.", "")
    (folder / "CREDIT.txt").write_bytes(b"Photos by caf\xe9, CC0.")         # not UTF-8: shown, not a traceback
    assert dataset_credit(ctx, str(folder)) == ("Photos by caf\ufffd, CC0.", "")
    plain = BuildContext(config=validate({"dataset": {"path": str(tmp_path / "other")}}),
                         store=StageStore(tmp_path / "s"))
    assert dataset_credit(plain, str(tmp_path / "other")) == ("", "")
    registry.write_text(registry.read_text().replace("https://data.example.org/records/1", "javascript:x)"))
    assert dataset_credit(ctx, "artifact:cal")[1] == ""           # not a link the post would write


def test_a_panda_of_the_dataset_is_shown_beside_the_seeds_quoted_panda(tmp_path):
    top = [["giant panda", 0.97], ["lesser panda", 0.01]]
    row = {**_row("panda/image_0001", top), "ref": "dataset:panda/image_0001.jpg", "file": "00-panda.jpg"}
    d = _classify_output(tmp_path, "efficientnet_lite0", [row, _row("cat", top)])
    ctx = BuildContext(config=validate({}), store=StageStore(tmp_path / "s"))
    ctx.outputs["classify"] = d
    c = _classify_context(ctx, "slug", tmp_path / "site")
    assert c["panda"] is None and [i["title"] for i in c["images"]] == ["cat"]
    assert c["own_panda"]["seed_top"][0] == ("giant panda", 0.8923)         # from data/seed_post.toml
    md = _render(classify=c)
    assert "### A panda, as in the seed post" in md
    assert '<span class="topk-name">giant panda</span> <span class="topk-p">0.8923</span>' in md
    assert "quoted from the seed post" in md and '<a href="#ref-' in md
    assert "EfficientNet-Lite0" in md and "efficientnet_lite0" not in md


def test_the_index_excerpt_leads_with_the_headline_number_and_its_noise():
    from tlreport.pipeline.render import _excerpt as excerpt_nbsp

    def _excerpt(*args):        # the text, with the no-break spaces around each "±" read as spaces
        return excerpt_nbsp(*args).replace("\u00a0", " ")

    def summary(best, decided=True, rows=None, tie=False):
        level = [{"title": t, "mean": 94.31 - 0.2 * i, "std": 0.55 + 0.2 * i} for i, t in enumerate(best)]
        claim = {"n": 30, "top": best[0], "best": best, "decided": decided, "mean": 94.31, "std": 0.55, "k": 5,
                 "level_rows": level, "rows": rows or len(best) + 1, "tie": tie,
                 "closest": {"title": best[1]} if len(best) > 1 else None,
                 "seed": {"label": "Inception-ResNet v2", "mean": 90.1, "cell": "90.1 ± 0.5"}}
        return {"tables": [{"name": "Caltech-101", "claims": [claim]}], "transfer": None}

    assert _excerpt(summary(["A with logistic regression"]), "Desc.") == (
        "Caltech-101, 30 training images per class: 94.3 ± 0.6% top mean per-class accuracy over 5 splits, ± one "
        "standard deviation (A with logistic regression; ahead of every other row), against 90.1 ± 0.5% for the "
        "seed post's best row (Inception-ResNet v2). Desc.")
    # a "±" stays with both its numbers where the index wraps the line
    assert excerpt_nbsp(summary(["A"]), "D.").count("\u00a0±\u00a0") == 3
    # the top row inside a crowd it is not shown ahead of: the crowd is counted, out of all the rows
    assert "(A; 2 of the other 7 rows not shown behind it)" in _excerpt(summary(["A", "B", "C"], rows=8), "D.")
    assert "(A, B and C" not in _excerpt(summary(["A", "B", "C"], rows=8), "D.")
    # two rows not shown apart: each with its own number, never one number for both
    assert "A, 94.3 ± 0.6%, and B, 94.1 ± 0.8%, lead in mean per-class accuracy over 5 splits, ± one standard " \
           "deviation, not shown apart, against" in _excerpt(summary(["A", "B"]), "D.")
    # a tie at the top names both rows, whatever else is level with them
    assert "A, 94.3 ± 0.6%, and B, 94.1 ± 0.8%, share the top mean per-class accuracy over 5 splits, ± one " \
           "standard deviation (5 of the other 6 rows not shown behind them), against" in _excerpt(
               summary(["A", "B", "C", "D", "E", "F", "G"], rows=8, tie=True), "D.")
    # undecided (too few splits): the top row, no claim about the others
    assert "(A), against" in _excerpt(summary(["A"], decided=False), "D.")
    assert _excerpt(None, "Only the description.") == "Only the description."


def test_a_table_run_on_a_seed_dataset_without_literature_is_not_also_shown_as_not_run(tmp_path):
    import pandas as pd

    from tlreport.pipeline.render import _replication_context

    cfg = validate({"experiments": {"backbones": ["efficientnet_lite0"], "heads": ["logreg"], "tables": [
        {"dataset": "artifact:caltech101", "settings": [15], "test_cap": 5}]}})
    ctx = BuildContext(config=cfg, store=StageStore(tmp_path / "s"))
    exp, figs, feats = tmp_path / "exp", tmp_path / "fig", tmp_path / "feat"
    for d in (exp, figs / "replication", feats):
        d.mkdir(parents=True)
    pd.DataFrame([{"dataset": "table0", "backbone": "efficientnet_lite0", "head": "logreg", "n_train": 15,
                   "mean": 90.0, "std": float("nan"), "n_splits": 1, "accuracy": 90.0}]).to_csv(exp / "aggregate.csv")
    pd.DataFrame([{"dataset": "table0", "backbone": "efficientnet_lite0", "head": "logreg", "n_train": 15,
                   "split": 0, "mean_per_class_accuracy": 0.9, "chosen": "C=1", "n_test": 500}]).to_csv(exp / "results.csv")
    (exp / "tables.json").write_text(json.dumps({"dropped": [[]], "classes": [257]}))
    (figs / "replication" / "table0.png").write_bytes(b"png")
    (feats / "features.json").write_text(json.dumps({"jobs": []}))
    ctx.outputs.update({"experiments": exp, "figures": figs, "features": feats})
    rep = _replication_context(ctx, "slug", tmp_path / "site")
    assert [(t["name"], t["run"]) for t in rep["tables"]] == [("caltech101", True), ("Caltech-256", False)]
    md = _render(replication=rep)
    assert "EfficientNet-Lite0 with logistic regression, 90.0%, the only row with results here." in md
    assert "± nan" not in md and " nan%" not in md


def test_validation_and_test_accuracy_are_compared_by_the_interval_of_their_difference(tmp_path):
    """96/103 against 86/103: their Wilson intervals overlap, yet the difference's interval (Newcombe)
    excludes zero; the post reads the difference's interval, never the overlap.  What choosing the epoch
    on the validation images was worth is read off their curve: nothing once it has levelled off."""
    from tlreport.heads.metrics import wilson_interval
    from tlreport.pipeline.render import _val_minus_test

    val, test = {"accuracy": 96 / 103, "n": 103}, {"accuracy": 86 / 103, "n": 103}
    assert wilson_interval(96, 103)[0] < wilson_interval(86, 103)[1]            # the intervals overlap
    history = tmp_path / "history.csv"
    history.write_text("epoch,val_accuracy\n" + "".join(f"{e},{0.5 if e <= 5 else 96 / 103}\n"
                                                         for e in range(1, 11)))
    g = _val_minus_test({"validation": val, "test": test}, history)
    assert g["diff"] == pytest.approx(10 / 103) and 0 < g["ci"][0] < g["diff"] < g["ci"][1]
    assert g["epoch_choice"] == {"gain": pytest.approx(0), "from": 6, "to": 10}
    history.write_text("epoch,val_accuracy\n" + "".join(f"{e},{0.9}\n" for e in range(1, 11)))
    assert _val_minus_test({"validation": val, "test": test}, history)["epoch_choice"]["gain"] == \
        round((96 / 103 - 0.9) * 100, 1)                                     # a peak above a plateau, in points
    same = _val_minus_test({"validation": val, "test": val}, tmp_path / "none.csv")
    assert same["ci"][0] < 0 < same["ci"][1] and "epoch_choice" not in same


def test_settings_chosen_on_test_images_are_disclosed_with_their_re_check():
    """data/development_choices.toml: the resize applies to any build with EfficientNet-Lite features, the
    single split's settings only where every one of them matches; the post lists each with its re-check."""
    import tomllib

    from tlreport.pipeline.development_choices import choices_that_apply
    from tlreport.util.paths import shipped_path

    choices = tomllib.loads(shipped_path("data", "development_choices.toml").read_text())["choice"]
    caltech = {"learning_rate": 0.1, "l2": 0.001, "epochs": 150, "patience": 30, "momentum": 0.9}
    both = choices_that_apply(choices, {"efficientnet_lite"}, caltech)
    assert len(both) == 2 and "whole-image resize" in both[0]["what"]
    assert len(choices_that_apply(choices, {"efficientnet_lite"}, {**caltech, "learning_rate": 0.01})) == 1
    assert choices_that_apply(choices, {"inception"}, None) == []
    # the softmax (SGD) grid kept after a look at test rows: only where a table's head chooses from it
    grid = choices_that_apply(choices, {"efficientnet_lite"}, caltech, {"softmax_sgd": (3e-3, 1e-2, 3e-2)})
    assert len(grid) == 3 and "penalty grid" in grid[2]["what"] and "not been re-checked" in grid[2]["recheck"]
    assert len(choices_that_apply(choices, set(), None, {"softmax_sgd": (1e-3, 3e-3, 1e-2, 3e-2)})) == 0
    md = _render(development_choices=both)
    assert ("**Chosen while looking at test accuracies.** Two settings of this build were chosen, or kept, during "
            "development while looking at Caltech-101 test accuracies, which can flatter them. What each is, and "
            "what was checked later") in md
    assert f"- {both[1]['what']}: {both[1]['recheck']}." in md
    assert "Chosen while looking" not in _render()


def test_the_reproduce_box_says_which_auto_settings_this_machine_resolved():
    """Same config and seed, same tables: on a machine that resolves `auto` the same way, which the box says,
    with what moves where another machine resolves a setting otherwise."""
    from tlreport.config import validate
    from tlreport.pipeline.reproduce import resolved_auto_settings
    from tlreport.report.templating import get_env

    prov = {"engine": "OpenVINO 2026.4.1", "head_precision": {"precision": "bfloat16", "heads": ["softmax_sgd"]}}
    auto = validate({"features": {"engine": "auto"}, "experiments": {"precision": "auto"}})
    assert [a["setting"] for a in resolved_auto_settings(auto, prov)] == [
        '`features.engine = "auto"` chose OpenVINO 2026.4.1', '`experiments.precision = "auto"` chose bfloat16']
    assert resolved_auto_settings(validate({}), prov) == []
    box = get_env(None, target="jekyll").get_template("sections/reproduce.md.j2")
    base = {"config": "c.toml", "config_hash": "0" * 64, "version": "0", "git": "", "modified": False, "fetch": [],
            "repository": "", "dataset": "data", "dataset_name": "data", "classifier": False, "override": None,
            "in_source": True, "dataset_outside": False}
    md = box.render(reproduce={**base, "auto": resolved_auto_settings(auto, prov)})
    assert ("The same config and seed give the same tables on a CPU of the kind named under *How this was made*, "
            "on a machine that resolves the config's `auto` settings "
            'as this one did: `features.engine = "auto"` chose OpenVINO 2026.4.1 (elsewhere the features, and so '
            'every number, can differ slightly); `experiments.precision = "auto"` chose bfloat16 (elsewhere the '
            "softmax (SGD) rows can differ in their last digits); on another kind of CPU they come out close, "
            "not equal, since rounding differs.") in md
    assert ("The same config and seed give the same tables on a CPU of the kind named under *How this was made*; "
            "on another kind of CPU they come out close, not equal") in box.render(reproduce={**base, "auto": []})


def test_dataset_naming_the_configs_own_folder_is_no_override(tmp_path):
    """`build --dataset data` with `path = "data"`: the same folder, so the box says nothing of --dataset."""
    from types import SimpleNamespace

    from tlreport.config import validate
    from tlreport.pipeline import reproduce

    (tmp_path / "data").mkdir()
    (tmp_path / "copy").mkdir()
    cfg = validate({"dataset": {"path": "data"}}, path=tmp_path / "tlreport.toml")
    prov = {"config_hash": "0" * 64, "version": "0", "git": "", "rendered": {"commit": "", "modified": False},
            "backbones": []}

    def context(override):
        ctx = SimpleNamespace(config=cfg, dataset_override=override)
        return reproduce.reproduce_context(ctx, prov)

    import unittest.mock as mock

    with mock.patch.object(reproduce, "config_name", return_value="tlreport.toml"):
        assert context(str(tmp_path / "data"))["override"] is None
        assert context(None)["override"] is None
        assert context(str(tmp_path / "copy"))["override"] == {"name": "copy", "arg": "PATH", "instead_of": "data",
                                                              "config_artifact": ""}
        assert context("demo")["override"]["arg"] == "demo"


def test_the_reproduce_box_of_a_build_given_dataset_says_so_and_passes_it_on():
    """The Caltech-101 post is built from a local copy (--dataset) in place of the config's fetched artifact:
    the box must not claim it fetched the dataset, and its commands must read a copy the same way."""
    from tlreport.report.templating import get_env

    box = get_env(None, target="jekyll").get_template("sections/reproduce.md.j2")
    base = {"config": "configs/c.toml", "config_hash": "0" * 64, "version": "0", "git": "", "modified": False,
            "repository": "", "dataset": "artifact:caltech101", "dataset_name": "caltech101", "classifier": True,
            "auto": [], "in_source": True, "dataset_outside": False}
    plain = box.render(reproduce={**base, "fetch": ["caltech101"], "override": None})
    assert "dataset caltech101 (fetched from its registry entry, pinned by sha256)" in plain
    assert ".venv/bin/tlreport fetch caltech101\n.venv/bin/tlreport build --config configs/c.toml\n" \
           ".venv/bin/tlreport cache path train --config configs/c.toml   #" in plain
    md = box.render(reproduce={**base, "fetch": [], "override": {
        "name": "101_ObjectCategories", "arg": "PATH", "instead_of": "caltech101", "config_artifact": "caltech101"}})
    assert "dataset 101_ObjectCategories, a folder given with `--dataset` in place of the config's caltech101" in md
    assert "fetched from its registry" not in md and "tlreport fetch caltech101\n" not in md
    assert (".venv/bin/tlreport build --config configs/c.toml --dataset PATH   # PATH: your copy of "
            "101_ObjectCategories\n.venv/bin/tlreport cache path train --config configs/c.toml --dataset PATH   #") in md
    assert "Without `--dataset`, the build reads the config's own dataset, which `tlreport fetch caltech101` installs." in md


def test_the_reproduce_box_of_a_project_of_ones_own_installs_nothing_from_it_and_says_where_the_images_are(
        tmp_path):
    """A config written by `tlreport init` lives outside tlreport's source: its box must not tell the reader
    to `pip install -e .` there, and a dataset outside the config's repository is not published with it."""
    import subprocess
    from types import SimpleNamespace

    from tlreport.config import validate
    from tlreport.pipeline import reproduce
    from tlreport.report.templating import get_env

    project, photos = tmp_path / "project", tmp_path / "photos"
    project.mkdir(), photos.mkdir(), (project / "inside").mkdir()
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    prov = {"config_hash": "0" * 64, "version": "0", "git": "", "rendered": {"commit": "", "modified": False},
            "backbones": []}
    outside = validate({"dataset": {"path": "../photos"}}, path=project / "tlreport.toml")
    inside = validate({"dataset": {"path": "inside"}}, path=project / "tlreport.toml")
    reproduce.repository_top.cache_clear()
    here = reproduce.reproduce_context(SimpleNamespace(config=outside, dataset_override=None), prov)
    assert here["in_source"] is False and here["dataset_outside"] is True
    assert reproduce.reproduce_context(SimpleNamespace(config=inside, dataset_override=None), prov)["dataset_outside"] is False
    box = get_env(None, target="jekyll").get_template("sections/reproduce.md.j2")
    assert here["config"] == "tlreport.toml"             # by its name in its folder, where the commands run
    md = box.render(reproduce={**here, "git": "abc123", "classifier": True, "fetch": []})
    assert "run in the folder that holds it, with tlreport installed as its README says: tlreport 0, " \
           "tlreport's commit `abc123`" in md
    assert "pip install" not in md and ".venv/bin/" not in md
    assert "\ntlreport build --config tlreport.toml\ntlreport cache path train --config tlreport.toml" in md
    assert "outside the config's repository: publishing the repository does not publish the images" in md
    # the offline default's config lies in tlreport's own tree
    assert reproduce.in_tlreport_source(Path(reproduce.__file__).resolve().parents[2] / "tlreport.toml")
