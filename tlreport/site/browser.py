"""Headless Chromium: the in-page layout check and screenshots."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tlreport.errors import UserError

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
_BROWSER_TIMEOUT_S = 90
#: how much of the summary box must show in the first screen
SUMMARY_MIN_VISIBLE_PX = 120
#: the widths a post is checked and photographed at: a laptop and a phone (iPhone 12-15), with their heights
VIEWPORTS: tuple[tuple[int, int], ...] = ((1280, 900), (390, 844))
_MAX_SCREENSHOT_HEIGHT = 16000
_MIN_WINDOW_WIDTH = 800     # narrower pages are measured and shot in an iframe (see static_server.py)


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


# --------------------------------------------------------------------------- serving

# Injected first in <head>: records script errors, console.error calls and resources that
# fail to load (an <img>, a stylesheet) before any of the page's own code runs.
ERRORS_JS = r"""
(function () {
  var errors = window.__tlreportErrors = [];
  window.addEventListener("error", function (e) {
    var t = e.target;
    if (t && t !== window && (t.src || t.href)) {
      var url = t.currentSrc || t.src || t.href;
      // only the site's own files: the check runs offline, where a CDN (MathJax) cannot answer
      if (url.indexOf(location.origin + "/") === 0) errors.push("failed to load " + url);
    } else errors.push("script error: " + (e.message || String(e.error)));
  }, true);
  window.addEventListener("unhandledrejection", function (e) { errors.push("unhandled rejection: " + String(e.reason)); });
  var original = console.error;
  console.error = function () {
    errors.push("console.error: " + Array.prototype.map.call(arguments, String).join(" "));
    return original.apply(console, arguments);
  };
})();
"""

# Runs on load: makes lazy images load now and decode before paint (the check must see every
# image, not only the first screen's, and a screenshot must show them), waits for every image to finish (or fail), then writes its findings as JSON into
# <pre id="tlreport-check"> for --dump-dom to print.
CHECK_JS = r"""
(function () {
  Array.prototype.forEach.call(document.images, function (im) { im.loading = "eager"; im.decoding = "sync"; });
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
  // ---- layout boxes (tlreport layout rules; browser_problems reads them in layout_problems) ----
  // Every table, .table-scroll box and figure (and a figure's image) must fit its container's
  // content box, and a box that scrolls sideways must not need to: a table that scrolls hides a
  // column. Code blocks (pre, figure.highlight) may scroll inside their own box.
  function layoutBoxes() {
    var found = [];
    function innerWidth(el) {
      var cs = getComputedStyle(el);
      return el.clientWidth - (parseFloat(cs.paddingLeft) || 0) - (parseFloat(cs.paddingRight) || 0);
    }
    function scrolls(el) { return /^(auto|scroll|hidden|clip)$/.test(getComputedStyle(el).overflowX); }
    var sel = "table, .table-scroll, figure:not(.highlight), figure:not(.highlight) img";
    var els = document.querySelectorAll(sel);
    for (var i = 0; i < els.length && found.length < 20; i++) {
      var el = els[i], parent = el.parentElement;
      // the container is the nearest block ancestor (an image's inline link has no width of its own)
      while (parent && /^(inline|contents)$/.test(getComputedStyle(parent).display)) parent = parent.parentElement;
      if (!(el.offsetWidth > 0 && el.offsetHeight > 0) || !parent) continue;   // hidden: reported elsewhere
      var width = el.getBoundingClientRect().width, room = innerWidth(parent);
      // inside a checked box that scrolls, that box's own "scrolls" finding says it once
      if (width > room + 1 && !(parent.matches(sel) && scrolls(parent))) found.push({element: describe(el), rule: "wider", width: width, room: room});
      if (scrolls(el) && el.scrollWidth > el.clientWidth + 1)
        found.push({element: describe(el), rule: "scrolls", width: el.scrollWidth, room: el.clientWidth});
    }
    return found;
  }
  // ---- end of the layout boxes ----
  // ---- chart text (tlreport chart-text rule; browser_problems reads it in chart_text_problems) ----
  // A chart carries the smallest text it draws, in image pixels, as data-text-px on its <img> (and on
  // the <source> of its phone variant in a <picture>); the variant shown is the one whose URL is the
  // image's currentSrc, and its text reads at displayed width / naturalWidth * data-text-px CSS px.
  function chartTexts() {
    var found = [];
    Array.prototype.forEach.call(document.images, function (im) {
      var pic = im.parentElement && im.parentElement.tagName === "PICTURE" ? im.parentElement : null;
      var sources = pic ? Array.prototype.slice.call(pic.querySelectorAll("source")) : [];
      var marked = im.hasAttribute("data-text-px") || sources.some(function (s) { return s.hasAttribute("data-text-px"); });
      if (!marked) return;
      var src = im.currentSrc || im.src, px = im.getAttribute("data-text-px"), variant = "img";
      sources.forEach(function (s) {
        var first = (s.getAttribute("srcset") || "").trim().split(/\s+/)[0];
        if (first && new URL(first, document.baseURI).href === src) { px = s.getAttribute("data-text-px"); variant = "source"; }
      });
      var w = im.getBoundingClientRect().width, tp = px === null ? null : parseFloat(px);
      found.push({src: src, variant: variant, textPx: tp, width: w, naturalWidth: im.naturalWidth,
                  cssPx: tp === null || !im.naturalWidth ? null : w / im.naturalWidth * tp});
    });
    return found;
  }
  // ---- end of the chart text ----
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
    var summary = document.querySelector(".post-summary"), sb = summary && summary.getBoundingClientRect();
    var out = {url: location.href, title: document.title, innerWidth: window.innerWidth,
               innerHeight: window.innerHeight, clientWidth: vw, scrollWidth: de.scrollWidth,
               scrollHeight: Math.max(de.scrollHeight, document.body ? document.body.scrollHeight : 0),
               overflow: de.scrollWidth > vw, images: images, tables: tables, offenders: offenders,
               tlreportPost: !!document.querySelector("[data-tlreport-post]"),
               summary: sb ? {top: sb.top + window.scrollY, bottom: sb.bottom + window.scrollY, height: sb.height} : null,
               errors: (window.__tlreportErrors || []).slice(0, 20)};
    out.layout = layoutBoxes();
    out.chartText = chartTexts();
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
    window = f"--window-size={max(width, _MIN_WINDOW_WIDTH)},{height + 200}"
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
    """Problems in a :func:`browser_check` result.

    Broken images, hidden tables, script and console errors, a page wider than
    its window, and, in a tlreport post, a summary box missing or below the
    first screen.
    """
    where = f"{result.get('url', '?')} @ {result.get('requestedWidth', result.get('innerWidth'))}px"
    problems = [
        f"{where}: image did not load: {im['src']}" for im in result["images"] if not im["naturalWidth"]
    ]
    problems += [
        f"{where}: table {i} ({t['className'] or 'no class'}) is not visible"
        for i, t in enumerate(result["tables"])
        if not t["visible"]
    ]
    problems += [f"{where}: {e}" for e in result.get("errors", [])]
    if result.get("tlreportPost"):
        box = result.get("summary")
        if box is None:
            problems.append(f"{where}: no summary box (.post-summary) in a tlreport post")
        elif box["top"] > result["innerHeight"] - SUMMARY_MIN_VISIBLE_PX:
            problems.append(f"{where}: the summary box starts at {box['top']:.0f} px, below the first screen "
                            f"({result['innerHeight']} px)")
    if result["overflow"]:
        who = ", ".join(o["element"] for o in result["offenders"][:5]) or "unknown element"
        problems.append(
            f"{where}: page scrolls horizontally (scrollWidth {result['scrollWidth']} > "
            f"{result['clientWidth']}); widest: {who}"
        )
    problems += layout_problems(result)
    problems += chart_text_problems(result)
    return problems


# --------------------------------------------------------------------------- layout rules
# Checked at every viewport (VIEWPORTS: 1280 and 390 px), with the page-level rules above (no
# horizontal scroll of the page, no console or script error): no table, .table-scroll box or figure
# wider than its container, and no such box that needs sideways scrolling (a table that scrolls hides
# a column from a phone reader). CHECK_JS's layoutBoxes() measures them.


def layout_problems(result: dict[str, Any]) -> list[str]:
    """Tables and figures that stick out of their container or must scroll, from a :func:`browser_check` result."""
    where = f"{result.get('url', '?')} @ {result.get('requestedWidth', result.get('innerWidth'))}px"
    out = []
    for box in result.get("layout", []):
        if box["rule"] == "scrolls":
            out.append(f"{where}: {box['element']} scrolls sideways ({box['width']:.0f} px of content in "
                       f"{box['room']:.0f} px): a column or part of a figure is hidden")
        else:
            out.append(f"{where}: {box['element']} is wider than its container ({box['width']:.0f} px in "
                       f"{box['room']:.0f} px)")
    return out


# --------------------------------------------------------------------------- chart text rule
# At a phone's width every chart's text must read at CHART_TEXT_MIN_PX CSS px or more. The figures stage
# records each chart's smallest text in image pixels (tlreport.report.style.save_figure), the post puts
# it on the image as data-text-px, and CHECK_JS's chartTexts() scales it by the shown width.

#: the smallest chart text a phone reader must get, in CSS px
CHART_TEXT_MIN_PX = 11.0
#: the rule applies at viewports up to this width (the phone variants' media query is max-width: 600px)
CHART_TEXT_MAX_VIEWPORT = 600


def chart_text_problems(result: dict[str, Any]) -> list[str]:
    """Charts whose smallest text reads below :data:`CHART_TEXT_MIN_PX` CSS px at a phone's width.

    Only at viewports up to :data:`CHART_TEXT_MAX_VIEWPORT`; an image that did not load is reported
    by :func:`browser_problems` already.
    """
    width = result.get("requestedWidth", result.get("innerWidth", 0))
    if width > CHART_TEXT_MAX_VIEWPORT:
        return []
    where = f"{result.get('url', '?')} @ {width}px"
    out = []
    for c in result.get("chartText", []):
        if not c["naturalWidth"]:
            continue
        if c["cssPx"] is None:
            out.append(f"{where}: chart {c['src']} has no data-text-px for the variant shown")
        elif c["cssPx"] < CHART_TEXT_MIN_PX - 1e-6:
            out.append(f"{where}: chart {c['src']}: its smallest text reads at {c['cssPx']:.1f} CSS px "
                       f"(under {CHART_TEXT_MIN_PX:g}; {c['textPx']:g} px in a {c['naturalWidth']} px image shown "
                       f"{c['width']:.0f} px wide)")
    return out


def screenshot(
    url: str, out_png: str | os.PathLike[str], *, width: int = 1280, height: int | None = None
) -> Path:
    """Save a full-page PNG of ``url`` at ``width`` CSS pixels; the page height is measured first unless given.

    Chromium's headless window is at least 500 px wide, so a narrower page is
    shot inside an iframe of exactly ``width`` (as :func:`browser_check`
    measures it) and the picture is cropped to the frame.
    """
    if height is None:
        height = int(browser_check(url, width=width)["scrollHeight"])
    if height > _MAX_SCREENSHOT_HEIGHT:
        # Chromium cannot draw a taller window in one piece: say so rather than hand back a page cut short
        print(f"warning: the page is {height:,} px tall at {width} px wide; the screenshot shows its first "
              f"{_MAX_SCREENSHOT_HEIGHT:,} px", file=sys.stderr)
    height = max(200, min(int(height), _MAX_SCREENSHOT_HEIGHT))
    out = Path(out_png).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    framed = width < _MIN_WINDOW_WIDTH
    # through the check script either way: it makes lazy images load before the picture is taken
    target = _with_check_query(url, f"{width}x{height}" if framed else "1")
    window = f"--window-size={max(width, _MIN_WINDOW_WIDTH)},{height}"
    proc = _run_chromium([window, "--virtual-time-budget=15000", "--run-all-compositor-stages-before-draw",
                          f"--screenshot={out}", target])
    if not out.is_file() or out.stat().st_size == 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise UserError(f"Chromium wrote no screenshot for {url} (exit {proc.returncode}):\n{tail}")
    if framed:
        from PIL import Image

        with Image.open(out) as shot:
            cropped = shot.crop((0, 0, width, min(height, shot.height)))
        cropped.save(out)
    return out
