"""STL-10: 96x96x3 column-major planes in a streamed tar.gz, folds, the unlabeled split."""

import io
import tarfile

import h5py
import numpy as np
import pytest

import dlsets
from dlsets.errors import FormatError, OptionError, UnsafeArchiveError
from dlsets.formats.stl10 import read_stl10_tar
from dlsets.store import prepared
from dlsets.store.cache import prepared_dir
from tests import formats
from tests.served import serve_builtin

RNG = np.random.default_rng(10)
CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


def _data(n_train=20, n_test=10, n_unlabeled=6):
    def images(n):
        return RNG.integers(0, 256, (n, 96, 96, 3), dtype=np.uint8)

    folds = [RNG.permutation(n_train)[:4] for _ in range(10)]
    return (images(n_train), (np.arange(n_train) % 10).astype(np.uint8), images(n_test),
            (np.arange(n_test)[::-1] % 10).astype(np.uint8), images(n_unlabeled), folds, CLASSES)


@pytest.fixture
def stl10(server, monkeypatch):
    data = _data()
    serve_builtin(monkeypatch, server, "stl10", {"stl10_binary.tar.gz": formats.stl10_tar(*data)})
    return data


def test_train_test_and_folds(stl10):
    x_tr, y_tr, x_te, y_te, _, folds, _ = stl10
    (a, b), (c, d) = dlsets.load_stl10()
    np.testing.assert_array_equal(a, x_tr)  # column-major planes turned into NHWC
    np.testing.assert_array_equal(b, y_tr)  # 1..10 on disk
    np.testing.assert_array_equal(c, x_te)
    np.testing.assert_array_equal(d, y_te)
    ds = dlsets.load("stl10")
    np.testing.assert_array_equal(ds.info["folds"], np.stack(folds))
    assert ds.classes == tuple(CLASSES) and ds.split_names == ("train", "test")
    (f3x, f3y), _ = dlsets.load_stl10(fold=3)
    np.testing.assert_array_equal(f3x, x_tr[folds[3]])
    np.testing.assert_array_equal(f3y, y_tr[folds[3]])
    # unlabeled is not prepared until asked for
    assert "unlabeled_images" not in prepared.read_manifest(prepared_dir("stl10"))["arrays"]
    with pytest.raises(OptionError, match=r"fold=10 is not valid; use None or one of \[0, 1,"):
        dlsets.load_stl10(fold=10)


def test_unlabeled_split_has_no_labels_everywhere(stl10, tmp_path):
    x_un = stl10[4]
    (_, _), (_, _), u = dlsets.load_stl10(unlabeled=True)
    np.testing.assert_array_equal(u, x_un)
    ds = dlsets.load("stl10", extra=True)
    assert ds.split_names == ("train", "test", "unlabeled")
    assert ds.unlabeled.labels is None and len(ds.unlabeled) == len(x_un)
    assert ds.info["splits"]["unlabeled"]["labels_shape"] is None
    with h5py.File(ds.to_hdf5(tmp_path / "stl.h5"), "r") as f:
        assert set(f["unlabeled"]) == {"images"} and f["unlabeled/images"].shape == x_un.shape
    with np.load(ds.to_npz(tmp_path / "stl.npz")) as z:
        assert "x_unlabeled" in z.files and "y_unlabeled" not in z.files
    with dlsets.load("stl10", extra=True, format="hdf5", channels="first") as h5:
        assert h5.unlabeled.labels is None
        np.testing.assert_array_equal(h5.unlabeled.images[:2], x_un[:2].transpose(0, 3, 1, 2))
    with pytest.raises(OptionError, match=r"no extra split 'extra'; use one of \['unlabeled'\]"):
        dlsets.load("stl10", extra=["extra"])


def _tar_path(tmp_path, body, name="stl10_binary.tar.gz"):
    p = tmp_path / name
    p.write_bytes(body)
    return p


def test_reading_stops_before_an_unlabeled_member_it_does_not_need(tmp_path):
    body = formats.stl10_tar(*_data(n_unlabeled=40))  # unlabeled_X.bin is the last member
    cut = _tar_path(tmp_path, body[: len(body) - len(body) // 4])  # truncated inside it
    got = read_stl10_tar(cut)
    assert got.x_unlabeled is None and len(got.x_train) == 20
    with pytest.raises(FormatError, match="damaged or truncated"):
        read_stl10_tar(cut, unlabeled=True)


def test_members_in_any_order(tmp_path):
    data = _data()
    order = ["unlabeled_X.bin", "train_y.bin", "fold_indices.txt", "train_X.bin",
             "class_names.txt", "test_y.bin", "test_X.bin"]
    got = read_stl10_tar(_tar_path(tmp_path, formats.stl10_tar(*data, order=order)),
                         unlabeled=True)
    np.testing.assert_array_equal(got.x_test, data[2])
    np.testing.assert_array_equal(got.x_unlabeled, data[4])


def _tar_gz(add) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        add(tf)
    return buf.getvalue()


def _member(tf, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def test_unsafe_and_damaged_archives(tmp_path):
    def link(tf):
        info = tarfile.TarInfo("stl10_binary/train_X.bin")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)

    with pytest.raises(UnsafeArchiveError, match="is a link"):
        read_stl10_tar(_tar_path(tmp_path, _tar_gz(link)))
    with pytest.raises(UnsafeArchiveError, match=r"'\.\.'"):
        read_stl10_tar(_tar_path(tmp_path, _tar_gz(
            lambda tf: _member(tf, "../train_X.bin", b"x"))))
    with pytest.raises(FormatError, match="not a whole number of 27648-byte"):
        read_stl10_tar(_tar_path(tmp_path, _tar_gz(
            lambda tf: _member(tf, "stl10_binary/train_X.bin", b"\0" * 1000))))
    with pytest.raises(FormatError, match="labels run 0..0, expected 1..10"):
        read_stl10_tar(_tar_path(tmp_path, _tar_gz(
            lambda tf: _member(tf, "stl10_binary/test_y.bin", b"\0" * 3))))
    with pytest.raises(FormatError, match="no member fold_indices.txt"):
        body = formats.stl10_tar(*_data(), order=["train_X.bin", "train_y.bin", "test_X.bin",
                                                  "test_y.bin", "class_names.txt"])
        read_stl10_tar(_tar_path(tmp_path, body))
    data = list(_data())
    data[5] = [[0, 1], [2, 99]]  # a fold naming a train image that does not exist
    with pytest.raises(FormatError, match=r"indices outside 0..19"):
        read_stl10_tar(_tar_path(tmp_path, formats.stl10_tar(*data)))
    with pytest.raises(FormatError, match="damaged or truncated"):
        read_stl10_tar(_tar_path(tmp_path, b"not a gzip stream at all"))


def test_a_member_claiming_more_than_the_archive_can_inflate_to_is_refused(tmp_path):
    body = formats.stl10_tar(*_data())
    with pytest.raises(FormatError, match="more than a 10-byte archive can hold"):
        read_stl10_tar(io.BytesIO(body), compressed_size=10, name="stl10_binary.tar.gz")


def test_registry_entry():
    from dlsets.sources import registry

    spec = registry._builtin()["stl10"]
    f = spec.files["stl10_binary.tar.gz"]
    assert (f.size, f.md5) == (2640397119, "91f7769df0f17e558f3565bffb0c7dfb")
    assert f.sha256 == "f31fd99273a1acb8609c8db427cebb1de3f71de77758cdc0e22956e1289b9866"
    assert spec.classes == tuple(CLASSES) and not spec.extra_splits["unlabeled"].labelled
