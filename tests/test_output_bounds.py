"""Writers that check what they will write, sizes bounded, output paths and URLs refused with one
line: TensorBoard summaries on a full disk, ConvNetJS batch sizes, names too long, zoom ranges,
URLs that cannot be parsed."""

from __future__ import annotations

import errno
import json
import warnings

import numpy as np
import pytest

from dlsets.augment import Augmenter
from dlsets.cli import main
from dlsets.common import config
from dlsets.errors import OptionError, RegistryError, SpaceError, WriteError
from dlsets.outputs.convnetjs import write_convnetjs
from dlsets.sources.download import download_file
from dlsets.store import space
from tests.test_space import _run, digits, needs_mounts  # noqa: F401 (digits: a fixture)


@pytest.mark.extra  # tensorboardX
@needs_mounts
def test_tensorboard_on_a_full_disk_is_one_error_and_leaves_nothing(digits, tmp_path):  # noqa: F811
    full = tmp_path / "full"
    out = _run(f"""
        from dlsets import space
        from dlsets.augment import Augmenter
        from dlsets.outputs.tensorboard import write_tensorboard
        fill({str(full)!r}, 16 << 10)
        out["cli"] = cli("preview", "digits", "--rotate", "5", "--tensorboard",
                         {str(full)!r} + "/tb", "--cache-dir", {str(digits)!r})
        out["cli-left"] = listing({str(full)!r})
        # the disk fills between the check and the write: still an error, and no hang
        space.need_disk = lambda *a, **k: None
        x = dlsets.load("digits", cache_dir={str(digits)!r}).train.images
        try:
            write_tensorboard({str(full)!r} + "/tb2", x, Augmenter(rotate=5), copies=20)
            out["api"] = "wrote"
        except dlsets.DlsetsError as exc:
            out["api"] = [type(exc).__name__, str(exc)]
        out["api-left"] = [p for p in listing({str(full)!r}) if "tfevents" in p]
    """, {full: "size=2m"}, timeout=120)
    code, err = out["cli"]
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "not enough disk space" in err and "TensorBoard" in err, err
    assert out["cli-left"] == ["filler"]
    kind, text = out["api"]
    assert kind == "SpaceError" and "disk filled up" in text, out["api"]
    assert out["api-left"] == []  # no partial events file


@pytest.mark.extra  # tensorboardX
def test_tensorboard_copies_beyond_memory_are_refused_before_any_work(tmp_path):
    from dlsets.outputs.tensorboard import write_tensorboard

    x = np.zeros((8, 28, 28), np.uint8)
    with pytest.raises(SpaceError, match="copies"):
        write_tensorboard(tmp_path / "tb", x, Augmenter(rotate=5), copies=10**7)
    assert not any(tmp_path.rglob("*tfevents*"))


def test_convnetjs_batch_size_never_pads_beyond_the_images(tmp_path):
    rng = np.random.default_rng(0)
    train = (rng.integers(0, 255, (30, 4, 4), dtype=np.uint8), np.arange(30) % 3)
    test = (rng.integers(0, 255, (10, 4, 4), dtype=np.uint8), np.arange(10) % 3)
    out = write_convnetjs(tmp_path / "c", train, test, prefix="t", batch_size=10**12)
    meta = json.loads((out / "t_labels.json").read_text())
    assert meta["batch_size"] == 30 and len(meta["labels"]) == 40
    assert meta["train_batches"] == [0] and meta["test_batches"] == [1]
    assert len((out / "t_labels.js").read_text()) < 200


def test_output_names_the_os_refuses_are_one_write_error(tmp_path):
    long = tmp_path / ("x" * 300 + ".h5")
    with pytest.raises(WriteError, match="too long"):
        space.check_output(long, "--out")
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(WriteError):
        with space.output(loop / "x.h5", 10, "writing x.h5") as tmp:
            tmp.write_bytes(b"x")


def test_os_and_hdf5_texts_in_write_errors_stay_on_one_line(tmp_path):
    hdf5 = OSError(errno.ENOSPC, "Can't write data (file write failed: time = Mon\n, errno = 28)")
    for exc in (hdf5, OSError(errno.EACCES, "denied\r\nby policy")):
        err = space.write_error(exc, tmp_path / "o.h5", 100, "writing o.h5")
        assert isinstance(err, (SpaceError, WriteError)) and "\n" not in str(err), str(err)
    err = space.path_error(OSError(errno.EIO, "I/O\nerror"), tmp_path / "o.h5", "w")
    assert "\n" not in str(err) and "I/O error" in str(err)


def test_cli_errors_from_names_memory_and_numpy_are_one_line(tmp_path, capsys, monkeypatch):
    import dlsets.cli.data as cli

    assert main(["export", "mnist", "--out", str(tmp_path / ("x" * 300 + ".h5"))]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "too long" in err and "Traceback" not in err, err

    def out_of_memory(args):
        raise MemoryError

    monkeypatch.setattr(cli, "_cmd_list", out_of_memory)
    assert main(["list"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ran out of memory" in err, err

    def noisy(args):
        np.zeros(2) / np.zeros(2)  # RuntimeWarning: invalid value
        return 0

    monkeypatch.setattr(cli, "_cmd_list", noisy)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(["list"]) == 0
    assert "RuntimeWarning" not in capsys.readouterr().err


@pytest.mark.parametrize("zoom", [(1e-300, 1e-300), (0.05, 1.0), 0.95, (1.0, 20.0)])
def test_zoom_that_fills_every_image_is_refused_with_the_range(zoom):
    with pytest.raises(OptionError, match=r"0\.1 <= low <= high <= 10"):
        Augmenter(zoom=zoom)
    assert Augmenter(zoom=(0.1, 10.0)) and Augmenter(zoom=0.9)


@pytest.mark.parametrize("url", ["http://[::1", "http://[zz]/", "http://h:99999/", "https:///x",
                                 "ftp://h/x"])
def test_urls_that_cannot_be_parsed_are_refused_where_given(url, tmp_path, monkeypatch):
    assert config.url_problem(url)
    monkeypatch.setenv("DLSETS_MIRROR", url)
    with pytest.raises(OptionError, match="DLSETS_MIRROR"):
        config.env_mirrors()
    if "[" in url or "99999" in url:  # unparsable: refused; others are skipped, then failed
        with pytest.raises(OptionError, match="cannot be parsed"):
            download_file([url + "f.gz"], tmp_path / "f.gz", sha256="0" * 64,
                          progress_bar=False)
        assert not list(tmp_path.iterdir())
    from dlsets.sources import registry

    with pytest.raises(RegistryError, match="URL"):
        registry._user_file("reg.json, entry 't'", "f.gz", {"sha256": "0" * 64,
                                                            "urls": [url + "f.gz"]})
    assert config.url_problem("http://127.0.0.1:8080/a/") is None
