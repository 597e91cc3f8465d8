"""Rendering the post: one Jinja2 environment, two targets.

Templates use ``<% %>`` / ``<< >>`` delimiters so that the Liquid tags they
emit for Jekyll (``{% include figure.html %}``) are plain text to Jinja2.  The
same templates render twice: for Jekyll (``target == "jekyll"``: Liquid
includes, ``relative_url``, ``{: .tablelines}``) and for the self-contained
preview (``target == "preview"``: plain HTML figures, then Python-Markdown).
Every number comes from the results passed in; the filters below format it.
"""

from __future__ import annotations

import html
import math
import os
import re
from pathlib import Path
from typing import Any

from tlreport.report import escape
from tlreport.report.names import backbone_title, head_title
from tlreport.report.numbers import percent
from tlreport.report.references import Citations
from tlreport.util.paths import shipped_path


def template_dirs(user_dir: Path | None) -> list[Path]:
    dirs = []
    if user_dir is not None:
        dirs.append(Path(user_dir))
    dirs.append(shipped_path("templates"))
    return dirs


def templates_fingerprint(user_dir: Path | None) -> dict[str, str]:
    """Hash of every template file: a template edit re-renders, nothing else."""
    from tlreport.util.hashing import sha256_file

    out = {}
    for i, d in enumerate(template_dirs(user_dir)):      # by position: user and packaged may share a name
        if d.is_dir():
            for p in sorted(d.rglob("*")):
                if p.is_file():
                    out[f"{i}:{p.relative_to(d).as_posix()}"] = sha256_file(p)
    return out


def fmt_pct(x: Any, digits: int = 2) -> str:
    """0.9247 -> '92.47%'."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return percent(x, digits)


def fmt_prob(x: Any, digits: int = 4) -> str:
    """0.89231 -> '0.8923', as the seed's top-5 lists."""
    return f"{float(x):.{digits}f}"


def fmt_num(x: Any, digits: int = 0) -> str:
    """9145 -> '9,145'; 0.36951 (digits=4) -> '0.3695'."""
    if isinstance(x, int) or digits == 0:
        return f"{int(round(float(x))):,}"
    return f"{float(x):,.{digits}f}"


def fmt_mean_std(item: Any) -> str:
    """``{"mean": 92.71, "std": 0.44}`` -> ``'92.7 ± 0.4'``; without a spread (one split: NaN) the mean alone."""
    mean, std = float(item["mean"]), item.get("std")
    if std is None or not math.isfinite(float(std)):
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {float(std):.1f}"


def nbsp_noise(cell: str) -> str:
    """``"87.5 ± 0.5"`` with a no-break space after the ``±``, so a cell that wraps keeps ``± 0.5`` together.

    >>> nbsp_noise("87.5 ± 0.5")
    '87.5 ±&nbsp;0.5'
    """
    return str(cell).replace(" ± ", " ±&nbsp;")


def fmt_seconds(s: Any) -> str:
    s = float(s)
    if round(s, 1) < 60:                # 59.97 s is "1 min 0 s", not "60.0 s"
        return f"{s:.1f} s"
    whole = round(s)                    # rounded once: 119.7 s is "2 min 0 s", not "1 min 60 s"
    return f"{whole // 60} min {whole % 60} s"


def _shell(path: object) -> str:
    """Quote a file path as one shell argument (names with spaces, quotes or control characters); a
    path that starts with ``-`` gets ``./`` in front, so the command does not read it as an option."""
    from tlreport.util.text import shell_word

    path = str(path)
    return shell_word("./" + path if path.startswith("-") else path)


def get_env(user_dir: Path | None = None, *, target: str = "jekyll"):
    """The one Jinja2 environment: user templates searched first, filters registered here."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in template_dirs(user_dir)]),
        block_start_string="<%", block_end_string="%>",
        variable_start_string="<<", variable_end_string=">>",
        comment_start_string="<#", comment_end_string="#>",
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update({
        "md": escape.md, "html": escape.html_text, "breakable": escape.html_breakable, "arg": escape.liquid_arg, "yaml": escape.yaml_str,
        "code": lambda s: escape.code(s, liquid=target == "jekyll"), "shell": _shell, "pct": fmt_pct, "prob": fmt_prob, "num": fmt_num,
        "seconds": fmt_seconds, "backbone": backbone_title, "head": head_title, "ms": fmt_mean_std,
        "nbsp_noise": nbsp_noise,
    })
    env.globals["target"] = target
    env.globals["figure_meta"] = {}     # a chart's phone variant and text sizes, by its URL (render_post)
    return env


def render_post(context: dict, *, user_dir: Path | None, target: str) -> str:
    import jinja2

    from tlreport.errors import UserError

    try:
        env = get_env(user_dir, target=target)
        # a global, so the figure macro sees it in every section that imports it
        env.globals["figure_meta"] = context.get("figure_meta") or {}
        # each rendered page numbers its references afresh, in the order it cites them
        defaults = {"refs": Citations(), "reproduce": None}
        return env.get_template("post.md.j2").render(**{**defaults, **context})
    except jinja2.TemplateSyntaxError as e:
        raise UserError(f"template {e.filename or e.name}:{e.lineno}: {e.message}") from None
    except jinja2.TemplateError as e:
        raise UserError(f"template error: {e}") from None


PREVIEW_CSS_NAME = "preview.css"


# --------------------------------------------------------------------------- self-contained preview
# The preview is one file that shows everything when opened from disk or mailed: every image it
# references (src, srcset) is read from the site and embedded as a data: URI, and a link that only
# opens an image at full size (the post's figure zoom) is dropped, keeping its image.
_IMG_ATTR_RE = re.compile(r'(<(?:img|source)\b[^>]*?\b)(src|srcset)="([^"]*)"', re.IGNORECASE)
_IMAGE_LINK_RE = re.compile(r'<a href="\.\./[^"]*">(<img\b[^>]*>|<picture>.*?</picture>)</a>', re.IGNORECASE | re.DOTALL)


def _data_uri(ref: str, base: Path, cache: dict[str, str]) -> str:
    """``ref`` (a URL relative to ``base``) as a data: URI, or unchanged when it is not a local file."""
    import base64
    import mimetypes
    from urllib.parse import unquote

    if ref.startswith(("data:", "http:", "https:", "//", "/", "#")) or not ref:
        return ref
    if ref not in cache:
        path = Path(os.path.normpath(base / unquote(ref.split("#", 1)[0].split("?", 1)[0])))
        mime = mimetypes.guess_type(path.name)[0]
        if not path.is_file() or mime is None or not mime.startswith("image/"):
            return ref
        cache[ref] = f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    return cache[ref]


def embed_images(page: str, base: Path) -> str:
    """``page`` with its local images embedded as data: URIs (relative to ``base``, the folder the page is in)."""
    cache: dict[str, str] = {}
    page = _IMAGE_LINK_RE.sub(r"\1", page)

    def attr(m: re.Match[str]) -> str:
        value = m.group(3)
        if m.group(2).lower() == "srcset":
            parts = []
            for candidate in value.split(","):
                url, _, size = candidate.strip().partition(" ")
                parts.append(" ".join(x for x in (_data_uri(html.unescape(url), base, cache), size.strip()) if x))
            value = ", ".join(parts)
        else:
            value = _data_uri(html.unescape(value), base, cache)
        return f'{m.group(1)}{m.group(2)}="{value}"'

    return _IMG_ATTR_RE.sub(attr, page)


def markdown_to_preview(md_text: str, *, title: str, user_dir: Path | None, images_from: Path | None = None) -> str:
    """A self-contained HTML page from the preview-target Markdown.

    ``images_from``: the folder the page will be written in; its images (``../images/...``) are
    then embedded as data: URIs (:func:`embed_images`), so the one file shows everything.
    """
    import markdown

    body_md = md_text
    if body_md.startswith("---\n"):
        body_md = body_md.split("\n---\n", 1)[1]
    body = markdown.markdown(body_md, extensions=["tables", "fenced_code", "md_in_html", "attr_list"],
                             output_format="html")
    css = ""
    for d in template_dirs(user_dir):
        p = d / PREVIEW_CSS_NAME
        if p.is_file():
            css = p.read_text(encoding="utf-8")
            break
    if images_from is not None:
        body = embed_images(body, Path(images_from))
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{escape.html_text(title)} (preview)</title>\n<style>\n{css}</style>\n</head>\n"
            "<body>\n<p class=\"preview-banner\">Static preview rendered by Python-Markdown; "
            "the published post is rendered by Jekyll.</p>\n<article>\n"
            f"<h1>{escape.html_text(title)}</h1>\n{body}\n</article>\n</body>\n</html>\n")
