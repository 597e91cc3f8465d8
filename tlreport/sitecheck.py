"""Checks for the generated Jekyll site: build it, lint the HTML, look at it in a browser.

* :func:`jekyll_build` / :func:`jekyll_problems` - build with the real ``jekyll`` and
  collect every warning/error line it printed.
* :func:`html_problems` - static checks on the built HTML (missing images, dead
  internal links, tables without ``tablelines``, Liquid/kramdown/math/code
  leftovers visible as text).
* :class:`SiteServer`, :func:`browser_check`, :func:`screenshot` - serve the built
  site on 127.0.0.1 and load it in headless Chromium.  The server appends a small
  check script to HTML responses only when the URL carries ``?tlreport-check=1``,
  so no test code ships in the site; the script writes its findings as JSON into
  the DOM, which Chromium prints with ``--dump-dom``.
* :func:`check_site` - all of the above for a site directory, as a list of problems.
"""

from __future__ import annotations

import html
import io
import json
import os
import posixpath
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

from tlreport.errors import UserError

__all__ = [
    "CHROMIUM_FLAGS",
    "CHECK_QUERY",
    "SiteServer",
    "browser_check",
    "browser_problems",
    "built_page",
    "check_site",
    "find_chromium",
    "find_jekyll",
    "html_problems",
    "jekyll_build",
    "jekyll_problems",
    "newest_post",
    "post_slug",
    "screenshot",
]

CHROMIUM_FLAGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    "--no-default-browser-check",
)
CHECK_QUERY = "tlreport-check"
_CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
_BUILD_TIMEOUT_S = 600
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_BROWSER_TIMEOUT_S = 90
_MAX_SCREENSHOT_HEIGHT = 16000


# --------------------------------------------------------------------------- tools


def find_jekyll() -> str | None:
    """Path of the ``jekyll`` executable (``$TLREPORT_JEKYLL`` wins), or None."""
    env = os.environ.get("TLREPORT_JEKYLL")
    if env:
        return shutil.which(env)
    return shutil.which("jekyll")


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable (``$TLREPORT_CHROMIUM`` wins), or None."""
    env = os.environ.get("TLREPORT_CHROMIUM")
    if env:
        return shutil.which(env)
    for name in _CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _need_chromium() -> str:
    chrome = find_chromium()
    if chrome is None:
        raise UserError(
            "Chromium not found: install chromium (or set TLREPORT_CHROMIUM) to check or screenshot the site"
        )
    return chrome


def newest_post(site_dir: str | os.PathLike[str]) -> Path:
    """The newest ``_posts/YYYY-MM-DD-slug.md`` of a site (by file-name date, then mtime)."""
    posts_dir = Path(site_dir) / "_posts"
    posts = [p for p in posts_dir.glob("*.md") if re.match(r"\d{4}-\d{2}-\d{2}-", p.name)]
    if not posts:
        raise UserError(f"no post in {posts_dir}: run `tlreport render` first")
    return max(posts, key=lambda p: (p.name[:10], p.stat().st_mtime, p.name))


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


# --------------------------------------------------------------------------- static HTML checks

_SKIP_TEXT = {"script", "style", "pre", "code", "textarea", "head", "title", "svg", "math"}
_VOID = {
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
    "param", "source", "track", "wbr",
}  # fmt: skip
# visible-text leftovers: unrendered Liquid, an unattached kramdown IAL, broken math or fences
_LEFTOVERS = (
    ("{{", "raw Liquid output tag '{{' in the text"),
    ("{%", "raw Liquid tag '{%' in the text"),
    ("{:", "kramdown attribute list '{:' left in the text"),
    ("$$", "unrendered math '$$' in the text"),
    ("```", "unrendered code fence '```' in the text"),
)


class _PageParser(HTMLParser):
    """Collects URLs, tables and visible source text of one HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.stack: list[tuple[str, bool, bool]] = []  # (tag, skip_text, in_post)
        self.images: list[str] = []
        self.links: list[tuple[str, str]] = []  # (tag, url)
        self.post_tables: list[str] = []  # class attribute of each table inside post content
        self.text: list[str] = []

    @property
    def _skip(self) -> bool:
        return bool(self.stack) and self.stack[-1][1]

    @property
    def _in_post(self) -> bool:
        return bool(self.stack) and self.stack[-1][2]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        classes = a.get("class", "").split()
        if tag == "img" and "src" in a:
            self.images.append(a["src"])
        elif tag in ("a", "link") and "href" in a:
            self.links.append((tag, a["href"]))
        elif tag in ("script", "iframe", "source") and "src" in a:
            self.links.append((tag, a["src"]))
        in_post = self._in_post or "post-content" in classes
        in_code = self._skip or tag in _SKIP_TEXT or "highlight" in classes or "highlighter-rouge" in classes
        if tag == "table" and in_post and not in_code:
            self.post_tables.append(a.get("class", ""))
        self.text.append("\x01")  # tag boundary: only contiguous source text counts
        if tag not in _VOID:
            self.stack.append((tag, in_code, in_post))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID and self.stack and self.stack[-1][0] == tag:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        self.text.append("\x01")
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.text.append(data)

    # character references are deliberate escapes (e.g. &#123;&#123;): never "raw"
    def handle_entityref(self, name: str) -> None:
        if not self._skip:
            self.text.append("\x00")

    def handle_charref(self, name: str) -> None:
        if not self._skip:
            self.text.append("\x00")


def _url_target(dest: Path, page_rel: str, url: str, baseurl: str) -> tuple[Path | None, str | None]:
    """Map a URL found in page ``page_rel`` to a file in ``dest``.

    Returns (path, None) for internal URLs, (None, None) for external or
    fragment-only URLs, and (None, reason) for URLs that cannot work.
    """
    parts = urlsplit(url.strip())
    if parts.scheme or parts.netloc:
        if parts.scheme in ("http", "https", "mailto", "data", "tel", "javascript", "ftp") or parts.netloc:
            return None, None
        return None, f"unsupported URL scheme {parts.scheme!r}"
    path = unquote(parts.path)
    if not path:
        return None, None  # "#fragment" or "?query" on the same page
    if path.startswith("/"):
        if baseurl and not (path == baseurl or path.startswith(baseurl + "/")):
            return None, f"root-relative URL outside baseurl {baseurl!r} (missing relative_url?)"
        rel = (path[len(baseurl) :] if baseurl else path).lstrip("/")
    else:
        rel = posixpath.join(posixpath.dirname(page_rel), path)
    norm = posixpath.normpath(rel) if rel else "."
    if norm == ".." or norm.startswith("../"):
        return None, "URL leaves the site root"
    target = dest / norm
    if path.endswith("/") or target.is_dir():
        target = target / "index.html"
    elif not target.exists() and not target.suffix:
        target = target.with_name(target.name + ".html")  # GitHub Pages serves /about as about.html
    return target, None


def html_problems(dest_dir: str | os.PathLike[str], baseurl: str = "") -> list[str]:
    """Static checks over every built ``.html`` page in ``dest_dir``.

    Reports images whose file is missing, internal links/stylesheets/scripts that
    do not resolve (honouring ``baseurl``), tables inside post content without
    class ``tablelines``, and visible text still containing ``{{``, ``{%``, ``{:``,
    ``$$`` or a code fence.  Text inside ``<pre>``/``<code>`` is exempt, and so is
    text written with character references (``&#123;&#123;`` is a deliberate escape).
    """
    dest = Path(dest_dir)
    baseurl = baseurl.rstrip("/")
    problems: list[str] = []
    pages = sorted(p for p in dest.rglob("*.html") if ".jekyll-cache" not in p.parts)
    if not pages:
        return [f"{dest}: no HTML pages were built"]
    for page in pages:
        rel = page.relative_to(dest).as_posix()
        parser = _PageParser()
        parser.feed(page.read_text(encoding="utf-8", errors="replace"))
        parser.close()
        for src in parser.images:
            target, why = _url_target(dest, rel, src, baseurl)
            if why:
                problems.append(f"{rel}: image {src!r}: {why}")
            elif target is not None and not target.is_file():
                problems.append(f"{rel}: image not found: {src!r}")
        for tag, url in parser.links:
            target, why = _url_target(dest, rel, url, baseurl)
            if why:
                problems.append(f"{rel}: <{tag}> {url!r}: {why}")
            elif target is not None and not target.is_file():
                problems.append(f"{rel}: broken internal link <{tag}> {url!r}")
        for classes in parser.post_tables:
            if "tablelines" not in classes.split():
                problems.append(f"{rel}: table without class 'tablelines' (add {{: .tablelines}} after it)")
        text = "".join(parser.text)
        for token, message in _LEFTOVERS:
            hits = [m.start() for m in re.finditer(re.escape(token), text)]
            if hits:
                snippet = text[max(0, hits[0] - 30) : hits[0] + 30]
                snippet = " ".join(snippet.replace("\x01", " ").replace("\x00", "&").split())
                more = f" (and {len(hits) - 1} more)" if len(hits) > 1 else ""
                problems.append(f"{rel}: {message}: ...{snippet}...{more}")
    return problems


# --------------------------------------------------------------------------- serving

# Runs on load, waits for every image to finish (or fail), then writes its findings
# as JSON into <pre id="tlreport-check"> for --dump-dom to print.
CHECK_JS = r"""
(function () {
  function box(el) { var r = el.getBoundingClientRect(); return {left: r.left, right: r.right, width: r.width, height: r.height}; }
  function describe(el) {
    var s = el.tagName.toLowerCase();
    if (el.id) s += "#" + el.id;
    if (typeof el.className === "string" && el.className.trim()) s += "." + el.className.trim().split(/\s+/).join(".");
    return s;
  }
  function clipped(el) {
    for (var p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      var ox = getComputedStyle(p).overflowX;
      if (ox === "auto" || ox === "scroll" || ox === "hidden" || ox === "clip") return true;
    }
    return false;
  }
  function collect() {
    var de = document.documentElement, vw = de.clientWidth;
    var images = Array.prototype.map.call(document.images, function (im) {
      var b = box(im);
      return {src: im.currentSrc || im.src, naturalWidth: im.naturalWidth, naturalHeight: im.naturalHeight,
              complete: im.complete, width: b.width, height: b.height, right: b.right};
    });
    var tables = Array.prototype.map.call(document.querySelectorAll("table"), function (t) {
      var b = box(t);
      return {className: t.className, visible: t.offsetWidth > 0 && t.offsetHeight > 0,
              width: b.width, height: b.height, right: b.right, clipped: clipped(t),
              scrollContainer: !!(t.closest && t.closest(".table-scroll"))};
    });
    var offenders = [];
    var all = document.body ? document.body.querySelectorAll("*") : [];
    for (var i = 0; i < all.length && offenders.length < 20; i++) {
      var el = all[i], b = box(el);
      if (b.width > 0 && (b.right > vw + 0.5 || b.left < -0.5) && !clipped(el)) offenders.push({element: describe(el), left: b.left, right: b.right});
    }
    var out = {url: location.href, title: document.title, innerWidth: window.innerWidth,
               innerHeight: window.innerHeight, clientWidth: vw, scrollWidth: de.scrollWidth,
               scrollHeight: Math.max(de.scrollHeight, document.body ? document.body.scrollHeight : 0),
               overflow: de.scrollWidth > vw, images: images, tables: tables, offenders: offenders};
    var pre = document.createElement("pre");
    pre.id = "tlreport-check";
    pre.style.display = "none";
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
    if (window.parent !== window) window.parent.document.body.appendChild(window.parent.document.importNode(pre, true));
  }
  function afterImages(cb) {
    var pending = Array.prototype.filter.call(document.images, function (im) { return !im.complete; });
    var n = pending.length;
    if (!n) { cb(); return; }
    pending.forEach(function (im) {
      function done() { if (--n === 0) cb(); }
      im.addEventListener("load", done); im.addEventListener("error", done);
    });
  }
  function run() { afterImages(function () { setTimeout(collect, 50); }); }
  if (document.readyState === "complete") run(); else window.addEventListener("load", run);
})();
"""


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
    page with :data:`CHECK_JS` appended.
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


# --------------------------------------------------------------------------- browser


def _with_check_query(url: str, value: str) -> str:
    parts = urlsplit(url)
    query = f"{parts.query}&{CHECK_QUERY}={value}" if parts.query else f"{CHECK_QUERY}={value}"
    return urlunsplit(parts._replace(query=query))


def _run_chromium(args: list[str], *, timeout: int = _BROWSER_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    chrome = _need_chromium()
    with tempfile.TemporaryDirectory(prefix="tlreport-chromium-") as profile:
        cmd = [chrome, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise UserError(f"Chromium did not finish within {timeout}s: {' '.join(cmd)}") from exc


_RESULT_RE = re.compile(r'<pre id="tlreport-check"[^>]*>(.*?)</pre>', re.DOTALL)


def browser_check(url: str, *, width: int, height: int = 900) -> dict[str, Any]:
    """Load ``url`` (served by :class:`SiteServer`) in headless Chromium and measure it.

    Returns the check script's findings: ``images`` (src, naturalWidth, ...),
    ``tables`` (visible, width, ...), ``overflow`` (page wider than the window),
    ``offenders`` (elements sticking out of the viewport), ``scrollWidth``,
    ``scrollHeight``, ``innerWidth`` and ``clientWidth``.
    """
    if width < 100 or height < 100:
        raise ValueError(f"viewport {width}x{height} is too small")
    window = f"--window-size={max(width, 800)},{height + 200}"
    target = _with_check_query(url, f"{width}x{height}")
    proc = _run_chromium([window, "--virtual-time-budget=15000", "--dump-dom", target])
    m = _RESULT_RE.search(proc.stdout)
    if not m:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise UserError(
            f"browser check got no result for {url} (is it served by SiteServer?); "
            f"chromium exit {proc.returncode}:\n{tail}"
        )
    result: dict[str, Any] = json.loads(html.unescape(m.group(1)))
    result["requestedWidth"] = width
    return result


def browser_problems(result: dict[str, Any]) -> list[str]:
    """Problems in a :func:`browser_check` result: broken images, hidden tables, overflow."""
    where = f"{result.get('url', '?')} @ {result.get('requestedWidth', result.get('innerWidth'))}px"
    problems = [
        f"{where}: image did not load: {im['src']}" for im in result["images"] if not im["naturalWidth"]
    ]
    problems += [
        f"{where}: table {i} ({t['className'] or 'no class'}) is not visible"
        for i, t in enumerate(result["tables"])
        if not t["visible"]
    ]
    if result["overflow"]:
        who = ", ".join(o["element"] for o in result["offenders"][:5]) or "unknown element"
        problems.append(
            f"{where}: page scrolls horizontally (scrollWidth {result['scrollWidth']} > "
            f"{result['clientWidth']}); widest: {who}"
        )
    return problems


def screenshot(
    url: str, out_png: str | os.PathLike[str], *, width: int = 1280, height: int | None = None
) -> Path:
    """Save a full-page PNG of ``url``; the page height is measured first unless given."""
    if height is None:
        height = int(browser_check(url, width=width)["scrollHeight"])
    height = max(200, min(int(height), _MAX_SCREENSHOT_HEIGHT))
    out = Path(out_png).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    proc = _run_chromium(
        [f"--window-size={width},{height}", "--virtual-time-budget=15000", f"--screenshot={out}", url]
    )
    if not out.is_file() or out.stat().st_size == 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise UserError(f"Chromium wrote no screenshot for {url} (exit {proc.returncode}):\n{tail}")
    return out


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
    widths: Iterable[int] = (1280, 400),
    browser: bool | None = None,
) -> list[str]:
    """Build ``site_dir`` once per baseurl and return every problem found.

    ``browser=None`` runs the browser check when Chromium is installed; pages
    checked in the browser are the home page and every post.
    """
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
                    for width in widths:
                        result = browser_check(server.page_url(rel), width=width)
                        problems += [label + p for p in browser_problems(result)]
    return problems
