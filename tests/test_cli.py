"""The CLI end to end, on a small user dataset laid out like MNIST (no network)."""

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
from PIL import Image

from dlsets.cli import main
from tests.formats import mnist_like

DEAD_URL = "http://127.0.0.1:9/never/"  # the discard port: nothing listens there


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A 'tiny-digits' dataset (like mnist): its files in src/, its registry via DLSETS_REGISTRY."""
    src, reg, arrays = mnist_like(tmp_path, "tiny-digits", 60, 20, url=DEAD_URL)
    monkeypatch.setenv("DLSETS_REGISTRY", str(reg))
    return src, arrays


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_shows_builtins_and_user_entries(capsys, tiny):
    code, out, _ = run(capsys, "list")
    assert code == 0
    for name in ("mnist", "fashion-mnist", "kmnist", "notmnist-small", "cifar10", "cifar100"):
        assert name in out
    assert "tiny-digits" in out and "like mnist" in out


def test_info_describes_a_builtin(capsys):
    code, out, _ = run(capsys, "info", "mnist")
    assert code == 0
    assert "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609" in out
    assert "LeCun" in out and "licence" in out


def test_info_says_notmnist_sha256_is_pinned_on_first_download(capsys):
    code, out, _ = run(capsys, "info", "notmnist-small")
    assert code == 0
    assert "c9890a473a9769fda4bdf314aaf500dd" in out
    assert "pin" in out.lower()


def test_fetch_from_folder_then_info_path_verify_remove(capsys, tiny, tmp_path):
    src, _ = tiny
    cache = tmp_path / "c"
    code, out, err = run(capsys, "fetch", "tiny-digits", "--from", str(src),
                         "--cache-dir", str(cache))
    assert code == 0, err
    assert out.count("tiny-digits:") == 4 and out.count(": imported ") == 4
    code, out, _ = run(capsys, "info", "tiny-digits", "--cache-dir", str(cache))
    assert code == 0 and f"user entry from {tmp_path / 'reg.json'}, laid out like mnist" in out
    assert out.count(": verified; ") == 4 and "not prepared yet" in out
    code, out, _ = run(capsys, "list", "--cache-dir", str(cache))
    assert [" cached " in line for line in out.splitlines() if line.startswith("tiny-digits")] == [
        True]
    import dlsets

    dlsets.load("tiny-digits", cache_dir=cache)
    code, out, _ = run(capsys, "list", "--cache-dir", str(cache))
    assert " cached, prepared " in next(ln for ln in out.splitlines() if ln.startswith("tiny-d"))
    code, out, _ = run(capsys, "path", "tiny-digits", "--cache-dir", str(cache))
    assert code == 0 and out.strip() == str(cache / "tiny-digits")
    code, out, _ = run(capsys, "verify", "tiny-digits", "--cache-dir", str(cache))
    assert code == 0
    victim = cache / "tiny-digits" / "files" / "t10k-labels-idx1-ubyte.gz"
    victim.write_bytes(b"garbage")
    code, out, err = run(capsys, "verify", "tiny-digits", "--no-repair", "--cache-dir", str(cache))
    assert code == 1 and "t10k-labels-idx1-ubyte.gz" in out + err
    code, out, _ = run(capsys, "remove", "tiny-digits", "--cache-dir", str(cache))
    assert code == 0 and not (cache / "tiny-digits").exists()


def test_expected_failures_exit_1_with_one_message(capsys, tiny, monkeypatch):
    monkeypatch.setenv("DLSETS_OFFLINE", "1")
    code, out, err = run(capsys, "fetch", "tiny-digits")
    assert code == 1
    assert err.startswith("dlsets: error:") and "Traceback" not in err
    assert "train-images-idx3-ubyte.gz" in err and "--from" in err
    code, _, err = run(capsys, "info", "no-such-set")
    assert code == 1 and "unknown dataset" in err and "mnist" in err


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["fetch"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["augment", "mnist", "--target", "0", "--out", "x.h5"])
    assert e.value.code == 2


def test_export_npz_and_hdf5_hold_the_fixture_pixels(capsys, tiny, tmp_path):
    src, arrays = tiny
    assert run(capsys, "fetch", "tiny-digits", "--from", str(src))[0] == 0
    code, _, err = run(capsys, "export", "tiny-digits", "--format", "npz", "--out",
                       str(tmp_path / "t.npz"))
    assert code == 0, err
    with np.load(tmp_path / "t.npz") as z:
        np.testing.assert_array_equal(z["x_train"], arrays["train-images-idx3-ubyte.gz"])
        np.testing.assert_array_equal(z["y_test"], arrays["t10k-labels-idx1-ubyte.gz"])
    code, _, err = run(capsys, "export", "tiny-digits", "--out", str(tmp_path / "t.h5"))
    assert code == 0, err
    with h5py.File(tmp_path / "t.h5") as f:
        np.testing.assert_array_equal(f["test/images"][:], arrays["t10k-images-idx3-ubyte.gz"])
        assert [c.decode() if isinstance(c, bytes) else c for c in f.attrs["classes"]][:2] == [
            "0", "1"]


def test_augment_writes_exactly_target_samples(capsys, tiny, tmp_path):
    src, arrays = tiny
    assert run(capsys, "fetch", "tiny-digits", "--from", str(src))[0] == 0
    out = tmp_path / "aug.h5"
    code, _, err = run(capsys, "augment", "tiny-digits", "--target", "150", "--subset", "30",
                       "--rotate", "15", "--shift", "0.1", "--seed", "3", "--out", str(out))
    assert code == 0, err
    with h5py.File(out) as f:
        images, labels = f["train/images"][:], f["train/labels"][:]
    assert images.shape == (150, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (150,)
    originals = arrays["train-images-idx3-ubyte.gz"]
    # the 30 originals come first, and each is one of the training images
    assert all(any(np.array_equal(im, o) for o in originals) for im in images[:30])
    assert not any(np.array_equal(images[40], o) for o in originals)


def test_preview_writes_a_png_grid(capsys, tiny, tmp_path):
    src, _ = tiny
    assert run(capsys, "fetch", "tiny-digits", "--from", str(src))[0] == 0
    out = tmp_path / "grid.png"
    code, _, err = run(capsys, "preview", "tiny-digits", "--rotate", "20", "--rows", "4",
                       "--copies", "5", "--out", str(out))
    assert code == 0, err
    with Image.open(out) as im:
        w, h = im.size
    assert w >= 6 * 28 and h >= 4 * 28


def test_python_dash_m_and_console_script(tmp_path):
    import shutil
    from pathlib import Path

    # The console script pip installed beside this interpreter (the package's entry point).
    script = shutil.which("dlsets", path=str(Path(sys.executable).parent))
    assert script is not None, "the dlsets console script is not installed in this environment"
    for cmd in ([sys.executable, "-m", "dlsets"], [script]):
        r = subprocess.run([*cmd, "list"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "cifar100" in r.stdout, (cmd, r.stderr)
        r = subprocess.run([*cmd, "info", "nope"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and "unknown dataset 'nope'" in r.stderr
        assert "Traceback" not in r.stderr


def test_augment_and_preview_sizes_are_checked_against_the_data(capsys, tiny, tmp_path):
    src, _ = tiny
    never = str(tmp_path / "never.h5")
    assert run(capsys, "fetch", "tiny-digits", "--from", str(src))[0] == 0
    code, _, err = run(capsys, "augment", "tiny-digits", "--target", "10", "--rotate", "5",
                       "--out", never)
    assert code == 1 and "--target 10 is smaller than the 60 training images" in err
    code, _, err = run(capsys, "augment", "tiny-digits", "--target", "100", "--subset", "61",
                       "--out", never)
    assert code == 1 and "--subset 61 is more than the 60 training images" in err
    code, _, err = run(capsys, "preview", "tiny-digits", "--rows", "70",
                       "--out", never[:-3] + ".png")
    assert code == 1 and "--rows 70" in err
    assert not list(tmp_path.glob("never*"))


def test_augment_without_transforms_warns(capsys, tiny, tmp_path):
    src, _ = tiny
    assert run(capsys, "fetch", "tiny-digits", "--from", str(src))[0] == 0
    code, _, err = run(capsys, "augment", "tiny-digits", "--target", "70",
                       "--out", str(tmp_path / "copies.h5"))
    assert code == 0 and "no transform given" in err


def test_common_options_work_before_and_after_the_command(capsys, tiny, tmp_path):
    src, _ = tiny
    cache = tmp_path / "c"
    code, out, _ = run(capsys, "--cache-dir", str(cache), "-q", "fetch", "tiny-digits",
                       "--from", str(src))
    assert code == 0 and out == ""  # quiet, from before the command
    assert (cache / "tiny-digits" / "files").is_dir()
    code, out, _ = run(capsys, "path", "tiny-digits", "--cache-dir", str(cache))
    assert out.strip() == str(cache / "tiny-digits")
    code, out, _ = run(capsys, "--cache-dir", str(cache), "path", "tiny-digits")
    assert out.strip() == str(cache / "tiny-digits")


def test_export_format_follows_the_file_name(capsys, tiny, tmp_path):
    src, arrays = tiny
    assert run(capsys, "fetch", "tiny-digits", "--from", str(src))[0] == 0
    assert run(capsys, "export", "tiny-digits", "--out", str(tmp_path / "a.npz"))[0] == 0
    with np.load(tmp_path / "a.npz") as z:
        np.testing.assert_array_equal(z["y_train"], arrays["train-labels-idx1-ubyte.gz"])
    assert run(capsys, "export", "tiny-digits", "--out", str(tmp_path / "f.h5"),
               "--dtype", "float32", "--channels", "first")[0] == 0
    with h5py.File(tmp_path / "f.h5") as f:
        x = f["train/images"][:]
    assert x.shape == (60, 1, 28, 28) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0], arrays["train-images-idx3-ubyte.gz"] / 255, rtol=1e-6)
    code, _, err = run(capsys, "export", "tiny-digits", "--out", str(tmp_path / "b.npz"),
                       "--format", "hdf5")
    assert code == 1 and "make them agree" in err
    code, _, err = run(capsys, "export", "tiny-digits", "--out", str(tmp_path / "c"))
    assert code == 1 and "give --format" in err
    code, _, err = run(capsys, "preview", "tiny-digits", "--rotate", "5",
                       "--out", str(tmp_path / "g.jpg"))
    assert code == 1 and ".png" in err
    code, _, err = run(capsys, "augment", "tiny-digits", "--target", "70", "--rotate", "5",
                       "--out", str(tmp_path / "g.npz"))
    assert code == 1 and "augment writes HDF5" in err
    assert sorted(p.name for p in tmp_path.glob("[abcg]*")) == ["a.npz"]


def test_verify_checks_the_prepared_arrays_too(capsys, tiny, tmp_path):
    import dlsets

    src, arrays = tiny
    assert run(capsys, "fetch", "tiny-digits", "--from", str(src))[0] == 0
    dlsets.load("tiny-digits")
    code, out, _ = run(capsys, "verify")
    assert code == 0 and "tiny-digits: prepared arrays: ok" in out
    npy = tmp_path / "dlsets-cache" / "tiny-digits" / "prepared" / "train_images.npy"
    data = bytearray(npy.read_bytes())
    data[-100:-90] = bytes(255 - b for b in data[-100:-90])  # same size, other pixels
    npy.write_bytes(bytes(data))
    code, out, _ = run(capsys, "verify", "tiny-digits", "--no-repair")
    assert code == 1 and "tiny-digits: prepared" in out and "train_images" in out
    code, out, _ = run(capsys, "verify", "tiny-digits")
    assert code == 0 and "tiny-digits: prepared" in out and "deleted" in out
    assert "tiny-digits: tiny-digits" not in out
    x = dlsets.load("tiny-digits").train.images
    np.testing.assert_array_equal(x, arrays["train-images-idx3-ubyte.gz"])


def test_verbose_shows_dlsets_log_only_and_leaves_logging_as_it_was(capsys, tiny, tmp_path):
    import logging

    src, _ = tiny
    log = logging.getLogger("dlsets")
    before = (list(log.handlers), log.level, log.propagate)
    code, _, err = run(capsys, "-v", "fetch", "tiny-digits", "--from", str(src))
    assert code == 0 and "imported from" in err
    code, _, err = run(capsys, "verify", "-v")
    assert code == 0 and "lock" not in err.lower()  # filelock's debug chatter stays out
    assert (list(log.handlers), log.level, log.propagate) == before


def test_fetch_says_whether_it_downloaded_imported_or_found_the_files(capsys, tiny, server,
                                                                      tmp_path, monkeypatch):
    src, _ = tiny
    files = json.loads((tmp_path / "reg.json").read_text())["tiny-digits"]["files"]
    for name in files:
        url = server.add(f"/{name}", (src / name).read_bytes())
        files[name]["urls"] = [url]
    reg = tmp_path / "served.json"
    reg.write_text(json.dumps({"served-digits": {"like": "mnist", "files": files}}))
    monkeypatch.setenv("DLSETS_REGISTRY", f"{tmp_path / 'reg.json'}:{reg}")
    code, out, err = run(capsys, "fetch", "served-digits")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 4 and all(ln.startswith("served-digits: ") for ln in lines)
    for name, entry in files.items():
        line = next(ln for ln in lines if f": {name}: " in ln)
        assert f"downloaded {entry['size']:,} bytes in " in line and server.url(f"/{name}") in line
    code, out, _ = run(capsys, "fetch", "served-digits")
    assert code == 0 and out.count(": cached -> ") == 4 and "downloaded" not in out
    code, out, _ = run(capsys, "fetch", "tiny-digits", "--from", str(src))
    assert code == 0 and out.count(": imported ") == 4 and str(src) in out


# --- extreme numbers and paths: one message, nothing written, before any work -------------


def test_extreme_numbers_fail_before_any_work_with_one_message(capsys, tiny, tmp_path):
    src, _ = tiny
    assert run(capsys, "fetch", "tiny-digits", "--from", str(src))[0] == 0
    (tmp_path / "afile").write_text("x")
    cases = {
        # 745 GiB of plan, 785 TB of file: refused by the disk check, before loading
        ("augment", "tiny-digits", "--target", str(10**12), "--rotate", "5", "--out",
         str(tmp_path / "a.h5")): ("not enough disk space", "785,000,000,000,000 bytes"),
        ("preview", "tiny-digits", "--copies", "100000", "--scale", "100", "--out",
         str(tmp_path / "g.png")): ("preview grid of 290,003,000 x 23,100 pixels", "memory",
                                    "--copies", "--rows", "--scale"),
        ("augment", "tiny-digits", "--target", "100", "--out", str(tmp_path / "afile" / "a.h5")):
            ("afile is a file, not a folder", "--out"),
        ("export", "tiny-digits", "--out", str(tmp_path / "afile" / "x.npz")):
            ("afile is a file, not a folder", "--out"),
        ("preview", "tiny-digits", "--out", str(tmp_path / "afile" / "g.png")):
            ("afile is a file, not a folder", "--out"),
    }
    for argv, words in cases.items():
        code, _, err = run(capsys, *argv)
        assert code == 1 and err.startswith("dlsets: error: ") and err.count("\n") == 1, err
        assert all(w in err for w in words), (argv, err)
    for seed in (str(2**64), "-1"):
        with pytest.raises(SystemExit) as exc:
            main(["augment", "tiny-digits", "--target", "100", "--seed", seed, "--out",
                  str(tmp_path / "s.h5")])
        assert exc.value.code == 2
        assert "--seed: expected an integer from 0 to 2**64 - 1" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "dlsets-cache", "reg.json",
                                                          "src"]


def test_the_largest_seed_is_used_and_stored(capsys, tiny, tmp_path):
    """A seed of 2**63 or more was accepted, then crashed storing it, after all the work."""
    src, _ = tiny
    assert run(capsys, "fetch", "tiny-digits", "--from", str(src))[0] == 0
    out = tmp_path / "big-seed.h5"
    code, _, err = run(capsys, "augment", "tiny-digits", "--target", "70", "--rotate", "10",
                       "--seed", str(2**64 - 1), "--out", str(out))
    assert code == 0, err
    with h5py.File(out) as f:
        assert int(f.attrs["seed"]) == 2**64 - 1


def _augment_cli(capsys, tmp_path, name, seed):
    out = tmp_path / name
    code, _, err = run(capsys, "augment", "tiny-digits", "--target", "90", "--subset", "30",
                       "--rotate", "20", "--shift", "0.1", "--seed", str(seed), "--out", str(out))
    assert code == 0, err
    with h5py.File(out) as f:
        return f["train/images"][:], f["train/labels"][:], int(f.attrs["seed"])


def test_augment_seed_decides_the_copies_as_the_python_api_does(capsys, tiny, tmp_path):
    """Ignoring --seed passed every test: the CLI's output must be the API's for that seed."""
    from dlsets import load
    from dlsets.augment import Augmenter, expand, take_subset

    src, _ = tiny
    assert run(capsys, "fetch", "tiny-digits", "--from", str(src))[0] == 0
    a3, y3, stored = _augment_cli(capsys, tmp_path, "s3.h5", 3)
    b3, _, _ = _augment_cli(capsys, tmp_path, "s3-again.h5", 3)
    a4, _, _ = _augment_cli(capsys, tmp_path, "s4.h5", 4)
    assert stored == 3 and np.array_equal(a3, b3) and not np.array_equal(a3[30:], a4[30:])
    ds = load("tiny-digits")
    x, y = take_subset(ds.train.images, ds.train.labels, 30, seed=3)
    ex, ey = expand(x, y, 90, augmenter=Augmenter(rotate=20, shift=0.1, seed=3), seed=3)
    np.testing.assert_array_equal(a3, ex)
    np.testing.assert_array_equal(y3, ey)


def test_ctrl_c_during_augment_talks_about_the_output(capsys, tiny, tmp_path, monkeypatch):
    import dlsets.augment

    src, _ = tiny
    assert run(capsys, "fetch", "tiny-digits", "--from", str(src))[0] == 0

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(dlsets.augment, "expand_to_hdf5", interrupted)
    out = tmp_path / "aug.h5"
    code, _, err = run(capsys, "augment", "tiny-digits", "--target", "100", "--rotate", "5",
                       "--out", str(out))
    assert code == 130 and f"{out} was not written" in err and "download" not in err
    assert not out.exists()


def test_ctrl_c_during_a_sharded_augment_says_which_shards_are_kept(capsys, tiny, tmp_path,
                                                                    monkeypatch):
    import dlsets.scale.shards

    src, _ = tiny
    assert run(capsys, "fetch", "tiny-digits", "--from", str(src))[0] == 0
    real = dlsets.scale.shards._run

    def second_interrupted(exp, shard, *a, **kw):
        if shard == 1:
            raise KeyboardInterrupt
        return real(exp, shard, *a, **kw)

    monkeypatch.setattr(dlsets.scale.shards, "_run", second_interrupted)
    out = tmp_path / "sh"
    code, _, err = run(capsys, "augment", "tiny-digits", "--target", "300", "--rotate", "5",
                       "--shards", "3", "--out", f"{out}/")
    assert code == 130 and "1 complete shard(s)" in err and "write the rest" in err, err
    assert "was not written" not in err
    assert len(list(out.glob("*-of-00003.h5"))) == 1


def test_fetch_from_a_folder_of_namesakes_says_what_is_wrong_with_each(capsys, tiny, tmp_path):
    """Files with the right names but other bytes were only 'no matching file'."""
    src, _ = tiny
    other = tmp_path / "other"
    other.mkdir()
    (other / "train-images-idx3-ubyte.gz").write_bytes(b"truncated")
    same_size = (src / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (other / "t10k-labels-idx1-ubyte.gz").write_bytes(bytes(len(same_size)))
    code, _, err = run(capsys, "fetch", "tiny-digits", "--from", str(other))
    assert code == 1
    assert f"{other / 'train-images-idx3-ubyte.gz'}: has the name but not the content: " \
           "9 bytes, expected" in err
    assert "t10k-labels-idx1-ubyte.gz: has the name but not the content: sha256 " in err


def test_option_errors_name_the_flags_not_python_keywords(capsys, tiny, tmp_path):
    src, _ = tiny
    assert run(capsys, "fetch", "tiny-digits", "--from", str(src))[0] == 0
    code, _, err = run(capsys, "augment", "tiny-digits", "--target", "100", "--rotate", "400",
                       "--out", str(tmp_path / "a.h5"))
    assert code == 1 and "--rotate 400.0 is not allowed" in err and "rotate=" not in err
    code, _, err = run(capsys, "export", "tiny-digits", "--label-mode", "coarse", "--out",
                       str(tmp_path / "x.npz"))
    assert code == 1 and "--label-mode fine" in err and "label_mode=" not in err
    with pytest.raises(SystemExit):
        main(["augment", "tiny-digits", "--target", "1e5", "--out", str(tmp_path / "b.h5")])
    err = capsys.readouterr().err
    assert "expected a positive integer, got 1e5" in err and "_positive_int" not in err


def test_python_m_dlsets_cli_runs_the_command_line():
    import subprocess
    import sys

    got = subprocess.run([sys.executable, "-m", "dlsets.cli", "--version"], capture_output=True,
                         text=True, timeout=120)
    assert got.returncode == 0 and got.stdout.startswith("dlsets "), got.stderr
