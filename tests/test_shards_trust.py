"""A folder of shards is not trusted blindly: index.json and the shards' entries are bounded and
checked, file names stay in the folder, each shard is checked against its entry on open."""

import json
import os
import shutil

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from dlsets.augment import Augmenter, expand  # noqa: E402
from dlsets.cli import main  # noqa: E402
from dlsets.errors import FormatError  # noqa: E402
from dlsets.scale import shard_index  # noqa: E402
from dlsets.scale.shard_reader import load_shards  # noqa: E402
from dlsets.scale.shards import expand_to_shards, verify_shards  # noqa: E402
from tests.test_shards import AUG, _data, _state  # noqa: E402


def _folder(tmp_path, format="hdf5", name="d"):
    x, y = _data()
    folder = tmp_path / name
    expand_to_shards(x, y, 100, folder, shards=2, augmenter=Augmenter(**AUG), format=format)
    return folder


def _edit(folder, change):
    doc = json.loads((folder / "index.json").read_text())
    change(doc)
    (folder / "index.json").write_text(json.dumps(doc))


def _rename(doc, i, file):
    doc["shards"][i]["file"] = file
    doc["files"][i] = file


@pytest.mark.parametrize("file", ["../outside-00000-of-00002.h5", "/tmp/x-00000-of-00002.h5",
                                  "a/b-00000-of-00002.h5", "..", "x.h5", 7])
def test_index_file_names_outside_the_folder_are_refused(tmp_path, file):
    folder = _folder(tmp_path)
    # a real shard outside the folder, which must not be opened
    shutil.copy(folder / "augmented-00000-of-00002.h5", tmp_path / "outside-00000-of-00002.h5")
    _edit(folder, lambda d: _rename(d, 0, file))
    with pytest.raises(FormatError, match="index.json"):
        load_shards(folder)


def test_a_symlinked_shard_leading_outside_is_refused(tmp_path):
    folder = _folder(tmp_path)
    outside = tmp_path / "elsewhere.h5"
    os.replace(folder / "augmented-00001-of-00002.h5", outside)
    os.symlink(outside, folder / "augmented-00001-of-00002.h5")
    with pytest.raises(FormatError, match="leads outside"):
        load_shards(folder)


LIES = {
    "count larger": lambda d: d.update(count=d["count"] + 10),
    "count smaller": lambda d: d.update(count=d["count"] - 10),
    "count a string": lambda d: d.update(count="100"),
    "rows overlap": lambda d: d["shards"][1].update(rows=[40, 100], count=60),
    "rows a gap": lambda d: d["shards"][1].update(rows=[60, 110], count=50),
    "rows null": lambda d: d["shards"][0].update(rows=None),
    "entry count lies": lambda d: d["shards"][0].update(count=49),
    "shards empty": lambda d: d.update(shards=[], files=[]),
    "shards reordered": lambda d: d.update(shards=d["shards"][::-1], files=d["files"][::-1]),
    "shard listed twice": lambda d: _rename(d, 1, d["files"][0]),
    "image shape huge": lambda d: d.update(image_shape=[1 << 20, 1 << 20]),
    "image shape negative": lambda d: d.update(image_shape=[-12, 12]),
    "object dtype": lambda d: d.update(dtype="|O"),
    "dtype a list": lambda d: d.update(dtype=["u1"]),
    "classes not strings": lambda d: d.update(classes=[0, 1, 2]),
    "class counts do not add up": lambda d: d["shards"][0]["class_counts"].__setitem__(0, 99),
    "size a float": lambda d: d["shards"][0].update(size=1.5),
    "sha256 not hex": lambda d: d["shards"][0].update(sha256="x" * 64),
    "not an object": lambda d: d.clear(),
}


@pytest.mark.parametrize("lie", sorted(LIES))
def test_an_index_that_lies_is_a_format_error_naming_it(tmp_path, lie):
    folder = _folder(tmp_path)
    _edit(folder, LIES[lie])
    with pytest.raises(FormatError, match=f"{folder / 'index.json'}"):
        load_shards(folder)


@pytest.mark.parametrize("format", ["hdf5", "webdataset"])
def test_two_same_size_shards_swapped_are_refused_on_open(tmp_path, format):
    folder = _folder(tmp_path, format)
    ext = ".h5" if format == "hdf5" else ".tar"
    a, b = (folder / f"augmented-0000{i}-of-00002{ext}" for i in range(2))
    assert a.stat().st_size == b.stat().st_size
    os.replace(a, tmp_path / "t")
    os.replace(b, a)
    os.replace(tmp_path / "t", b)
    with pytest.raises(FormatError, match="augmented-0000[01]-of-00002"):
        load_shards(folder)


@pytest.mark.parametrize("format", ["hdf5", "webdataset"])
def test_a_changed_byte_is_caught_by_verify_true_and_by_dlsets_verify(tmp_path, format, capsys):
    folder = _folder(tmp_path, format)
    ext = ".h5" if format == "hdf5" else ".tar"
    shard = folder / f"augmented-00001-of-00002{ext}"
    data = bytearray(shard.read_bytes())
    x, y = _data()
    ex, _ = expand(x, y, 100, augmenter=Augmenter(**AUG))
    # a pixel of the last image: the file's layout stays valid
    at = bytes(data).rfind(ex[-1].tobytes()) + 5
    data[at] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert len(load_shards(folder)) == 100  # the cheap checks pass: verify's job
    load_shards(folder, rank=0, world_size=2, verify=True)  # rank 0 does not read shard 1
    with pytest.raises(FormatError, match=f"{shard}.*does not hash"):
        load_shards(folder, verify=True)
    assert main(["verify", "--no-repair", f"{folder}/"]) == 1
    assert "damaged" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "too large", "not json"])
def test_an_unreadable_index_is_refused_without_reading_it_and_verify_says_so(
        tmp_path, kind, monkeypatch, capsys):
    folder = _folder(tmp_path)
    index = folder / "index.json"
    good = index.read_bytes()
    index.unlink()
    if kind == "dev-zero":
        os.symlink("/dev/zero", index)
    elif kind == "fifo":
        os.mkfifo(index)  # opening it for reading would wait for a writer forever
    elif kind == "too large":
        monkeypatch.setattr(shard_index, "MAX_INDEX_BYTES", len(good) - 1)
        index.write_bytes(good)
    else:
        index.write_bytes(b"\xff" + good)
    with pytest.raises(FormatError, match=f"{index}"):
        load_shards(folder)
    report = verify_shards(folder, repair=False)
    assert not report.complete and report.index == "damaged" and len(report.ok) == 2
    assert main(["verify", "--no-repair", f"{folder}/"]) == 1
    assert "index.json is damaged" in capsys.readouterr().out
    if kind != "too large":
        # repaired from the shards' own (checked) entries, and said so
        assert main(["verify", f"{folder}/"]) == 0
        assert "was damaged" in capsys.readouterr().out
        assert index.read_bytes() == good and not index.is_symlink()
        assert len(load_shards(folder)) == 100


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "lies"])
def test_a_damaged_shard_entry_is_bounded_reported_and_rewritten(tmp_path, kind, capsys):
    folder = _folder(tmp_path)
    (folder / "index.json").unlink()
    entry = folder / ".augmented-00001-of-00002.h5.json"
    good = json.loads(entry.read_text())
    entry.unlink()
    if kind == "dev-zero":
        os.symlink("/dev/zero", entry)
    elif kind == "fifo":
        os.mkfifo(entry)
    else:
        good["entry"]["file"] = "../augmented-00001-of-00002.h5"
        entry.write_text(json.dumps(good))
    report = verify_shards(folder)
    assert report.missing == ["augmented-00001-of-00002.h5"] and report.index == "missing"
    assert main(["verify", f"{folder}/"]) == 1
    assert "its entry is damaged" in capsys.readouterr().out
    # the same expansion again rewrites that shard and its entry, and completes the folder
    x, y = _data()
    expand_to_shards(x, y, 100, folder, shards=2, augmenter=Augmenter(**AUG))
    assert verify_shards(folder).complete
    before = _state(folder)
    assert np.array_equal(np.asarray(load_shards(folder).images),
                          expand(x, y, 100, augmenter=Augmenter(**AUG))[0])
    assert _state(folder) == before


def _relink(h5, dataset, other):
    """Replace ``dataset`` of ``h5`` by an external link to the same data copied into
    ``other``: the shape, dtype and attributes a reader checks all still agree."""
    import h5py

    with h5py.File(h5, "r+") as f:
        data = f[dataset][...]
        del f[dataset]
        with h5py.File(other, "w") as o:
            o["data"] = data
        f[dataset] = h5py.ExternalLink(str(other), "/data")


def test_a_shard_whose_images_live_in_another_file_is_refused(tmp_path):
    folder = _folder(tmp_path)
    shard = sorted(folder.glob("*.h5"))[1]
    _relink(shard, "train/images", tmp_path / "anywhere.h5")
    with pytest.raises(FormatError, match="stored outside the file"):
        load_shards(folder).images[:]
