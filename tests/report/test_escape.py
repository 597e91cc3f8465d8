import html
import json
import re

import markdown

from tlreport.report import escape

HOSTILE = ["{{ site.title }}", "{% include x %}", "<script>alert(1)</script>", "a|b", "*star*",
           "_under_", "`tick`", "\"quoted\" 'single'", "key: value", "two\nlines", "{: .x}"]


def test_md_is_inert_in_markdown_and_reads_as_written():
    for s in HOSTILE:
        out = escape.md(s)
        for bad in ("{{", "{%", "{:", "<script", "|", "`"):
            assert bad not in out
        rendered = markdown.markdown(f"| a |\n|---|\n| {out} |", extensions=["tables"])
        assert "<script" not in rendered
        cell = rendered.split("<td>")[1].split("</td>")[0]
        assert html.unescape(cell) == " ".join(s.split()), (s, cell)


def test_snake_case_stays_readable():
    assert escape.md("efficientnet_lite0") == "efficientnet_lite0"
    assert escape.md("_x") == "&#95;x"


def test_yaml_str_round_trips_through_json():
    for s in HOSTILE:
        out = escape.yaml_str(s)
        assert "\n" not in out
        assert json.loads(out) == " ".join(s.split())


def test_liquid_arg_has_no_quotes_or_braces():
    for s in HOSTILE:
        out = escape.liquid_arg(s)
        assert '"' not in out and "{" not in out and "}" not in out and "<" not in out
        assert html.unescape(out) == " ".join(s.split())


def test_code_keeps_text_and_hides_it_from_liquid():
    assert escape.code("a {{ b }}", liquid=False) == "a {{ b }}"
    assert escape.code("a {{ b }}") == "{% raw %}a {{ b }}{% endraw %}"
    assert escape.code("plain") == "plain"


def test_html_text_uses_references_that_liquids_escape_once_keeps():
    """figure.html runs captions through escape_once, which knows named and decimal references only:
    a hex &#x27; would print as the text "&#x27;"."""
    out = escape.html_text("the seed post's rows {x}")
    assert out == "the seed post&#39;s rows &#123;x&#125;"
    assert re.fullmatch(r"(?:[^&]|&(?:[a-z]+|#\d+);)*", out)


def test_liquid_arg_round_trips_hostile_strings():
    for s in HOSTILE:
        out = escape.liquid_arg(s)
        assert '"' not in out and "{%" not in out and html.unescape(out) == " ".join(s.split())
