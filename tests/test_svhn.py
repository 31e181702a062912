"""SVHN cropped digits: MATLAB v5 files scipy writes, label 10 = digit 0, the optional extra."""

import sys

import h5py
import numpy as np
import pytest
import scipy.io

import dlsets
from dlsets.errors import FormatError, MissingDependencyError, OptionError
from dlsets.formats.svhn import read_svhn_mat
from dlsets.store import prepared
from dlsets.store.cache import prepared_dir
from tests import formats
from tests.served import serve_builtin

RNG = np.random.default_rng(5)


def _digits(n):
    x = RNG.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    y = (np.arange(n) % 10).astype(np.uint8)  # every digit, 0 included (stored as 10)
    return x, y


@pytest.fixture
def svhn(server, monkeypatch):
    data = {"train": _digits(23), "test": _digits(11), "extra": _digits(17)}
    bodies = {f"{s}_32x32.mat": formats.svhn_mat(*xy) for s, xy in data.items()}
    serve_builtin(monkeypatch, server, "svhn", bodies)
    return data


def test_train_and_test_without_the_extra_download(svhn, server):
    (x_tr, y_tr), (x_te, y_te) = dlsets.load_svhn()
    for (x, y), (ex, ey) in (((x_tr, y_tr), svhn["train"]), ((x_te, y_te), svhn["test"])):
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_array_equal(y, ey)
        assert x.dtype == np.uint8 and x.shape[1:] == (32, 32, 3) and y.dtype == np.uint8
    assert server.count("/svhn/extra_32x32.mat") == 0
    ds = dlsets.load("svhn")
    assert ds.split_names == ("train", "test") and ds.classes[0] == "0"


def test_extra_as_a_split_or_appended_to_train(svhn, server, caplog):
    ds = dlsets.load("svhn")  # prepared without extra first
    caplog.set_level("INFO", logger="dlsets")
    ds = dlsets.load("svhn", extra=True)
    assert ds.split_names == ("train", "test", "extra")
    np.testing.assert_array_equal(ds["extra"].images, svhn["extra"][0])
    np.testing.assert_array_equal(ds["extra"].labels, svhn["extra"][1])
    assert ds.info["splits"]["extra"]["class_counts"]["0"] == 2
    assert not [r for r in caplog.records if r.levelname == "WARNING"]  # no damage, a new split
    (x, y), _ = dlsets.load_svhn(extra=True)
    np.testing.assert_array_equal(x, np.concatenate([svhn["train"][0], svhn["extra"][0]]))
    np.testing.assert_array_equal(y, np.concatenate([svhn["train"][1], svhn["extra"][1]]))
    assert server.count("/svhn/extra_32x32.mat") == 1
    # the copy with extra serves a plain load as well, without parsing anything again
    manifest = prepared.read_manifest(prepared_dir("svhn"))
    assert manifest["splits"] == ["train", "test", "extra"]
    assert dlsets.load("svhn").split_names == ("train", "test")
    assert prepared.read_manifest(prepared_dir("svhn")) == manifest


def test_extra_in_hdf5_and_the_exports(svhn, tmp_path):
    with dlsets.load("svhn", extra="extra", format="hdf5") as h5:
        assert isinstance(h5["extra"].images, h5py.Dataset)
        np.testing.assert_array_equal(h5["extra"].images[:], svhn["extra"][0])
    ds = dlsets.load("svhn", extra=True)
    with h5py.File(ds.to_hdf5(tmp_path / "s.h5"), "r") as f:
        assert set(f) == {"train", "test", "extra"}
        np.testing.assert_array_equal(f["extra/labels"][:], svhn["extra"][1])
    with np.load(ds.to_npz(tmp_path / "s.npz")) as z:
        assert set(z.files) == {"x_train", "y_train", "x_test", "y_test", "x_extra", "y_extra"}
    with pytest.raises(OptionError, match="format='hdf5'"):
        dlsets.load_svhn(extra=True, format="hdf5")
    with pytest.raises(OptionError, match=r"svhn has no extra split 'unlabeled'; use one of "
                                          r"\['extra'\]"):
        dlsets.load("svhn", extra="unlabeled")
    with pytest.raises(OptionError, match="mnist has no extra split 'extra'; it has train and"):
        dlsets.load("mnist", extra="extra")


def _write(tmp_path, name, mdict, **kw):
    p = tmp_path / name
    scipy.io.savemat(p, mdict, format="5", **kw)
    return p


def test_reader_checks_variables_before_loading_them(tmp_path):
    x = np.zeros((32, 32, 3, 4), np.uint8)
    y = np.ones((4, 1))
    cases = [
        ({"X": x.astype(np.float64), "y": y}, "X is double"),
        ({"X": np.zeros((28, 28, 3, 4), np.uint8), "y": y}, r"expected uint8 \(32, 32, 3, N\)"),
        ({"X": x, "y": np.ones((3, 1))}, r"y has shape \(3, 1\), expected \(4, 1\)"),
        ({"X": x}, "needs variables X and y"),
        ({"X": x, "y": np.full((4, 1), 11.0)}, "outside the digits 1..10"),
    ]
    for i, (mdict, match) in enumerate(cases):
        with pytest.raises(FormatError, match=match):
            read_svhn_mat(_write(tmp_path, f"c{i}.mat", mdict))
    p = tmp_path / "junk.mat"
    p.write_bytes(b"MATLAB 5.0 MAT-file" + b"\0" * 200)
    with pytest.raises(FormatError, match="junk.mat"):
        read_svhn_mat(p)


def test_a_header_claiming_more_images_than_the_file_holds_is_refused(tmp_path):
    p = _write(tmp_path, "big.mat", {"X": np.zeros((32, 32, 3, 3), np.uint8),
                                     "y": np.ones((3, 1))}, do_compression=False)
    data = bytearray(p.read_bytes())
    dims = np.array([32, 32, 3, 3], "<i4").tobytes()
    at = data.index(dims)
    data[at:at + 16] = np.array([32, 32, 3, 50_000_000], "<i4").tobytes()  # 150 GB claimed
    ydims = np.array([3, 1], "<i4").tobytes()
    at = data.index(ydims, at + 16)
    data[at:at + 8] = np.array([50_000_000, 1], "<i4").tobytes()
    p.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="claims 50,000,000 images, more than"):
        read_svhn_mat(p)


def test_without_scipy_the_error_names_the_extra(tmp_path, monkeypatch):
    p = tmp_path / "t.mat"
    p.write_bytes(formats.svhn_mat(*_digits(2)))
    monkeypatch.setitem(sys.modules, "scipy.io", None)  # as if scipy were not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'dlsets\[scipy\]'") as e:
        read_svhn_mat(p)
    assert isinstance(e.value, ImportError) and isinstance(e.value, dlsets.DlsetsError)


def test_a_user_entry_like_svhn_gets_the_extra_split_when_it_lists_its_file(tmp_path,
                                                                             monkeypatch):
    import hashlib
    import json

    from dlsets.sources import registry
    from dlsets.sources.acquire import fetch

    src = tmp_path / "src"
    src.mkdir()
    data = {"train": _digits(5), "test": _digits(3), "extra": _digits(4)}
    files = {}
    for s, xy in data.items():
        body = formats.svhn_mat(*xy)
        (src / f"{s}_32x32.mat").write_bytes(body)
        files[f"{s}_32x32.mat"] = {"sha256": hashlib.sha256(body).hexdigest(),
                                   "urls": ["http://127.0.0.1:9/x"]}
    reg = tmp_path / "reg.json"
    reg.write_text(json.dumps({
        "my-svhn": {"like": "svhn", "files": files},
        "my-svhn-small": {"like": "svhn", "files": {k: files[k] for k in
                                                    ("train_32x32.mat", "test_32x32.mat")}}}))
    monkeypatch.setenv("DLSETS_REGISTRY", str(reg))
    assert registry.get("my-svhn").file_sets == (("train_32x32.mat", "test_32x32.mat"),)
    assert list(registry.get("my-svhn").extra_splits) == ["extra"]
    assert registry.get("my-svhn-small").extra_splits == {}
    fetch("my-svhn", source_dir=src)
    fetch("my-svhn", files=["extra_32x32.mat"], source_dir=src)
    ds = dlsets.load("my-svhn", extra=True, download=False)
    np.testing.assert_array_equal(ds["extra"].labels, data["extra"][1])
    with pytest.raises(OptionError, match="my-svhn-small has no extra split 'extra'"):
        dlsets.load("my-svhn-small", extra="extra")


def test_cli_export_with_the_extra_split(svhn, tmp_path, capsys):
    from dlsets.cli import main

    out = tmp_path / "svhn.npz"
    assert main(["-q", "export", "svhn", "--extra", "extra", "--out", str(out)]) == 0
    with np.load(out) as z:
        np.testing.assert_array_equal(z["y_extra"], svhn["extra"][1])
    assert main(["export", "svhn", "--extra", "extras", "--out", str(out)]) == 1
    assert "svhn has no extra split 'extras'; use one of ['extra']" in capsys.readouterr().err


def test_registry_entry():
    from dlsets.sources import registry

    spec = registry._builtin()["svhn"]
    assert spec.file_sets == (("train_32x32.mat", "test_32x32.mat"),)
    assert spec.extra_splits["extra"].files == ("extra_32x32.mat",)
    facts = {f: (s.size, s.md5, s.sha256[:8]) for f, s in spec.files.items()}
    assert facts == {"train_32x32.mat": (182040794, "e26dedcc434d2e4c54c9b2d4a06d8373", "435e94d6"),
                     "test_32x32.mat": (64275384, "eb5a983be6a315427106f1b164d9cef3", "cdce80df"),
                     "extra_32x32.mat": (1329278602, "a93ce644f1a588dc4d68dda5feec44a7",
                                         "a133a4be")}
