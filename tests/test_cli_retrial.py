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
