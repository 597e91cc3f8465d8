"""A Ray address nothing listens on is one line within seconds, not minutes of Ray's retries and logs."""

from __future__ import annotations

import socket
import time

import pytest

from tlreport.errors import UserError
from tlreport.util.ray_cluster import check_reachable


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_address_nothing_listens_on_is_one_line_at_once() -> None:
    port = _closed_port()
    t0 = time.monotonic()
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        with pytest.raises(UserError, match=rf"^cannot reach the Ray cluster at {address}: "):
            check_reachable(address)
    assert time.monotonic() - t0 < 5


def test_a_listening_address_and_forms_left_to_ray_pass() -> None:
    with socket.socket() as head:
        head.bind(("127.0.0.1", 0))
        head.listen()
        check_reachable(f"127.0.0.1:{head.getsockname()[1]}")
    for address in ("auto", "local", "localhost"):
        check_reachable(address)
