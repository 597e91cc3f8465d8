"""``tlreport serve``: a port it cannot listen on is one line before Jekyll starts, not Jekyll's backtrace."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tlreport.errors import UserError
from tlreport.site import serve as serve_module


def test_a_taken_port_is_one_line_and_jekyll_is_not_started(tmp_path: Path, monkeypatch) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "_config.yml").write_text("title: t\n")
    started = []
    monkeypatch.setattr(serve_module, "find_jekyll", lambda: "/usr/bin/jekyll")
    monkeypatch.setattr(serve_module.subprocess, "call", lambda cmd: started.append(cmd) or 0)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match=rf"^cannot listen on 127.0.0.1:{port}: "):
            serve_module.serve(site, port=port)
    assert started == []
    assert serve_module.serve(site, port=port) == 0 and started      # free again: Jekyll is started
