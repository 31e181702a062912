"""Built-in registry entries pointed at fixture files on the loopback server.

``serve_builtin(monkeypatch, server, "svhn", {"train_32x32.mat": data, ...})`` keeps the
built-in entry (format, classes, variants, extra splits) and gives each listed file the
fixture's size, sha256 and md5 and a URL on ``server``, so loads go through the real download
code. Files not listed keep their real facts and get a dead URL.
"""

from __future__ import annotations

import dataclasses
import hashlib

from dlsets.sources import registry


def serve_builtin(monkeypatch, server, name: str, bodies: dict[str, bytes]):
    base = registry._builtin()[name]
    files = {}
    for fname, fs in base.files.items():
        if fname in bodies:
            body = bodies[fname]
            files[fname] = registry.FileSpec(
                fname, hashlib.sha256(body).hexdigest(), hashlib.md5(body).hexdigest(),
                len(body), (server.add(f"/{name}/{fname}", body),))
        else:
            files[fname] = dataclasses.replace(fs, urls=("http://127.0.0.1:9/dead",))
    spec = dataclasses.replace(base, files=files)
    real = registry._all
    monkeypatch.setattr(registry, "_all", lambda: {**real(), name: spec})
    return spec
