"""Writers for the datasets' real file formats, used to build small test fixtures."""

from __future__ import annotations

import gzip
import io
import struct
import tarfile

import numpy as np

_IDX_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(">i2"): 0x0B,
    np.dtype(">i4"): 0x0C,
    np.dtype(">f4"): 0x0D,
    np.dtype(">f8"): 0x0E,
}


def idx_bytes(array: np.ndarray) -> bytes:
    """An uncompressed IDX file holding ``array`` (big-endian, as the spec says)."""
    a = np.asarray(array)
    if a.dtype.itemsize > 1:
        a = a.astype(a.dtype.newbyteorder(">"))
    code = _IDX_CODES[a.dtype]
    header = struct.pack(">BBBB", 0, 0, code, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape)
    return header + a.tobytes()


def idx_gz_bytes(array: np.ndarray) -> bytes:
    """A gzip'd IDX file, as MNIST and its relatives ship."""
    return gzip.compress(idx_bytes(array), compresslevel=6, mtime=0)


# --- Python 2 pickles, byte for byte as cPickle.dump(obj, f, 2) wrote the CIFAR batches ---
# Python 3 cannot write a Python 2 ``str`` (it has no such type), so the opcodes are spelled out.


def _py2_pickle_obj(obj) -> bytes:
    if obj is None:
        return b"N"
    if isinstance(obj, bool):
        return b"\x88" if obj else b"\x89"
    if isinstance(obj, int):
        if 0 <= obj < 256:
            return b"K" + bytes([obj])
        if 0 <= obj < 65536:
            return b"M" + struct.pack("<H", obj)
        return b"J" + struct.pack("<i", obj)
    if isinstance(obj, str):
        obj = obj.encode("latin1")  # a py2 str is bytes; BINSTRING is how cPickle stored it
    if isinstance(obj, bytes):
        if len(obj) < 256:
            return b"U" + bytes([len(obj)]) + obj
        return b"T" + struct.pack("<I", len(obj)) + obj
    if isinstance(obj, tuple):
        inner = b"".join(_py2_pickle_obj(o) for o in obj)
        return {0: b")", 1: inner + b"\x85", 2: inner + b"\x86", 3: inner + b"\x87"}.get(
            len(obj), b"(" + inner + b"t"
        )
    if isinstance(obj, list):
        return b"](" + b"".join(_py2_pickle_obj(o) for o in obj) + b"e"
    if isinstance(obj, dict):
        items = b"".join(_py2_pickle_obj(k) + _py2_pickle_obj(v) for k, v in obj.items())
        return b"}(" + items + b"u"
    if isinstance(obj, np.ndarray):
        return _py2_pickle_array(obj)
    raise TypeError(f"no py2 pickle for {type(obj).__name__}")


def _py2_pickle_array(a: np.ndarray) -> bytes:
    # What ndarray.__reduce__ gave under numpy 1.x on Python 2.
    a = np.ascontiguousarray(a)
    dt = a.dtype
    endian = "|" if dt.itemsize == 1 else "<"
    dtype = (
        b"cnumpy\ndtype\n"
        + _py2_pickle_obj((dt.str[1:], 0, 1))
        + b"R"
        + _py2_pickle_obj((3, endian, None, None, None, -1, -1, 0))
        + b"b"
    )
    state = (
        b"("
        + _py2_pickle_obj(1)
        + _py2_pickle_obj(tuple(a.shape))
        + dtype
        + b"\x89"
        + _py2_pickle_obj(a.astype(dt.newbyteorder("<")).tobytes())
        + b"t"
    )
    return (
        b"cnumpy.core.multiarray\n_reconstruct\n"
        + b"cnumpy\nndarray\n"
        + _py2_pickle_obj(((0,), "b"))[:-1]  # the (0,) and 'b' items, then TUPLE3 with the class
        + b"\x87R"
        + state
        + b"b"
    )


def py2_pickle(obj) -> bytes:
    """``obj`` pickled as Python 2's cPickle (protocol 2) did: dicts, lists, ints, str, arrays."""
    return b"\x80\x02" + _py2_pickle_obj(obj) + b"."


def cifar_pixels(images: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) uint8 -> (N, 3072) rows of R plane, G plane, B plane, as CIFAR stores them."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), -1))


def tar_gz_bytes(members: dict[str, bytes], *, extra=None) -> bytes:
    """A tar.gz of ``members`` (name -> content), in the given order; ``extra(tar)`` adds more."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.GNU_FORMAT) as tf:
        dirs = set()
        for name, data in members.items():
            parent = name.rsplit("/", 1)[0] if "/" in name else ""
            if parent and parent not in dirs:
                dirs.add(parent)
                d = tarfile.TarInfo(parent)
                d.type = tarfile.DIRTYPE
                d.mode = 0o755
                tf.addfile(d)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(data))
        if extra is not None:
            extra(tf)
    return buf.getvalue()


def _split_batches(n: int, parts: int) -> list[slice]:
    edges = np.linspace(0, n, parts + 1).astype(int)
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def cifar10_python_tar(x_train, y_train, x_test, y_test, classes, *, batches: int = 5) -> bytes:
    """cifar-10-python.tar.gz: ``cifar-10-batches-py/`` data_batch_N, test_batch, batches.meta."""
    members = {}
    for i, s in enumerate(_split_batches(len(x_train), batches), 1):
        members[f"cifar-10-batches-py/data_batch_{i}"] = py2_pickle({
            "batch_label": f"training batch {i} of {batches}",
            "labels": [int(v) for v in y_train[s]],
            "data": cifar_pixels(x_train[s]),
            "filenames": [f"img_{k}.png" for k in range(s.start, s.stop)],
        })
    members["cifar-10-batches-py/test_batch"] = py2_pickle({
        "batch_label": "testing batch 1 of 1",
        "labels": [int(v) for v in y_test],
        "data": cifar_pixels(x_test),
        "filenames": [f"test_{k}.png" for k in range(len(x_test))],
    })
    members["cifar-10-batches-py/batches.meta"] = py2_pickle({
        "num_cases_per_batch": max(1, len(x_train) // batches),
        "label_names": list(classes),
        "num_vis": 3072,
    })
    members["cifar-10-batches-py/readme.html"] = b"<html></html>"
    return tar_gz_bytes(members)


def cifar100_python_tar(x_train, fine_train, coarse_train, x_test, fine_test, coarse_test,
                        fine_names, coarse_names) -> bytes:
    """cifar-100-python.tar.gz: ``cifar-100-python/`` train, test, meta."""
    def batch(label, x, fine, coarse):
        return py2_pickle({
            "filenames": [f"{label}_{k}.png" for k in range(len(x))],
            "batch_label": f"{label} batch 1 of 1",
            "fine_labels": [int(v) for v in fine],
            "coarse_labels": [int(v) for v in coarse],
            "data": cifar_pixels(x),
        })

    return tar_gz_bytes({
        "cifar-100-python/file.txt~": b"",
        "cifar-100-python/train": batch("training", x_train, fine_train, coarse_train),
        "cifar-100-python/test": batch("testing", x_test, fine_test, coarse_test),
        "cifar-100-python/meta": py2_pickle({
            "fine_label_names": list(fine_names),
            "coarse_label_names": list(coarse_names),
        }),
    })


def cifar10_binary_tar(x_train, y_train, x_test, y_test, classes, *, batches: int = 5) -> bytes:
    """cifar-10-binary.tar.gz: ``cifar-10-batches-bin/`` records of label byte + 3072 pixels."""
    def records(x, y):
        return np.concatenate([np.asarray(y, np.uint8)[:, None], cifar_pixels(x)], axis=1).tobytes()

    members = {"cifar-10-batches-bin/batches.meta.txt": ("\n".join(classes) + "\n\n").encode()}
    for i, s in enumerate(_split_batches(len(x_train), batches), 1):
        members[f"cifar-10-batches-bin/data_batch_{i}.bin"] = records(x_train[s], y_train[s])
    members["cifar-10-batches-bin/test_batch.bin"] = records(x_test, y_test)
    members["cifar-10-batches-bin/readme.html"] = b"<html></html>"
    return tar_gz_bytes(members)


def cifar100_binary_tar(x_train, fine_train, coarse_train, x_test, fine_test, coarse_test,
                        fine_names, coarse_names) -> bytes:
    """cifar-100-binary.tar.gz: ``cifar-100-binary/`` records of coarse, fine, 3072 pixels."""
    def records(x, fine, coarse):
        labels = np.stack([np.asarray(coarse, np.uint8), np.asarray(fine, np.uint8)], axis=1)
        return np.concatenate([labels, cifar_pixels(x)], axis=1).tobytes()

    return tar_gz_bytes({
        "cifar-100-binary/coarse_label_names.txt": ("\n".join(coarse_names) + "\n").encode(),
        "cifar-100-binary/fine_label_names.txt": ("\n".join(fine_names) + "\n").encode(),
        "cifar-100-binary/train.bin": records(x_train, fine_train, coarse_train),
        "cifar-100-binary/test.bin": records(x_test, fine_test, coarse_test),
    })


def png_bytes(image: np.ndarray) -> bytes:
    """A greyscale PNG of a (H, W) uint8 image."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def notmnist_tar(images_by_path: dict[str, np.ndarray | bytes], *, root: str = "notMNIST_small"
                 ) -> bytes:
    """notMNIST_<variant>.tar.gz: ``<root>/<letter>/<name>.png``; bytes values go in as they are
    (use them for unreadable files)."""
    members = {}
    for rel, img in images_by_path.items():
        members[f"{root}/{rel}"] = img if isinstance(img, bytes) else png_bytes(img)
    return tar_gz_bytes(members)


def mnist_npz_bytes(x_train, y_train, x_test, y_test) -> bytes:
    """keras' mnist.npz: an uncompressed npz with x_train, y_train, x_test, y_test."""
    buf = io.BytesIO()
    np.savez(buf, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return buf.getvalue()


# --- EMNIST, SVHN, STL-10 ---------------------------------------------------------------------


def emnist_zip(variants: dict[str, tuple], *, label_offsets: dict[str, int] | None = None,
               root: str = "gzip") -> bytes:
    """EMNIST's gzip.zip: ``gzip/emnist-<variant>-<train|test>-<images-idx3|labels-idx1>-ubyte.gz``
    and ``emnist-<variant>-mapping.txt`` per variant. ``variants`` maps a variant to upright
    ``(x_train, y_train, x_test, y_test)``; the images are stored transposed, as NIST did, and
    ``label_offsets`` is added to the labels (letters count from 1)."""
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for v, (x_tr, y_tr, x_te, y_te) in variants.items():
            off = (label_offsets or {}).get(v, 0)
            top = int(max(y_tr.max(initial=0), y_te.max(initial=0)))
            mapping = "".join(f"{k + off} {48 + k}\n" for k in range(top + 1))
            zf.writestr(f"{root}/emnist-{v}-mapping.txt", mapping)
            for split, x, y in (("train", x_tr, y_tr), ("test", x_te, y_te)):
                stored = np.ascontiguousarray(np.asarray(x, np.uint8).transpose(0, 2, 1))
                zf.writestr(f"{root}/emnist-{v}-{split}-images-idx3-ubyte.gz",
                            idx_gz_bytes(stored))
                zf.writestr(f"{root}/emnist-{v}-{split}-labels-idx1-ubyte.gz",
                            idx_gz_bytes((np.asarray(y) + off).astype(np.uint8)))
    return buf.getvalue()


def svhn_mat(images: np.ndarray, digits: np.ndarray, *, compress: bool = True) -> bytes:
    """An SVHN ``<split>_32x32.mat`` as scipy writes MATLAB v5: ``X`` uint8 (32, 32, 3, N) and
    ``y`` double (N, 1) with the digit 0 stored as 10."""
    import scipy.io

    x = np.asarray(images, np.uint8).transpose(1, 2, 3, 0)  # (N, H, W, C) -> (H, W, C, N)
    y = np.where(np.asarray(digits) == 0, 10, np.asarray(digits)).astype(np.float64)[:, None]
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"X": x, "y": y}, format="5", do_compression=compress)
    return buf.getvalue()


def stl10_planes(images: np.ndarray) -> bytes:
    """(N, 96, 96, 3) uint8 -> STL-10's bytes: per image 3 planes, each stored column-major."""
    return np.ascontiguousarray(np.asarray(images, np.uint8).transpose(0, 3, 2, 1)).tobytes()


def stl10_tar(x_train, y_train, x_test, y_test, x_unlabeled, folds, classes, *,
              order=None) -> bytes:
    """stl10_binary.tar.gz: ``stl10_binary/`` {train,test,unlabeled}_X.bin, {train,test}_y.bin
    (labels 1..10), class_names.txt, fold_indices.txt (one line of 0-based indices per fold).
    ``order`` lists the member base names in archive order (default: unlabeled last)."""
    members = {
        "class_names.txt": ("\n".join(classes) + "\n").encode(),
        "fold_indices.txt": "".join(" ".join(map(str, f)) + " \n" for f in folds).encode(),
        "test_X.bin": stl10_planes(x_test),
        "test_y.bin": (np.asarray(y_test) + 1).astype(np.uint8).tobytes(),
        "train_X.bin": stl10_planes(x_train),
        "train_y.bin": (np.asarray(y_train) + 1).astype(np.uint8).tobytes(),
        "unlabeled_X.bin": stl10_planes(x_unlabeled),
    }
    order = order or list(members)
    return tar_gz_bytes({f"stl10_binary/{n}": members[n] for n in order})


def mnist_like(folder, name: str, n_train: int, n_test: int, *, seed: int = 0,
               url: str = "http://127.0.0.1:9/", size: bool = True):
    """Random MNIST-like IDX .gz files for a user registry entry ``name`` (like: mnist) in
    ``folder``/src and the registry file ``folder``/reg.json; returns (src, registry path,
    arrays by file name). ``url`` is where the entry says the files are (the discard port by
    default: nothing answers, so tests import them with --from)."""
    import hashlib
    import json
    from pathlib import Path

    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": (np.arange(n_test) % 10).astype(np.uint8),
    }
    src = Path(folder) / "src"
    src.mkdir(parents=True, exist_ok=True)
    files = {}
    for fname, a in arrays.items():
        data = idx_gz_bytes(a)
        (src / fname).write_bytes(data)
        files[fname] = {"sha256": hashlib.sha256(data).hexdigest(), "urls": [url + fname]}
        if size:
            files[fname]["size"] = len(data)
    reg = Path(folder) / "reg.json"
    reg.write_text(json.dumps({name: {"like": "mnist", "files": files}}))
    return src, reg, arrays
