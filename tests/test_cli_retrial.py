"""The CLI's answers to the defects a hostile re-trial left: each on the real command line."""

import pytest

from dlsets.cli import main
from tests.formats import mnist_like
from tests.imagefolders import class_folder

DEAD_URL = "http://127.0.0.1:9/never/"


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """'tiny-digits' (like mnist) fetched into the test's cache."""
    src, reg, _ = mnist_like(tmp_path, "tiny-digits", 60, 20, url=DEAD_URL)
    monkeypatch.setenv("DLSETS_REGISTRY", str(reg))
    assert main(["fetch", "tiny-digits", "--from", str(src), "-q"]) == 0
    return src


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def usage_error(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    assert exc.value.code == 2
    return capsys.readouterr().err


# --- numeric options: the error names the option typed ------------------------------------


def test_split_seed_errors_name_split_seed_not_seed(capsys, tmp_path):
    photos = class_folder(tmp_path / "photos", {"a": 6, "b": 6})
    for cmd in (["info", photos], ["augment", photos, "--target", 20, "--out", tmp_path / "a.h5"]):
        said = usage_error(capsys, *cmd, "--split-seed", "-1").splitlines()[-1]
        assert "--split-seed" in said and "--seed" not in said.replace("--split-seed", ""), said


def test_numeric_option_errors_name_the_option_typed(capsys, tiny, tmp_path):
    cases = [
        (["augment", "tiny-digits", "--target", 100, "--out", tmp_path / "a.h5",
          "--elastic", -1, 2], "--elastic ALPHA -1.0", "alpha="),
        (["augment", "tiny-digits", "--target", 100, "--out", tmp_path / "a.h5",
          "--elastic", 1, -2], "--elastic SIGMA -2.0", "sigma="),
        (["export", "tiny-digits", "--format", "caffe", "--out", tmp_path / "cf",
          "--range", "nan", 1], "--range nan 1.0", "value_range="),
        (["export", "tiny-digits", "--format", "caffe", "--out", tmp_path / "cf",
          "--max-file-mb", "0.001"], "--max-file-mb 0.000999451 is smaller", "max_file_bytes="),
    ]
    for argv, said, keyword in cases:
        code, _, err = run(capsys, *argv)
        assert code == 1 and said in err and keyword not in err, err


# --- output to a closed pipe (`dlsets list | head -1`) ---------------------------------------


def _into_closed_pipe(*argv, env=None):
    """Run the CLI with its stdout a pipe whose reader is gone before it writes."""
    import os
    import subprocess
    import sys

    r, w = os.pipe()
    os.close(r)
    try:
        return subprocess.run([sys.executable, "-m", "dlsets", *map(str, argv)], stdout=w,
                              stderr=subprocess.PIPE, text=True, timeout=120, env=env)
    finally:
        os.close(w)


@pytest.mark.parametrize("argv", [["list"], ["info", "mnist"], ["-v", "list"]])
@pytest.mark.parametrize("unbuffered", ["", "1"])  # the first print fails, or the last flush
def test_a_closed_pipe_ends_the_command_quietly(argv, unbuffered):
    import os

    got = _into_closed_pipe(*argv, env={**os.environ, "PYTHONUNBUFFERED": unbuffered})
    assert got.returncode == 141 and got.stderr == "", got.stderr


def test_a_closed_pipe_after_help_says_nothing_either():
    got = _into_closed_pipe("--help")  # argparse's own printing: its status (0) stays
    assert got.stderr == "" and got.returncode in (0, 141)


# --- Ctrl-C in a shards run whose folder is gone ----------------------------------------------


@pytest.mark.parametrize("trailing", ["/", ""])
def test_ctrl_c_before_any_shard_says_the_folder_is_not_there(capsys, tiny, tmp_path,
                                                              monkeypatch, trailing):
    import dlsets.scale.shards

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(dlsets.scale.shards, "_run", interrupted)
    out = tmp_path / "new" / "sh"
    code, _, err = run(capsys, "augment", "tiny-digits", "--target", 300, "--rotate", 5,
                       "--shards", 3, "--out", f"{out}{trailing}")
    assert code == 130 and not out.exists()
    assert "complete shard" not in err and f"{out}/ does not exist" in err, err
    assert "Run the same command again" in err


# --- verify DIR/ runs the reader's structure checks ---------------------------------------------


def test_verify_of_a_shard_folder_the_reader_refuses_is_not_ok(capsys, tiny, tmp_path):
    import dlsets

    out = tmp_path / "sh"
    assert run(capsys, "augment", "tiny-digits", "--target", 90, "--rotate", 5, "--shards", 3,
               "--out", f"{out}/", "-q")[0] == 0
    assert run(capsys, "verify", f"{out}/")[0] == 0
    # The same bytes, reached through a link that leads out of the folder: they hash to their
    # entry, but the reader refuses a shard outside its folder.
    shard = sorted(out.glob("*-of-00003.h5"))[1]
    moved = tmp_path / "elsewhere.h5"
    shard.rename(moved)
    shard.symlink_to(moved)
    with pytest.raises(dlsets.FormatError):
        dlsets.load_shards(out)
    code, stdout, err = run(capsys, "verify", f"{out}/")
    assert code == 1, stdout + err
    assert "outside" in stdout and "reading them back fails" in stdout, stdout
    assert "run `dlsets verify" not in stdout  # not sent back to the command that said it
    assert dlsets.verify_shards(out).complete is False


# --- outputs inside the cache folder are refused -------------------------------------------


def _cache_targets(tmp_path):
    """Paths into the test's cache (DLSETS_CACHE): plain, through '..', through a link."""
    cache = tmp_path / "dlsets-cache"
    link = tmp_path / "link"
    link.symlink_to(cache, target_is_directory=True)
    return [cache / "out", cache / ".." / "dlsets-cache" / "tiny-digits" / "out", link / "out"]


@pytest.mark.parametrize("command", [
    ["export", "tiny-digits", "--out", "{}.h5"],
    ["export", "tiny-digits", "--out", "{}.npz"],
    ["export", "tiny-digits", "--format", "caffe", "--out", "{}"],
    ["export", "tiny-digits", "--format", "convnetjs", "--out", "{}"],
    ["augment", "tiny-digits", "--target", 90, "--rotate", 5, "--out", "{}.h5"],
    ["augment", "tiny-digits", "--target", 90, "--rotate", 5, "--out", "{}/"],
    ["augment", "tiny-digits", "--target", 90, "--rotate", 5, "--format", "caffe", "--out", "{}"],
    ["preview", "tiny-digits", "--rotate", 5, "--out", "{}.png"],
    ["preview", "tiny-digits", "--rotate", 5, "--tensorboard", "{}"],
])
def test_an_output_inside_the_cache_is_refused(capsys, tiny, tmp_path, command):
    for target in _cache_targets(tmp_path):
        argv = [str(a).format(target) for a in command]
        code, out, err = run(capsys, *argv)
        assert code == 1 and "inside dlsets' cache folder" in err, (argv, out, err)
        assert "outside the cache" in err and len(err.strip().splitlines()) == 1, err
        assert not list((tmp_path / "dlsets-cache").glob("**/out*")), argv
    # the cache's own files are still written: loading prepares them
    code, _, err = run(capsys, "export", "tiny-digits", "--out", tmp_path / "fine.h5", "-q")
    assert code == 0, err


def test_an_output_inside_a_cache_dir_given_on_the_command_line_is_refused(capsys, tiny,
                                                                          tmp_path):
    other = tmp_path / "other-cache"
    code, _, err = run(capsys, "export", "tiny-digits", "--cache-dir", other, "--out",
                       other / "x.h5")
    assert code == 1 and f"inside dlsets' cache folder {other}" in err, err


def test_the_library_refuses_outputs_inside_the_cache(tiny, tmp_path):
    import numpy as np

    import dlsets

    ds = dlsets.load("tiny-digits")
    x, y = ds.train.images, ds.train.labels
    aug = dlsets.Augmenter(rotate=5)

    def writes(target):
        return [
            lambda: ds.to_hdf5(f"{target}.h5"),
            lambda: ds.to_npz(f"{target}.npz"),
            lambda: ds.to_convnetjs(target),
            lambda: ds.to_caffe(target),
            lambda: dlsets.expand_to_caffe(x, y, 90, target, augmenter=aug),
            lambda: dlsets.expand_to_hdf5(x, y, 90, f"{target}.h5", augmenter=aug),
            lambda: dlsets.expand_to_shards(x, y, 90, target, augmenter=aug, shards=2),
            lambda: dlsets.expand_shard(x, y, 90, target, shard=0, shards=2, augmenter=aug),
            lambda: dlsets.save_png(np.zeros((4, 4), np.uint8), f"{target}.png"),
        ]

    for target in _cache_targets(tmp_path):
        for write in writes(target):
            with pytest.raises(dlsets.WriteError, match="inside dlsets' cache folder"):
                write()
    assert not list((tmp_path / "dlsets-cache").glob("**/out*"))


@pytest.mark.extra  # needs tensorboardX
def test_tensorboard_summaries_inside_the_cache_are_refused(tiny, tmp_path):
    import dlsets

    x = dlsets.load("tiny-digits").train.images
    for target in _cache_targets(tmp_path):
        with pytest.raises(dlsets.WriteError, match="inside dlsets' cache folder"):
            dlsets.write_tensorboard(target, x, dlsets.Augmenter(rotate=5), n=2, copies=1)
    assert not list((tmp_path / "dlsets-cache").glob("**/out*"))


# --- the trial of 0.2.0's round 4: verify of any path, outputs given as inputs -------------


def test_verify_of_a_path_checks_what_is_there_and_refuses_what_is_not(capsys, tmp_path):
    import dlsets

    photos = class_folder(tmp_path / "photos", {"a": 6, "b": 6})
    (tmp_path / "notes.txt").write_text("not images")
    for name, words in ((tmp_path / "nosuchdir", "no such folder"),
                        (tmp_path / "notes.txt", "not a folder, a shard folder or an HDF5")):
        code, out, err = run(capsys, "verify", name)  # said "ok" for both
        assert code == 1 and err.startswith("dlsets: error: ") and words in err, err
        assert "ok" not in out
    code, out, _ = run(capsys, "verify", photos)  # nothing prepared: nothing checked
    assert code == 0 and "no prepared copy in the cache, nothing to verify" in out, out
    assert run(capsys, "export", photos, "--out", tmp_path / "p.h5")[0] == 0
    code, out, _ = run(capsys, "verify", photos)
    assert code == 0 and out.strip().endswith(": ok"), out
    # an HDF5 file dlsets wrote is read whole; a truncated one is reported, status 1
    code, out, _ = run(capsys, "verify", tmp_path / "p.h5")
    assert code == 0 and "p.h5: ok (every dataset read whole)" in out, out
    data = (tmp_path / "p.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[:len(data) * 2 // 3])
    code, out, err = run(capsys, "verify", tmp_path / "cut.h5")
    assert code == 1 and "cut.h5" in out and "Traceback" not in err, (out, err)
    with dlsets.load(tmp_path / "p.h5") as ds:
        assert len(ds.train.images) + len(ds.test.images) == 12


def test_outputs_given_where_image_folders_go_say_what_reads_them(capsys, tmp_path):
    import numpy as np

    import dlsets

    x = np.zeros((40, 8, 8), np.uint8)
    y = np.arange(40) % 2
    dlsets.expand_to_shards(x, y, 40, tmp_path / "shards", shards=2, progress=False)
    dlsets.Dataset("d", dlsets.Split(x, y), dlsets.Split(x[:4], y[:4]), ()).to_hdf5(
        tmp_path / "d.h5")
    for cmd in ("info", "preview", "export"):
        extra = {"info": [], "preview": ["--out", tmp_path / "g.png"],
                 "export": ["--out", tmp_path / "e.npz"]}[cmd]
        code, _, err = run(capsys, cmd, tmp_path / "d.h5", *extra)
        assert code == 1 and "is an HDF5 file, not a folder of images" in err, err
        assert "dlsets.load(" in err and f"dlsets verify {tmp_path / 'd.h5'}" in err, err
        code, _, err = run(capsys, cmd, tmp_path / "shards", *extra)
        assert code == 1 and "is a folder of shards" in err and "load_shards(" in err, err
    assert not (tmp_path / "g.png").exists() and not (tmp_path / "e.npz").exists()


def test_compression_is_refused_where_the_format_has_none(capsys, tmp_path):
    photos = class_folder(tmp_path / "photos", {"a": 6, "b": 6})
    for argv in (["export", photos, "--compression", "gzip", "--format", "npz", "--out",
                  tmp_path / "e.npz"],
                 ["export", photos, "--compression", "lzf", "--format", "caffe", "--out",
                  tmp_path / "caffe"],
                 ["augment", photos, "--target", 20, "--compression", "gzip", "--format",
                  "webdataset", "--out", f"{tmp_path / 'wds'}/"]):
        code, _, err = run(capsys, *argv)  # npz and caffe wrote uncompressed files silently
        assert code == 1 and "--compression" in err and "--format" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]  # refused before work
    code, _, err = run(capsys, "augment", photos, "--target", 20, "--rotate", 5,
                       "--compression", "gzip", "--out", tmp_path / "a.h5")
    assert code == 0, err
    import h5py

    with h5py.File(tmp_path / "a.h5") as f:
        assert f["train/images"].compression == "gzip"
