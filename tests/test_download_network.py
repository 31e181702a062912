"""Opt-in live check: every URL of every built-in dataset answers (``pytest -m network``).

Deselected by default (pyproject's addopts has ``-m 'not network'``); needs internet. Asks for
the first byte only (``Range: bytes=0-0``), so the whole run moves a few kilobytes.
"""

from __future__ import annotations

import re

import pytest

from dlsets.common import config
from dlsets.sources import registry

CASES = [
    pytest.param(name, f.name, url, f.size, id=f"{name}:{url}")
    for name in registry.names()
    if registry.get(name).builtin
    for f in registry.get(name).files.values()
    for url in f.urls
]


@pytest.mark.network
@pytest.mark.parametrize(("name", "file", "url", "size"), CASES)
def test_registry_url_answers(name, file, url, size):
    import requests

    timeout = (config.CONNECT_TIMEOUT, 30)
    headers = {"Range": "bytes=0-0", "Accept-Encoding": "identity"}
    with requests.get(url, headers=headers, stream=True, timeout=timeout) as resp:
        assert resp.status_code in (200, 206), f"{name}/{file}: {url} answered {resp.status_code}"
        assert not (url.startswith("https://") and resp.url.startswith("http://")), resp.url
        total = None
        m = re.match(r"bytes 0-0/(\d+)", resp.headers.get("Content-Range", ""))
        if m:
            total = int(m.group(1))
        elif resp.status_code == 200 and resp.headers.get("Content-Length", "").isdigit():
            total = int(resp.headers["Content-Length"])
        if size is not None and total is not None:
            assert total == size, f"{url}: {total:,} bytes, registry says {size:,}"
