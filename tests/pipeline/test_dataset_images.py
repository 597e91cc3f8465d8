"""``classify.images = ["dataset:PATH"]``: a photo of the post's own dataset, wherever ``--dataset`` points it."""

from __future__ import annotations

import pytest
from helpers.drawn import CLASSES, draw

from tlreport.config import validate
from tlreport.engine.stage import BuildContext
from tlreport.engine.store import StageStore
from tlreport.errors import UserError
from tlreport.pipeline.classify import _classify_sources


def _ctx(tmp_path, images, **kw):
    cfg = validate({"dataset": {"path": str(tmp_path / "data")},
                    "classify": {"images": images, "out_of_vocabulary": ""}})
    return BuildContext(config=cfg, store=StageStore(tmp_path / "s"), **kw)


def test_a_dataset_image_is_found_in_the_dataset_or_in_the_folder_dataset_points_to(tmp_path):
    name = next(iter(CLASSES))
    draw(tmp_path / "data", name, CLASSES[name], 0)
    (src,), _ = _classify_sources(_ctx(tmp_path, [f"dataset:{name}/img_00.png"]))
    assert src.path == tmp_path / "data" / name / "img_00.png" and src.name == f"{name}/img_00"
    draw(tmp_path / "copy", name, CLASSES[name], 0)
    (src,), _ = _classify_sources(_ctx(tmp_path, [f"dataset:{name}/img_00.png"],
                                       dataset_override=str(tmp_path / "copy")))
    assert src.path == tmp_path / "copy" / name / "img_00.png"


@pytest.mark.parametrize("ref", ["dataset:nothing/here.jpg", "dataset:../outside.png"])
def test_a_missing_or_escaping_dataset_image_is_one_line(tmp_path, ref):
    name = next(iter(CLASSES))
    draw(tmp_path / "data", name, CLASSES[name], 0)
    draw(tmp_path, "x", CLASSES[name], 0)                       # a real file outside the dataset
    (tmp_path / "outside.png").write_bytes((tmp_path / "x" / "img_00.png").read_bytes())
    with pytest.raises(UserError, match="no such file in the dataset"):
        _classify_sources(_ctx(tmp_path, [ref]))
