"""The chart-text rule: at a phone's width every chart's text reads at 11 CSS px or more.

A chart's PNG records its smallest text in image pixels (tlreport.report.style.save_figure); the
figure include / macro puts it on the image (and on the <source> of its phone variant) as
data-text-px, and the browser check scales it by the shown width (tlreport.site.browser).
Needs chromium (and jekyll for the include); each is skipped with a reason when absent.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tlreport.report.charts import plot_history
from tlreport.report.templating import get_env
from tlreport.site.browser import (
    CHART_TEXT_MIN_PX,
    browser_check,
    browser_problems,
    chart_text_problems,
    find_chromium,
)
from tlreport.site.jekyll import find_jekyll, jekyll_build
from tlreport.site.static_server import SiteServer

REPO = Path(__file__).resolve().parents[2]
needs_jekyll = pytest.mark.skipif(find_jekyll() is None, reason="jekyll not installed")
needs_chromium = pytest.mark.skipif(find_chromium() is None, reason="chromium not installed")


def _result(width: int, charts: list[dict]) -> dict:
    return {"url": "u", "requestedWidth": width, "images": [], "tables": [], "overflow": False, "errors": [],
            "tlreportPost": False, "innerHeight": 844, "summary": None, "chartText": charts}


def _chart(natural: int, shown: float, text_px: float | None) -> dict:
    return {"src": "c.png", "variant": "img", "textPx": text_px, "width": shown, "naturalWidth": natural,
            "cssPx": None if text_px is None or not natural else shown / natural * text_px}


def test_chart_text_rule_on_measured_results() -> None:
    # the old charts: 1200 px with 20 px text shown 347 px wide -> 5.8 CSS px
    small = _result(390, [_chart(1200, 347, 20.0)])
    (problem,) = chart_text_problems(small)
    assert "reads at 5.8 CSS px" in problem and "under 11" in problem
    assert problem in browser_problems(small)
    # a phone variant: 720 px with 26.4 px text shown 362 px wide -> 13.3 CSS px
    assert chart_text_problems(_result(390, [_chart(720, 362, 26.4)])) == []
    # at a laptop's width the rule does not apply; a chart that did not load is reported elsewhere
    assert chart_text_problems(_result(1280, [_chart(1200, 347, 20.0)])) == []
    assert chart_text_problems(_result(390, [_chart(0, 0, 20.0)])) == []
    # a chart marked as one but whose shown variant carries no size is a problem too
    assert "no data-text-px" in chart_text_problems(_result(390, [_chart(720, 362, None)]))[0]


def _history() -> pd.DataFrame:
    e = np.arange(1, 21)
    return pd.DataFrame({"epoch": e, "loss": 2 / e, "accuracy": 1 - 0.5 / e,
                         "val_loss": 2.2 / e + 0.05, "val_accuracy": 0.95 - 0.5 / e})


def _charts(root: Path) -> dict[str, dict]:
    """Real charts in ``root/images`` and their figure_meta (as pipeline.render.figure_meta builds it)."""
    from tlreport.pipeline.render import figure_meta

    (root / "images" / "p").mkdir(parents=True)
    plot_history(_history(), root / "images" / "p" / "h", best_epoch=5)
    return figure_meta(root, "p")


@pytest.mark.slow     # seconds: kept out of the quick tier (pytest -m 'not slow')
@needs_chromium
def test_our_charts_read_at_11_css_px_on_a_phone_and_an_old_one_does_not(tmp_path: Path) -> None:
    """The preview macro serves the phone variant at 390 px; a desktop-only chart fails the rule."""
    root = tmp_path / "root"
    meta = _charts(root)
    env = get_env(target="preview")
    env.globals["figure_meta"] = meta
    macro = env.from_string('<% from "macros.j2" import figure %><< figure(src, "A chart.") >>')
    ours = "".join(macro.render(src=src) for src in meta)
    assert ours.count("<picture>") == 2 and ours.count("data-text-px") == 4
    # the old way: the 1200 px chart alone, with its (true) text size
    src = "images/p/h_loss.png"
    old = f'<figure><img src="../{src}" data-text-px="{meta[src]["text_px"]}" alt="old"></figure>'
    (root / "page").mkdir()
    for name, body in (("ours", ours), ("old", old)):
        (root / "page" / f"{name}.html").write_text(
            '<!DOCTYPE html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, '
            'initial-scale=1"><title>t</title><style>body{margin:0 14px} figure{margin:1em 0} img{max-width:100%;height:auto}'
            'picture{display:block}</style></head><body>' + body + "</body></html>", encoding="utf-8")
    with SiteServer(root) as server:
        phone = browser_check(server.page_url("page/ours.html"), width=390)
        laptop = browser_check(server.page_url("page/ours.html"), width=1280)
        old_phone = browser_check(server.page_url("page/old.html"), width=390)
    assert browser_problems(phone) == [] and browser_problems(laptop) == []
    assert [c["variant"] for c in phone["chartText"]] == ["source", "source"]
    assert all(c["src"].endswith(".phone.png") and c["cssPx"] >= CHART_TEXT_MIN_PX for c in phone["chartText"])
    assert [c["variant"] for c in laptop["chartText"]] == ["img", "img"]       # the phone files are not loaded
    assert not any(im["src"].endswith(".phone.png") for im in laptop["images"])
    problems = browser_problems(old_phone)
    assert len(problems) == 1 and "h_loss.png: its smallest text reads at" in problems[0]


@pytest.mark.slow     # seconds: kept out of the quick tier (pytest -m 'not slow')
@needs_jekyll
@needs_chromium
def test_jekyll_figure_include_serves_the_phone_variant(tmp_path: Path) -> None:
    """The real site: figure.html with phone= and text sizes, built by Jekyll, passes at 390 and 1280 px."""
    site = tmp_path / "site"
    shutil.copytree(REPO / "site", site, ignore=shutil.ignore_patterns("_site", ".jekyll-cache", "_posts",
                                                                       "images", "preview"))
    meta = _charts(site)
    (site / "_posts").mkdir()
    includes = "\n\n".join(
        f'{{% include figure.html src="{src}" caption="A chart." text_px="{m["text_px"]:.1f}" '
        f'phone="{m["phone"]}" phone_text_px="{m["phone_text_px"]:.1f}" %}}' for src, m in meta.items())
    (site / "_posts" / "2024-05-01-charts.md").write_text(
        f'---\ntitle: "Charts"\n---\n\nTwo charts.\n\n{includes}\n', encoding="utf-8")
    dest = tmp_path / "_site"
    jekyll_build(site, dest, baseurl="/tlreport")
    html = (dest / "2024" / "05" / "01" / "charts.html").read_text(encoding="utf-8")
    assert html.count('<source media="(max-width: 600px)" srcset="/tlreport/images/p/h_loss.phone.png"') == 1
    with SiteServer(dest, baseurl="/tlreport") as server:
        for width, variant in ((390, "source"), (1280, "img")):
            result = browser_check(server.page_url("2024/05/01/charts.html"), width=width)
            assert chart_text_problems(result) == [], width
            assert [c["variant"] for c in result["chartText"]] == [variant, variant]
            if width == 390:
                assert min(c["cssPx"] for c in result["chartText"]) >= CHART_TEXT_MIN_PX
