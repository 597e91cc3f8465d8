"""``tlreport init PATH && tlreport build`` on a user's own folder, with no hand-editing."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli
from PIL import Image

from tlreport.starter_config import choose_settings


def _photo_cutouts(root: Path) -> Path:
    """Nested category folders of RGBA PNG cut-outs, non-image files beside them, and two tiny classes."""
    rng = np.random.default_rng(0)
    sizes = {"birds": 12, "boats": 12, "cats": 11, "lamps": 3, "owls": 2}
    for cls, n in sizes.items():
        for i in range(n):
            rgba = np.zeros((48, 48, 4), np.uint8)
            rgba[..., :3] = rng.integers(0, 255, 3) + rng.normal(0, 20, (48, 48, 3)).clip(-40, 40)
            rgba[8:40, 8:40, 3] = 255                     # the object; transparent around it
            sub = root / cls / ("set-a" if i % 2 else "set-b")  # nested inside the class folder
            sub.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgba, "RGBA").save(sub / f"{cls}_{i:02d}.png")
        (root / cls / "notes.txt").write_text("not an image")
        (root / cls / "call.ogg").write_bytes(b"OggS\0\2" + bytes(40))
        (root / cls / "outline.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
        (root / cls / "blob.dat").write_bytes(rng.bytes(64))
    return root


def test_settings_follow_the_class_sizes() -> None:
    assert choose_settings([100] * 10) == [45, 60]
    assert choose_settings([12, 12, 11, 3, 2]) == [1, 2]
    assert choose_settings([12, 12, 11, 11, 3]) == [5, 10]


@pytest.mark.slow
def test_init_then_build_works_with_no_editing(tmp_path: Path) -> None:
    data = _photo_cutouts(tmp_path / "cutouts")
    project = tmp_path / "project"
    project.mkdir()
    r = run_cli("init", str(data), "--backbone", "tiny_random", cwd=project)
    assert r.returncode == 0, r.stderr
    assert "40 images in 5 classes" in r.stdout and "smallest classes: owls (2), lamps (3)" in r.stdout
    assert "now run: tlreport build" in r.stdout
    cfg = tomllib.loads((project / "tlreport.toml").read_text())
    assert cfg["experiments"]["tables"][0]["drop_short_classes"] is True
    assert cfg["dataset"]["path"] == "../cutouts"

    r = run_cli("init", str(data), cwd=project)
    assert r.returncode == 1 and "exists; pass --force" in r.stderr          # never overwrites by surprise

    r = run_cli("build", cwd=project)
    assert r.returncode == 0, r.stderr
    post = next((project / "site" / "_posts").glob("*-cutouts.md")).read_text()
    settings = cfg["experiments"]["tables"][0]["settings"]
    dropped = [c for c, n in (("lamps", 3), ("owls", 2)) if n < max(settings) + 1]
    if dropped:
        assert "Left out of this table" in post and all(c in post for c in dropped)
    assert "40 images in 5 classes" in post


def test_init_writes_a_config_that_loads_for_any_utf8_folder_name(tmp_path: Path) -> None:
    """A newline or DEL in the folder's name: the config names it in an escaped string, comment included,
    and the report shows it escaped; bytes that are not UTF-8 cannot be named in TOML at all, which is
    one line."""
    from tlreport.config import load_config
    from tlreport.errors import UserError
    from tlreport.starter_config import write_starter_config

    data = tmp_path / "odd\nname\x7f"
    for c in ("a", "b"):
        for i in range(4):
            save_to = data / c / f"{i}.png"
            save_to.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((8, 8, 3), 40 * i + (100 if c == "a" else 0), np.uint8)).save(save_to)
    out = tmp_path / "tlreport.toml"
    report = write_starter_config(data, out, backbone="tiny_random")
    assert report.splitlines()[0].endswith("odd\\nname\\x7f: 8 images in 2 classes; 0 skipped")  # one line
    cfg = load_config(out)
    assert (out.parent / cfg.dataset.path).resolve() == data.resolve()
    assert out.read_text().startswith('# tlreport.toml for "') and "\\u007f" in out.read_text()
    if os.name == "posix":
        raw = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/not-utf8-\xff"))
        raw.mkdir()
        with pytest.raises(UserError, match="not valid UTF-8"):
            write_starter_config(raw, tmp_path / "other.toml", backbone="tiny_random")


def test_init_refuses_a_folder_the_build_could_not_run_on(tmp_path: Path) -> None:
    """Each of these got a config and 'now run: tlreport build', which then failed."""
    from tlreport.errors import UserError
    from tlreport.starter_config import write_starter_config

    rng = np.random.default_rng(0)
    cases = {"one": ({"a": 3}, "1 class folder with images; classifying needs at least two"),
             "ones": ({"a": 1, "b": 1}, "0 of its 2 classes have 2 or more images"),
             "uneven": ({"big": 20, "small": 1}, "1 of its 2 classes have 2 or more images"),
             "twos": ({"a": 2, "b": 2}, "4 images are too few to set any aside for the test part")}
    for name, (sizes, message) in cases.items():
        for c, n in sizes.items():
            for i in range(n):
                save_to = tmp_path / name / c / f"{i}.png"
                save_to.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(save_to)
        with pytest.raises(UserError, match=message):
            write_starter_config(tmp_path / name, tmp_path / f"{name}.toml", backbone="tiny_random")
        assert not (tmp_path / f"{name}.toml").exists()


def _two_classes(folder: Path) -> None:
    """Classes a and b of 12 random 16 x 16 images each in ``folder``."""
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        for i in range(12):
            save_to = folder / c / f"{i}.png"
            save_to.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(save_to)

def test_init_leaves_out_a_class_folder_without_images_and_says_so(tmp_path: Path) -> None:
    """An empty class folder used to stop init with no remedy; now the config excludes it, in a comment
    and in the report, and the config's header names the file it is and the command that builds it."""
    from tlreport.config import load_config
    from tlreport.starter_config import write_starter_config

    _two_classes(tmp_path / "data")
    (tmp_path / "data" / "empty").mkdir()
    out = tmp_path / "mine.toml"
    report = write_starter_config(tmp_path / "data", out, backbone="tiny_random")
    assert "left out (dataset.exclude): empty (no file in it)" in report
    text = out.read_text()
    assert 'exclude = ["empty"]' in text and text.startswith('# mine.toml for "')
    assert f"Then run `tlreport build --config {out}`." in text
    cfg = load_config(out)
    # the table scans the same folder: it leaves the same class out, or the build would stop there
    assert list(cfg.dataset.exclude) == ["empty"] and list(cfg.experiments.tables[0].exclude) == ["empty"]


def test_init_leaves_out_a_linked_class_folder_and_one_whose_files_were_all_skipped(tmp_path: Path) -> None:
    """Each of these would stop the build with 'leave it out with dataset.exclude'; init writes that for
    the user, with the reason, and the scan of the config's own build then passes."""
    from tlreport.config import load_config
    from tlreport.pipeline.data import transfer_use
    from tlreport.starter_config import write_starter_config

    _two_classes(tmp_path / "data")
    (tmp_path / "data" / "broken").mkdir()
    (tmp_path / "data" / "broken" / "x.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "data" / "alink").symlink_to(tmp_path / "data" / "a")
    (tmp_path / "data" / "a" / "notes.jpg").write_bytes(b"not a jpeg either")
    out = tmp_path / "mine.toml"
    report = write_starter_config(tmp_path / "data", out, backbone="tiny_random")
    assert "  skipped: 1 not an image\n    a/notes.jpg: not an image" in report, report  # named, as the build does
    assert "alink (a link to class folder a)" in report
    assert "broken (every file in it skipped: 1 not an image)" in report, report
    cfg = load_config(out)
    assert sorted(cfg.dataset.exclude) == ["alink", "broken"] == sorted(cfg.experiments.tables[0].exclude)
    assert "# left out by tlreport init: " in out.read_text()
    from tlreport.datasets.scan import scan_dataset

    use = transfer_use(type("Ctx", (), {"config": cfg, "dataset_override": None})())
    assert scan_dataset(cfg.resolve(cfg.dataset.path), exclude=use.exclude, progress=False).classes == ["a", "b"]


def test_init_stops_where_a_class_lost_its_files_to_skips_or_nothing_is_left(tmp_path: Path) -> None:
    """A class whose files were all skipped (here: copies of another class's) is not left out quietly:
    its reasons are the message; an empty folder beside no other usable class says what it says."""
    import shutil

    from tlreport.errors import UserError
    from tlreport.starter_config import write_starter_config

    rng = np.random.default_rng(1)
    for i in range(12):
        save_to = tmp_path / "data" / "a" / f"{i}.png"
        save_to.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(save_to)
    shutil.copytree(tmp_path / "data" / "a", tmp_path / "data" / "b")
    with pytest.raises(UserError, match="class 'a' has no usable images .*duplicate"):
        write_starter_config(tmp_path / "data", tmp_path / "x.toml", backbone="tiny_random")
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "empty").mkdir()
    with pytest.raises(UserError, match="class 'empty' has no usable images"):
        write_starter_config(tmp_path / "only", tmp_path / "y.toml", backbone="tiny_random")
    assert not (tmp_path / "x.toml").exists() and not (tmp_path / "y.toml").exists()
