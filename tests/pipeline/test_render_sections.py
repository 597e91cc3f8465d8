"""Section contexts built from stage outputs (no TensorFlow)."""

from __future__ import annotations

import json

from tlreport.backbones import get_spec
from tlreport.config import validate
from tlreport.engine.stage import BuildContext
from tlreport.engine.store import StageStore
from tlreport.pipeline.render import _classify_context, describe_preprocessing
from tlreport.report.render import render_post


def _classify_output(tmp_path, backbone: str, rows: list[dict]):
    d = tmp_path / "classify"
    (d / "img").mkdir(parents=True)
    for r in rows:
        (d / "img" / r["file"]).write_bytes(b"jpeg")
    (d / "classify.json").write_text(json.dumps({"backbone": backbone, "top_k": 5, "images": rows,
                                                 "oov": None, "oov_label": ""}))
    return d


def _render(*, classify=None, replication=None) -> str:
    """The post for one section context, with placeholder post metadata and provenance."""
    return render_post({"post": {"title": "t", "date": "2026-01-01", "author": "a", "description": "d",
                                 "excerpt": "e", "tags": [], "intro": "i"},
                        "classify": classify, "transfer": None, "replication": replication, "summary": None,
                        "seed_post": {"title": "A tutorial", "source": "https://example.org/blog"},
                        "prov": {"version": "0", "git": "", "config_hash": "0" * 64, "seed": 1, "python": "3",
                                 "tensorflow": "2", "keras": "3", "numpy": "2", "sklearn": "1",
                                 "backbones": [], "engine": "TensorFlow", "computed_on": "", "precision": "float32", "head_precision": {}, "datasets": [],
                                 "machine": "m", "timings": []}},
                       user_dir=None, target="jekyll")


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
    from tlreport.report.render import fmt_seconds

    assert ([fmt_seconds(s) for s in (59.94, 59.97, 60.0, 119.7, 3599.6)]
            == ["59.9 s", "1 min 0 s", "1 min 0 s", "2 min 0 s", "60 min 0 s"])


def test_the_classify_command_names_any_example_path_as_one_argument():
    from tlreport.report.render import _shell

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
             "mean_per_class_accuracy": m + s / 100, "chosen": c}
            for h, m, c in (("softmax_sgd", 0.79, "l2=0.01"), ("logreg", 0.815, "C=0.1")) for s in range(5)]
    pd.DataFrame(fits).to_csv(exp / "results.csv", index=False)
    (exp / "tables.json").write_text(json.dumps({"dropped": [[]]}))
    (figs / "replication" / "table0.png").write_bytes(b"png")
    (feats / "features.json").write_text(json.dumps({"jobs": []}))
    ctx.outputs.update({"experiments": exp, "figures": figs, "features": feats})
    rep = _replication_context(ctx, "slug", tmp_path / "site")
    t = rep["tables"][0]
    assert t["header"] == ["Features + head", "Acc(%) 15/class", "Acc(%) 30/class", "Acc(%) 45/class", "Acc(%) 60/class"]
    labels = [r[0] for r in t["rows"]]
    assert "Zeiler &#38; Fergus, 2013" in labels and "efficientnet_lite0 + logreg" in labels
    ours = t["rows"][labels.index("efficientnet_lite0 + logreg")]
    # 81.5 beats every row at 15/class (seed's best: 81.0), so the generator bolds it
    assert ours[1:] == ["**81.5 ± 0.3**", "83.0 ± 0.3", "84.5 ± 0.3", "86.0 ± 0.3"]
    # Inception-ResNet v2 (seed post) has 86.7 at 60/class, our 86.0 is not the best there
    resnet = t["rows"][labels.index("Inception-ResNet v2 (seed post)")]
    assert resnet[4] == "**86.7 ± 0.7**" and ours[4] == "86.0 ± 0.3"
    assert (tmp_path / "site" / "images" / "slug" / "replication" / "table0.png").is_file()
    md = _render(replication=rep)
    assert "| Features + head | Acc(%) 15/class | Acc(%) 30/class | Acc(%) 45/class | Acc(%) 60/class |" in md
    assert "|:---|---:|---:|---:|---:|" in md
    assert "| efficientnet_lite0 + logreg | **81.5 ± 0.3** | 83.0 ± 0.3 | 84.5 ± 0.3 | 86.0 ± 0.3 |" in md
    # the paired lead over the next row, and what each head's cross-validation chose, from results.csv
    assert ("At 15 per class the best row, efficientnet_lite0 + logreg, leads the next, efficientnet_lite0 + softmax_sgd: 2.50 ± 0.00 points "
            "over the 5 paired splits, ahead on 5 of them.") in md
    assert ("What the cross-validation chose: softmax_sgd's l2=0.01 in 5 of 5 fits; "
            "logreg's C=0.1 in 5 of 5 fits.") in md


def _summary_md(summary: dict) -> str:
    from tlreport.report.render import get_env

    return get_env(None, target="jekyll").get_template("sections/summary.md.j2").render(summary=summary)


def _transfer_stub(n_classes: int, accuracy: float) -> dict:
    seed = {"accuracy": 0.9247, "classes": 102}
    return {"backbone": "efficientnet_lite0", "backbones": ["efficientnet_lite0"], "test": {"accuracy": accuracy, "n": 1830}, "demo": None,
            "dataset": "101_ObjectCategories", "n_classes": n_classes, "seed": seed,
            "diff": accuracy - seed["accuracy"]}


def test_summary_box_states_the_headline_numbers_from_the_results():
    from tlreport.pipeline.render import _summary_context

    best = [{"n": 15, "label": "lite0 + logreg", "mean": 92.71, "std": 0.44,
             "seed": {"label": "Inception-ResNet v2 (seed post)", "mean": 87.8}, "paper": None},
            {"n": 30, "label": "lite0 + logreg", "mean": 94.33, "std": 0.55,
             "seed": {"label": "Inception-ResNet v2 (seed post)", "mean": 90.1}, "paper": None}]
    prov = {"timings": [("features", 600.0), ("experiments", 61.5)], "machine": "AMD EPYC, 2 cores, Linux",
            "backbones": [{"name": "efficientnet_lite0"}, {"name": "efficientnet_lite1"}]}
    summary = _summary_context({"transfer": _transfer_stub(102, 0.9377),
                                "replication": {"tables": [{"name": "Caltech-101", "best": best}], "n_splits": 5}},
                               prov)
    md = _summary_md(summary)
    assert md.startswith('<aside class="post-summary" markdown="1">')
    assert "**93.77%** of the 1,830 held-out test images of 101_ObjectCategories" in md
    assert "1.30 points above the seed post's 92.47%" in md
    assert ("**92.7 ± 0.4%** at 15/class vs 87.8 for the seed's best, Inception-ResNet v2; "
            "**94.3 ± 0.6%** at 30/class vs 90.1") in md
    assert "all with lite0 + logreg." in md                       # one best row: named once
    assert "efficientnet_lite0, efficientnet_lite1" in md and "11 min 2 s of stage time on AMD EPYC" in md
    assert md.count("\n- ") == 4                                   # a tight list: four items, no blank lines
    # a subset of the classes is not compared with the seed's 102-class number
    md = _summary_md(_summary_context({"transfer": _transfer_stub(13, 0.835), "replication": None}, prov))
    assert "not comparable" in md and "points above" not in md
    # a single split has no spread: the mean alone, never "± nan"
    one = [{**best[0], "std": float("nan")}]
    md = _summary_md(_summary_context({"transfer": None, "replication": {"tables": [{"name": "C", "best": one}],
                                                                          "n_splits": 1}}, prov))
    assert "**92.7%** at 15/class" in md and "nan" not in md
    # a feature set is named as the concatenation it is
    concat = {**_transfer_stub(102, 0.9563), "backbones": ["efficientnet_lite0", "efficientnet_lite1"]}
    md = _summary_md(_summary_context({"transfer": concat, "replication": None}, prov))
    assert "on the concatenated efficientnet_lite0 + efficientnet_lite1 bottlenecks" in md
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
    from tlreport.pipeline.resources import dataset_credit

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
