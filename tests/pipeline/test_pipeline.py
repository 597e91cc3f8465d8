"""End to end: features -> train -> experiments -> figures -> render on a small dataset.

The dataset is drawn here (four colour classes, hostile class names included),
the backbone is the tiny random test backbone (``tiny_random``), and each test checks what
the build recomputed through the counters it exposes, never through timing.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from helpers.drawn import CLASSES, draw

from tlreport.config import load_config
from tlreport.pipeline import build

pytestmark = pytest.mark.slow

CONFIG = """
seed = 7
[post]
title = "Pipeline test"
slug = "pipeline"
[classify]
enabled = false
[dataset]
path = "data"
[features]
[train]
backbone = "tiny_random"
epochs = 15
patience = 5
batch_size = 16
grid_size = 3
[experiments]
backbones = ["tiny_random"]
n_splits = 2
[[experiments.tables]]
dataset = "data"
name = "Colours"
settings = [3, 5]
test_cap = 4
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pipeline")
    for c, rgb in CLASSES.items():
        for i in range(10):
            draw(root / "data", c, rgb, i)
    (root / "tlreport.toml").write_text(CONFIG)
    r = build(load_config(root / "tlreport.toml"), quiet=True)
    assert r.ran == ["features", "train", "experiments", "figures", "render"]
    assert r.counters["features.extracted"] == 40
    return root


def _copy(project: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "p"
    shutil.copytree(project, dest)
    return dest


def _stage_json(root: Path, stage: str, name: str) -> dict:
    return json.loads(next((root / ".tlreport" / "stages" / stage).glob(f"*/{name}")).read_text())


def test_post_has_every_section_and_numbers_from_the_results(project):
    post = (project / "site" / "_posts" / "2026-11-28-pipeline.md").read_text()
    res = _stage_json(project, "train", "train.json")
    assert res["counts"] == {"train": 24, "validation": 8, "test": 8}
    acc = res["metrics"]["test"]["accuracy"]
    assert acc >= 0.75                                     # colours are separable
    assert res["example"]["drawn_from_right"] is True      # the example was drawn from the right answers
    assert "drawn at random from those the new layer classifies correctly" in post
    assert f"| accuracy | {100 * acc:.2f}% (" in post             # with its 95% interval
    # validation against test by the interval of their difference, in a paragraph of its own
    (gap,) = [p for p in post.split("\n\n") if "Newcombe's method" in p]
    assert gap.startswith(("Validation accuracy is", "Validation and test accuracy agree")) and "\n" not in gap
    # every chart with its phone variant; the prediction grids are HTML over one small JPEG per image
    for fig in ("loss.png", "accuracy.png", "confusion.png", "bottleneck.png", "loss.phone.png",
                "confusion.phone.png", "bottleneck.phone.png", "grid/00.jpg", "example.jpg"):
        assert (project / "site" / "images" / "pipeline" / "transfer" / fig).is_file()
        assert f"transfer/{fig}" in post
    # the per-class chart, unless every class is right (then it would show weakest classes that are not weak)
    all_right = re.search(r"\*\*Per class\.\*\* All \d+ classes have every test image right\.", post)
    assert ("transfer/per_class.png" in post and "transfer/per_class.phone.png" in post) == (not all_right)
    agg = (next((project / ".tlreport" / "stages" / "experiments").glob("*/aggregate.csv"))).read_text()
    assert "softmax_sgd" in agg and "logreg" in agg
    assert "## Replicating the Caltech experiment" in post
    # 4 classes are not the seed's 102: its accuracy is stated beside this build's, not subtracted from it
    assert "this build's dataset is another one, so the two are not comparable" in post
    assert "points below the seed" not in post and "points above the seed" not in post
    assert "replication/table0.png" in post
    # tiny_random has random weights: the summary does not call it pretrained
    assert "**The networks have random weights** (a test configuration)" in post
    # two splits are too few to call any row best: nothing is bold, and the summary says so
    assert "**Colours, 5 images per class:**" in post and "too few splits to call any row best" in post
    # the hostile class name is escaped, never live Liquid or HTML (code blocks show it raw)
    body = post.split("---", 2)[2]
    prose = "".join(part for i, part in enumerate(body.split("```")) if i % 2 == 0)
    assert "{{ site.title }}" not in prose and "<i>" not in prose
    assert "{% raw %}" in body                 # the classify command shows the real path
    preview = (project / "site" / "preview" / "pipeline.html").read_text()
    assert "<i>_x_" not in preview
    assert "&lt;i&gt;" in preview or "&#60;i&#62;" in preview


def test_rendered_table_equals_the_csv_aggregates(project):
    import pandas as pd

    agg = pd.read_csv(next((project / ".tlreport" / "stages" / "experiments").glob("*/aggregate.csv")))
    post = (project / "site" / "_posts" / "2026-11-28-pipeline.md").read_text()
    for _, r in agg.iterrows():
        cell = f"{r['mean']:.1f} ± {r['std']:.1f}"
        assert cell in post, cell


def test_nothing_changed_means_no_work(project, tmp_path):
    p = _copy(project, tmp_path)
    r = build(load_config(p / "tlreport.toml"), quiet=True)
    assert r.ran == [] and r.counters.get("features.extracted", 0) == 0


def test_training_hyperparameter_reruns_train_and_downstream_only(project, tmp_path):
    p = _copy(project, tmp_path)
    (p / "tlreport.toml").write_text(CONFIG.replace("epochs = 15", "epochs = 12"))
    r = build(load_config(p / "tlreport.toml"), quiet=True)
    assert r.ran == ["train", "figures", "render"]
    assert r.counters.get("features.extracted", 0) == 0


def test_head_precision_reruns_the_experiments_only_and_the_post_names_it(project, tmp_path):
    post_of = lambda root: (root / "site" / "_posts" / "2026-11-28-pipeline.md").read_text()  # noqa: E731
    assert "softmax_sgd heads trained with float32 matrix products" in post_of(project)
    p = _copy(project, tmp_path)
    (p / "tlreport.toml").write_text(CONFIG.replace("n_splits = 2", 'n_splits = 2\nprecision = "bfloat16"'))
    r = build(load_config(p / "tlreport.toml"), quiet=True)
    assert r.ran == ["experiments", "figures", "render"]
    assert "softmax_sgd heads trained with bfloat16 matrix products (mixed precision" in post_of(p)


def test_a_concatenated_row_reuses_the_cached_features(project, tmp_path):
    import pandas as pd

    p = _copy(project, tmp_path)
    (p / "tlreport.toml").write_text(CONFIG.replace('backbones = ["tiny_random"]\nn_splits',
                                                    'backbones = ["tiny_random", "tiny_random+tiny_random_48"]\nn_splits'))
    r = build(load_config(p / "tlreport.toml"), quiet=True)
    assert r.counters == {**r.counters, "features.extracted": 40, "features.extracted.tiny_random_48": 40}
    assert "train" not in r.ran
    newest = max((p / ".tlreport" / "stages" / "experiments").glob("*/results.csv"), key=lambda f: f.stat().st_mtime_ns)
    df = pd.read_csv(newest)
    assert set(df["backbone"]) == {"tiny_random", "tiny_random+tiny_random_48"}
    post = (p / "site" / "_posts" / "2026-11-28-pipeline.md").read_text()
    assert "| tiny random network + tiny_random_48 with logistic regression |" in post


def test_a_build_stopped_in_the_grid_resumes_from_its_finished_fits(project, tmp_path):
    """Each finished backbone x head of the grid is kept; the next build fits only the rest, and the
    table is the one an uninterrupted build makes."""
    from conftest import run_cli

    p = _copy(project, tmp_path)
    exp = p / ".tlreport" / "stages" / "experiments"
    (entry,) = [e for e in exp.iterdir() if (e / "_complete.json").is_file()]
    reference = (entry / "results.csv").read_bytes()
    shutil.rmtree(entry)
    r = run_cli("build", cwd=p, env={"TLREPORT_FAULT": "int:experiments:fits-saved"})
    assert r.returncode == 130 and "Traceback" not in r.stderr
    assert len(list(exp.glob(".partial-*/*.json"))) == 1          # the first head's fits, saved
    r = run_cli("build", cwd=p)
    assert r.returncode == 0, r.stderr
    last = json.loads((p / ".tlreport" / "last_build.json").read_text())
    assert last["ran"] == ["experiments"], (last, r.stdout, r.stderr)               # the same inputs: figures and render stay cached
    assert last["counters"]["experiments.fits_resumed"] == 2 * 2     # one head: 2 settings x 2 splits
    assert (exp / entry.name / "results.csv").read_bytes() == reference
    assert not list(exp.glob(".partial-*"))                          # the entry holds it all now


def test_the_transfer_section_can_read_concatenated_features(project, tmp_path):
    """``train.backbone = "a+b"``: the new layer trains on both backbones' features side by side (a's are
    cached already), the post says so, and the exported classifier takes the photo at both sizes."""
    from conftest import run_cli

    p = _copy(project, tmp_path)
    (p / "tlreport.toml").write_text(CONFIG.replace('[train]\nbackbone = "tiny_random"',
                                                    '[train]\nbackbone = "tiny_random+tiny_random_48"'))
    r = build(load_config(p / "tlreport.toml"), quiet=True)
    assert r.counters.get("features.extracted.tiny_random", 0) == 0
    assert r.counters["features.extracted.tiny_random_48"] == 40
    assert "train" in r.ran and "experiments" not in r.ran
    newest = max((p / ".tlreport" / "stages" / "train").glob("*/train.json"), key=lambda f: f.stat().st_mtime_ns)
    res = json.loads(newest.read_text())
    assert res["backbones"] == ["tiny_random", "tiny_random_48"] and res["dims"] == [32, 32]
    assert res["features_dim"] == 64
    post = (p / "site" / "_posts" / "2026-11-28-pipeline.md").read_text()
    assert "32 + 32 = 64 numbers per image" in post
    model = newest.parent / "classifier.keras"
    photo = draw(tmp_path, "x", CLASSES["blue"], 99)
    out = run_cli("classify", str(photo), "--model", str(model), "--top", "2", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[1].split(maxsplit=1)[1] == "blue"


def test_flip_averaging_extracts_the_mirrors_once_and_adds_a_row_per_head(project, tmp_path):
    import pandas as pd

    p = _copy(project, tmp_path)
    (p / "tlreport.toml").write_text(CONFIG.replace("n_splits = 2", "n_splits = 2\nflip = true"))
    r = build(load_config(p / "tlreport.toml"), quiet=True)
    assert r.ran == ["features", "experiments", "figures", "render"]        # the head's training: cached
    assert {k: v for k, v in r.counters.items() if k.startswith("features.extracted.")} == \
        {"features.extracted.tiny_random+flip": 40}
    newest = max((p / ".tlreport" / "stages" / "experiments").glob("*/results.csv"), key=lambda f: f.stat().st_mtime_ns)
    df = pd.read_csv(newest)
    assert set(df["head"]) == {"softmax_sgd", "logreg", "softmax_sgd+flip", "logreg+flip"}
    plain = df[df["head"] == "logreg"].set_index(["n_train", "split"])
    flipped = df[df["head"] == "logreg+flip"].set_index(["n_train", "split"])
    assert (plain["n_test"] == flipped["n_test"]).all()                     # same fits, same test images
    post = (p / "site" / "_posts" / "2026-11-28-pipeline.md").read_text()
    assert "| tiny random network with logistic regression + flip |" in post
    assert "left-right mirror image" in post
    r = build(load_config(p / "tlreport.toml"), quiet=True)
    assert r.ran == []                                                       # cached like any other


def test_title_change_is_render_only(project, tmp_path):
    p = _copy(project, tmp_path)
    (p / "tlreport.toml").write_text(CONFIG.replace('title = "Pipeline test"', 'title = "Renamed"'))
    r = build(load_config(p / "tlreport.toml"), quiet=True)
    assert r.ran == ["render"]


def test_added_images_are_the_only_features_extracted(project, tmp_path):
    p = _copy(project, tmp_path)
    for i in range(10, 13):
        draw(p / "data", "red", CLASSES["red"], i)
    r = build(load_config(p / "tlreport.toml"), quiet=True)
    assert r.counters["features.extracted"] == 3
    assert "tiny_random 3 new images" in dict(r.plan)["features"]
    assert r.ran == ["features", "train", "experiments", "figures", "render"]


def test_a_new_bad_file_is_listed_in_the_post_without_new_features(project, tmp_path):
    p = _copy(project, tmp_path)
    (p / "data" / "green" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    r = build(load_config(p / "tlreport.toml"), quiet=True)
    assert r.counters.get("features.extracted", 0) == 0
    assert "train" in r.ran and "render" in r.ran                # the post's skip list is current
    post = (p / "site" / "_posts" / "2026-11-28-pipeline.md").read_text()
    assert "| green | green/broken.jpg | corrupt" in post


def test_renamed_files_cost_nothing(project, tmp_path):
    p = _copy(project, tmp_path)
    (p / "data" / "red" / "img_00.png").rename(p / "data" / "red" / "renamed.png")
    r = build(load_config(p / "tlreport.toml"), quiet=True)
    assert r.counters.get("features.extracted", 0) == 0


def test_same_config_and_seed_give_identical_results(project, tmp_path):
    p = tmp_path / "fresh"
    p.mkdir()
    shutil.copytree(project / "data", p / "data")
    (p / "tlreport.toml").write_text(CONFIG)
    build(load_config(p / "tlreport.toml"), quiet=True)
    for stage, name in (("experiments", "results.csv"), ("experiments", "aggregate.csv"),
                        ("experiments", "results.json"), ("train", "train.json"), ("train", "history.csv")):
        a = next((project / ".tlreport" / "stages" / stage).glob(f"*/{name}")).read_bytes()
        b = next((p / ".tlreport" / "stages" / stage).glob(f"*/{name}")).read_bytes()
        if name == "train.json":       # wall time is not a result
            a, b = (json.loads(x) for x in (a, b))
            a.pop("train_seconds"), b.pop("train_seconds")
        assert a == b, name


def test_exported_classifier_classifies_a_new_photo(project, tmp_path):
    from conftest import run_cli

    model = next((project / ".tlreport" / "stages" / "train").glob("*/classifier.keras"))
    photo = draw(tmp_path, "x", CLASSES["blue"], 99)
    r = run_cli("classify", str(photo), "--model", str(model), "--top", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[1].split(maxsplit=1)[1] == "blue"


def test_the_openvino_engine_runs_bfloat16_through_its_own_precision_hint(project, tmp_path, monkeypatch):
    """bf16 + OpenVINO converts the float32 Keras model (Keras' mixed_bfloat16 network, converted, kept its
    bf16 casts and ran 1.5x slower) and asks OpenVINO for bf16; its features are cached apart and the post says bfloat16."""
    import importlib.util

    if importlib.util.find_spec("openvino") is None:
        pytest.skip("the [test] extra installs OpenVINO")
    from tlreport.features import engines

    converted_policies = []
    real_convert = engines._convert

    def convert(keras_model, xml):
        converted_policies.append(keras_model.dtype_policy.name)
        real_convert(keras_model, xml)

    monkeypatch.setattr(engines, "_convert", convert)
    p = _copy(project, tmp_path)
    (p / "tlreport.toml").write_text(
        CONFIG.replace("[features]\n", '[features]\nengine = "openvino"\nprecision = "bfloat16"\n'))
    r = build(load_config(p / "tlreport.toml"), quiet=True)
    assert r.counters["features.extracted.tiny_random"] == 40
    post = (p / "site" / "_posts" / "2026-11-28-pipeline.md").read_text()
    assert "Features computed by OpenVINO 20" in post and "in bfloat16" in post
    assert converted_policies == ["float32"]


def test_the_openvino_engine_caches_apart_names_itself_and_gives_the_same_tables(project, tmp_path, capsys):
    """``features.engine = "openvino"``: new feature-cache entries (different bits), the post's provenance and
    ``cache info`` name the engine, and the results table reads as the TensorFlow build's does."""
    import importlib.util

    import pandas as pd

    if importlib.util.find_spec("openvino") is None:
        pytest.skip("the [test] extra installs OpenVINO")
    from tlreport.pipeline.cache_commands import cache_info

    p = _copy(project, tmp_path)
    (p / "tlreport.toml").write_text(CONFIG.replace("[features]\n", '[features]\nengine = "openvino"\n'))
    cfg = load_config(p / "tlreport.toml")
    r = build(cfg, quiet=True)
    assert r.counters["features.extracted.tiny_random"] == 40              # its own cache entries
    post = (p / "site" / "_posts" / "2026-11-28-pipeline.md").read_text()
    assert "Features computed by OpenVINO 20" in post and "in float32" in post
    capsys.readouterr()
    cache_info(cfg)
    assert "openvino float32" in capsys.readouterr().out
    agg = {}
    for root in (project, p):
        newest = max((root / ".tlreport" / "stages" / "experiments").glob("*/aggregate.csv"),
                     key=lambda f: f.stat().st_mtime_ns)
        agg[root] = pd.read_csv(newest)[["backbone", "head", "n_train", "mean", "std"]].round(1)
    pd.testing.assert_frame_equal(agg[project], agg[p])
