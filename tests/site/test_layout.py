"""The phone layout rules (tlreport.site.browser.layout_problems) at 390 and 1280 px.

Each rule fails on a hand-made page that breaks it; a post laid out like ours (a stacked pairs
table, a tight replication table, a long command) passes at both widths, in Jekyll and in the
self-contained preview. Needs chromium (and jekyll for the built post); skipped with a reason.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from tlreport.report.escape import html_breakable
from tlreport.report.templating import embed_images, markdown_to_preview
from tlreport.site.browser import VIEWPORTS, browser_check, browser_problems, find_chromium
from tlreport.site.jekyll import find_jekyll, jekyll_build
from tlreport.site.static_server import SiteServer

pytestmark = pytest.mark.slow

SITE = Path(__file__).resolve().parents[2] / "site"
needs_jekyll = pytest.mark.skipif(find_jekyll() is None, reason="jekyll not installed")
needs_chromium = pytest.mark.skipif(find_chromium() is None, reason="chromium not installed")

HEAD = '<!DOCTYPE html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>t</title></head><body style="margin:0;padding:0 10px">'
ROW = "<tr>" + "<td>BACKGROUND_Google</td>" * 8 + "</tr>"

# one page per rule: (file, body, text the problem must contain)
BROKEN = {
    "page.html": ('<div style="width: 1500px">wider than any phone</div>', "page scrolls horizontally"),
    "scroll.html": (f'<div class="table-scroll" style="overflow-x: auto"><table style="white-space: nowrap">{ROW}</table></div>',
                    "div.table-scroll scrolls sideways"),
    "table.html": (f'<div style="overflow: hidden"><table style="white-space: nowrap">{ROW}</table></div>',
                   "table is wider than its container"),
    "figure.html": ('<div style="overflow: hidden"><figure style="width: 900px; margin: 0"><img src="img/wide.png" alt="w"></figure></div>',
                    "figure is wider than its container"),
    "figure-scroll.html": ('<figure class="wide" style="overflow-x: auto; margin: 0"><img src="img/wide.png" alt="w" style="max-width: none"></figure>',
                           "figure.wide scrolls sideways"),
    "console.html": ('<p>ok</p><script>console.error("tlreport layout test")</script>', "console.error: tlreport layout test"),
}
GOOD = ('<figure class="wide" style="overflow-x: auto; margin: 0"><a href="img/wide.png"><img src="img/wide.png" alt="w" style="max-width: 100%"></a></figure>'
        '<div class="table-scroll" style="overflow-x: auto"><table><tr><td>a</td><td>b</td></tr></table></div>'
        '<pre style="overflow-x: auto">tlreport classify ' + "very/long/path/" * 20 + "x.jpg --model classifier.keras</pre>")


@needs_chromium
def test_each_layout_rule_fails_on_a_page_that_breaks_it(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    Image.new("RGB", (1200, 300), "navy").save(tmp_path / "img" / "wide.png")
    for name, (body, _) in {**BROKEN, "good.html": (GOOD, "")}.items():
        (tmp_path / name).write_text(HEAD + body + "</body></html>", encoding="utf-8")
    with SiteServer(tmp_path) as server:
        for name, (_, expected) in BROKEN.items():
            problems = browser_problems(browser_check(server.page_url(name), width=390, height=844))
            assert any(expected in p for p in problems), (name, problems)
            if name != "page.html":      # each box rule is reported by itself, not as a page overflow
                assert not any("page scrolls horizontally" in p for p in problems), (name, problems)
        for width, height in VIEWPORTS:
            assert browser_problems(browser_check(server.page_url("good.html"), width=width, height=height)) == []


# --------------------------------------------------------------------------- a post laid out like ours

PAIRS = [("BACKGROUND_Google", "windsor_chair", 4, "33.3%"), ("crayfish", "lobster", 5, "62.5%"),
         ("Faces_easy", "Faces", 1, "100.0%"), ("Pyrus_communis_" + "x" * 135, "apple", 2, "10.0%")]


def _pairs_table(src: str) -> str:
    """The most-confused-pairs table as templates/sections/transfer.md.j2 emits it (6 columns, 64 px thumbnails)."""
    rows = "\n".join(
        f'<tr><td data-label="True class">{html_breakable(t)}</td><td data-label="Predicted as">{html_breakable(p)}</td>'
        f'<td class="num" data-label="Count">{n}</td><td class="num" data-label="Share of the class">{r}</td>'
        f'<td class="thumb" data-label="Example of true"><img src="{src}" alt="{t}" width="64" height="64" loading="lazy"></td>'
        f'<td class="thumb" data-label="Example of predicted"><img src="{src}" alt="{p}" width="64" height="64" loading="lazy"></td></tr>'
        for t, p, n, r in PAIRS)
    return ('<div class="table-scroll table-cards table-pairs">\n<table class="tablelines">\n<thead><tr><th>True class</th>'
            '<th>Predicted as</th><th class="num">Count</th><th class="num">Share of the class</th><th class="thumb">Example of true</th>'
            f'<th class="thumb">Example of predicted</th></tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table>\n</div>\n')


def _post(src: str, *, jekyll: bool) -> str:
    ial = "{: .tablelines}\n" if jekyll else ""
    rows = "".join(f"| efficientnet_lite0 + efficientnet_lite1 + efficientnet_lite2 + {head} | 82.4 ± 2.0 | 84.5 ± 2.2 | 87.5 ± 2.9 | 90.1 ± 1.1 |\n"
                   for head in ("softmax_sgd", "logreg"))
    return (
        "The most confused pairs:\n\n" + _pairs_table(src) + "\n"
        '<div class="table-scroll" markdown="1">\n'
        "| Features + head | Acc(%) 15/class | Acc(%) 30/class | Acc(%) 45/class | Acc(%) 60/class |\n"
        "|:---|---:|---:|---:|---:|\n" + rows + ial + "</div>\n\n"
        "```sh\ntlreport classify data/caltech101-subset/BACKGROUND_Google/image_0042.jpg --model cache/export/classifier.keras\n```\n"
    )


@needs_jekyll
@needs_chromium
def test_a_post_laid_out_like_ours_fits_a_phone_and_a_laptop(tmp_path: Path) -> None:
    site = tmp_path / "site"            # site/ without its posts, images and previews
    shutil.copytree(SITE, site, ignore=shutil.ignore_patterns("_site", ".jekyll-cache", "_posts", "images", "preview"))
    for sub in ("_posts", "images/sample-post", "preview"):
        (site / sub).mkdir(parents=True)
    Image.new("RGB", (64, 64), "teal").save(site / "images" / "sample-post" / "thumb.png")
    front = '---\nlayout: post\ntitle: "Layout"\ndate: 2024-05-03 12:00:00 +0000\n---\n'
    src = "{{ 'images/sample-post/thumb.png' | relative_url }}"
    (site / "_posts" / "2024-05-03-layout.md").write_text(front + _post(src, jekyll=True), encoding="utf-8")
    dest = tmp_path / "_site"
    jekyll_build(site, dest)
    # the preview of the same post: written in preview/, its image embedded
    preview = markdown_to_preview(_post("../images/sample-post/thumb.png", jekyll=False), title="Layout",
                                  user_dir=None, images_from=dest / "preview")
    assert "../images/" not in preview and preview.count('src="data:image/png;base64,') == 2 * len(PAIRS)
    (dest / "preview").mkdir(exist_ok=True)
    (dest / "preview" / "layout.html").write_text(preview, encoding="utf-8")
    with SiteServer(dest) as server:
        for rel in ("2024/05/03/layout.html", "preview/layout.html"):
            for width, height in VIEWPORTS:
                result = browser_check(server.page_url(rel), width=width, height=height)
                assert browser_problems(result) == [], (rel, width)
                assert len(result["tables"]) == 2 and result["scrollWidth"] <= width


def test_embed_images_makes_the_preview_self_contained(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "preview").mkdir()
    Image.new("RGB", (4, 3), "red").save(tmp_path / "images" / "a b.png")
    page = ('<figure><a href="../images/a%20b.png"><img src="../images/a%20b.png" alt="x"></a></figure>'
            '<picture><source srcset="../images/a%20b.png 1x, ../images/a%20b.png 2x"><img src="../images/missing.png"></picture>'
            '<a href="../other.html">a link</a><img src="https://example.com/x.png">')
    out = embed_images(page, tmp_path / "preview")
    uri = re.search(r'src="(data:image/png;base64,[^"]+)"', out)
    assert uri and out.startswith(f'<figure><img src="{uri.group(1)}" alt="x"></figure>')   # zoom link dropped
    assert f'srcset="{uri.group(1)} 1x, {uri.group(1)} 2x"' in out
    # what is not a local image stays as it was: a missing file, a page link, a remote image
    assert 'src="../images/missing.png"' in out and 'href="../other.html"' in out and 'src="https://example.com/x.png"' in out


@needs_jekyll
def test_index_lists_pinned_posts_first(tmp_path: Path) -> None:
    """`pin: true` lists a post first (the full Caltech-101 post before the subset post of the same date)."""
    site = tmp_path / "site"
    shutil.copytree(SITE, site, ignore=shutil.ignore_patterns("_site", ".jekyll-cache", "_posts", "images", "preview"))
    (site / "_posts").mkdir()
    for name, pin in (("2026-11-28-a-caltech101", True), ("2026-11-28-z-subset", False), ("2026-11-29-newer", False)):
        (site / "_posts" / f"{name}.md").write_text(
            f'---\nlayout: post\ntitle: "{name}"\n' + ("pin: true\n" if pin else "") + "---\nText.\n", encoding="utf-8")
    jekyll_build(site, tmp_path / "_site")
    index = (tmp_path / "_site" / "index.html").read_text(encoding="utf-8")
    titles = re.findall(r'<h2 class="post-item-title"><a href="[^"]*">([^<]*)</a>', index)
    assert titles == ["2026-11-28-a-caltech101", "2026-11-29-newer", "2026-11-28-z-subset"]
