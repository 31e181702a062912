"""EMNIST: the six variants of one zip, downloaded once, each prepared on its own."""

import io
import json
import struct
import zipfile

import numpy as np
import pytest

import dlsets
from dlsets.errors import FormatError, OptionError
from dlsets.formats.emnist import read_emnist_zip
from dlsets.sources import loaders, registry
from dlsets.store import cache
from tests import formats
from tests.served import serve_builtin

RNG = np.random.default_rng(21)
N_CLASSES = {"byclass": 62, "bymerge": 47, "balanced": 47, "letters": 26, "digits": 10,
             "mnist": 10}


def _variant(n_classes, n_train=16, n_test=6):
    # random pixels: a transposition left undone cannot go unnoticed
    x_tr = RNG.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    x_te = RNG.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    y_tr = (np.arange(n_train) * 7 % n_classes).astype(np.uint8)
    y_te = (np.arange(n_test) * 5 % n_classes).astype(np.uint8)
    return x_tr, y_tr, x_te, y_te


@pytest.fixture
def emnist(server, monkeypatch):
    data = {v: _variant(k) for v, k in N_CLASSES.items()}
    body = formats.emnist_zip(data, label_offsets={"letters": 1})
    serve_builtin(monkeypatch, server, "emnist", {"gzip.zip": body})
    return data


def test_every_variant_loads_upright_with_its_classes_from_one_download(emnist, server):
    for v, (x_tr, y_tr, x_te, y_te) in emnist.items():
        (a, b), (c, d) = dlsets.load_emnist(split=v)
        np.testing.assert_array_equal(a, x_tr)  # upright: the fixture stored them transposed
        np.testing.assert_array_equal(b, y_tr)  # letters: 1..26 on disk, 0..25 here
        np.testing.assert_array_equal(c, x_te)
        np.testing.assert_array_equal(d, y_te)
        ds = dlsets.load("emnist", variant=v)
        assert len(ds.classes) == N_CLASSES[v] and ds.info["variant"] == v
        assert ds.info["prepared_dir"] == str(cache.prepared_dir("emnist", variant=v))
    assert server.count("/emnist/gzip.zip") == 1
    assert dlsets.load("emnist", variant="letters").classes[:3] == ("a", "b", "c")
    byclass = dlsets.load("emnist", variant="byclass").classes
    assert byclass[9:11] == ("9", "A") and byclass[-1] == "z"
    # the default variant is balanced, which is what the bare dataset name gives
    assert dlsets.load("emnist").info["variant"] == "balanced"


def test_a_split_name_that_does_not_exist_lists_the_valid_ones(emnist):
    with pytest.raises(OptionError, match=r"split='letter'.*'byclass', 'bymerge', 'balanced'"):
        dlsets.load_emnist(split="letter")
    with pytest.raises(OptionError, match=r"emnist has no variant 'x'; use one of \['byclass'"):
        dlsets.load("emnist", variant="x")
    with pytest.raises(OptionError, match="mnist has no variants"):
        dlsets.load("mnist", variant="letters")


def test_verify_checks_each_variant_and_repairs_only_the_damaged_one(emnist):
    dlsets.load_emnist(split="digits")
    dlsets.load_emnist(split="mnist")
    digits = cache.prepared_dir("emnist", variant="digits")
    assert loaders.verify_prepared("emnist") is None
    with open(digits / "train_images.npy", "r+b") as f:
        f.seek(-5, 2)
        f.write(b"\xff" * 5)
    problem = loaders.verify_prepared("emnist")
    assert "digits" in problem and "mnist" not in problem.replace("emnist", "")
    assert not digits.exists() and cache.prepared_dir("emnist", variant="mnist").exists()
    assert loaders.prepared_info("emnist", variant="mnist") is not None
    assert loaders.prepared_info("emnist", variant="digits") is None


def test_cli_list_and_info_show_emnist_and_its_variants(emnist, capsys):
    from dlsets.cli import main

    def row():
        assert main(["list"]) == 0
        return next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("emnist "))

    assert "EMNIST" in row() and " - " in row()
    dlsets.load_emnist(split="letters")
    assert "cached, prepared" in row()
    assert main(["info", "emnist"]) == 0
    out = capsys.readouterr().out
    for v in N_CLASSES:
        assert v in out
    assert "letters (prepared)" in out and "26 classes" in out


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_a_missing_variant_names_the_ones_the_archive_has(tmp_path):
    p = tmp_path / "gzip.zip"
    p.write_bytes(formats.emnist_zip({"digits": _variant(10)}))
    with pytest.raises(FormatError, match=r"no member emnist-letters-train.*\['digits'\]"):
        read_emnist_zip(p, variant="letters")


def test_a_header_claiming_more_than_the_member_holds_is_refused_before_allocating(tmp_path):
    x = formats.idx_gz_bytes(np.zeros((2, 28, 28), np.uint8))
    raw = bytearray(formats.idx_bytes(np.zeros((2, 28, 28), np.uint8)))
    raw[4:8] = struct.pack(">I", 2_000_000_000)  # 1.5 TB of pixels claimed
    import gzip

    lie = gzip.compress(bytes(raw), mtime=0)
    labels = formats.idx_gz_bytes(np.zeros(2, np.uint8))
    p = tmp_path / "gzip.zip"
    p.write_bytes(_zip({"gzip/emnist-digits-train-images-idx3-ubyte.gz": lie,
                        "gzip/emnist-digits-train-labels-idx1-ubyte.gz": labels,
                        "gzip/emnist-digits-test-images-idx3-ubyte.gz": x,
                        "gzip/emnist-digits-test-labels-idx1-ubyte.gz": labels}))
    with pytest.raises(FormatError, match="more than the .*-byte member can hold"):
        read_emnist_zip(p, variant="digits")


@pytest.mark.parametrize("bad", ["shape", "letters-from-zero", "not-a-zip"])
def test_damaged_archives_fail_with_format_errors(tmp_path, bad):
    p = tmp_path / "gzip.zip"
    if bad == "shape":
        wrong = formats.idx_gz_bytes(np.zeros((2, 28, 27), np.uint8))
        lab = formats.idx_gz_bytes(np.zeros(2, np.uint8))
        p.write_bytes(_zip({f"emnist-digits-{s}-{k}-ubyte.gz": (wrong if k[0] == "i" else lab)
                            for s in ("train", "test") for k in ("images-idx3", "labels-idx1")}))
        match, kw = r"IDX shape \(2, 28, 27\), expected \(N, 28, 28\) images", {}
    elif bad == "letters-from-zero":
        p.write_bytes(formats.emnist_zip({"letters": _variant(26)}))  # no +1 on disk
        match, kw = "letters train labels start at 0", {"label_offset": 1}
    else:
        p.write_bytes(b"PK\x03\x04 not really")
        match, kw = "not a readable zip", {}
    with pytest.raises(FormatError, match=match):
        read_emnist_zip(p, variant="letters" if bad == "letters-from-zero" else "digits", **kw)


def test_registry_entry(emnist):
    spec = registry._builtin()["emnist"]
    assert list(spec.variants) == list(N_CLASSES)
    assert {v: len(s.classes) for v, s in spec.variants.items()} == N_CLASSES
    assert spec.variants["letters"].label_offset == 1
    f = spec.files["gzip.zip"]
    assert f.md5 == "58c8d27c78d21e728a6bc7b3cc06412e" and f.size == 561753746
    assert f.sha256 == "fb9bb67e33772a9cc0b895e4ecf36d2cf35be8b709693c3564cea2a019fcda8e"


def test_list_and_info_show_the_new_datasets_with_their_real_sizes(capsys):
    from dlsets.cli import main

    assert main(["list"]) == 0
    rows = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()[1:]}
    assert "561.8 MB" in rows["emnist"]
    assert "246.3 MB" in rows["svhn"]  # train + test; extra (1.3 GB) only when asked for
    assert "2.6 GB" in rows["stl10"]
    assert main(["info", "svhn"]) == 0
    out = capsys.readouterr().out
    assert ("extra splits (--extra NAME, load(..., extra=True)): extra (needs extra_32x32.mat)"
            in out)
    assert "non-commercial" in out and "Netzer" in out
    assert main(["info", "stl10"]) == 0
    assert "unlabeled (no labels)" in capsys.readouterr().out


def test_cli_export_and_verify_of_a_variant(emnist, tmp_path, capsys):
    from dlsets.cli import main

    out = tmp_path / "js"
    assert main(["-q", "export", "emnist", "--variant", "letters", "--format", "convnetjs",
                 "--out", str(out), "--batch-size", "10"]) == 0
    meta = json.loads((out / "emnist-letters_labels.json").read_text())
    assert meta["labels"][:16] == emnist["letters"][1].tolist() and len(meta["classes"]) == 26
    assert main(["verify", "emnist"]) == 0
    assert "emnist: prepared arrays: ok" in capsys.readouterr().out
    assert main(["export", "emnist", "--variant", "letter", "--out", str(tmp_path / "e.h5")]) == 1
    assert "no variant 'letter'; use one of ['byclass'" in capsys.readouterr().err
