"""tlreport check-site: Jekyll build, HTML lint and browser check of a site."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from tlreport.site.browser import VIEWPORTS, browser_check, browser_problems, find_chromium
from tlreport.site.jekyll import jekyll_build, jekyll_problems, post_slug, site_folder
from tlreport.site.lint import html_problems
from tlreport.site.static_server import SiteServer

# --------------------------------------------------------------------------- everything


def built_page(dest: Path, slug: str) -> str | None:
    """Path (relative to ``dest``) of the built page for a post slug, or None."""
    for pattern in (f"{slug}.html", f"{slug}/index.html"):
        hits = sorted(dest.rglob(pattern))
        if hits:
            return hits[0].relative_to(dest).as_posix()
    return None


def check_site(
    site_dir: str | os.PathLike[str],
    *,
    baseurls: Iterable[str] = ("", "/tlreport"),
    viewports: Iterable[tuple[int, int]] = VIEWPORTS,
    browser: bool | None = None,
) -> list[str]:
    """Build ``site_dir`` once per baseurl and return every problem found.

    ``browser=None`` runs the browser check when Chromium is installed; pages
    checked in the browser are the home page and every post.
    """
    site_folder(site_dir)                  # a missing or wrong folder is one line, before Jekyll runs
    problems: list[str] = []
    use_browser = find_chromium() is not None if browser is None else browser
    for baseurl in baseurls:
        with tempfile.TemporaryDirectory(prefix="tlreport-site-") as tmp:
            dest = Path(tmp) / "_site"
            out, err = jekyll_build(site_dir, dest, baseurl=baseurl)
            label = f"[baseurl {baseurl!r}] "
            problems += [label + p for p in jekyll_problems(out + "\n" + err)]
            problems += [label + p for p in html_problems(dest, baseurl)]
            if not use_browser:
                continue
            posts = sorted((Path(site_dir) / "_posts").glob("*.md"))
            pages = ["index.html"] + [p for p in (built_page(dest, post_slug(x)) for x in posts) if p]
            with SiteServer(dest, baseurl=baseurl) as server:
                for rel in pages:
                    for width, height in viewports:
                        result = browser_check(server.page_url(rel), width=width, height=height)
                        problems += [label + p for p in browser_problems(result)]
    return problems
