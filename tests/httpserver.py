"""Loopback HTTP(S) servers with scripted per-path behaviour, for download tests.

    with Server() as srv:
        srv.add("/a.gz", payload, statuses=[503])      # 503 once, then the bytes
        url = srv.url("/a.gz")
        ...
        srv.count("/a.gz"), srv.ranges("/a.gz")        # what the client asked for

``Server(https=True)`` serves TLS with a certificate from a throw-away ``trustme`` CA; point
requests at it with ``monkeypatch.setenv("REQUESTS_CA_BUNDLE", srv.ca_bundle(tmp_path))``.
Binds 127.0.0.1 on an ephemeral port only. Every request is logged in ``srv.log``.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Route:
    """What one path answers. Behaviours combine; ``statuses`` are consumed one per request."""

    body: bytes = b""
    statuses: list[int] = field(default_factory=list)  # e.g. [503, 503]: then `status`
    status: int = 200
    retry_after: str | None = None  # sent with the non-200 statuses above
    drop_after: int | None = None  # close the connection after this many body bytes...
    drop_times: int = 1  # ...on the first this-many successful requests
    ignore_range: bool = False  # always answer 200 with the whole body
    range_shift: int = 0  # answer a Range request from this many bytes further on (a bug)
    extra_length: int = 0  # announce a Content-Length this much longer than the body
    stall: float = 0.0  # after `stall_after` body bytes, go silent this long
    stall_after: int = 0
    trickle: tuple[int, float] | None = None  # (bytes, seconds): send slowly
    redirect: str | None = None  # answer 302 with this Location
    hits: int = 0


@dataclass
class Request:
    """One request as the server saw it (logged on arrival; status and sent filled in as it
    is answered, so a request still stalling shows up with what it sent so far)."""

    method: str
    path: str
    range: str | None
    status: int
    sent: int
    target: str = ""  # the request line's target: an absolute URL when asked as a proxy


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def log_message(self, format, *args):  # noqa: A002 - keep test output clean
        pass

    def do_HEAD(self):
        self._serve(head=True)

    def do_GET(self):
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        srv = self.server.owner
        # A proxy request names the whole URL: serve it by its path, as a forward proxy would.
        path = re.sub(r"^https?://[^/]+", "", self.path).split("?", 1)[0]
        with srv.lock:
            route = srv.routes.get(path)
            n = route.hits if route else 0
            if route:
                route.hits += 1
        rng = self.headers.get("Range")
        req = Request(self.command, path, rng, 0, 0, self.path)
        srv._record(req)
        status = 404
        cut = False
        try:
            if route is None:
                status = self._plain(404, b"not found\n")
                return
            if route.redirect:
                status = self._plain(302, b"", {"Location": route.redirect})
                return
            status = route.statuses[n] if n < len(route.statuses) else route.status
            if status != 200:
                extra = {"Retry-After": route.retry_after} if route.retry_after else {}
                status = self._plain(status, b"scripted failure\n", extra)
                return
            body, start = route.body, 0
            m = re.fullmatch(r"bytes=(\d+)-", rng or "")
            if m and not route.ignore_range:
                start = int(m.group(1)) + route.range_shift
                if start >= len(body):
                    status = self._plain(416, b"", {"Content-Range": f"bytes */{len(body)}"})
                    return
                status = 206
            payload = body[start:]
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(payload) + route.extra_length))
            self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.end_headers()
            if head:
                return
            successes = n - len(route.statuses)
            if route.drop_after is not None and successes < route.drop_times:
                payload = payload[: route.drop_after]
                cut = True
            req.status = status
            if route.stall:
                req.sent += self._send(payload[: route.stall_after])
                payload = payload[route.stall_after:]
                if srv.stop.wait(route.stall):
                    return
            if route.trickle:
                size, delay = route.trickle
                for i in range(0, len(payload), size):
                    req.sent += self._send(payload[i:i + size])
                    if srv.stop.wait(delay):
                        return
            else:
                req.sent += self._send(payload)
            if route.extra_length or cut:
                self._hang_up()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError, ValueError):
            # ValueError: writing to a socket file closed under a trickle by Server.close()
            self.close_connection = True
        finally:
            req.status = status

    def _send(self, data: bytes) -> int:
        self.wfile.write(data)
        self.wfile.flush()
        return len(data)

    def _plain(self, status: int, body: bytes, headers: dict | None = None) -> int:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return status

    def _hang_up(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: Server


class Server:
    """A threaded loopback server; use as a context manager (or call :meth:`close`)."""

    def __init__(self, https: bool = False):
        self.routes: dict[str, Route] = {}
        self.log: list[Request] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.https = https
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self.ca = None
        if https:
            import trustme

            self.ca = trustme.CA()
            cert = self.ca.issue_cert("127.0.0.1", "localhost")
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            cert.configure_cert(ctx)
            self._httpd.socket = ctx.wrap_socket(
                self._httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05})
        self._thread.start()

    def add(self, path: str, body: bytes = b"", **behaviour) -> str:
        """Script ``path`` (see :class:`Route`); returns its URL."""
        self.routes[path] = Route(body=body, **behaviour)
        return self.url(path)

    def url(self, path: str = "/") -> str:
        scheme = "https" if self.https else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def requests(self, path: str, method: str = "GET") -> list[Request]:
        with self.lock:
            return [r for r in self.log if r.path == path and r.method == method]

    def count(self, path: str) -> int:
        """GET requests answered 200 or 206 for ``path``: downloads begun."""
        return sum(r.status in (200, 206) for r in self.requests(path))

    def ranges(self, path: str) -> list[str | None]:
        return [r.range for r in self.requests(path)]

    def ca_bundle(self, folder: str | Path) -> str:
        """Write the CA certificate to ``folder`` and return its path (for REQUESTS_CA_BUNDLE)."""
        p = Path(folder) / f"ca-{self.port}.pem"
        self.ca.cert_pem.write_to_path(str(p))
        return str(p)

    def _record(self, req: Request) -> None:
        with self.lock:
            self.log.append(req)

    def close(self) -> None:
        self.stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_registry(folder: str | Path, entries: dict) -> Path:
    """Write a user registry JSON file (entries as in registry.py's user schema)."""
    p = Path(folder) / "registry.json"
    p.write_text(json.dumps(entries, indent=1), encoding="utf-8")
    return p


def file_entry(body: bytes, urls: list[str], *, md5: bool = False, size: bool = True) -> dict:
    """A user-registry file entry for ``body`` served at ``urls``."""
    import hashlib

    e = {"sha256": hashlib.sha256(body).hexdigest(), "urls": urls}
    if size:
        e["size"] = len(body)
    if md5:
        e["md5"] = hashlib.md5(body).hexdigest()
    return e


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
