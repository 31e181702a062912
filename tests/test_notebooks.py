"""The example notebooks run top to bottom in a real Jupyter kernel: MNIST from fixture files
on a loopback server (the built-in entry keeps its format and classes; its files' checksums and
URLs point at the fixtures), the photos notebook as it is."""

import json
import os
from pathlib import Path

import nbclient
import nbformat
import numpy as np

from dlsets.sources import registry
from tests.formats import idx_gz_bytes

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "docs" / "notebooks"


def _setup_cell(files: dict[str, dict], cache: Path) -> str:
    """Kernel code that points the built-in mnist entry at ``files`` (name -> facts)."""
    return f"""
import dataclasses, os
os.environ["DLSETS_CACHE"] = {str(cache)!r}
from dlsets import registry as _r
_facts = {json.dumps(files)}
_base = _r._builtin()["mnist"]
def _file(n, fs):
    f = _facts.get(n)
    if f is None:
        return dataclasses.replace(fs, urls=("http://127.0.0.1:9/dead",))
    return _r.FileSpec(n, f["sha256"], f["md5"], f["size"], (f["url"],))
_files = {{n: _file(n, fs) for n, fs in _base.files.items()}}
_spec = dataclasses.replace(_base, files=_files)
_real = _r._all
_r._all = lambda: {{**_real(), "mnist": _spec}}
"""


def _run(path: Path, setup: str, cwd: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(setup))
    env_backup = dict(os.environ)
    try:
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(cwd)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(env_backup)
    return nb


def _outputs(nb) -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def _value(nb, name: str):
    """The text of the cell whose source ends with ``name``."""
    for c in nb.cells:
        if c.cell_type == "code" and c.source.strip().endswith(name):
            return "".join(o["data"]["text/plain"] for o in c.outputs if "data" in o)
    raise AssertionError(f"no cell ends with {name}")


def test_mnist_in_five_minutes_runs_against_fixture_mnist(server, tmp_path):
    import hashlib

    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (300, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": (np.arange(300) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (50, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": (np.arange(50) % 10).astype(np.uint8),
    }
    assert set(arrays) <= set(registry._builtin()["mnist"].files)
    files = {}
    for name, a in arrays.items():
        body = idx_gz_bytes(a)
        files[name] = {"sha256": hashlib.sha256(body).hexdigest(),
                       "md5": hashlib.md5(body).hexdigest(), "size": len(body),
                       "url": server.add(f"/mnist/{name}", body)}
    nb = _run(NOTEBOOKS / "mnist-in-five-minutes.ipynb", _setup_cell(files, tmp_path / "cache"),
              tmp_path)
    outs = _outputs(nb)
    assert not [o for o in outs if o.get("output_type") == "error"]
    html = [o["data"]["text/html"] for o in outs if "text/html" in o.get("data", {})]
    assert any("Dataset mnist" in h and "data:image/png;base64" in h for h in html)
    assert any("Augmenter" in h for h in html)
    assert sum("image/png" in o.get("data", {}) for o in outs) == 2  # the grid and the loss
    assert _value(nb, "x_big.shape, y_big.shape").startswith("((540, 28, 28), (540,))")
    assert 0.0 <= float(_value(nb, "accuracy")) <= 1.0


def test_your_own_photos_and_masks_runs(tmp_path):
    nb = _run(NOTEBOOKS / "your-own-photos-and-masks.ipynb",
              _setup_cell({}, tmp_path / "cache"), tmp_path)
    outs = _outputs(nb)
    assert not [o for o in outs if o.get("output_type") == "error"]
    html = [o["data"]["text/html"] for o in outs if "text/html" in o.get("data", {})]
    assert any("masks" in h and "data:image/png;base64" in h for h in html)
    assert sum("image/png" in o.get("data", {}) for o in outs) == 2  # the pairs and the loss
