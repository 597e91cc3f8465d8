"""A small static HTTP server for the built site on 127.0.0.1."""

from __future__ import annotations

import html
import io
import os
import re
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

from tlreport.errors import UserError
from tlreport.site.browser import CHECK_JS, CHECK_QUERY, ERRORS_JS

# Chromium's headless window is at least 500 px wide, so the page is measured inside
# an iframe of exactly the requested size: media queries and layout see that viewport.
_FRAME_HTML = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>tlreport check</title></head>
<body style="margin:0"><iframe src="{src}" style="border:0;display:block;width:{w}px;height:{h}px"></iframe></body></html>
"""


class _Handler(SimpleHTTPRequestHandler):
    """Static files under a baseurl; adds the check script to HTML when the query asks.

    ``?tlreport-check=WxH`` answers a frame page holding the same URL with
    ``?tlreport-check=1`` in a W x H iframe; ``?tlreport-check=1`` answers the
    page with :data:`ERRORS_JS` first in its ``<head>`` and :data:`CHECK_JS` appended.
    """

    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if self.server.verbose:
            super().log_message(format, *args)

    def translate_path(self, path: str) -> str:
        parts = urlsplit(path)
        p = unquote(parts.path)
        base = self.server.baseurl
        if base:
            if p == base:
                p = "/"
            elif p.startswith(base + "/"):
                p = p[len(base) :]
            else:
                return str(Path(self.server.root) / ".tlreport-outside-baseurl" / p.lstrip("/"))
        fs = Path(super().translate_path(p))
        if not fs.exists() and not fs.suffix and fs.with_name(fs.name + ".html").is_file():
            fs = fs.with_name(fs.name + ".html")
        return str(fs)

    def send_head(self):  # type: ignore[no-untyped-def]
        parts = urlsplit(self.path)
        mode = parse_qs(parts.query, keep_blank_values=True).get(CHECK_QUERY, [""])[-1]
        fs = Path(self.translate_path(self.path))
        if fs.is_dir():
            fs = fs / "index.html"
        if not (mode and fs.suffix in (".html", ".htm") and fs.is_file()):
            return super().send_head()
        size = re.fullmatch(r"(\d+)x(\d+)", mode)
        if size:
            query = parts.query.replace(f"{CHECK_QUERY}={mode}", f"{CHECK_QUERY}=1")
            src = html.escape(urlunsplit(("", "", parts.path, query, "")))
            body = _FRAME_HTML.format(src=src, w=size.group(1), h=size.group(2))
        else:
            body = fs.read_text(encoding="utf-8", errors="replace")
            head = re.search(r"<head[^>]*>", body, re.IGNORECASE)
            early = f"<script>{ERRORS_JS}</script>"
            body = body[:head.end()] + early + body[head.end():] if head else early + body
            script = f"<script>{CHECK_JS}</script>"
            idx = body.lower().rfind("</body>")
            body = body[:idx] + script + body[idx:] if idx >= 0 else body + script
        data = body.encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        return io.BytesIO(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    root: str
    baseurl: str
    verbose: bool


class SiteServer:
    """Serve a built site directory at ``http://host:port{baseurl}/`` from a background thread.

    Use as a context manager; ``port=0`` picks a free port.  HTML requested with
    ``?tlreport-check=1`` gets the browser check script appended.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        baseurl: str = "",
        host: str = "127.0.0.1",
        port: int = 0,
        verbose: bool = False,
    ) -> None:
        self.root = str(Path(root).resolve())
        self.baseurl = baseurl.rstrip("/")
        root_dir = self.root

        class Handler(_Handler):
            def __init__(self, *a: Any, **kw: Any) -> None:
                super().__init__(*a, directory=root_dir, **kw)

        try:
            self.httpd = _Server((host, port), Handler)
        except OSError as exc:
            raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        self.httpd.root = self.root
        self.httpd.baseurl = self.baseurl
        self.httpd.verbose = verbose
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL of the site, ending in ``/``."""
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}{self.baseurl}/"

    def page_url(self, rel: str) -> str:
        """URL of a page given its path relative to the site root."""
        return self.url + rel.lstrip("/")

    def start(self) -> SiteServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="tlreport-site", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.httpd.server_close()

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (Ctrl-C)."""
        try:
            self.httpd.serve_forever()
        finally:
            self.httpd.server_close()

    def __enter__(self) -> SiteServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
