"""Broken images, links and tables in the built HTML, read without a browser."""

from __future__ import annotations

import os
import posixpath
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

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
