"""A loopback HTTP server for offline download tests.

    with LoopbackServer({"/f.bin": data}) as srv:
        srv.behave("/f.bin", drop_after=1000)       # first response dies after 1000 body bytes
        url = srv.url("/f.bin")
        ...
        srv.requests  # [Request(path, range, status, sent), ...]

Behaviours per path: ``ranges`` (honour Range, default True), ``drop_after``
(body bytes sent before the connection is cut, for the first ``drop_times``
responses), ``fail_first`` (answer that many requests with ``fail_status``,
default 503), ``status`` (always answer with this status, e.g. 404).  Unknown
paths get 404.  :func:`closed_port` gives a port nothing listens on.
"""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Behaviour:
    ranges: bool = True
    drop_after: int | None = None
    drop_times: int = 1
    fail_first: int = 0
    fail_status: int = 503
    status: int | None = None
    retry_after: str | None = None          # the Retry-After header of the failures
    content_encoding: str | None = None     # a Content-Encoding header on the file's answers
    seen: int = 0


@dataclass
class Request:
    path: str
    range: str | None
    status: int = 0
    sent: int = 0


@dataclass
class _State:
    files: dict[str, bytes]
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    state: _State  # set on a per-server subclass

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        st = self.state
        path = self.path.split("?", 1)[0]
        req = Request(path=path, range=self.headers.get("Range"))
        with st.lock:
            st.requests.append(req)
            beh = st.behaviours.setdefault(path, Behaviour())
            beh.seen += 1
            nth = beh.seen
        data = st.files.get(path)
        if beh.status is not None or data is None:
            self._plain(req, beh.status or 404)
            return
        if nth <= beh.fail_first:
            self._plain(req, beh.fail_status, retry_after=beh.retry_after)
            return
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", req.range or "")
        if beh.ranges and m:
            start = int(m.group(1))
            if start >= len(data):
                req.status = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            req.status = 206
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            req.status = 200
            self.send_response(200)
            if beh.ranges:
                self.send_header("Accept-Ranges", "bytes")
        body = data[start:]
        if beh.content_encoding:
            self.send_header("Content-Encoding", beh.content_encoding)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if beh.drop_after is not None and nth <= beh.fail_first + beh.drop_times:
            part = body[: beh.drop_after]
            self.wfile.write(part)
            self.wfile.flush()
            req.sent = len(part)
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.wfile.write(body)
        req.sent = len(body)

    def _plain(self, req: Request, status: int, retry_after: str | None = None) -> None:
        req.status = status
        body = f"status {status}\n".encode()
        self.send_response(status)
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class LoopbackServer:
    """Serve ``files`` (path -> bytes) on 127.0.0.1 from a daemon thread."""

    def __init__(self, files: dict[str, bytes] | None = None):
        self._state = _State(files=dict(files or {}))
        handler = type("Handler", (_Handler,), {"state": self._state})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def add(self, path: str, data: bytes) -> None:
        self._state.files[path] = data

    def behave(self, path: str, **kw: object) -> Behaviour:
        beh = Behaviour(**kw)  # type: ignore[arg-type]
        self._state.behaviours[path] = beh
        return beh

    @property
    def requests(self) -> list[Request]:
        with self._state.lock:
            return list(self._state.requests)

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def closed_port() -> int:
    """A loopback port with nothing listening (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
