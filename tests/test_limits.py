"""Small hostile files end to end: a user registry vouches for each (its checksums match), and
``dlsets.load`` refuses every one with a FormatError naming the file, in bounded memory: the
peak RSS of a fresh process, which sees numpy's, zlib's and pickle's buffers alike."""

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from dlsets.formats.limits import Limits, for_spec
from dlsets.sources.acquire import fetch
from dlsets.sources.registry import get
from tests import formats, hostile

RNG = np.random.default_rng(3)


def _mnist_files(**replace):
    x = RNG.integers(0, 256, (30, 28, 28), dtype=np.uint8)
    y = (np.arange(30) % 10).astype(np.uint8)
    files = {"train-images-idx3-ubyte.gz": formats.idx_gz_bytes(x),
             "train-labels-idx1-ubyte.gz": formats.idx_gz_bytes(y),
             "t10k-images-idx3-ubyte.gz": formats.idx_gz_bytes(x[:10]),
             "t10k-labels-idx1-ubyte.gz": formats.idx_gz_bytes(y[:10])}
    return {**files, **replace}


def _cases():
    """name -> (like, {file: bytes}, the file the error must name)."""
    trailing = hostile.TrailingMembers(formats.idx_gz_bytes((np.arange(30) % 10).astype(np.uint8)),
                                       copies=256)  # 16 GiB of extra members, 16 MB on disk
    return {
        "evil-idx-8m": ("mnist", _mnist_files(**{
            "train-images-idx3-ubyte.gz": hostile.idx_gz_claiming(8_000_000)}),
            "train-images-idx3-ubyte.gz"),
        "evil-idx-trailing": ("mnist", _mnist_files(**{
            "train-labels-idx1-ubyte.gz": trailing.read()}), "train-labels-idx1-ubyte.gz"),
        "evil-tar-member": ("cifar10", {"cifar-10-binary.tar.gz": hostile.tar_gz_with_member(
            "cifar-10-batches-bin/data_batch_1.bin", 3_200_000_000)}, "cifar-10-binary.tar.gz"),
        "evil-pickle": ("cifar10", {"cifar-10-python.tar.gz":
                                    hostile.cifar10_python_tar_with_labels(
                                        hostile.shared_nested_list(35))},
                        "cifar-10-python.tar.gz"),
        "evil-png-member": ("notmnist-small", {"notMNIST_small.tar.gz": hostile.tar_gz_with_member(
            "notMNIST_small/A/x.png", 3_200_000_000)}, "notMNIST_small.tar.gz"),
    }


_CHILD = """
import json, resource, sys
import dlsets
def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
dlsets.load("fine")  # imports and a real load first: the baseline
out = {"base": rss()}
for name in sys.argv[1:]:
    try:
        dlsets.load(name)
        out[name] = ["loaded", "", rss()]
    except dlsets.DlsetsError as exc:
        out[name] = [type(exc).__name__, str(exc), rss()]
print(json.dumps(out))
"""


def test_hostile_files_fail_with_the_file_named_in_bounded_memory(tmp_path, monkeypatch):
    cases = _cases()
    reg = {}
    for name, (like, files, _) in {**cases, "fine": ("mnist", _mnist_files(), "")}.items():
        src = tmp_path / name
        src.mkdir()
        reg[name] = {"like": like, "files": {}}
        for fname, data in files.items():
            (src / fname).write_bytes(data)
            reg[name]["files"][fname] = {"sha256": hashlib.sha256(data).hexdigest(),
                                         "size": len(data), "urls": ["http://127.0.0.1:9/x"]}
    (tmp_path / "reg.json").write_text(json.dumps(reg))
    monkeypatch.setenv("DLSETS_REGISTRY", str(tmp_path / "reg.json"))
    for name in reg:
        fetch(name, source_dir=tmp_path / name)
    r = subprocess.run([sys.executable, "-c", _CHILD, *cases], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    for name, (_, _, fname) in cases.items():
        kind, msg, peak = got[name]
        assert kind == "FormatError" and fname in msg, (name, kind, msg)
        # Genuine files of these layouts fit; the hostile ones claim 3 to 16 GB.
        assert peak - got["base"] < 150e6, (name, peak - got["base"], msg)


def test_user_entries_may_raise_max_images_within_reason(tmp_path):
    reg = tmp_path / "reg.json"
    files = {"mnist.npz": {"sha256": "0" * 64, "urls": ["http://127.0.0.1:9/x"]}}
    reg.write_text(json.dumps({"big-digits": {"like": "mnist", "files": files,
                                              "max_images": 8_100_000}}))
    from dlsets.errors import RegistryError
    from dlsets.sources import registry

    registry.register_file(reg)
    assert for_spec(get("big-digits")) == Limits((28, 28), 8_100_000,
                                                 "a dataset like mnist")
    assert for_spec(get("mnist")).max_images == 1_000_000
    reg.write_text(json.dumps({"big-digits": {"like": "mnist", "files": files,
                                              "max_images": 10**30}}))
    with pytest.raises(RegistryError, match="'max_images' must be an integer from 1 to"):
        registry.register_file(reg)
