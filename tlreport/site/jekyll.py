"""Running Jekyll and reading its log for problems."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from tlreport.errors import UserError

_BUILD_TIMEOUT_S = 600
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


# --------------------------------------------------------------------------- tools


def site_folder(site_dir: str | os.PathLike[str]) -> Path:
    """``site_dir`` as a Path if it is a Jekyll site (it has ``_config.yml``), else one line."""
    site = Path(site_dir)
    if not (site / "_config.yml").is_file():
        raise UserError(f"{site} is not a tlreport site (no _config.yml)")
    return site


def find_jekyll() -> str | None:
    """Path of the ``jekyll`` executable (``$TLREPORT_JEKYLL`` wins), or None."""
    env = os.environ.get("TLREPORT_JEKYLL")
    if env:
        return shutil.which(env)
    return shutil.which("jekyll")


def newest_post(site_dir: str | os.PathLike[str]) -> Path:
    """The newest ``_posts/YYYY-MM-DD-slug.md`` of a site (by file-name date, then mtime)."""
    posts_dir = Path(site_dir) / "_posts"
    posts = [p for p in posts_dir.glob("*.md") if re.match(r"\d{4}-\d{2}-\d{2}-", p.name)]
    if not posts:
        raise UserError(f"no post in {posts_dir}: run `tlreport build` first")
    return max(posts, key=lambda p: (p.name[:10], p.stat().st_mtime, p.name))


def find_post(site_dir: str | os.PathLike[str], slug: str | None = None) -> Path:
    """The post with this slug, or the newest post when ``slug`` is None."""
    if slug is None:
        return newest_post(site_dir)
    posts = sorted((Path(site_dir) / "_posts").glob("*.md"))
    for p in posts:
        if post_slug(p) == slug:
            return p
    known = ", ".join(post_slug(p) for p in posts) or "none"
    raise UserError(f"no post with slug {slug!r} in {Path(site_dir) / '_posts'} (posts: {known})")


def post_slug(post: Path) -> str:
    """The slug of a post file name ``YYYY-MM-DD-slug.md``."""
    return post.stem[11:]


# --------------------------------------------------------------------------- jekyll


def jekyll_build(
    site_dir: str | os.PathLike[str], dest: str | os.PathLike[str], *, baseurl: str = ""
) -> tuple[str, str]:
    """Run ``jekyll build`` from ``site_dir`` into ``dest``; return (stdout, stderr).

    Raises :class:`UserError` carrying Jekyll's output when the build fails.
    """
    jekyll = find_jekyll()
    if jekyll is None:
        raise UserError("jekyll not found on PATH: install Jekyll (gem install jekyll) to build the site")
    cmd = [
        jekyll, "build",
        "--source", str(site_dir),
        "--destination", str(dest),
        "--baseurl", baseurl,
        "--trace",
    ]  # fmt: skip
    env = dict(os.environ, JEKYLL_ENV=os.environ.get("JEKYLL_ENV", "production"))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_BUILD_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired as exc:
        raise UserError(f"jekyll build timed out after {_BUILD_TIMEOUT_S}s: {' '.join(cmd)}") from exc
    if proc.returncode != 0:
        lines = _ANSI.sub("", proc.stdout + "\n" + proc.stderr).strip().splitlines()
        lines = [line for line in lines if not line.lstrip().startswith("from ")]  # drop --trace backtrace
        tail = "\n".join(lines[-25:])
        raise UserError(f"jekyll build failed (exit {proc.returncode}):\n{tail}")
    return _ANSI.sub("", proc.stdout), _ANSI.sub("", proc.stderr)


_JEKYLL_PROBLEM = re.compile(r"warn|error|liquid|deprecat|exception", re.IGNORECASE)


def jekyll_problems(output: str) -> list[str]:
    """Lines of Jekyll output that report a warning, error or Liquid/kramdown problem."""
    lines = _ANSI.sub("", output).splitlines()
    return [line.strip() for line in lines if _JEKYLL_PROBLEM.search(line)]
