"""Publishing from the user's own repository: `tlreport init` lays a Jekyll site and a GitHub Pages
workflow, and the workflow's build and check steps pass there, run locally, with no tlreport installed
for them (the check runs on the standard library alone)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from helpers import run_cli
from helpers.drawn import CLASSES, draw

from tlreport.site.jekyll import find_jekyll

pytestmark = pytest.mark.slow


def _step(workflow: str, name: str) -> str:
    """The shell text of the workflow step whose name starts with ``name`` (a one-line or ``|`` block)."""
    lines = workflow.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.strip().startswith(f"- name: {name}"))
    for i in range(start + 1, len(lines)):
        stripped = lines[i].strip()
        if stripped.startswith("- "):
            break
        if stripped.startswith("run:"):
            inline = stripped[len("run:"):].strip()
            if inline != "|":
                return inline
            indent = len(lines[i + 1]) - len(lines[i + 1].lstrip())
            block = []
            for ln in lines[i + 1:]:
                if ln.strip() and len(ln) - len(ln.lstrip()) < indent:
                    break
                block.append(ln[indent:])
            return "\n".join(block)
    raise AssertionError(f"no run: in step {name!r}")


def _as_pages_would(text: str, base_path: str) -> str:
    return (text.replace("${{ steps.pages.outputs.origin }}", "https://someone.github.io")
                .replace("${{ steps.pages.outputs.base_path }}", base_path))


def test_a_repository_made_by_init_passes_its_own_pages_workflow(tmp_path):
    repo = tmp_path / "my-photos"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    for c, rgb in CLASSES.items():
        for i in range(8):
            draw(repo / "photos", c, rgb, i)
    r = run_cli("init", "photos", "--backbone", "tiny_random", cwd=repo)
    assert r.returncode == 0, r.stderr
    assert "GitHub Pages workflow" in r.stdout
    for rel in ("tlreport.toml", "site/_config.yml", "site/_layouts/post.html", ".github/workflows/pages.yml",
                ".github/tlreport/check_site.py"):
        assert (repo / rel).is_file(), rel
    workflow = (repo / ".github/workflows/pages.yml").read_text()
    assert "@SITE@" not in workflow and "--source site " in workflow and "PYTHONPATH" not in workflow
    config = (repo / "tlreport.toml").read_text().replace("[classify]", "[classify]\nenabled = false", 1)
    if "[classify]" not in config:
        config += "\n[classify]\nenabled = false\n"
    (repo / "tlreport.toml").write_text(config)
    r = run_cli("build", cwd=repo)
    assert r.returncode == 0, r.stderr
    assert list((repo / "site" / "_posts").glob("*.md"))
    again = run_cli("init", "photos", "--force", "--backbone", "tiny_random", cwd=repo)
    assert again.returncode == 0 and "laid the Jekyll site" not in again.stdout     # nothing laid twice

    if find_jekyll() is None:
        pytest.skip("jekyll not installed: the workflow's build step cannot run here")
    build = _as_pages_would(_step(workflow, "Build with Jekyll"), "/my-photos")
    r = subprocess.run(["bash", "-eo", "pipefail", "-c", build], cwd=repo, capture_output=True, text=True,
                       timeout=600, env={"PATH": "/usr/bin:/bin:/usr/local/bin", "JEKYLL_ENV": "production",
                                         "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (repo / "_site" / "index.html").is_file()
    # the check step with a Python that has nothing but its standard library (-S: no site-packages)
    check = _as_pages_would(_step(workflow, "Check the built HTML"), "/my-photos")
    assert check.startswith("python3 ")
    run_check = [sys.executable, "-I", "-S", *check.split()[1:]]
    r = subprocess.run([a.strip('"') for a in run_check], cwd=repo, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no problems" in r.stdout
    # and it is a check: a missing image fails it
    import re

    page = next(p for p in (repo / "_site").rglob("*.html") if "/images/" in p.read_text())
    src = re.search(r'<img[^>]* src="/my-photos/(images/[^"]+)"', page.read_text()).group(1)
    image = repo / "_site" / src
    image.unlink()
    r = subprocess.run([a.strip('"') for a in run_check], cwd=repo, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and image.name in r.stdout
    shutil.rmtree(repo / "_site")
