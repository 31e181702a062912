"""A loopback stand-in for Kaggle's API, as its clients see it.

    with KaggleStandin() as kg:
        kg.add("alice/flowers", {1: zip_v1, 2: zip_v2})      # current version: the highest
        monkeypatch.setenv("DLSETS_KAGGLE_API", kg.url)
        ...
        kg.calls                       # [(method, body, Authorization header), ...]

``POST /v1/datasets.DatasetApiService/GetDataset`` answers ``currentVersionNumber``;
``.../DownloadDataset`` and ``competitions.CompetitionApiService/DownloadDataFiles`` answer
302 to a signed-looking URL on a second server (:class:`tests.httpserver.Server`, with its
Range support and scripted cuts). Credentials are checked as Kaggle does: ``Bearer <token>`` or
HTTP Basic ``user:key``; anything else is 401 with Kaggle's JSON error body. A dataset added
with ``consent=True`` (or a competition) answers 403 until ``kg.accept(ref)``; statuses put in
``kg.failures`` answer the next calls (e.g. ``[503, 429]``).
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.httpserver import Server

TOKEN = "KGAT_0123456789abcdef"
USER, KEY = "alice", "0123456789abcdef0123456789abcdef"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _APIServer

    def log_message(self, format, *args):  # noqa: A002
        pass

    def do_POST(self):
        kg = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        auth = self.headers.get("Authorization")
        method = self.path.rsplit("/", 1)[-1]
        with kg.lock:
            kg.calls.append((method, body, auth))
            failure = kg.failures.pop(0) if kg.failures else None
        if failure:
            return self._json(failure, {"code": failure, "message": "scripted failure"})
        if not self.path.startswith("/v1/"):
            return self._json(404, {"code": 404, "message": "Not found"})
        if not kg.authorized(auth):
            return self._json(401, {"code": 401, "message": "Unauthenticated"})
        if body is None:
            return self._json(400, {"code": 400, "message": "Bad request"})
        if method == "GetDataset":
            ds = kg.datasets.get(f"{body.get('ownerSlug')}/{body.get('datasetSlug')}")
            if ds is None:
                return self._json(404, {"code": 404, "message": "Dataset not found"})
            current = ds["current"] if "current" in ds else max(ds["versions"])
            return self._json(200, {"ref": ds["ref"], "currentVersionNumber": current,
                                    "licenseName": "CC0: Public Domain"})
        if method == "DownloadDataset":
            ref = f"{body.get('ownerSlug')}/{body.get('datasetSlug')}"
            ds = kg.datasets.get(ref)
            if ds is None:
                return self._json(404, {"code": 404, "message": "Dataset not found"})
            if ds["consent"] and ref not in kg.accepted:
                return self._json(403, {"code": 403, "message": "Permission 'datasets.get' was "
                                        "denied"})
            version = body.get("datasetVersionNumber") or max(ds["versions"])
            if version not in ds["versions"]:
                return self._json(404, {"code": 404, "message": "Version not found"})
            return self._redirect(kg.storage.url(f"/storage/{ref}/{version}.zip"))
        if method == "DownloadDataFiles":
            name = body.get("competitionName")
            if name not in kg.competitions:
                return self._json(404, {"code": 404, "message": "Competition not found"})
            if f"competitions/{name}" not in kg.accepted:
                return self._json(403, {"code": 403, "message": "You must accept this "
                                        "competition's rules before you can download files"})
            return self._redirect(kg.storage.url(f"/storage/competitions/{name}.zip"))
        return self._json(404, {"code": 404, "message": f"no method {method}"})

    def _json(self, status: int, obj: dict) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _redirect(self, url: str) -> None:
        self.send_response(302)
        self.send_header("Location", url + "?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Signature=ab")
        self.send_header("Content-Length", "0")
        self.end_headers()


class _APIServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: KaggleStandin


class KaggleStandin:
    """The API server and its storage server, both on 127.0.0.1 (context manager)."""

    def __init__(self):
        self.datasets: dict[str, dict] = {}
        self.competitions: set[str] = set()
        self.accepted: set[str] = set()
        self.calls: list[tuple[str, dict | None, str | None]] = []
        self.failures: list[int] = []  # statuses answered to the next calls, then normal
        self.lock = threading.Lock()
        self.storage = Server()
        self._httpd = _APIServer(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05})
        self._thread.start()

    @staticmethod
    def authorized(header: str | None) -> bool:
        if header == f"Bearer {TOKEN}":
            return True
        if header and header.startswith("Basic "):
            try:
                user, _, key = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                return False
            return (user, key) == (USER, KEY)
        return False

    def add(self, ref: str, versions: dict[int, bytes], *, consent: bool = False,
            **behaviour) -> None:
        """A dataset OWNER/SLUG with archives per version; ``behaviour`` goes to every
        version's storage route (e.g. ``drop_after=1000``)."""
        self.datasets[ref] = {"ref": ref, "versions": dict(versions), "consent": consent}
        for n, body in versions.items():
            self.storage.add(f"/storage/{ref}/{n}.zip", body, **behaviour)

    def add_competition(self, name: str, body: bytes) -> None:
        self.competitions.add(name)
        self.storage.add(f"/storage/competitions/{name}.zip", body)

    def accept(self, ref: str) -> None:
        self.accepted.add(ref)

    def methods(self) -> list[str]:
        with self.lock:
            return [c[0] for c in self.calls]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self.storage.close()

    def __enter__(self) -> KaggleStandin:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
