"""Names from users' disks, shown: escapes for the terminal and the post, exact words for the shell."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tlreport.util.hashing import stable_json
from tlreport.util.text import display_name, shell_word

# a control sequence, a newline, DEL, a C1 control (NEL), a right-to-left override, a zero-width space,
# a byte that is not UTF-8, a quote, a backslash
ODD = "esc\x1b[31m two\nlines\x7f nel\x85 \u202egnp.exe z\u200bw caf\udce9 it's a\\b é"


def test_display_name_escapes_exactly_what_cannot_be_shown():
    shown = display_name(ODD)
    assert shown == "esc\\x1b[31m two\\nlines\\x7f nel\\x85 \\u202egnp.exe z\\u200bw caf\\xe9 it's a\\b é"
    shown.encode("utf-8")                                          # always encodable
    assert display_name("plain/naïve name.jpg") == "plain/naïve name.jpg"
    family = "\U0001f468\u200d\U0001f467 \u0915\u094d\u200c\u0937"     # joiners that emoji and Devanagari need
    assert display_name(family) == family


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_a_shell_word_reads_back_as_the_same_bytes():
    for name in (ODD, "plain.jpg", "with space", "it's", "a$b`c`"):
        out = subprocess.run(["bash", "-c", f"printf %s {shell_word(name)}"], capture_output=True, check=True)
        assert out.stdout == os.fsencode(name), name
    assert shell_word("plain.jpg") == "plain.jpg" and shell_word("it's") == "'it'\"'\"'s'"


def test_stable_json_keeps_undecodable_names_and_stays_utf8():
    text = stable_json({"class": "caf\udce9", "é": ["\x1b"]})
    text.encode("utf-8")
    assert json.loads(text) == {"class": "caf\udce9", "é": ["\x1b"]}
    assert stable_json({"a": "é"}) == '{\n "a": "é"\n}\n'           # unchanged for every other name
