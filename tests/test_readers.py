"""Format readers against small fixtures written in each real format."""

import gzip
import io
import pickle
import struct

import numpy as np
import pytest

from dlsets.errors import FormatError, UnsafePickleError
from dlsets.formats import cifar, idx, notmnist, npz, unpickle
from tests import formats, hostile

RNG = np.random.default_rng(7)


# --- IDX --------------------------------------------------------------------------------


def _values(dtype, shape):
    if np.dtype(dtype).kind == "f":
        return (RNG.standard_normal(shape) * 1000).astype(dtype)
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)


@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8"])
@pytest.mark.parametrize("gz", [False, True])
def test_idx_every_type_code(dtype, gz, tmp_path):
    a = _values(dtype, (7, 5, 3))
    data = formats.idx_gz_bytes(a) if gz else formats.idx_bytes(a)
    path = tmp_path / "x.idx"
    path.write_bytes(data)
    for source in (data, path, io.BytesIO(data)):
        got = idx.read_idx(source)
        assert got.shape == a.shape
        assert got.dtype == a.dtype.newbyteorder("=") and got.dtype.isnative
        np.testing.assert_array_equal(got, a)


def test_idx_header_codes_match_the_spec():
    a = np.zeros((2, 2), ">i4")
    raw = formats.idx_bytes(a)
    assert raw[:4] == b"\x00\x00\x0c\x02"
    assert idx.TYPE_CODES[0x0C] == np.dtype(">i4")


def test_idx_labels_one_dimension():
    y = RNG.integers(0, 10, 1000).astype(np.uint8)
    np.testing.assert_array_equal(idx.read_idx(formats.idx_gz_bytes(y)), y)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("delta", [-5, +3])
def test_idx_length_mismatch_names_file_and_lengths(gz, delta):
    a = _values(">i2", (4, 6))
    raw = formats.idx_bytes(a)
    bad = raw[:delta] if delta < 0 else raw + b"\x00" * delta
    data = gzip.compress(bad) if gz else bad
    with pytest.raises(FormatError) as exc:
        idx.read_idx(data, name="broken-idx3-ubyte.gz")
    msg = str(exc.value)
    assert "broken-idx3-ubyte.gz" in msg
    assert str(len(raw)) in msg and str(len(bad)) in msg


@pytest.mark.parametrize("dims", [(0xFFFFFFFF,) * 3, (0xFFFFFFFF, 0xFFFFFF)])
def test_idx_absurd_header_shape_is_a_format_error(dims):
    """A damaged header claiming petabytes failed with numpy's ValueError / MemoryError."""
    data = b"\x00\x00\x08" + bytes([len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + bytes(9)
    with pytest.raises(FormatError, match="x.idx.*damaged"):
        idx.read_idx(data, name="x.idx")


def test_idx_bad_magic_and_type():
    with pytest.raises(FormatError, match="not an IDX file"):
        idx.read_idx(b"\x01\x02\x08\x01\x00\x00\x00\x01x", name="f")
    with pytest.raises(FormatError, match="unknown IDX type code 0x0A"):
        idx.read_idx(b"\x00\x00\x0a\x01\x00\x00\x00\x01x", name="f")
    with pytest.raises(FormatError, match="dimensions"):
        idx.read_idx(b"\x00\x00\x08\x03\x00\x00", name="f")


def test_idx_truncated_gzip_is_a_format_error():
    data = formats.idx_gz_bytes(_values("u1", (50, 28, 28)))
    with pytest.raises(FormatError, match="f.gz"):
        idx.read_idx(data[: len(data) - 40], name="f.gz")


def test_idx_multi_member_gzip():
    a = _values("u1", (10, 8))
    raw = formats.idx_bytes(a)
    data = gzip.compress(raw[:30]) + gzip.compress(raw[30:])
    np.testing.assert_array_equal(idx.read_idx(data), a)


def test_idx_gzip_with_zero_padding_reads_like_gzip_module():
    """gzip.open skips zero bytes after a member; this reader said "cannot be decompressed"."""
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    padded = formats.idx_gz_bytes(a) + bytes(3000)
    assert gzip.GzipFile(fileobj=io.BytesIO(padded)).read() == formats.idx_bytes(a)
    np.testing.assert_array_equal(idx.read_idx(padded), a)
    # Padding between members too, as gzip.GzipFile allows.
    raw = formats.idx_bytes(a)
    members = gzip.compress(raw[:10]) + bytes(7) + gzip.compress(raw[10:]) + bytes(5)
    assert gzip.GzipFile(fileobj=io.BytesIO(members)).read() == raw
    np.testing.assert_array_equal(idx.read_idx(members), a)


def test_idx_gzip_is_read_once_in_pieces():
    """Streaming: the compressed file is read in bounded pieces, front to back, once."""
    a = _values("u1", (3000, 28, 28))
    data = formats.idx_gz_bytes(a)

    class Counting(io.BytesIO):
        reads = []

        def read(self, n=-1):
            self.reads.append(n)
            return super().read(n)

    f = Counting(data)
    np.testing.assert_array_equal(idx.read_idx(f), a)
    assert all(0 < n <= 1 << 20 for n in f.reads)
    assert f.tell() == len(data)


# --- restricted unpickler ----------------------------------------------------------------


class _System:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        import os

        return (os.system, (self.cmd,))


class _Open:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_unpickle_refuses_os_system_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    data = pickle.dumps({"data": _System(f"touch {marker}")}, protocol=2)
    with pytest.raises(UnsafePickleError) as exc:
        unpickle.restricted_loads(data, name="data_batch_1")
    assert "system" in str(exc.value) and "data_batch_1" in str(exc.value)
    assert not marker.exists()
    # The same bytes really would run the command under plain pickle: the test is not vacuous.
    pickle.loads(data)
    assert marker.exists()


def test_unpickle_refuses_builtins_that_create_files(tmp_path):
    target = tmp_path / "created.txt"
    data = pickle.dumps([_Open(str(target))], protocol=0)
    with pytest.raises(UnsafePickleError, match="open"):
        unpickle.restricted_loads(data)
    assert not target.exists()


@pytest.mark.parametrize("module,name", [("builtins", "eval"), ("__builtin__", "getattr"),
                                         ("posix", "system"), ("numpy", "load"),
                                         ("numpy.core.multiarray", "scalar")])
def test_unpickle_refuses_other_globals(module, name):
    data = f"c{module}\n{name}\n(S'1+1'\ntR.".encode()
    with pytest.raises(UnsafePickleError) as exc:
        unpickle.restricted_loads(data)
    assert f"{module}.{name}" in str(exc.value)


def test_unpickle_python2_protocol0_text_pickle():
    """cPickle.dumps(d) with Python 2's default protocol 0: text opcodes, py2 str as S'...'."""
    data = (b"(dp0\nS'data'\np1\ncnumpy.core.multiarray\n_reconstruct\np2\n(cnumpy\nndarray\n"
            b"p3\n(I0\ntp4\nS'b'\np5\ntp6\nRp7\n(I1\n(I2\nI3\ntp8\ncnumpy\ndtype\np9\n"
            b"(S'u1'\np10\nI0\nI1\ntp11\nRp12\n(I3\nS'|'\np13\nNNNI-1\nI-1\nI0\ntp14\nbI00\n"
            b"S'\\x00\\x01\\x02\\x03\\x04\\x05'\np15\ntp16\nbsS'labels'\np17\n(lp18\nI1\naI2\n"
            b"as.")
    for encoding, key in (("bytes", b"data"), ("latin1", "data")):
        got = unpickle.restricted_loads(data, encoding=encoding)
        np.testing.assert_array_equal(got[key], np.arange(6, dtype=np.uint8).reshape(2, 3))


class _Encode:
    def __init__(self, *args):
        self.args = args

    def __reduce__(self):
        import _codecs

        return (_codecs.encode, self.args)


@pytest.mark.parametrize("args", [("x", "rot13"), (b"x", "zlib_codec"), (["x"], "latin1")])
def test_unpickle_admits_codecs_encode_for_latin1_text_only(args):
    with pytest.raises(UnsafePickleError, match="_codecs.encode"):
        unpickle.restricted_loads(pickle.dumps([_Encode(*args)], protocol=2))


def test_unpickle_refuses_bytearray_memory_bomb():
    """bytearray was admitted: a 40-byte pickle could make it zero-fill any amount of memory."""
    with pytest.raises(UnsafePickleError, match="bytearray"):
        unpickle.restricted_loads(b"cbuiltins\nbytearray\n(I10000000000000\ntR.")


def test_unpickle_impossible_array_is_a_format_error():
    data = (b"cnumpy.core.multiarray\n_reconstruct\n(cnumpy\nndarray\n(I1152921504606846976\ntS'b'"
            b"\ntR.")
    with pytest.raises(FormatError, match="data_batch_1.*memory"):
        unpickle.restricted_loads(data, name="data_batch_1")


def test_unpickle_garbage_is_a_format_error():
    with pytest.raises(FormatError):
        unpickle.restricted_loads(b"\x80\x02}q\x01(U")


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4])
def test_unpickle_accepts_numpy_arrays_from_python3(protocol):
    """Under protocols 0-2 Python 3 writes the array's bytes as _codecs.encode(s, 'latin1')."""
    a = RNG.integers(0, 255, (4, 6)).astype(np.uint8)
    obj = {"data": a, "labels": [1, 2, 3, 4], "t": (1, 2), "s": {3}}
    data = pickle.dumps(obj, protocol=protocol)
    got = unpickle.restricted_loads(data)
    np.testing.assert_array_equal(got["data"], a)
    assert got["labels"] == [1, 2, 3, 4] and got["t"] == (1, 2) and got["s"] == {3}


# --- CIFAR -------------------------------------------------------------------------------

C10 = [f"class{i}" for i in range(10)]
C100 = [f"fine{i}" for i in range(100)]
C20 = [f"coarse{i}" for i in range(20)]


def _cifar_data(n_train=23, n_test=9, n_classes=10):
    x_tr = RNG.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8)
    x_te = RNG.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8)
    y_tr = RNG.integers(0, n_classes, n_train).astype(np.uint8)
    y_te = RNG.integers(0, n_classes, n_test).astype(np.uint8)
    return x_tr, y_tr, x_te, y_te


def test_cifar_planes_are_r_then_g_then_b():
    img = np.zeros((1, 32, 32, 3), np.uint8)
    img[0, 0, 1] = (10, 20, 30)  # row 0, column 1
    row = formats.cifar_pixels(img)[0]
    assert (row[1], row[1024 + 1], row[2048 + 1]) == (10, 20, 30)
    np.testing.assert_array_equal(cifar.planes_to_nhwc(row[None]), img)


@pytest.mark.parametrize("encoding", ["bytes", "latin1"])
def test_cifar10_python_tarball_both_encodings(encoding):
    x_tr, y_tr, x_te, y_te = _cifar_data()
    data = formats.cifar10_python_tar(x_tr, y_tr, x_te, y_te, C10)
    got = cifar.read_cifar_tar(io.BytesIO(data), coarse=False, encoding=encoding)
    np.testing.assert_array_equal(got.x_train, x_tr)
    np.testing.assert_array_equal(got.y_train, y_tr)
    np.testing.assert_array_equal(got.x_test, x_te)
    np.testing.assert_array_equal(got.y_test, y_te)
    assert got.y_train.dtype == np.uint8 and got.y_train.shape == (len(x_tr),)
    assert got.classes == C10


def test_cifar10_python_batches_are_joined_in_numeric_order():
    x_tr, y_tr, x_te, y_te = _cifar_data(n_train=60)
    data = formats.cifar10_python_tar(x_tr, y_tr, x_te, y_te, C10, batches=12)
    got = cifar.read_cifar_tar(io.BytesIO(data), coarse=False)
    np.testing.assert_array_equal(got.x_train, x_tr)  # data_batch_10 after data_batch_9


def test_py2_fixture_really_is_a_python2_pickle():
    data = formats.py2_pickle({"data": np.zeros((1, 3), np.uint8), "labels": [1]})
    assert data[:2] == b"\x80\x02"
    raw_keys = pickle.loads(data, encoding="bytes")
    assert set(raw_keys) == {b"data", b"labels"}
    assert set(pickle.loads(data, encoding="latin1")) == {"data", "labels"}


@pytest.mark.parametrize("encoding", ["bytes", "latin1"])
def test_cifar100_python_tarball(encoding):
    x_tr, y_tr, x_te, y_te = _cifar_data(n_classes=100)
    c_tr, c_te = (y_tr // 5).astype(np.uint8), (y_te // 5).astype(np.uint8)
    data = formats.cifar100_python_tar(x_tr, y_tr, c_tr, x_te, y_te, c_te, C100, C20)
    got = cifar.read_cifar_tar(io.BytesIO(data), coarse=True, encoding=encoding)
    np.testing.assert_array_equal(got.x_train, x_tr)
    np.testing.assert_array_equal(got.y_train, y_tr)
    np.testing.assert_array_equal(got.coarse_train, c_tr)
    np.testing.assert_array_equal(got.x_test, x_te)
    np.testing.assert_array_equal(got.y_test, y_te)
    np.testing.assert_array_equal(got.coarse_test, c_te)
    assert got.classes == C100 and got.coarse_classes == C20


def test_cifar10_binary_tarball():
    x_tr, y_tr, x_te, y_te = _cifar_data()
    data = formats.cifar10_binary_tar(x_tr, y_tr, x_te, y_te, C10)
    got = cifar.read_cifar_tar(io.BytesIO(data), coarse=False)
    np.testing.assert_array_equal(got.x_train, x_tr)
    np.testing.assert_array_equal(got.y_train, y_tr)
    np.testing.assert_array_equal(got.x_test, x_te)
    np.testing.assert_array_equal(got.y_test, y_te)
    assert got.classes == C10


def test_cifar100_binary_tarball():
    x_tr, y_tr, x_te, y_te = _cifar_data(n_classes=100)
    c_tr, c_te = (y_tr % 20).astype(np.uint8), (y_te % 20).astype(np.uint8)
    data = formats.cifar100_binary_tar(x_tr, y_tr, c_tr, x_te, y_te, c_te, C100, C20)
    got = cifar.read_cifar_tar(io.BytesIO(data), coarse=True)
    np.testing.assert_array_equal(got.x_train, x_tr)
    np.testing.assert_array_equal(got.y_train, y_tr)
    np.testing.assert_array_equal(got.coarse_train, c_tr)
    np.testing.assert_array_equal(got.y_test, y_te)
    np.testing.assert_array_equal(got.coarse_test, c_te)
    assert got.classes == C100 and got.coarse_classes == C20


def test_cifar_binary_partial_record_is_a_format_error():
    with pytest.raises(FormatError, match="3073-byte records"):
        cifar.parse_records(b"\x00" * 3073 * 2 + b"\x01", label_bytes=1, name="data_batch_1.bin")


def test_cifar_python_tarball_with_a_hostile_pickle(tmp_path):
    marker = tmp_path / "pwned"
    x_tr, y_tr, x_te, y_te = _cifar_data()
    evil = pickle.dumps({"data": _System(f"touch {marker}")}, protocol=2)
    good = formats.cifar10_python_tar(x_tr, y_tr, x_te, y_te, C10)
    members = {}
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(good)) as tf:
        for m in tf.getmembers():
            if m.isfile():
                members[m.name] = tf.extractfile(m).read()
    members["cifar-10-batches-py/data_batch_2"] = evil
    with pytest.raises(UnsafePickleError, match="system"):
        cifar.read_cifar_tar(io.BytesIO(formats.tar_gz_bytes(members)), coarse=False)
    assert not marker.exists()


def test_cifar_archive_without_batches_is_a_format_error():
    data = formats.tar_gz_bytes({"cifar-10-batches-py/readme.html": b"x"})
    with pytest.raises(FormatError, match="data_batch"):
        cifar.read_cifar_tar(io.BytesIO(data), coarse=False)


@pytest.mark.parametrize("labels", [[b"a", b"b"], [1.7, 2.2], [None, 1], [[1], [2]], [1, 256]])
def test_cifar_batch_with_odd_labels_is_a_format_error(labels):
    """Text or None labels raised numpy's TypeError; float labels were silently truncated."""
    batch = {b"data": np.zeros((2, cifar.PIXELS), np.uint8), b"labels": labels}
    with pytest.raises(FormatError, match="labels"):
        cifar.parse_batch(batch, name="data_batch_1")


# --- notMNIST ---------------------------------------------------------------------------

LETTERS = list("ABCDEFGHIJ")


def _notmnist_images(per_class=7):
    images = {}
    for c in LETTERS:
        for k in range(per_class):
            images[f"{c}/{c}font{k:02d}.png"] = RNG.integers(0, 256, (28, 28), dtype=np.uint8)
    return images


def test_notmnist_reads_every_png_and_skips_unreadable(tmp_path):
    images = _notmnist_images()
    good = dict(images)
    broken = {"A/broken.png": b"\x89PNG\r\n\x1a\n\x00\x00garbage", "F/empty.png": b"",
              "C/wrong-size.png": formats.png_bytes(np.zeros((10, 12), np.uint8))}
    all_members = {**images, **broken, "readme.txt": b"not an image"}
    data = formats.notmnist_tar(all_members, root="notMNIST_small")
    got = notmnist.read_notmnist_tar(io.BytesIO(data), classes=LETTERS, workers=2)
    assert sorted(got.skipped) == sorted(f"notMNIST_small/{k}" for k in broken)
    x = np.concatenate([got.x_train, got.x_test])
    y = np.concatenate([got.y_train, got.y_test])
    assert x.shape == (len(good), 28, 28) and x.dtype == np.uint8 and y.dtype == np.uint8
    # Every image comes back, once, with the label of its folder.
    expected = {(LETTERS.index(k[0]), img.tobytes()) for k, img in good.items()}
    assert {(int(lab), img.tobytes()) for lab, img in zip(y, x, strict=True)} == expected


def test_notmnist_reading_waits_for_decoding(monkeypatch):
    """Undecoded batches are bounded: reading the stream waits for slow decoders."""
    import threading
    import time

    images = _notmnist_images(per_class=6)
    data = formats.notmnist_tar(images)
    real_decode, name = notmnist._decoder()
    done = []
    lock = threading.Lock()

    def slow_decode(png):
        time.sleep(0.002)
        with lock:
            done.append(1)
        return real_decode(png)

    monkeypatch.setattr(notmnist, "_decoder", lambda: (slow_decode, name))
    monkeypatch.setattr(notmnist, "BATCH", 1)
    read, backlog = [], []

    def on_batch(n):
        read.append(n)
        with lock:
            backlog.append(len(read) - len(done))

    got = notmnist.read_notmnist_tar(io.BytesIO(data), classes=LETTERS, workers=2,
                                     on_batch=on_batch)
    assert len(got.x_train) + len(got.x_test) == len(images) == len(read)
    assert max(backlog) <= 2 * 2 + 1


def test_notmnist_split_is_stratified_deterministic_and_skip_proof():
    images = _notmnist_images(per_class=13)
    data = formats.notmnist_tar(images)
    a = notmnist.read_notmnist_tar(io.BytesIO(data), classes=LETTERS)
    # 13 per class -> (13 + 5) // 10 = 1 test image per class, 12 train.
    assert np.bincount(a.y_test, minlength=10).tolist() == [1] * 10
    assert np.bincount(a.y_train, minlength=10).tolist() == [12] * 10
    # The test image of each class is the one with the lowest hash of "<letter>/<file>".
    for c, letter in enumerate(LETTERS):
        names = [k for k in images if k.startswith(letter + "/")]
        first = min(names, key=notmnist.split_key)
        np.testing.assert_array_equal(a.x_test[a.y_test == c][0], images[first])
    # Same archive under another top folder and in another member order: same split.
    shuffled = dict(reversed(list(images.items())))
    b = notmnist.read_notmnist_tar(
        io.BytesIO(formats.notmnist_tar(shuffled, root="notMNIST_large")), classes=LETTERS)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    # Breaking one training image removes it and moves nothing else across the split.
    victim = next(k for k in images if k.startswith("B/") and
                  not any(np.array_equal(images[k], t) for t in a.x_test))
    damaged = {**images, victim: b"broken"}
    c = notmnist.read_notmnist_tar(io.BytesIO(formats.notmnist_tar(damaged)), classes=LETTERS)
    np.testing.assert_array_equal(a.x_test, c.x_test)
    assert len(c.x_train) == len(a.x_train) - 1
    assert c.skipped == [f"notMNIST_small/{victim}"]


def test_notmnist_test_count_rounds_half_up():
    assert [notmnist.test_count(n) for n in (0, 4, 5, 14, 15, 1872, 1873)] == [
        0, 0, 1, 1, 2, 187, 187]


def test_notmnist_member_outside_letter_folders_is_a_format_error():
    data = formats.notmnist_tar({"K/x.png": np.zeros((28, 28), np.uint8)})
    with pytest.raises(FormatError, match="K/x.png"):
        notmnist.read_notmnist_tar(io.BytesIO(data), classes=LETTERS)


def _pillow_decoder(monkeypatch):
    import sys

    with monkeypatch.context() as m:
        m.setitem(sys.modules, "cv2", None)  # makes "import cv2" fail: pillow is used
        return notmnist._decoder()


def test_notmnist_pillow_and_opencv_agree_on_pixels(monkeypatch):
    """The two decoders dlsets may use (OpenCV when installed, else pillow) give the same
    pixels and reject the same files."""
    cv_decode, cv_name = notmnist._decoder()
    pil_decode, pil_name = _pillow_decoder(monkeypatch)
    assert cv_name.startswith("opencv") and pil_name.startswith("pillow")
    images = [RNG.integers(0, 256, (28, 28), dtype=np.uint8) for _ in range(5)]
    images += [np.zeros((28, 28), np.uint8), np.full((28, 28), 255, np.uint8)]
    pngs = [formats.png_bytes(img) for img in images]
    broken = [b"", b"\x89PNG junk", pngs[0][:40], formats.png_bytes(np.zeros((27, 28), np.uint8))]
    for decode in (cv_decode, pil_decode):
        np.testing.assert_array_equal(decode(pngs[0]), images[0])
        out, ok = notmnist.decode_batch(pngs + broken, (28, 28), decode)
        assert ok.tolist() == [True] * len(pngs) + [False] * len(broken)
        np.testing.assert_array_equal(out[: len(pngs)], np.stack(images))


# --- keras mnist.npz ---------------------------------------------------------------------


def test_mnist_npz(tmp_path):
    x_tr = RNG.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    x_te = RNG.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    y_tr = RNG.integers(0, 10, 12).astype(np.uint8)
    y_te = RNG.integers(0, 10, 5).astype(np.uint8)
    path = tmp_path / "mnist.npz"
    path.write_bytes(formats.mnist_npz_bytes(x_tr, y_tr, x_te, y_te))
    got = npz.read_mnist_npz(path)
    for g, e in zip(got, (x_tr, y_tr, x_te, y_te), strict=True):
        np.testing.assert_array_equal(g, e)
        assert g.dtype == np.uint8


def test_mnist_npz_refuses_pickled_objects_and_missing_keys(tmp_path):
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=np.array([{"a": 1}], dtype=object), y_train=np.zeros(1),
             x_test=np.zeros((1, 2, 2), np.uint8), y_test=np.zeros(1))
    with pytest.raises(FormatError, match="mnist.npz"):
        npz.read_mnist_npz(path)
    np.savez(path, x_train=np.zeros((1, 2, 2), np.uint8))
    with pytest.raises(FormatError, match="missing arrays"):
        npz.read_mnist_npz(path)


def test_notmnist_without_opencv_uses_pillow(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "cv2", None)  # makes "import cv2" fail
    decode, name = notmnist._decoder()
    assert name.startswith("pillow")
    images = _notmnist_images(per_class=2)
    data = formats.notmnist_tar({**images, "B/bad.png": b"\x89PNG\r\n\x1a\nxx"})
    got = notmnist.read_notmnist_tar(io.BytesIO(data), classes=LETTERS)
    assert got.skipped == ["notMNIST_small/B/bad.png"] and got.decoder == name
    x = np.concatenate([got.x_train, got.x_test])
    assert {img.tobytes() for img in x} == {img.tobytes() for img in images.values()}


# --- hostile files: bounded by the format and the layout ---------------------------------


def test_idx_header_claiming_8m_images_fails_before_inflating_them():
    """A 6 MB gzip that really inflates to 8,000,000 MNIST images (6.3 GB): the header is
    checked against the layout, and nothing past it is inflated."""
    from dlsets.formats.limits import Limits

    src = hostile.TrailingMembers(hostile.idx_gz_claiming(8_000_000), copies=0)
    with idx.open_idx(src, name="train-images-idx3-ubyte.gz") as f:
        assert f.shape == (8_000_000, 28, 28)
        with pytest.raises(FormatError, match=r"train-images-idx3-ubyte.gz: declares "
                                              r"8,000,000 images.*at most 1,000,000"):
            Limits((28, 28), layout="an mnist-like dataset").check_shape(f.shape, f.label)
    assert src.consumed < 1 << 20  # of the 6 MB


def test_idx_trailing_gzip_members_are_not_counted():
    """A valid IDX .gz followed by 16 GiB of extra gzip members: the reader stops a megabyte
    past the declared length instead of inflating (and counting) all of it."""
    a = _values("u1", (100, 28, 28))
    src = hostile.TrailingMembers(formats.idx_gz_bytes(a), copies=256)
    assert src.total > 16e6
    with pytest.raises(FormatError, match=r"t10k-images.*says the file is 78416 bytes long, "
                                          r"but it goes on past 1126992 bytes"):
        idx.read_idx(src, name="t10k-images-idx3-ubyte.gz")
    assert src.consumed < 2 << 20


def test_idx_huge_dimensions_are_reported_without_overflow():
    """numpy's int64 product wrapped around: the error printed a wrong byte count."""
    dims = (0xFFFFFFFF,) * 3
    data = gzip.compress(b"\x00\x00\x08\x03" + struct.pack(">3I", *dims))
    with pytest.raises(FormatError) as exc:
        idx.read_idx(data, name="x.idx.gz")
    assert f"{0xFFFFFFFF ** 3:,} bytes" in str(exc.value) and "damaged" in str(exc.value)


def test_cifar_member_bigger_than_a_batch_is_refused_before_reading_it():
    """A 3 MB tar.gz with one 3.2 GB member was buffered whole in memory."""
    data = hostile.tar_gz_with_member("cifar-10-batches-bin/data_batch_1.bin", 3_200_000_000)
    src = hostile.TrailingMembers(data, copies=0)
    with pytest.raises(FormatError, match=r"cifar-10-binary.tar.gz: member 'cifar-10-batches-bin/"
                                          r"data_batch_1.bin' is 3,200,000,000 bytes, more than "
                                          r"the 30,730,000"):
        cifar.read_cifar_tar(src, coarse=False, name="cifar-10-binary.tar.gz")
    assert src.consumed < 1 << 20


def test_cifar_pickle_of_shared_nested_lists_fails_fast():
    """Labels that are lists holding the list below twice, 35 deep: 2**35 items for numpy to
    walk (44 s and 7.9 GB before a MemoryError). Refused by depth, and a shallower one that
    shares its way to 2**24 items by its size."""
    for labels, why in ((hostile.shared_nested_list(35), "nests containers more than 32 deep"),
                        (hostile.shared_nested_list(24), "expands to more than")):
        data = hostile.cifar10_python_tar_with_labels(labels)
        with pytest.raises(FormatError, match=f"c10.tar.gz:data_batch_1: the pickle {why}"):
            cifar.read_cifar_tar(io.BytesIO(data), coarse=False, name="c10.tar.gz")


def test_unpickle_refuses_self_reference_and_arrays_bigger_than_the_pickle():
    loop: list = []
    loop.append(loop)
    with pytest.raises(FormatError, match="b: the pickle holds a container that contains itself"):
        unpickle.restricted_loads(pickle.dumps(loop, protocol=2), name="b")
    fine = {"data": np.zeros((3, 4), np.uint8), "labels": list(range(50))}
    assert unpickle.restricted_loads(pickle.dumps(fine, protocol=2))["labels"] == fine["labels"]


def test_notmnist_png_claiming_a_huge_size_is_skipped_without_decoding():
    bomb = hostile.png_claiming(8000, 8000)  # 280 KB; 64 MB once decoded
    good = formats.png_bytes(np.full((28, 28), 7, np.uint8))
    seen = []

    def decode(data):
        seen.append(len(data))
        return notmnist._decoder()[0](data)

    blank = hostile.png_claiming(28, 28)
    out, ok = notmnist.decode_batch([bomb, good, blank], (28, 28), decode)
    assert ok.tolist() == [False, True, True] and seen == [len(good), len(blank)]
    assert (out[1] == 7).all()


def test_notmnist_member_too_big_for_a_png_is_refused_before_reading_it():
    data = hostile.tar_gz_with_member("notMNIST_small/A/x.png", 3_200_000_000)
    src = hostile.TrailingMembers(data, copies=0)
    with pytest.raises(FormatError, match="notMNIST_small.tar.gz: member 'notMNIST_small/A/x.png'"
                                          " is 3,200,000,000 bytes"):
        notmnist.read_notmnist_tar(src, classes=LETTERS, name="notMNIST_small.tar.gz")
    assert src.consumed < 1 << 20


def test_notmnist_unsafe_member_errors_name_the_file():
    """Read through a file object without a name, the error said 'archive'."""
    from dlsets.errors import UnsafeArchiveError

    data = formats.tar_gz_bytes({"notMNIST_small/A/../../evil.png": b"x"})
    stream = io.BufferedReader(io.BytesIO(data))
    with pytest.raises(UnsafeArchiveError, match=r"^notMNIST_small.tar.gz: member"):
        notmnist.read_notmnist_tar(stream, classes=LETTERS, name="notMNIST_small.tar.gz")


def test_npz_header_claiming_8m_images_fails_before_reading_data(tmp_path):
    from dlsets.formats.limits import Limits

    path = tmp_path / "mnist.npz"
    small = np.zeros((2, 28, 28), np.uint8)
    np.savez(path, x_train=small, y_train=np.zeros(2, np.uint8), x_test=small,
             y_test=np.zeros(2, np.uint8))
    import zipfile

    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}

    def claiming(shape):
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False,
                                                      "shape": shape})
        return header.getvalue() + bytes(1000)

    members["x_train.npy"] = claiming((8_000_000, 28, 28))
    members["y_train.npy"] = claiming((8_000_000,))
    with zipfile.ZipFile(path, "w") as zf:
        for n, d in members.items():
            zf.writestr(n, d)
    with pytest.raises(FormatError, match=r"mnist.npz:x_train: declares 8,000,000 images"):
        npz.read_mnist_npz(path, limits=Limits((28, 28), layout="an mnist-like dataset"))
