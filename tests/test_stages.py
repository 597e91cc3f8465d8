"""Section contexts built from stage outputs (no TensorFlow)."""

from __future__ import annotations

import json

from tlreport.backbones import get_spec
from tlreport.build import BuildContext
from tlreport.cache import StageStore
from tlreport.config import validate
from tlreport.render import render_post
from tlreport.stages import _classify_context, describe_preprocessing


def _classify_output(tmp_path, backbone: str, rows: list[dict]):
    d = tmp_path / "classify"
    (d / "img").mkdir(parents=True)
    for r in rows:
        (d / "img" / r["file"]).write_bytes(b"jpeg")
    (d / "classify.json").write_text(json.dumps({"backbone": backbone, "top_k": 5, "images": rows,
                                                 "oov": None, "oov_label": ""}))
    return d


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
    md = render_post({"post": {"title": "t", "date": "2026-01-01", "author": "a", "description": "d",
                               "excerpt": "e", "tags": [], "intro": "i"},
                      "classify": c, "transfer": None, "replication": None,
                      "prov": {"version": "0", "git": "", "config_hash": "0" * 64, "seed": 1, "python": "3",
                               "tensorflow": "2", "keras": "3", "numpy": "2", "sklearn": "1",
                               "backbones": [], "datasets": [], "machine": "m", "timings": []}},
                     user_dir=None, target="jekyll")
    assert "| 0.8900 | giant panda | 0.8923 |" in md
    assert "fed as JPEG bytes to the graph" in md


def test_other_backbones_show_no_panda_row(tmp_path):
    d = _classify_output(tmp_path, "efficientnet_lite0", [_row("cropped_panda", [["giant panda", 0.9]])])
    ctx = BuildContext(config=validate({}), store=StageStore(tmp_path / "s"))
    ctx.outputs["classify"] = d
    c = _classify_context(ctx, "slug", tmp_path / "site")
    assert c["panda"] is None and len(c["images"]) == 1


def test_preprocessing_is_described_from_the_spec():
    assert describe_preprocessing(get_spec("efficientnet_lite0")) == (
        "resized (bicubic) so its shorter side is 224 px, centre-cropped to 224×224")
    assert "299×299" in describe_preprocessing(get_spec("inception_v3"))
