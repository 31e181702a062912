"""A tiny MNIST-like dataset in the real IDX format, registered under a user entry and
imported into the test's cache, for tests (and README snippets) that call dlsets.load."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from dlsets.sources.acquire import fetch
from tests import formats


def tiny_mnist(tmp_path, monkeypatch, n_train=64, n_test=16, name="tiny-mnist", seed=0):
    """Write, register and import ``name`` (like mnist); returns (x_train, y_train)."""
    rng = np.random.default_rng(seed)
    x_tr = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    x_te = rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    y_tr = (np.arange(n_train) % 10).astype(np.uint8)
    y_te = (np.arange(n_test) % 10).astype(np.uint8)
    files = {
        "train-images-idx3-ubyte.gz": formats.idx_gz_bytes(x_tr),
        "train-labels-idx1-ubyte.gz": formats.idx_gz_bytes(y_tr),
        "t10k-images-idx3-ubyte.gz": formats.idx_gz_bytes(x_te),
        "t10k-labels-idx1-ubyte.gz": formats.idx_gz_bytes(y_te),
    }
    src = tmp_path / f"src-{name}"
    src.mkdir()
    entry = {"like": "mnist", "files": {}}
    for fname, data in files.items():
        (src / fname).write_bytes(data)
        entry["files"][fname] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                                 "urls": [f"http://127.0.0.1:9/{fname}"]}
    reg = tmp_path / f"registry-{name}.json"
    reg.write_text(json.dumps({name: entry}))
    monkeypatch.setenv("DLSETS_REGISTRY", str(reg))
    fetch(name, source_dir=src)
    return x_tr, y_tr


GUIDE = "docs/guide/training-loops.md"  # the Training loops page (once the README's section)


def readme_snippet(name: str, dataset: str = "tiny-mnist", page: str = "README.md") -> str:
    """The code block after ``<!-- test: NAME -->`` in the README (or another ``page`` of the
    repository, e.g. docs/getting-started.md), loading ``dataset`` instead of mnist (a test
    cannot download the real one)."""
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / page).read_text(encoding="utf-8")
    marker = f"<!-- test: {name} -->\n```python\n"
    start = text.index(marker) + len(marker)
    code = text[start:text.index("\n```", start)]
    assert 'dlsets.load("mnist"' in code
    return code.replace('dlsets.load("mnist"', f'dlsets.load("{dataset}"')
