"""Look at the generated site locally: ``tlreport serve`` and ``tlreport preview``.

``serve`` runs ``jekyll serve`` when Jekyll is installed; otherwise it serves the
self-contained ``site/preview/`` pages with Python's http.server and says so.
``preview`` builds the site into a temporary directory (or falls back to the
preview page), serves it on 127.0.0.1 and, with ``--screenshot``, saves
full-page PNGs of the newest post taken with headless Chromium, at a laptop's
and a phone's width unless ``--width`` says otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tlreport.errors import UserError
from tlreport.site.browser import VIEWPORTS, find_chromium, screenshot
from tlreport.site.check import built_page
from tlreport.site.jekyll import find_jekyll, find_post, jekyll_build, post_slug, site_folder
from tlreport.site.static_server import SiteServer


def _preview_page(site: Path, slug: str | None = None) -> Path:
    """The static preview HTML of a post, the newest by default (``site/preview/<slug>.html``)."""
    page = site / "preview" / f"{post_slug(find_post(site, slug))}.html"
    if not page.is_file():
        raise UserError(f"no static preview at {page}: run `tlreport build` first")
    return page


def serve(site_dir: str | os.PathLike[str], *, host: str = "127.0.0.1", port: int = 4000) -> int:
    """Serve the site until Ctrl-C; return an exit code.

    With ``jekyll`` on PATH this is ``jekyll serve`` (layout, live rebuilds);
    without it, a static server over ``site/preview/`` (no Jekyll layout).
    """
    site = site_folder(site_dir)
    jekyll = find_jekyll()
    if jekyll is not None:
        _check_port_free(host, port)             # Jekyll's own answer to a taken port is a Ruby backtrace
        cmd = [jekyll, "serve", "--source", str(site), "--destination", str(site / "_site")]
        cmd += ["--host", host, "--port", str(port)]
        print(f"jekyll serve: http://{host}:{port}/ (Ctrl-C to stop)", flush=True)
        try:
            return subprocess.call(cmd)
        except KeyboardInterrupt:
            return 0
    page = _preview_page(site)
    server = SiteServer(page.parent, host=host, port=port)
    print(
        "jekyll not found on PATH: serving the STATIC PREVIEW from "
        f"{page.parent} (no Jekyll layout) at {server.url}{page.name} (Ctrl-C to stop)",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


def _check_port_free(host: str, port: int) -> None:
    """One line when ``host:port`` cannot be listened on (taken, or not this machine's address)."""
    import socket

    from tlreport.errors import UserError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # as Jekyll's server does: a port whose last server has just closed (TIME_WAIT) is free to it
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as e:
            raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def screenshot_paths(out_png: str | os.PathLike[str], widths: Sequence[int]) -> list[Path]:
    """Where :func:`preview_screenshot` writes: ``OUT.png`` for one width, ``OUT-<width>.png`` for several.

    >>> [p.name for p in screenshot_paths("shots/post.png", [1280, 390])]
    ['post-1280.png', 'post-390.png']
    """
    out = Path(out_png)
    if len(widths) == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{w}{out.suffix or '.png'}") for w in widths]


def preview_screenshot(
    site_dir: str | os.PathLike[str], out_png: str | os.PathLike[str], *,
    widths: Sequence[int] = tuple(w for w, _ in VIEWPORTS), slug: str | None = None,
) -> list[Path]:
    """Full-page PNGs of a post (the newest unless ``slug`` names one) as a browser shows it, one per width.

    Returns their paths.

    Builds with Jekyll into a temporary directory when Jekyll is installed,
    otherwise shoots the static preview page.
    """
    site = site_folder(site_dir)
    if find_chromium() is None:
        raise UserError(
            "Chromium not found: install chromium (or set TLREPORT_CHROMIUM) to take a screenshot"
        )
    post = find_post(site, slug)
    outs = screenshot_paths(out_png, list(widths))
    if find_jekyll() is None:
        page = _preview_page(site, slug)
        print(f"jekyll not found on PATH: screenshot of the static preview {page}", file=sys.stderr)
        with SiteServer(page.parent) as server:
            return [screenshot(server.page_url(page.name), o, width=w) for o, w in zip(outs, widths, strict=True)]
    with tempfile.TemporaryDirectory(prefix="tlreport-preview-") as tmp:
        dest = Path(tmp) / "_site"
        jekyll_build(site, dest)
        rel = built_page(dest, post_slug(post))
        if rel is None:
            raise UserError(f"jekyll built no page for {post.name} (check its front matter)")
        with SiteServer(dest) as server:
            return [screenshot(server.page_url(rel), o, width=w) for o, w in zip(outs, widths, strict=True)]


def _preview_serve(site: Path, *, host: str, port: int, slug: str | None = None) -> int:
    """Build once into a temp dir (or use the static preview) and serve it until Ctrl-C."""
    post = find_post(site, slug)
    with tempfile.TemporaryDirectory(prefix="tlreport-preview-") as tmp:
        if find_jekyll() is not None:
            root = Path(tmp) / "_site"
            jekyll_build(site, root)
            rel = built_page(root, post_slug(post)) or ""
            note = "built with Jekyll (no live rebuild; use `tlreport serve` for that)"
        else:
            page = _preview_page(site, slug)
            root, rel = page.parent, page.name
            note = "jekyll not found on PATH: STATIC PREVIEW (no Jekyll layout)"
        server = SiteServer(root, host=host, port=port)
        print(f"{note}: {server.url}{rel} (Ctrl-C to stop)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0
