"""One tested escaping helper per output context.

Data-derived text (class names, file names, titles) reaches four languages on
its way to a reader: YAML front matter, Liquid (Jekyll runs it over the post
first), Markdown (kramdown, or Python-Markdown for the preview) and HTML.  The
helpers below make such text inert in each, so that ``{{ site.title }}``,
``<script>`` or ``a|b*c_d`` reads exactly as the user wrote it.  Newlines and
tabs become spaces; other control characters and bytes that are not UTF-8
are shown as escapes (:func:`~tlreport.util.text.display_name`): an XML feed
cannot hold them, and a browser would not show them.

Markdown text is escaped with numeric character references rather than
backslashes: both kramdown (with ``entity_output: as_input``) and
Python-Markdown pass them through untouched, Liquid never sees a ``{{`` or
``{%`` in them, and a browser shows the original characters.
"""

from __future__ import annotations

import html
import json
import re

from tlreport.util.text import display_name

# Characters that mean something to Markdown (kramdown or Python-Markdown),
# Liquid, kramdown math or HTML, replaced by numeric character references.
# ``_`` is escaped only where it could open or close emphasis (at a word edge);
# ``snake_case`` names stay readable in the Markdown source.
_MD_SPECIAL = {c: f"&#{ord(c)};" for c in "\\`*{}[]<>|~$&#"}


def md(text: object) -> str:
    """Escape text for a Markdown paragraph, heading or table cell (also Liquid-safe)."""
    s = _one_line(text)
    out = []
    for i, c in enumerate(s):
        if c == "_":
            inner = 0 < i < len(s) - 1 and s[i - 1].isalnum() and s[i + 1].isalnum()
            out.append("_" if inner else "&#95;")
        else:
            out.append(_MD_SPECIAL.get(c, c))
    return "".join(out)


def html_text(text: object) -> str:
    """Escape text for HTML content or a double-quoted attribute (also Liquid-safe)."""
    s = html.escape(_one_line(text), quote=True)
    # decimal, not html.escape's &#x27;: Liquid's escape_once (figure.html) knows only decimal references
    return s.replace("&#x27;", "&#39;").replace("{", "&#123;").replace("}", "&#125;")


#: a run this long without a place to break gets one every ``BREAK_EVERY`` characters (:func:`html_breakable`)
LONGEST_RUN, BREAK_EVERY = 24, 12


def html_breakable(text: object) -> str:
    """:func:`html_text`, with a line-break opportunity (``<wbr>``) after every underscore and inside any
    run of over ``LONGEST_RUN`` characters without one: a class name breaks where it reads well, and a
    150-character one still fits a phone.

    >>> html_breakable("Faces_easy")
    'Faces_<wbr>easy'
    >>> html_breakable("a" * 30)
    'aaaaaaaaaaaa<wbr>aaaaaaaaaaaa<wbr>aaaaaa'
    >>> html_breakable("x<y_z")
    'x&lt;y_<wbr>z'
    """
    import re

    pieces = []
    for part in re.split(r"(?<=[_\s-])", _one_line(text)):
        if len(part) > LONGEST_RUN:
            pieces += [part[i:i + BREAK_EVERY] for i in range(0, len(part), BREAK_EVERY)]
        else:
            pieces.append(part)
    return "<wbr>".join(html_text(piece) for piece in pieces if piece)


def liquid_arg(text: object) -> str:
    """A value for a double-quoted Liquid include argument.

    Liquid strings have no escapes and Liquid tokenises ``{%``/``%}`` before it
    reads quotes, so quotes and braces become character references; the include
    then prints the value unescaped into HTML (it is already HTML-safe).
    """
    return html_text(text)


def yaml_str(text: object) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(_one_line(text), ensure_ascii=False)


def code(text: object, *, liquid: bool = True) -> str:
    """Text for a code span or fenced code block, shown exactly as written.

    Markdown leaves code alone, so only Liquid (which runs first, in Jekyll)
    must be kept off it: text with ``{{``/``{%`` is wrapped in ``{% raw %}``.
    ``liquid=False`` (the Python-Markdown preview) returns the text unchanged.
    """
    s = display_name(str(text))
    if liquid and ("{{" in s or "{%" in s):
        # an endraw tag inside the text would close the raw block early: print it through Liquid
        s = _ENDRAW.sub(lambda m: "{% endraw %}{{ '" + m.group(0).replace("'", "") + "' }}{% raw %}", s)
        return "{% raw %}" + s + "{% endraw %}"
    return s


def _one_line(text: object) -> str:
    """Newlines and tabs as spaces, other control characters and undecodable bytes as escapes."""
    return display_name(" ".join(str(text).split()))


_ENDRAW = re.compile(r"\{%-?\s*endraw\s*-?%\}")
