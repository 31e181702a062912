"""End to end: fixture files in each real format -> user registry entry -> fetch --from -> load."""

import hashlib
import json
import logging
from pathlib import Path

import h5py
import numpy as np
import pytest

import dlsets
from dlsets.errors import FormatError, OfflineError, OptionError
from dlsets.sources import builtin_prepare as prepare
from dlsets.sources import loaders
from dlsets.sources.acquire import fetch
from dlsets.store import prepared
from dlsets.store.cache import prepared_dir
from tests import formats

RNG = np.random.default_rng(11)
LETTERS = list("ABCDEFGHIJ")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def entry(tmp_path, monkeypatch):
    """entry(name, like, {file: bytes}) -> cache dir: a user dataset imported into the cache."""
    cache_dir = tmp_path / "cache"
    reg = tmp_path / "registry.json"
    entries = {}

    def make(name, like, files, classes=None, *, import_files=True):
        src = tmp_path / f"src-{name}-{len(entries)}"
        src.mkdir()
        spec = {"like": like, "files": {}}
        for fname, data in files.items():
            (src / fname).write_bytes(data)
            spec["files"][fname] = {"sha256": _sha(data), "size": len(data),
                                    "urls": [f"http://127.0.0.1:9/{fname}"]}
        if classes is not None:
            spec["classes"] = classes
        entries[name] = spec
        reg.write_text(json.dumps(entries))
        monkeypatch.setenv("DLSETS_REGISTRY", str(reg))
        if import_files:
            fetch(name, source_dir=src, cache_dir=cache_dir)
        return cache_dir

    return make


def _mnist_like(n_train=40, n_test=15):
    x_tr = RNG.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    x_te = RNG.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    y_tr = RNG.integers(0, 10, n_train).astype(np.uint8)
    y_te = RNG.integers(0, 10, n_test).astype(np.uint8)
    return x_tr, y_tr, x_te, y_te


def _idx_files(x_tr, y_tr, x_te, y_te):
    return {
        "train-images-idx3-ubyte.gz": formats.idx_gz_bytes(x_tr),
        "train-labels-idx1-ubyte.gz": formats.idx_gz_bytes(y_tr),
        "t10k-images-idx3-ubyte.gz": formats.idx_gz_bytes(x_te),
        "t10k-labels-idx1-ubyte.gz": formats.idx_gz_bytes(y_te),
    }


def _assert_split(split, x, y):
    np.testing.assert_array_equal(split.images, x)
    np.testing.assert_array_equal(split.labels, y)
    assert split.images.dtype == np.uint8 and split.labels.dtype == np.uint8
    assert split.labels.shape == (len(x),)


# --- every format, exact pixels and labels ---------------------------------------------------


def test_idx_dataset_end_to_end(entry):
    data = _mnist_like()
    files = _idx_files(*data)
    cache_dir = entry("tiny-mnist", "mnist", files)
    ds = dlsets.load("tiny-mnist", cache_dir=cache_dir)
    x_tr, y_tr, x_te, y_te = data
    _assert_split(ds.train, x_tr, y_tr)
    _assert_split(ds["test"], x_te, y_te)
    assert ds.classes == tuple(str(i) for i in range(10))
    assert ds.info["sources"] == {f: _sha(b) for f, b in files.items()}
    assert ds.info["splits"]["train"]["class_counts"] == {
        str(c): int((y_tr == c).sum()) for c in range(10)}
    assert ds.info["splits"]["test"]["images_shape"] == [len(x_te), 28, 28]
    assert ds.info["skipped"] == [] and ds.info["skipped_count"] == 0
    (a, b), (c, d) = ds.as_tuples()
    np.testing.assert_array_equal(a, x_tr)
    np.testing.assert_array_equal(d, y_te)
    x, y = ds.train
    assert x is ds.train.images and y is ds.train.labels


def test_keras_npz_dataset(entry):
    x_tr, y_tr, x_te, y_te = _mnist_like()
    cache_dir = entry("npz-mnist", "mnist",
                      {"mnist.npz": formats.mnist_npz_bytes(x_tr, y_tr, x_te, y_te)})
    ds = dlsets.load("npz-mnist", cache_dir=cache_dir)
    _assert_split(ds.train, x_tr, y_tr)
    _assert_split(ds.test, x_te, y_te)


@pytest.mark.parametrize("like", ["mnist", "cifar10"])
def test_load_uses_the_file_set_present_and_downloads_nothing(tmp_path, monkeypatch, like):
    """keras' mnist.npz / the CIFAR python tarball imported with --from: load(download=True)
    builds from it and never asks for the first (default) file set, whose URL is dead."""
    if like == "mnist":
        x_tr, y_tr, x_te, y_te = data = _mnist_like()
        first = _idx_files(*data)
        have = {"mnist.npz": formats.mnist_npz_bytes(*data)}
    else:
        x_tr, y_tr, x_te, y_te = data = _cifar(10)
        names = [str(i) for i in range(10)]
        first = {"cifar-10-binary.tar.gz": formats.cifar10_binary_tar(*data, names)}
        have = {"cifar-10-python.tar.gz": formats.cifar10_python_tar(*data, names)}
    from dataclasses import replace

    from dlsets.sources import registry

    # The built-in entry (user entries have one file set), with checksums of these fixtures.
    builtin = registry.get(like)
    assert builtin.file_sets == (tuple(first), tuple(have))
    spec = replace(builtin, files={
        f: registry.FileSpec(f, _sha(b), None, len(b), (f"http://127.0.0.1:9/{f}",))
        for f, b in {**first, **have}.items()})
    real_get = registry.get
    monkeypatch.setattr(registry, "get", lambda n: spec if n == like else real_get(n))
    src = tmp_path / "keras-datasets"
    src.mkdir()
    for f, b in have.items():
        (src / f"renamed-{f}").write_bytes(b)  # recognised by checksum, not by name
    cache_dir = tmp_path / "cache"
    fetch(like, source_dir=src, cache_dir=cache_dir)
    ds = dlsets.load(like, cache_dir=cache_dir)
    _assert_split(ds.train, x_tr, y_tr)
    _assert_split(ds.test, x_te, y_te)
    assert set(ds.info["sources"]) == set(have)


def _cifar(n_classes, n_train=30, n_test=10):
    x_tr = RNG.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8)
    x_te = RNG.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8)
    return (x_tr, RNG.integers(0, n_classes, n_train).astype(np.uint8),
            x_te, RNG.integers(0, n_classes, n_test).astype(np.uint8))


@pytest.mark.parametrize("flavour", ["binary", "python"])
def test_cifar10_dataset(entry, flavour):
    x_tr, y_tr, x_te, y_te = _cifar(10)
    names = [f"c{i}" for i in range(10)]
    writer = formats.cifar10_binary_tar if flavour == "binary" else formats.cifar10_python_tar
    cache_dir = entry("tiny-cifar", "cifar10",
                      {f"cifar-10-{flavour}.tar.gz": writer(x_tr, y_tr, x_te, y_te, names)})
    ds = dlsets.load("tiny-cifar", cache_dir=cache_dir)
    _assert_split(ds.train, x_tr, y_tr)
    _assert_split(ds.test, x_te, y_te)
    assert ds.train.images.shape == (30, 32, 32, 3)
    # Class names come from the archive's meta file (the entry does not name its own).
    assert ds.classes == tuple(names)
    assert ds.info["splits"]["test"]["class_counts"]["c3"] == int((y_te == 3).sum())


def test_user_entry_listing_both_cifar_tarballs_uses_either(entry):
    """Each archive is a complete set on its own (it once raised "too many values to unpack")."""
    data = _cifar(10)
    names = [str(i) for i in range(10)]
    cache_dir = entry("two-tars", "cifar10", {
        "cifar-10-binary.tar.gz": formats.cifar10_binary_tar(*data, names),
        "cifar-10-python.tar.gz": formats.cifar10_python_tar(*data, names)})
    ds = dlsets.load("two-tars", cache_dir=cache_dir)
    assert list(ds.info["sources"]) == ["cifar-10-binary.tar.gz"]
    np.testing.assert_array_equal(ds.train.images, data[0])
    np.testing.assert_array_equal(ds.test.labels, data[3])


def test_two_archives_under_other_names_fail_clearly(entry):
    data = _cifar(10)
    names = [str(i) for i in range(10)]
    cache_dir = entry("two-own-tars", "cifar10", {
        "a.tar.gz": formats.cifar10_binary_tar(*data, names),
        "b.tar.gz": formats.cifar10_python_tar(*data, names)})
    with pytest.raises(FormatError, match="one archive"):
        dlsets.load("two-own-tars", cache_dir=cache_dir)


def test_class_names_given_by_a_user_entry_win(entry):
    data = _cifar(10)
    blob = formats.cifar10_binary_tar(*data, [f"c{i}" for i in range(10)])
    mine = [f"mine{i}" for i in range(10)]
    cache_dir = entry("named-cifar", "cifar10", {"cifar-10-binary.tar.gz": blob}, classes=mine)
    assert dlsets.load("named-cifar", cache_dir=cache_dir).classes == tuple(mine)


@pytest.mark.parametrize("flavour", ["binary", "python"])
def test_cifar100_fine_and_coarse(entry, flavour):
    x_tr, f_tr, x_te, f_te = _cifar(100)
    c_tr, c_te = (f_tr % 20).astype(np.uint8), (f_te % 20).astype(np.uint8)
    writer = formats.cifar100_binary_tar if flavour == "binary" else formats.cifar100_python_tar
    blob = writer(x_tr, f_tr, c_tr, x_te, f_te, c_te, [f"f{i}" for i in range(100)],
                  [f"c{i}" for i in range(20)])
    cache_dir = entry("tiny-c100", "cifar100", {f"cifar-100-{flavour}.tar.gz": blob})
    fine = dlsets.load("tiny-c100", cache_dir=cache_dir)
    _assert_split(fine.train, x_tr, f_tr)
    _assert_split(fine.test, x_te, f_te)
    assert fine.classes == tuple(f"f{i}" for i in range(100))
    coarse = dlsets.load("tiny-c100", cache_dir=cache_dir, label_mode="coarse")
    _assert_split(coarse.train, x_tr, c_tr)
    _assert_split(coarse.test, x_te, c_te)
    assert coarse.classes == tuple(f"c{i}" for i in range(20))
    assert coarse.info["splits"]["train"]["class_counts"]["c0"] == int((c_tr == 0).sum())


def test_notmnist_dataset_reports_skipped_files(entry, capsys):
    images = {f"{c}/{c}{k}.png": RNG.integers(0, 256, (28, 28), dtype=np.uint8)
              for c in LETTERS for k in range(6)}
    broken = {"A/Zm9udC50dGY=.png": b"\x89PNG\r\n\x1a\nbroken", "F/empty.png": b""}
    blob = formats.notmnist_tar({**images, **broken}, root="notMNIST_small")
    cache_dir = entry("tiny-notmnist", "notmnist-small", {"notMNIST_small.tar.gz": blob})
    ds = dlsets.load("tiny-notmnist", cache_dir=cache_dir)
    x = np.concatenate([ds.train.images, ds.test.images])
    y = np.concatenate([ds.train.labels, ds.test.labels])
    assert {(int(a), b.tobytes()) for a, b in zip(y, x, strict=True)} == {
        (LETTERS.index(k[0]), v.tobytes()) for k, v in images.items()}
    assert sorted(ds.info["skipped"]) == sorted(f"notMNIST_small/{k}" for k in broken)
    assert ds.info["skipped_count"] == 2
    assert ds.info["sources"] == {"notMNIST_small.tar.gz": _sha(blob)}
    # 6 per class -> 1 test image per class: stratified.
    assert np.bincount(ds.test.labels, minlength=10).tolist() == [1] * 10
    info = loaders.prepared_info("tiny-notmnist", cache_dir=cache_dir)
    assert info["skipped"] == ds.info["skipped"]
    assert info["splits"]["train"]["class_counts"] == {c: 5 for c in LETTERS}
    # ... and `dlsets info` prints them from prepared_info (the keys the CLI reads exist).
    from dlsets import cli

    assert cli.main(["info", "tiny-notmnist", "--cache-dir", str(cache_dir)]) == 0
    out = capsys.readouterr().out
    assert "train: images (50, 28, 28), labels (50,)" in out
    assert "test: images (10, 28, 28), labels (10,)" in out
    assert "skipped 2 unreadable image(s)" in out
    assert all(f"notMNIST_small/{k}" in out for k in broken)


# --- options -----------------------------------------------------------------------------


@pytest.fixture
def mnist_ds(entry):
    data = _mnist_like()
    return entry("tiny-mnist", "mnist", _idx_files(*data)), data


@pytest.fixture
def cifar_ds(entry):
    data = _cifar(10)
    blob = formats.cifar10_binary_tar(*data, [str(i) for i in range(10)])
    return entry("tiny-cifar", "cifar10", {"cifar-10-binary.tar.gz": blob}), data


def test_float32_scales_to_unit_range(mnist_ds):
    cache_dir, (x_tr, *_rest) = mnist_ds
    ds = dlsets.load("tiny-mnist", cache_dir=cache_dir, dtype="float32")
    assert ds.train.images.dtype == np.float32
    np.testing.assert_allclose(ds.train.images, x_tr.astype(np.float32) / 255, rtol=1e-7)
    assert ds.train.images.min() >= 0 and ds.train.images.max() <= 1
    assert ds.train.labels.dtype == np.uint8
    assert ds.info["dtype"] == "float32"


@pytest.mark.parametrize("channels,shape", [(None, (40, 28, 28)), ("last", (40, 28, 28, 1)),
                                            ("first", (40, 1, 28, 28))])
def test_channels_greyscale(mnist_ds, channels, shape):
    cache_dir, (x_tr, *_rest) = mnist_ds
    x = dlsets.load("tiny-mnist", cache_dir=cache_dir, channels=channels).train.images
    assert x.shape == shape
    np.testing.assert_array_equal(x.reshape(40, 28, 28), x_tr)


@pytest.mark.parametrize("channels", [None, "last", "first"])
def test_channels_colour(cifar_ds, channels):
    cache_dir, (x_tr, *_rest) = cifar_ds
    x = dlsets.load("tiny-cifar", cache_dir=cache_dir, channels=channels,
                    dtype="float32").train.images
    expected = x_tr.transpose(0, 3, 1, 2) if channels == "first" else x_tr
    assert x.shape == expected.shape and x.flags.c_contiguous
    np.testing.assert_allclose(x, expected / np.float32(255), rtol=1e-6)


@pytest.mark.parametrize("option,value", [("dtype", "float64"), ("channels", "middle"),
                                          ("format", "parquet"), ("label_mode", "medium")])
def test_bad_options_list_the_valid_ones(option, value):
    with pytest.raises(OptionError) as exc:
        dlsets.load("mnist", **{option: value})
    assert repr(value) in str(exc.value)
    valid = {"dtype": "float32", "channels": "first", "format": "hdf5", "label_mode": "coarse"}
    assert valid[option] in str(exc.value)


def test_coarse_labels_only_for_cifar100():
    with pytest.raises(OptionError, match="coarse"):
        dlsets.load("mnist", label_mode="coarse")
    with pytest.raises(OptionError, match="'small', 'large'"):
        dlsets.load_notmnist("medium")


# --- prepared cache ----------------------------------------------------------------------


def test_warm_load_uses_prepared_arrays_without_sources(mnist_ds):
    cache_dir, (x_tr, y_tr, x_te, y_te) = mnist_ds
    dlsets.load("tiny-mnist", cache_dir=cache_dir)
    folder = prepared_dir("tiny-mnist", cache_dir)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["arrays"]["train_images"]["shape"] == [40, 28, 28]
    for f in (cache_dir / "tiny-mnist" / "files").iterdir():
        f.unlink()
    ds = dlsets.load("tiny-mnist", cache_dir=cache_dir, download=False)
    _assert_split(ds.train, x_tr, y_tr)
    _assert_split(ds.test, x_te, y_te)


def _break_truncate(folder):
    p = folder / "train_images.npy"
    p.write_bytes(p.read_bytes()[:-100])


def _break_manifest_missing(folder):
    (folder / "manifest.json").unlink()


def _break_manifest_garbage(folder):
    (folder / "manifest.json").write_text("{not json")


def _break_shape(folder):
    # Same byte size, other shape: only the header check can notice.
    np.save(folder / "test_images.npy", np.zeros((15, 784), np.uint8))


def _break_array_missing(folder):
    (folder / "test_labels.npy").unlink()


def _break_swapped(folder):
    # A complete, valid .npy of the wrong array (a writer died between renames).
    (folder / "train_labels.npy").write_bytes((folder / "test_labels.npy").read_bytes())


@pytest.mark.parametrize("breaker", [_break_truncate, _break_manifest_missing,
                                     _break_manifest_garbage, _break_shape,
                                     _break_array_missing, _break_swapped])
def test_damaged_prepared_copy_is_rebuilt(mnist_ds, breaker):
    cache_dir, (x_tr, y_tr, x_te, y_te) = mnist_ds
    dlsets.load("tiny-mnist", cache_dir=cache_dir)
    folder = prepared_dir("tiny-mnist", cache_dir)
    breaker(folder)
    if breaker in (_break_manifest_missing, _break_manifest_garbage):
        assert loaders.prepared_info("tiny-mnist", cache_dir=cache_dir) is None
    ds = dlsets.load("tiny-mnist", cache_dir=cache_dir, download=False)
    _assert_split(ds.train, x_tr, y_tr)
    _assert_split(ds.test, x_te, y_te)
    assert prepared.open_arrays(folder, prepared.read_manifest(folder)) is not None


def _overwrite_inside(path, n=10, value=None):
    """Overwrite n bytes at the end of ``path`` (array data, after the header): same size."""
    data = bytearray(path.read_bytes())
    size = len(data)
    for i in range(size - n, size):
        data[i] = value if value is not None else 255 - data[i]
    path.write_bytes(bytes(data))
    assert path.stat().st_size == size


def _damage_warnings(caplog):
    return [r for r in caplog.records
            if r.levelno >= logging.WARNING and "damaged" in r.getMessage()]


def test_same_size_label_corruption_is_detected_on_load_and_rebuilt(mnist_ds, caplog):
    """A user overwrote 10 bytes of train_labels.npy: load returned labels up to 120."""
    cache_dir, (x_tr, y_tr, x_te, y_te) = mnist_ds
    dlsets.load("tiny-mnist", cache_dir=cache_dir)
    folder = prepared_dir("tiny-mnist", cache_dir)
    _overwrite_inside(folder / "train_labels.npy", value=120)
    with caplog.at_level(logging.WARNING, logger="dlsets"):
        ds = dlsets.load("tiny-mnist", cache_dir=cache_dir, download=False)
    assert int(ds.train.labels.max()) < 10
    _assert_split(ds.train, x_tr, y_tr)
    _assert_split(ds.test, x_te, y_te)
    [warning] = _damage_warnings(caplog)
    assert "train_labels.npy" in warning.getMessage() and "sha256" in warning.getMessage()
    assert loaders.verify_prepared("tiny-mnist", cache_dir=cache_dir) is None


@pytest.mark.parametrize("breaker", [_break_truncate, _break_shape, _break_swapped])
def test_rebuild_of_a_damaged_copy_is_logged_once(mnist_ds, breaker, caplog):
    """The check before the lock and the one under it both logged the same damage."""
    cache_dir, (x_tr, y_tr, _, _) = mnist_ds
    dlsets.load("tiny-mnist", cache_dir=cache_dir)
    breaker(prepared_dir("tiny-mnist", cache_dir))
    with caplog.at_level(logging.DEBUG, logger="dlsets"):
        ds = dlsets.load("tiny-mnist", cache_dir=cache_dir, download=False)
    _assert_split(ds.train, x_tr, y_tr)
    assert len(_damage_warnings(caplog)) == 1


def test_verify_prepared_finds_same_size_image_corruption(mnist_ds):
    """Images are not hashed on load (too slow); verify_prepared hashes them all."""
    cache_dir, (x_tr, y_tr, x_te, y_te) = mnist_ds
    dlsets.load("tiny-mnist", cache_dir=cache_dir)
    assert loaders.verify_prepared("tiny-mnist", cache_dir=cache_dir) is None
    folder = prepared_dir("tiny-mnist", cache_dir)
    _overwrite_inside(folder / "test_images.npy")
    msg = loaders.verify_prepared("tiny-mnist", cache_dir=cache_dir, repair=False)
    assert "test_images.npy" in msg and "sha256" in msg and "not repaired" in msg
    assert (folder / "test_images.npy").exists() and (folder / prepared.MANIFEST).exists()
    msg = loaders.verify_prepared("tiny-mnist", cache_dir=cache_dir)
    assert "test_images.npy" in msg and str(folder) in msg and "deleted" in msg
    assert not folder.exists()
    ds = dlsets.load("tiny-mnist", cache_dir=cache_dir, download=False)
    _assert_split(ds.train, x_tr, y_tr)
    _assert_split(ds.test, x_te, y_te)
    assert loaders.verify_prepared("tiny-mnist", cache_dir=cache_dir) is None


def test_verify_prepared_reports_an_unfinished_or_older_copy(mnist_ds):
    cache_dir, (x_tr, y_tr, _, _) = mnist_ds
    dlsets.load("tiny-mnist", cache_dir=cache_dir)
    folder = prepared_dir("tiny-mnist", cache_dir)
    manifest = json.loads((folder / prepared.MANIFEST).read_text())
    (folder / prepared.MANIFEST).write_text(json.dumps({**manifest, "version": 1}))
    msg = loaders.verify_prepared("tiny-mnist", cache_dir=cache_dir, repair=False)
    assert "version 1" in msg and folder.exists()
    (folder / prepared.MANIFEST).unlink()
    msg = loaders.verify_prepared("tiny-mnist", cache_dir=cache_dir)
    assert "unfinished" in msg and not folder.exists()
    _assert_split(dlsets.load("tiny-mnist", cache_dir=cache_dir, download=False).train,
                  x_tr, y_tr)


def test_verify_prepared_finds_a_damaged_hdf5_variant(cifar_ds):
    cache_dir, (x_tr, y_tr, x_te, y_te) = cifar_ds
    assert loaders.verify_prepared("tiny-cifar", cache_dir=cache_dir) is None  # none yet
    with dlsets.load("tiny-cifar", cache_dir=cache_dir, format="hdf5") as ds:
        path = Path(ds.info["hdf5"])
    assert loaders.verify_prepared("tiny-cifar", cache_dir=cache_dir) is None
    _overwrite_inside(path)
    msg = loaders.verify_prepared("tiny-cifar", cache_dir=cache_dir)
    assert path.name in msg and "deleted" in msg
    assert not path.exists()
    folder = prepared_dir("tiny-cifar", cache_dir)
    assert prepared.read_manifest(folder) is not None  # the arrays were fine: kept
    with dlsets.load("tiny-cifar", cache_dir=cache_dir, format="hdf5") as ds:
        np.testing.assert_array_equal(ds.train.images[:], x_tr)
        np.testing.assert_array_equal(ds.test.labels[:], y_te)
    assert loaders.verify_prepared("tiny-cifar", cache_dir=cache_dir) is None


def test_arrays_rebuilt_by_another_process_while_opening_are_not_mixed(mnist_ds, monkeypatch):
    """Process B reads the manifest, process A rewrites the folder (same shapes, other
    sources), B maps the arrays: B must not hand out A's arrays under its old manifest."""
    cache_dir, (x_tr, y_tr, x_te, y_te) = mnist_ds
    dlsets.load("tiny-mnist", cache_dir=cache_dir)
    folder = prepared_dir("tiny-mnist", cache_dir)
    real_open = prepared.open_arrays
    calls = []

    def open_during_rebuild(fold, manifest, **kw):
        if not calls:  # the other process finishes its rebuild right now
            other = {k: np.array(v)[::-1] for k, v in real_open(fold, manifest).items()}
            mf = {k: v for k, v in manifest.items() if k not in ("arrays", "version")}
            mf["sources"] = {f: "0" * 64 for f in manifest["sources"]}
            prepared.write(fold, other, mf)
        calls.append(fold)
        return real_open(fold, manifest, **kw)

    monkeypatch.setattr(prepared, "open_arrays", open_during_rebuild)
    ds = dlsets.load("tiny-mnist", cache_dir=cache_dir, download=False)
    _assert_split(ds.train, x_tr, y_tr)
    _assert_split(ds.test, x_te, y_te)
    assert ds.info["sources"] == prepared.read_manifest(folder)["sources"]


def _load_in_child(cache_dir, fmt, out):
    try:
        ds = dlsets.load("tiny-mnist", cache_dir=cache_dir, download=False, format=fmt)
        with ds:
            out.put(np.array(ds.train.images[:]).tobytes() + np.array(ds.test.labels[:]).tobytes())
    except BaseException as exc:  # reported to the parent, which fails the test
        out.put(repr(exc))


@pytest.mark.parametrize("fmt", ["numpy", "hdf5"])
def test_processes_preparing_at_once_get_the_same_arrays(mnist_ds, fmt):
    import multiprocessing

    cache_dir, (x_tr, y_tr, x_te, y_te) = mnist_ds
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_load_in_child, args=(cache_dir, fmt, out)) for _ in range(3)]
    for p in procs:
        p.start()
    got = [out.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(10)
    assert got == [x_tr.tobytes() + y_te.tobytes()] * 3
    folder = prepared_dir("tiny-mnist", cache_dir)
    assert not [p.name for p in folder.rglob("*.tmp")]


def test_rebuild_removes_temp_files_of_a_killed_writer(mnist_ds):
    cache_dir, (x_tr, y_tr, _, _) = mnist_ds
    dlsets.load("tiny-mnist", cache_dir=cache_dir)
    folder = prepared_dir("tiny-mnist", cache_dir)
    leftover = folder / ".train_images.npy.99999.tmp"
    leftover.write_bytes(b"half an array")
    (folder / prepared.MANIFEST).unlink()  # the killed writer never got to its manifest
    ds = dlsets.load("tiny-mnist", cache_dir=cache_dir, download=False)
    _assert_split(ds.train, x_tr, y_tr)
    assert not leftover.exists()


def test_stale_prepared_copy_is_rebuilt_when_sources_change(entry):
    first = _mnist_like()
    cache_dir = entry("tiny-mnist", "mnist", _idx_files(*first))
    old = dlsets.load("tiny-mnist", cache_dir=cache_dir)
    _assert_split(old.train, first[0], first[1])
    assert loaders.prepared_info("tiny-mnist", cache_dir=cache_dir) is not None
    # The user's registry entry now names other files (new checksums).
    second = _mnist_like(n_train=33, n_test=12)
    cache_dir = entry("tiny-mnist", "mnist", _idx_files(*second), import_files=False)
    assert loaders.prepared_info("tiny-mnist", cache_dir=cache_dir) is None
    src = next(p for p in cache_dir.parent.iterdir() if p.name.startswith("src-tiny-mnist-1"))
    fetch("tiny-mnist", source_dir=src, cache_dir=cache_dir)
    new = dlsets.load("tiny-mnist", cache_dir=cache_dir)
    _assert_split(new.train, second[0], second[1])
    _assert_split(new.test, second[2], second[3])


def test_prepared_info(mnist_ds):
    cache_dir, (x_tr, y_tr, *_rest) = mnist_ds
    assert loaders.prepared_info("tiny-mnist", cache_dir=cache_dir) is None
    assert not prepared_dir("tiny-mnist", cache_dir).exists()  # asking prepared nothing
    dlsets.load("tiny-mnist", cache_dir=cache_dir)
    info = loaders.prepared_info("tiny-mnist", cache_dir=cache_dir)
    assert info["splits"]["train"]["images_shape"] == [40, 28, 28]
    assert info["splits"]["train"]["labels_shape"] == [40]
    assert sum(info["splits"]["train"]["class_counts"].values()) == 40
    assert info["skipped"] == []


# --- HDF5 and npz ------------------------------------------------------------------------


def test_format_hdf5_returns_read_only_datasets(cifar_ds):
    cache_dir, (x_tr, y_tr, x_te, y_te) = cifar_ds
    with dlsets.load("tiny-cifar", cache_dir=cache_dir, format="hdf5") as ds:
        assert isinstance(ds.train.images, h5py.Dataset)
        np.testing.assert_array_equal(ds.train.images[:], x_tr)
        np.testing.assert_array_equal(ds.test.labels[:], y_te)
        with pytest.raises((OSError, ValueError, KeyError)):
            ds.train.images[0] = 0
        path = ds.info["hdf5"]
    assert not ds.train.images.id.valid  # the file was closed on leaving the with block
    # Built once: a second load opens the same file unchanged.
    mtime = __import__("os").stat(path).st_mtime_ns
    with dlsets.load("tiny-cifar", cache_dir=cache_dir, format="hdf5") as ds2:
        np.testing.assert_array_equal(ds2.test.images[:], x_te)
    assert __import__("os").stat(path).st_mtime_ns == mtime
    with dlsets.load("tiny-cifar", cache_dir=cache_dir, format="hdf5", channels="first",
                     dtype="float32") as ds3:
        assert ds3.train.images.shape == (30, 3, 32, 32)
        np.testing.assert_allclose(ds3.train.images[:5], x_tr[:5].transpose(0, 3, 1, 2) / 255,
                                   rtol=1e-6)


def test_hdf5_rebuild_removes_temp_files_of_a_killed_writer(cifar_ds):
    cache_dir, (x_tr, _, _, _) = cifar_ds
    with dlsets.load("tiny-cifar", cache_dir=cache_dir, format="hdf5") as ds:
        path = Path(ds.info["hdf5"])
    leftover = path.with_name(f".{path.name}.99999.tmp")
    leftover.write_bytes(b"half an HDF5 file")
    path.unlink()
    with dlsets.load("tiny-cifar", cache_dir=cache_dir, format="hdf5") as ds:
        np.testing.assert_array_equal(ds.train.images[:], x_tr)
    assert path.is_file() and not leftover.exists()


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_to_hdf5_layout(cifar_ds, tmp_path, compression):
    cache_dir, (x_tr, y_tr, x_te, y_te) = cifar_ds
    ds = dlsets.load("tiny-cifar", cache_dir=cache_dir)
    out = ds.to_hdf5(tmp_path / "out.h5", compression=compression)
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["train/images"][:], x_tr)
        np.testing.assert_array_equal(f["train/labels"][:], y_tr)
        np.testing.assert_array_equal(f["test/images"][:], x_te)
        np.testing.assert_array_equal(f["test/labels"][:], y_te)
        # contiguous (mapped by readers) unless compressed: then chunks of whole rows
        chunks = f["train/images"].chunks
        assert chunks is None if compression is None else chunks[1:] == (32, 32, 3)
        assert f["train/images"].compression == compression
        assert [c.decode() if isinstance(c, bytes) else c for c in f.attrs["classes"]] == list(
            ds.classes)
        assert json.loads(f.attrs["sources"]) == ds.info["sources"]
    assert not list(tmp_path.glob(".*tmp"))
    with pytest.raises(OptionError, match="gzip"):
        ds.to_hdf5(tmp_path / "x.h5", compression="zstd")


def test_to_npz(mnist_ds, tmp_path):
    cache_dir, (x_tr, y_tr, x_te, y_te) = mnist_ds
    out = dlsets.load("tiny-mnist", cache_dir=cache_dir).to_npz(tmp_path / "mnist-copy.npz")
    assert out == tmp_path / "mnist-copy.npz"
    with np.load(out, allow_pickle=False) as z:
        assert sorted(z.files) == ["x_test", "x_train", "y_test", "y_train"]
        np.testing.assert_array_equal(z["x_train"], x_tr)
        np.testing.assert_array_equal(z["y_test"], y_te)


# --- offline behaviour and the built-in names ----------------------------------------------


def test_download_false_with_nothing_cached_says_what_is_missing(entry):
    cache_dir = entry("tiny-mnist", "mnist", _idx_files(*_mnist_like()), import_files=False)
    with pytest.raises(OfflineError) as exc:
        dlsets.load("tiny-mnist", cache_dir=cache_dir, download=False)
    msg = str(exc.value)
    assert "train-images-idx3-ubyte.gz" in msg and "t10k-labels-idx1-ubyte.gz" in msg
    assert "dlsets fetch tiny-mnist" in msg


@pytest.mark.parametrize("call,wanted,unwanted", [
    (lambda: dlsets.load_mnist(), "train-images-idx3-ubyte.gz", None),
    (lambda: dlsets.load_fashion_mnist(), "train-images-idx3-ubyte.gz", None),
    (lambda: dlsets.load_kmnist(), "t10k-labels-idx1-ubyte.gz", None),
    (lambda: dlsets.load_cifar10(), "cifar-10-binary.tar.gz", "cifar-100"),
    (lambda: dlsets.load_cifar100(label_mode="coarse"), "cifar-100-binary.tar.gz", None),
    (lambda: dlsets.load_notmnist(), "notMNIST_small.tar.gz", "notMNIST_large"),
    (lambda: dlsets.load_notmnist("large"), "notMNIST_large.tar.gz", "notMNIST_small"),
])
def test_builtin_loaders_delegate_offline(monkeypatch, call, wanted, unwanted):
    monkeypatch.setenv("DLSETS_OFFLINE", "1")
    with pytest.raises(OfflineError) as exc:
        call()
    assert wanted in str(exc.value)
    if unwanted:
        assert unwanted not in str(exc.value)


@pytest.mark.parametrize("name,wanted", [("mnist", "mnist.npz"), ("cifar10",
                                          "cifar-10-python.tar.gz")])
def test_builtin_download_false_lists_every_file_set(name, wanted):
    with pytest.raises(OfflineError) as exc:
        dlsets.load(name, download=False)
    assert wanted in str(exc.value)


def test_md5_only_source_changed_in_cache_makes_prepared_stale(tmp_path):
    """notMNIST has no registry sha256: a changed cached archive is what marks arrays stale."""
    from dlsets.sources import registry
    from dlsets.store.cache import files_dir

    spec = registry.get("notmnist-small")
    assert spec.files["notMNIST_small.tar.gz"].sha256 is None
    src = files_dir("notmnist-small", tmp_path) / "notMNIST_small.tar.gz"
    src.parent.mkdir(parents=True)
    src.write_bytes(b"archive v1")
    st = src.stat()
    manifest = {"format": "notmnist", "sources": {src.name: "ab" * 32},
                "source_stats": {src.name: [st.st_size, st.st_mtime_ns]}}
    assert prepare._stale(spec, manifest, tmp_path) is None
    src.write_bytes(b"archive version 2")
    assert "changed" in prepare._stale(spec, manifest, tmp_path)
    assert "file sets" in prepare._stale(spec, {**manifest, "sources": {"other.tar.gz": "x"}},
                                         tmp_path)


def test_arrays_are_writable_and_writes_never_reach_the_cache(mnist_ds):
    """keras hands out writable arrays; dlsets' memory maps are copy-on-write."""
    cache_dir, (x_tr, y_tr, *_rest) = mnist_ds
    (x, y), _ = dlsets.load("tiny-mnist", cache_dir=cache_dir).as_tuples()
    assert not x.flags.owndata  # a memory map, not a copy
    x[0] = 255 - x[0]
    y[:] = 0
    (x2, y2), _ = dlsets.load("tiny-mnist", cache_dir=cache_dir).as_tuples()
    np.testing.assert_array_equal(x2, x_tr)
    np.testing.assert_array_equal(y2, y_tr)
    assert not np.array_equal(x[0], x_tr[0])


# --- a damaged manifest means "rebuild", in every command ---------------------------------


def _edit_manifest(folder, edit):
    path = folder / prepared.MANIFEST
    m = json.loads(path.read_text())
    edit(m)
    path.write_text(json.dumps(m))


_MANIFEST_DEFECTS = {
    "arrays-null": lambda m: m.update(arrays=None),
    "arrays-list": lambda m: m.update(arrays=[1, 2]),
    "array-entry-null": lambda m: m["arrays"].update(train_images=None),
    "array-key-missing": lambda m: m["arrays"].pop("test_labels"),
    "shape-same-bytes": lambda m: m["arrays"]["train_images"].update(shape=[40, 784]),
    "shape-other-bytes": lambda m: m["arrays"]["train_images"].update(shape=[40, 28, 29]),
    "dtype-garbage": lambda m: m["arrays"]["test_images"].update(dtype="no such dtype"),
    "sources-null": lambda m: m.update(sources=None),
    "sources-bad-sha": lambda m: m["sources"].update(
        {next(iter(m["sources"])): {"nested": [1]}}),
    "counts-text": lambda m: m.update(counts="many"),
    "counts-wrong-sum": lambda m: m["counts"].update(train=[1] * 10),
    "skipped-number": lambda m: m.update(skipped=7),
    "stats-null": lambda m: m.update(source_stats={"x": None}),
    "deep-json": None,  # a manifest nested 100,000 deep
}


@pytest.mark.parametrize("defect", list(_MANIFEST_DEFECTS))
def test_a_damaged_manifest_means_rebuild_in_every_command(mnist_ds, defect, capsys):
    """An arrays entry set to null crashed load, list (for every dataset), info, verify,
    export and augment with AttributeError; a wrong shape made verify say "ok" while load
    rebuilt. Now each command sees the same defect and treats it the same way."""
    from dlsets.cli import main

    cache_dir, (x_tr, y_tr, x_te, y_te) = mnist_ds
    dlsets.load("tiny-mnist", cache_dir=cache_dir)
    folder = prepared_dir("tiny-mnist", cache_dir)

    def damage():
        if defect == "deep-json":
            (folder / prepared.MANIFEST).write_text("[" * 100_000 + "]" * 100_000)
        else:
            _edit_manifest(folder, _MANIFEST_DEFECTS[defect])

    damage()
    assert prepared.read_manifest(folder) is None or prepare._layout_problem(
        dlsets.describe("tiny-mnist"), prepared.read_manifest(folder))
    assert loaders.prepared_info("tiny-mnist", cache_dir=cache_dir) is None
    common = ["--cache-dir", str(cache_dir)]
    assert main(["list", *common]) == 0 and main(["info", "tiny-mnist", *common]) == 0
    out = capsys.readouterr().out
    assert "not prepared yet" in out
    # verify agrees with load: the copy is damaged, and repairing it means deleting it
    assert main(["verify", "tiny-mnist", "--no-repair", *common]) == 1
    out = capsys.readouterr().out
    assert "prepared copy in" in out and "not repaired" in out and "arrays: ok" not in out
    assert main(["verify", "tiny-mnist", *common]) == 0
    assert "deleted it; the next load rebuilds it" in capsys.readouterr().out
    assert not folder.exists()
    for rebuild in ("load", "export", "augment"):
        dlsets.load("tiny-mnist", cache_dir=cache_dir)
        damage()
        if rebuild == "load":
            ds = dlsets.load("tiny-mnist", cache_dir=cache_dir, download=False)
            _assert_split(ds.train, x_tr, y_tr)
            _assert_split(ds.test, x_te, y_te)
        elif rebuild == "export":
            out_file = cache_dir.parent / "x.npz"  # outside the cache: refused there
            assert main(["export", "tiny-mnist", "--out", str(out_file), *common]) == 0
            with np.load(out_file) as z:
                np.testing.assert_array_equal(z["x_train"], x_tr)
        else:
            out_file = cache_dir.parent / "x.h5"  # outside the cache: refused there
            assert main(["augment", "tiny-mnist", "--target", "50", "--rotate", "5",
                         "--out", str(out_file), *common]) == 0
            with h5py.File(out_file) as f:
                np.testing.assert_array_equal(f["train/images"][:40], x_tr)
        assert loaders.verify_prepared("tiny-mnist", cache_dir=cache_dir) is None
    assert main(["verify", "tiny-mnist", *common]) == 0
    assert "tiny-mnist: prepared arrays: ok" in capsys.readouterr().out


def test_idx_images_are_inflated_straight_into_the_prepared_file(entry):
    """A cold load no longer holds the images in memory (and then copies them to disk): the
    pieces go from zlib to the .npy file. 40,000 images are 31 MB; Python's peak allocations
    (numpy's included) stay a fraction of that."""
    import tracemalloc

    x = np.zeros((40_000, 28, 28), np.uint8)
    x[:, 10:18, 10:18] = (np.arange(40_000) % 251)[:, None, None]
    y = (np.arange(40_000) % 10).astype(np.uint8)
    cache_dir = entry("big-mnist", "mnist", _idx_files(x, y, x[:100], y[:100]))
    tracemalloc.start()
    try:
        ds = dlsets.load("big-mnist", cache_dir=cache_dir)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(ds.train.images, x)
    assert peak < x.nbytes / 2, peak
    assert loaders.verify_prepared("big-mnist", cache_dir=cache_dir) is None


def test_idx_counts_that_disagree_fail_before_inflating(entry):
    x_tr, y_tr, x_te, y_te = _mnist_like()
    cache_dir = entry("odd-mnist", "mnist", _idx_files(x_tr, y_tr[:-1], x_te, y_te))
    with pytest.raises(FormatError, match=r"odd-mnist: 40 train images \(train-images-idx3-ubyte"
                                          r".gz\) but 39 labels"):
        dlsets.load("odd-mnist", cache_dir=cache_dir)
    assert not list(prepared_dir("odd-mnist", cache_dir).glob("*.npy"))


def test_notmnist_unsafe_member_error_names_the_file_through_load(entry):
    blob = formats.tar_gz_bytes({"notMNIST_small/A/../../../x.png": b"x"})
    cache_dir = entry("bad-notmnist", "notmnist-small", {"notMNIST_small.tar.gz": blob})
    from dlsets.errors import UnsafeArchiveError

    with pytest.raises(UnsafeArchiveError, match=r"^notMNIST_small.tar.gz: member"):
        dlsets.load("bad-notmnist", cache_dir=cache_dir)
