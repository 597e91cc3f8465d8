"""Text shown to people, in the terminal, the post and figures: names from users' disks, and other
libraries' messages cut to the one line an error gets."""

from __future__ import annotations

import re

# What a folder name may hold that no reader should get raw: C0 and C1 control characters (DEL
# included); the invisible characters that reorder or hide text (bidi embeddings, overrides and
# isolates, zero-width space, word joiner and invisible operators, byte-order mark; the joiners
# that emoji and Indic scripts need are kept); and the lone surrogates that stand for bytes that are
# not UTF-8 (os.fsdecode's surrogateescape)
_UNSHOWABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200b\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
                         "\udc80-\udcff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(m: re.Match[str]) -> str:
    c = m.group()
    if c in _NAMED:
        return _NAMED[c]
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"          # the byte it stands for
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def display_name(name: str) -> str:
    r"""A name that may hold control characters, invisible characters or bytes that are not UTF-8, in a
    printable form.

    Each such character becomes a Python-style escape (``\n``, ``\x1b``, ``\u202e``, ``\xff`` for the
    byte 0xff), so an escape sequence in a folder name cannot restyle or clear the terminal, a newline
    cannot split a line of output, a right-to-left override cannot reverse the text after it, names
    that differ by a zero-width space read differently, and the text can always be encoded as UTF-8.
    Everything else is kept as it is.

    >>> display_name("caf\udce9/two\nlines\x1b[0m \u202egnp.exe")
    'caf\\xe9/two\\nlines\\x1b[0m \\u202egnp.exe'
    """
    return _UNSHOWABLE.sub(_escape, name)


def shell_word(arg: str) -> str:
    r"""One shell argument that a POSIX shell reads back as exactly ``arg``, for a command shown to copy.

    Plain names are quoted by :func:`shlex.quote`.  A name with characters :func:`display_name` escapes
    (control characters cannot be written inside single quotes, invisible ones would hide in them) is
    written in ANSI-C quoting (``$'...'``: bash, zsh, ksh and POSIX 2024 shells), each such character
    as its ``\xNN`` bytes.

    >>> shell_word("a b"), shell_word("caf\udce9's\x1b")
    ("'a b'", "$'caf\\xe9\\'s\\x1b'")
    """
    import shlex

    if not _UNSHOWABLE.search(arg):
        return shlex.quote(arg)
    out = []
    for c in arg:
        if c in "\\'":
            out.append("\\" + c)
        elif _UNSHOWABLE.fullmatch(c):
            raw = bytes([ord(c) - 0xDC00]) if ord(c) >= 0xDC00 else c.encode("utf-8")
            out.append("".join(f"\\x{b:02x}" for b in raw))
        else:
            out.append(c)
    return "$'" + "".join(out) + "'"


def first_line(message: object, limit: int | None = None) -> str:
    r"""``message`` (an exception, a reason) up to its first line break, at most ``limit`` characters: what
    a one-line error quotes of a library's message (tarfile lists every codec it tried, urllib a redirect
    loop in three lines, Ray its whole log).  ``""`` for an empty message.

    A line over ``limit`` is cut at a word, marked by "…".

    >>> first_line(ValueError("bad header\nfile could not be opened successfully:\n- method gz")), first_line("")
    ('bad header', '')
    >>> first_line("Keras 3 only supports V3 .keras files, legacy H5 files too", 40)
    'Keras 3 only supports V3 .keras files,…'
    >>> first_line("Error: /a/very/long/path/that/goes/on/and/on", 30)
    'Error: /a/very/long/path/that…'
    """
    lines = str(message).strip().splitlines()
    line = lines[0].strip() if lines else ""
    if limit is None or len(line) <= limit:
        return line
    cut = line[:limit - 1]
    at_word = cut.rsplit(" ", 1)[0] if " " in cut else cut
    return (at_word if len(at_word) >= len(cut) // 2 else cut) + "…"     # a word cut that keeps half, or a hard cut
