"""The Jekyll site in site/: builds clean, renders the post contract, and the checks can fail.

Needs `jekyll` (and `chromium` for the browser tests); each is skipped with a reason
when absent. CI installs both.
"""

from __future__ import annotations

import argparse
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tlreport.cli import add_site_parsers, cmd_serve
from tlreport.errors import UserError
from tlreport.site import serve
from tlreport.site.browser import browser_check, browser_problems, find_chromium
from tlreport.site.jekyll import find_jekyll, jekyll_build, jekyll_problems
from tlreport.site.lint import html_problems
from tlreport.site.static_server import SiteServer

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "site"
FIXTURE = Path(__file__).parent / "fixtures" / "sample_post.md"
SLUG = "sample-post"
POST_NAME = f"2024-05-01-{SLUG}.md"
POST_REL = f"2024/05/01/{SLUG}.html"
BASEURLS = ["", "/tlreport"]
SITE_TITLE = "Transfer learning reports"

needs_jekyll = pytest.mark.skipif(find_jekyll() is None, reason="jekyll not installed")
needs_chromium = pytest.mark.skipif(find_chromium() is None, reason="chromium not installed")

PREVIEW_HTML = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>preview</title></head>
<body><h1>Static preview</h1><p>Class &#123;&#123; site.title &#125;&#125;</p>
<img src="../images/sample-post/loss.png" alt="loss"></body></html>
"""

BROKEN_POST = """---
layout: post
title: "Broken on purpose"
date: 2024-05-02 12:00:00 +0000
description: "Every check should fire on this page."
tags: ["broken"]
excerpt: "Broken."
author: "tlreport"
tlreport: true
---

Raw Liquid that escaped the renderer: {% raw %}{{ site.title }}{% endraw %}.

{% include figure.html src="images/broken/missing.png" alt="missing" caption="Missing image" %}

| a | b |
| --- | --- |
| 1 | 2 |

<div class="hidden-table" style="display: none" markdown="1">

| hidden | table |
| --- | --- |
| 3 | 4 |
{: .tablelines}

</div>

<div>
| x | y |
{: .tablelines}
</div>

A [hard-coded root link](/2024/05/01/sample-post.html) and a [dead one](/nowhere.html).

<div style="width: 1500px">This block is wider than any phone.</div>

<script>console.error("tlreport test: console error"); window.noSuchFunction();</script>

<aside class="provenance" markdown="1">
- never closed
"""


def _make_site(dest: Path) -> Path:
    """Copy site/ (without build output or existing posts) and add the sample post + images."""
    shutil.copytree(
        SITE,
        dest,
        ignore=shutil.ignore_patterns("_site", ".jekyll-cache", ".sass-cache"),
    )
    for sub in ("_posts", "images", "preview"):
        shutil.rmtree(dest / sub, ignore_errors=True)
        (dest / sub).mkdir()
    shutil.copy(FIXTURE, dest / "_posts" / POST_NAME)
    images = dest / "images" / SLUG
    images.mkdir(parents=True)
    loss = Image.new("RGB", (800, 500), "white")
    draw = ImageDraw.Draw(loss)
    draw.line([(40, 60), (300, 300), (760, 440)], fill="navy", width=4)
    loss.save(images / "loss.png")
    # a 3000 px wide "confusion matrix": must scale down inside the article
    Image.new("RGB", (3000, 2400), (90, 90, 160)).save(images / "confusion.png")
    (dest / "preview" / f"{SLUG}.html").write_text(PREVIEW_HTML, encoding="utf-8")
    return dest


@pytest.fixture(scope="module")
def site_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_site(tmp_path_factory.mktemp("site") / "site")


@pytest.fixture(scope="module")
def built(site_copy: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """Site built once per baseurl: {baseurl: (dest, jekyll output)}."""
    if find_jekyll() is None:
        pytest.skip("jekyll not installed")
    out = {}
    for baseurl in BASEURLS:
        dest = tmp_path_factory.mktemp("built") / "_site"
        stdout, stderr = jekyll_build(site_copy, dest, baseurl=baseurl)
        out[baseurl] = (dest, stdout + "\n" + stderr)
    return out


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A site whose second post breaks every rule, built with baseurl /tlreport."""
    if find_jekyll() is None:
        pytest.skip("jekyll not installed")
    site = _make_site(tmp_path_factory.mktemp("broken") / "site")
    (site / "_posts" / "2024-05-02-broken.md").write_text(BROKEN_POST, encoding="utf-8")
    dest = tmp_path_factory.mktemp("broken-built") / "_site"
    stdout, stderr = jekyll_build(site, dest, baseurl="/tlreport")
    return dest, stdout + "\n" + stderr


# --------------------------------------------------------------------------- builds


@needs_jekyll
@pytest.mark.parametrize("baseurl", BASEURLS)
def test_sample_post_builds_clean(built: dict[str, tuple[Path, str]], baseurl: str) -> None:
    dest, output = built[baseurl]
    assert jekyll_problems(output) == []
    assert html_problems(dest, baseurl) == []


@needs_jekyll
@pytest.mark.parametrize("baseurl", BASEURLS)
def test_post_renders_the_contract(built: dict[str, tuple[Path, str]], baseurl: str) -> None:
    dest, _ = built[baseurl]
    page = (dest / POST_REL).read_text(encoding="utf-8")
    assert page.count('<table class="tablelines">') == 2
    assert '<div class="table-scroll">' in page
    assert page.count("<figure") == 2 and page.count("<figcaption>") == 2
    assert f'<img src="{baseurl}/images/{SLUG}/loss.png" alt="Training and validation loss per epoch"' in page
    assert (
        f'<figure class="figure wide"><a class="figure-zoom" href="{baseurl}/images/{SLUG}/confusion.png">'
        in page
    )
    # every figure opens its image at full size (a phone shows a 1200 px chart at a third of that)
    assert f'<a class="figure-zoom" href="{baseurl}/images/{SLUG}/loss.png">' in page
    assert 'style="max-width: 700px"' in page
    assert "<strong>88.1 ± 0.4</strong>" in page
    assert "<td>a|b (class name with a pipe)</td>" in page
    # the escaped Liquid string stays literal; Liquid never substituted the site title
    assert "<td>&#123;&#123; site.title &#125;&#125;</td>" in page
    assert f"<td>{SITE_TITLE}</td>" not in page
    assert '<aside class="provenance">' in page and "<li>Seed:" in page
    assert 'class="language-python highlighter-rouge"' in page
    assert "\\[\\mathcal{L}" in page and "mathjax" in page.lower()
    assert f'href="{baseurl}/assets/css/style.css"' in page
    assert "<title>Caltech-101 — transfer learning with a frozen backbone | " in page
    # the static preview has no front matter: copied byte for byte
    assert (dest / "preview" / f"{SLUG}.html").read_text(encoding="utf-8") == PREVIEW_HTML
    assert not (dest / "tests").exists() and not list(dest.rglob("*.md"))


@needs_jekyll
@pytest.mark.parametrize("baseurl", BASEURLS)
def test_index_and_feed_list_the_post(built: dict[str, tuple[Path, str]], baseurl: str) -> None:
    dest, _ = built[baseurl]
    index = (dest / "index.html").read_text(encoding="utf-8")
    assert (
        f'<a href="{baseurl}/{POST_REL}">Caltech-101 — transfer learning with a frozen backbone</a>' in index
    )
    assert "reaches 91.2% on Caltech-101" in index and 'datetime="2024-05-01' in index
    feed = ET.parse(dest / "feed.xml").getroot()
    entries = feed.findall("{http://www.w3.org/2005/Atom}entry")
    assert len(entries) == 1
    link = entries[0].find("{http://www.w3.org/2005/Atom}link")
    assert link is not None and link.get("href", "").endswith(f"{baseurl}/{POST_REL}")


# --------------------------------------------------------------------------- the checks can fail


@needs_jekyll
def test_checks_report_a_broken_post(broken: tuple[Path, str]) -> None:
    dest, output = broken
    jp = jekyll_problems(output)
    assert any("Kramdown warning" in p and "aside" in p for p in jp), jp
    problems = html_problems(dest, "/tlreport")
    text = "\n".join(problems)
    page = "2024/05/02/broken.html"
    expected = [
        f"{page}: image not found: '/tlreport/images/broken/missing.png'",
        f"{page}: raw Liquid output tag '{{{{' in the text",
        f"{page}: table without class 'tablelines'",
        f"{page}: kramdown attribute list '{{:' left in the text",
        f"{page}: <a> '/2024/05/01/sample-post.html': root-relative URL outside baseurl",
        f"{page}: <a> '/nowhere.html': root-relative URL outside baseurl",
    ]
    for item in expected:
        assert item in text, f"missing {item!r} in:\n{text}"
    # the good post in the same build stays clean
    assert not [p for p in problems if p.startswith(POST_REL)]


def test_html_problems_on_handmade_pages(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "ok.png").write_bytes(b"png")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "index.html").write_text("<p>ok</p>")
    (tmp_path / "good.html").write_text(
        '<div class="post-content"><p>&#123;&#123; x &#125;&#125; and a|b</p>'
        "<pre><code>{{ literal }} $$ ```</code></pre>"
        '<img src="/img/ok.png"><img src="img/ok.png"><a href="/sub/">s</a><a href="sub">s</a>'
        '<a href="#top">t</a><a href="https://example.com/x">x</a>'
        '<table class="tablelines"><tr><td>1</td></tr></table></div>'
    )
    assert html_problems(tmp_path, "") == []
    (tmp_path / "bad.html").write_text(
        '<div class="post-content"><p>{{ x }} {% y %} $$a$$ ``` {: .c}</p>'
        '<img src="/img/nope.png"><a href="../../etc/passwd">p</a><a href="/missing/">m</a>'
        "<table><tr><td>1</td></tr></table></div>"
    )
    problems = "\n".join(html_problems(tmp_path, ""))
    for needle in (
        "'{{'",
        "'{%'",
        "'{:'",
        "'$$'",
        "'```'",
        "image not found: '/img/nope.png'",
        "URL leaves the site root",
        "broken internal link <a> '/missing/'",
        "table without class 'tablelines'",
    ):
        assert "bad.html: " in problems and needle in problems, f"{needle} not in:\n{problems}"
    assert "good.html" not in problems


def test_jekyll_problems_filters_output() -> None:
    output = (
        "Configuration file: /s/_config.yml\n"
        "      Generating...\n"
        "  Liquid Warning: Liquid syntax error (line 3): Unknown tag 'foo' in _posts/x.md\n"
        "  Kramdown warning: Found no end tag for 'div' (line 9) - auto-closing it\n"
        "     Deprecation: the 'gems' configuration option has been renamed to 'plugins'\n"
        "                    done in 0.5 seconds.\n"
    )
    problems = jekyll_problems(output)
    assert len(problems) == 3 and problems[0].startswith("Liquid Warning")


@needs_jekyll
def test_jekyll_build_failure_raises_with_output(site_copy: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(site_copy, site)
    (site / "_posts" / "2024-05-03-bad.md").write_text(
        "---\nlayout: post\ntitle: x\n---\n{% include nosuch.html %}\n"
    )
    with pytest.raises(UserError, match="nosuch.html"):
        jekyll_build(site, tmp_path / "out")


# --------------------------------------------------------------------------- browser


@needs_jekyll
@needs_chromium
def test_browser_renders_post_without_overflow(built: dict[str, tuple[Path, str]]) -> None:
    dest, _ = built["/tlreport"]
    with SiteServer(dest, baseurl="/tlreport") as server:
        for rel, width in ((POST_REL, 1280), (POST_REL, 390), ("index.html", 390)):
            result = browser_check(server.page_url(rel), width=width)
            assert result["innerWidth"] == width
            assert browser_problems(result) == [], (rel, width)
            assert result["errors"] == []
            if rel == POST_REL:
                assert result["tlreportPost"] and 0 < result["summary"]["top"] < 900
            if rel == POST_REL:
                assert [im["naturalWidth"] for im in result["images"]] == [800, 3000]
                assert all(im["width"] <= width for im in result["images"])
                assert len(result["tables"]) == 2 and all(t["visible"] for t in result["tables"])
                assert result["scrollWidth"] <= width


@needs_jekyll
@needs_chromium
def test_browser_check_reports_a_broken_post(broken: tuple[Path, str]) -> None:
    dest, _ = broken
    with SiteServer(dest, baseurl="/tlreport") as server:
        result = browser_check(server.page_url("2024/05/02/broken.html"), width=400)
    problems = "\n".join(browser_problems(result))
    assert "image did not load: http://127.0.0.1" in problems and "missing.png" in problems
    assert "is not visible" in problems
    assert "page scrolls horizontally" in problems and "div" in problems
    assert "no summary box (.post-summary) in a tlreport post" in problems
    assert "console.error: tlreport test: console error" in problems
    assert "script error:" in problems and "noSuchFunction" in problems


def test_summary_below_the_first_screen_is_a_problem() -> None:
    result = {"url": "u", "requestedWidth": 390, "images": [], "tables": [], "overflow": False, "errors": [],
              "tlreportPost": True, "innerHeight": 844, "summary": {"top": 900.0, "bottom": 1200.0, "height": 300.0}}
    assert browser_problems(result) == [
        "u @ 390px: the summary box starts at 900 px, below the first screen (844 px)"]
    result["summary"]["top"] = 500.0
    assert browser_problems(result) == []
    result["tlreportPost"] = False           # a hand-written post needs no summary box
    result["summary"] = None
    assert browser_problems(result) == []


@needs_jekyll
@needs_chromium
def test_lazy_images_are_loaded_for_the_check(tmp_path: Path) -> None:
    """A lazy image far below the first screen still counts: the check makes it load and sees it."""
    root = tmp_path / "root"
    (root / "img").mkdir(parents=True)
    Image.new("RGB", (40, 30), "red").save(root / "img" / "far.png")
    (root / "page.html").write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>t</title></head><body>'
        '<div style="height: 5000px"></div><img src="img/far.png" loading="lazy" alt="far">'
        '<img src="img/missing.png" loading="lazy" alt="missing"></body></html>')
    with SiteServer(root) as server:
        result = browser_check(server.page_url("page.html"), width=390)
    assert [im["naturalWidth"] for im in result["images"]] == [40, 0]
    problems = browser_problems(result)
    assert any("image did not load" in p and "missing.png" in p for p in problems)
    assert any("failed to load" in p and "missing.png" in p for p in problems)


@needs_jekyll
@needs_chromium
def test_preview_screenshot_of_newest_post_at_a_laptop_and_a_phone_width(site_copy: Path, tmp_path: Path) -> None:
    outs = serve.preview_screenshot(site_copy, tmp_path / "shot.png")
    assert [o.name for o in outs] == ["shot-1280.png", "shot-390.png"]
    for out, width in zip(outs, (1280, 390), strict=True):
        with Image.open(out) as shot:
            assert shot.width == width and shot.height > 1500  # whole page, not just one window
            # not blank: the header rule, text and the blue confusion matrix are there
            assert len(shot.convert("RGB").resize((90, 200)).getcolors(maxcolors=18000) or []) > 20
    (one,) = serve.preview_screenshot(site_copy, tmp_path / "one.png", widths=[900])
    assert one.name == "one.png" and Image.open(one).width == 900


@needs_chromium
def test_a_page_taller_than_a_screenshot_can_be_says_it_was_cut(tmp_path: Path, monkeypatch, capsys) -> None:
    from tlreport.site import browser

    monkeypatch.setattr(browser, "_MAX_SCREENSHOT_HEIGHT", 1000)
    root = tmp_path / "root"
    root.mkdir()
    (root / "page.html").write_text('<!DOCTYPE html><html><head><meta charset="utf-8"><title>t</title></head>'
                                    '<body><div style="height: 3000px"></div></body></html>')
    with SiteServer(root) as server:
        out = browser.screenshot(server.page_url("page.html"), tmp_path / "tall.png", width=900)
    assert Image.open(out).height == 1000
    assert "the screenshot shows its first 1,000 px" in capsys.readouterr().err


# --------------------------------------------------------------------------- serve / preview CLI


def test_preview_errors_are_user_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parser = argparse.ArgumentParser()
    add_site_parsers(parser.add_subparsers())
    with pytest.raises(UserError, match="not a tlreport site"):
        args = parser.parse_args(
            ["preview", "--screenshot", str(tmp_path / "x.png"), "--site", str(tmp_path)]
        )
        args.func(args)
    site = tmp_path / "site"
    (site / "_posts").mkdir(parents=True)
    (site / "_config.yml").write_text("title: t\n")
    monkeypatch.setattr(serve, "find_chromium", lambda: "/usr/bin/chromium")
    with pytest.raises(UserError, match="no post in"):
        serve.preview_screenshot(site, tmp_path / "x.png")
    monkeypatch.setattr(serve, "find_chromium", lambda: None)
    with pytest.raises(UserError, match="Chromium not found"):
        serve.preview_screenshot(site, tmp_path / "x.png")
    (site / "_posts" / "2024-01-01-a.md").write_text("---\ntitle: a\n---\n")
    monkeypatch.setattr(serve, "find_chromium", lambda: "/usr/bin/chromium")
    with pytest.raises(UserError, match=r"no post with slug 'nope' .*\(posts: a\)"):
        serve.preview_screenshot(site, tmp_path / "x.png", slug="nope")
    monkeypatch.setattr(serve, "find_chromium", lambda: None)
    monkeypatch.setattr(serve, "find_jekyll", lambda: None)
    with pytest.raises(UserError, match="no static preview"):
        serve.serve(site, port=0)
    args = parser.parse_args(["serve", "--site", "s", "--port", "4001"])
    assert (args.site, args.port, args.host, args.func) == ("s", 4001, "127.0.0.1", cmd_serve)
    for bad in ("-5", "0", "99999", "http"):                    # argparse's one line, not a socket traceback
        with pytest.raises(SystemExit):
            parser.parse_args(["preview", "--port", bad])
    from tlreport.site.check import check_site

    with pytest.raises(UserError, match="not a tlreport site"):  # before Jekyll runs (and makes the folder)
        check_site(tmp_path / "nope")
    assert not (tmp_path / "nope").exists()


@needs_jekyll
@needs_chromium
def test_dark_scheme_follows_the_reader(built: dict[str, tuple[Path, str]], tmp_path: Path) -> None:
    """Under prefers-color-scheme: dark the page is dark with light text; by default it is light."""
    from tlreport.site.browser import _run_chromium

    dest, _ = built[""]
    shots = {}
    with SiteServer(dest) as server:
        for scheme, flags in (("light", []), ("dark", ["--blink-settings=preferredColorScheme=0"])):
            out = tmp_path / f"{scheme}.png"
            _run_chromium(["--window-size=1000,700", "--virtual-time-budget=5000", *flags,
                           f"--screenshot={out}", server.page_url(POST_REL)])
            with Image.open(out) as im:
                shots[scheme] = np.asarray(im.convert("L")).astype(int)
    # the page background (a margin beside the column) and the share of dark pixels
    assert shots["light"][300, 20] > 240 and shots["dark"][300, 20] < 40
    assert (shots["dark"] < 60).mean() > 0.8 and (shots["light"] > 200).mean() > 0.8
