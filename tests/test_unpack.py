"""Unpacking to disk (dlsets/unpack.py through archive.extract and archive.extract_zip): bounds on
the whole archive, one staging folder, names as the archive gives them, one tree."""

import io
import os
import tarfile
import warnings
import zipfile

import pytest

from dlsets.errors import FormatError, SpaceError, UnsafeArchiveError
from dlsets.formats import archive, unpack
from dlsets.store import space


def _zip(members, *, compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of duplicate names, which we want here
        with zipfile.ZipFile(buf, "w", compression) as z:
            for name, data in members:
                z.writestr(name, data)
    return buf.getvalue()


def _tar(members) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _unpack(kind, members, tmp_path):
    """Unpack ``members`` as a zip or a tar.gz into tmp_path/out."""
    src = tmp_path / f"a.{kind}"
    src.write_bytes(_zip(members) if kind == "zip" else _tar(members))
    if kind == "zip":
        return archive.extract_zip(src, tmp_path / "out")
    return archive.extract(src, tmp_path / "out")


@pytest.fixture
def opened(monkeypatch):
    """The member files unpacking opens for writing, in order."""
    seen = []
    real = unpack.Staging.open

    def counting(self, parts):
        seen.append("/".join(parts))
        return real(self, parts)

    monkeypatch.setattr(unpack.Staging, "open", counting)
    return seen


def _nothing_left(tmp_path):
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == [next(tmp_path.glob("a.*")).name]


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_a_bomb_spread_over_members_is_refused_before_the_bulk_is_written(
        kind, tmp_path, monkeypatch, opened):
    # Each member stays under the per-member floor; together they pass it at ~1000x.
    monkeypatch.setattr(archive, "ZIP_RATIO_FLOOR", 1 << 20)
    members = [(f"z/{i:02d}.bin", bytes(256 << 10)) for i in range(24)]
    with pytest.raises(UnsafeArchiveError, match="together.*bomb"):
        _unpack(kind, members, tmp_path)
    # zip: declared sizes are judged before any write; tar: streamed, so a floor's worth or so
    assert len(opened) == 0 if kind == "zip" else 0 < len(opened) <= 5
    _nothing_left(tmp_path)


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_what_does_not_fit_the_free_disk_is_refused_before_it_is_written(
        kind, tmp_path, monkeypatch, opened):
    monkeypatch.setattr(space, "free_disk", lambda folder: 3 << 20)
    members = [(f"r/{i}.bin", os.urandom(1 << 20)) for i in range(4)]
    with pytest.raises(SpaceError, match="free"):
        _unpack(kind, members, tmp_path)
    assert len(opened) == (0 if kind == "zip" else 2)  # the tar's third member would not fit
    _nothing_left(tmp_path)


def test_unpacking_scans_folders_a_fixed_number_of_times(tmp_path, monkeypatch):
    """The per-file atomic step cleaned the whole folder per file: quadratic in its files."""
    scans = []
    real_scandir, real_listdir = os.scandir, os.listdir
    monkeypatch.setattr(os, "scandir", lambda *a: scans.append(a) or real_scandir(*a))
    monkeypatch.setattr(os, "listdir", lambda *a: scans.append(a) or real_listdir(*a))
    counts = []
    for n in (10, 80):
        (tmp_path / str(n)).mkdir()
        scans.clear()
        got = _unpack("zip", [(f"flat/{i}.txt", b"x") for i in range(n)], tmp_path / str(n))
        assert len(got) == n
        counts.append(len(scans))
    assert counts[0] == counts[1] <= 3
    assert sorted(os.listdir(tmp_path / "80" / "out" / "flat"))[:2] == ["0.txt", "1.txt"]


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_a_255_byte_member_name_is_unpacked_as_it_is(kind, tmp_path):
    name = "n" * 251 + ".png"  # 255 bytes: legal on common file systems and in archives
    got = _unpack(kind, [(f"d/{name}", b"png"), ("d/e/" + "m" * 240, b"m")], tmp_path)
    assert (tmp_path / "out" / "d" / name).read_bytes() == b"png"
    assert len(got) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a." + kind, "out"]  # no staging left


@pytest.mark.parametrize("kind", ["zip", "tar"])
@pytest.mark.parametrize("members, words", [
    ([("ok.txt", b"1"), ("d/" + "n" * 256, b"2")], "256 bytes long"),
    ([("ok.txt", b"1"), ("bad\nname.txt", b"2")], "control character"),
    ([("ok.txt", b"1"), ("d/a.txt", b"2"), ("d/a.txt", b"3")], "'d/a.txt' appears twice"),
    ([("ok.txt", b"1"), ("d", b"2"), ("d/x.txt", b"3")], "'d' is a file and 'd/x.txt'"),
    ([("ok.txt", b"1"), ("d/x.txt", b"2"), ("d", b"3")], "'d' is a file and 'd/x.txt'"),
])
def test_names_no_file_system_takes_and_trees_that_are_not_one_are_refused(
        kind, members, words, tmp_path):
    with pytest.raises(FormatError, match=words):
        _unpack(kind, members, tmp_path)
    _nothing_left(tmp_path)


def test_a_zip_whose_members_overlap_is_refused(tmp_path):
    """Two central-directory entries for one stored member: their compressed sizes add up to
    more than the file holds (the overlapping-member bomb)."""
    data = bytearray(_zip([("a", b"x" * 4000)], compression=zipfile.ZIP_STORED))
    cd = data.rindex(b"PK\x01\x02")
    eocd = data.rindex(b"PK\x05\x06")
    entry = bytes(data[cd:eocd])
    twin = entry[:46] + b"b" + entry[47:]
    count = int.from_bytes(data[eocd + 10:eocd + 12], "little") + 1
    tail = bytearray(data[eocd:])
    tail[8:10] = tail[10:12] = count.to_bytes(2, "little")
    tail[12:16] = (2 * len(entry)).to_bytes(4, "little")
    (tmp_path / "a.zip").write_bytes(bytes(data[:eocd]) + twin + bytes(tail))
    with pytest.raises(UnsafeArchiveError, match="overlap"):
        archive.extract_zip(tmp_path / "a.zip", tmp_path / "out")
    _nothing_left(tmp_path)


def test_a_killed_unpacking_leaves_a_staging_folder_the_next_one_removes(tmp_path):
    import subprocess
    import sys

    from dlsets.store.atomic import HOST

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".out.{HOST}@{dead.pid}-1.tmp"
    (stale / "d").mkdir(parents=True)
    (stale / "d" / "half.bin").write_bytes(b"x" * 100)
    _unpack("zip", [("d/a.txt", b"a")], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip", "out"]


def test_paths_returned_are_under_the_resolved_destination(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "via").symlink_to(real)
    src = tmp_path / "a.tar"
    src.write_bytes(_tar([("d/a.txt", b"a")]))
    [p] = archive.extract(src, tmp_path / "via" / "out")
    assert p == real.resolve() / "out" / "d" / "a.txt" and p.read_bytes() == b"a"
