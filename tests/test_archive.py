"""Safe tar handling: every unsafe member kind is refused, nothing lands outside the target."""

import io
import tarfile

import pytest

from dlsets.errors import FormatError, OptionError, UnsafeArchiveError
from dlsets.formats import archive
from tests.formats import tar_gz_bytes


def _tar_with(info: tarfile.TarInfo, data: bytes = b"") -> bytes:
    def extra(tf):
        tf.addfile(info, io.BytesIO(data) if data else None)

    return tar_gz_bytes({"ok/a.txt": b"fine"}, extra=extra)


def _member(name, type_=tarfile.REGTYPE, linkname="", size=0):
    info = tarfile.TarInfo(name)
    info.type = type_
    info.linkname = linkname
    info.size = size
    return info


UNSAFE = {
    "dotdot": _member("ok/../../evil.txt", size=4),
    "absolute": _member("/tmp/evil.txt", size=4),
    "symlink": _member("ok/link", tarfile.SYMTYPE, linkname="/etc/passwd"),
    "hardlink": _member("ok/hard", tarfile.LNKTYPE, linkname="ok/a.txt"),
    "chardev": _member("ok/null", tarfile.CHRTYPE),
    "blockdev": _member("ok/sda", tarfile.BLKTYPE),
    "fifo": _member("ok/pipe", tarfile.FIFOTYPE),
}


@pytest.mark.parametrize("kind", sorted(UNSAFE))
def test_unsafe_members_are_refused_when_iterating(kind):
    info = UNSAFE[kind]
    data = _tar_with(info, b"evil" if info.size else b"")
    with pytest.raises(UnsafeArchiveError) as exc:
        list(archive.iter_files(io.BytesIO(data)))
    assert info.name in str(exc.value)


@pytest.mark.parametrize("kind", sorted(UNSAFE))
def test_unsafe_members_are_never_written(kind, tmp_path):
    info = UNSAFE[kind]
    data = _tar_with(info, b"evil" if info.size else b"")
    dest = tmp_path / "dest" / "inner"
    with pytest.raises(UnsafeArchiveError):
        archive.extract(io.BytesIO(data), dest)
    names = {p.name for p in tmp_path.rglob("*")}
    assert not names & {"evil.txt", "link", "hard", "null", "sda", "pipe"}


def test_backslash_dotdot_is_refused():
    with pytest.raises(UnsafeArchiveError):
        archive.member_path("ok\\..\\..\\evil.txt")
    with pytest.raises(UnsafeArchiveError):
        archive.member_path("C:/evil.txt")


def test_safe_archive_is_read_in_order_and_extracted(tmp_path):
    members = {"top/b.txt": b"bee", "top/sub/a.txt": b"ay", "./top/c.bin": b"\x00\x01"}
    data = tar_gz_bytes(members)
    got = list(archive.iter_files(io.BytesIO(data)))
    assert got == [("top/b.txt", b"bee"), ("top/sub/a.txt", b"ay"), ("top/c.bin", b"\x00\x01")]
    written = archive.extract(io.BytesIO(data), tmp_path / "out")
    assert [p.read_bytes() for p in written] == [b"bee", b"ay", b"\x00\x01"]
    assert all((tmp_path / "out") in p.parents for p in written)
    assert not list((tmp_path / "out").rglob("*.tmp"))


def test_extract_refuses_a_symlinked_folder_in_the_destination(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "top").symlink_to(outside)
    # an archive is unpacked into a new folder, whole: one holding anything is refused
    with pytest.raises(OptionError, match="not an empty folder"):
        archive.extract(io.BytesIO(tar_gz_bytes({"top/x.txt": b"x"})), dest)
    assert not (outside / "x.txt").exists()
    (tmp_path / "linked").symlink_to(outside)  # a link to an empty folder is no folder of ours
    with pytest.raises(OptionError):
        archive.extract(io.BytesIO(tar_gz_bytes({"x.txt": b"x"})), tmp_path / "linked")
    assert not list(outside.iterdir())


def test_damaged_archive_is_a_format_error(tmp_path):
    data = tar_gz_bytes({"top/a.bin": bytes(range(256)) * 400})
    with pytest.raises(FormatError):
        list(archive.iter_files(io.BytesIO(data[: len(data) // 2])))
    with pytest.raises(FormatError):
        list(archive.iter_files(io.BytesIO(b"not a tar at all" * 100)))


def _tar(members, fmt, mode="w:gz"):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=fmt) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


LONG = "notMNIST_large/A/" + "QmVya2VsZXkgT2xkIFN0eWxlIEJvb2sgSXRhbGljIE9TRi50dGY" * 3 + ".png"
MEMBERS = {"top/a.bin": bytes(range(256)) * 3, LONG: b"\x89PNG" + bytes(700),
           "top/empty": b"", "top/\u00e9t\u00e9.txt": b"unicode name", "top/exact": b"x" * 512}


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
@pytest.mark.parametrize("mode", ["w:gz", "w:bz2", "w:xz", "w"])
def test_every_tar_flavour_reads_like_tarfile(fmt, mode):
    members = dict(MEMBERS)
    if fmt == tarfile.USTAR_FORMAT:  # ustar: long names only via the 155-byte prefix
        members["notMNIST_large/" + "B" * 120 + "/x.png"] = members.pop(LONG)
    data = _tar(members, fmt, mode)
    got = list(archive.iter_files(io.BytesIO(data)))
    assert got == list(members.items())


def test_tar_without_end_marker_still_reads():
    data = _tar({"a/x": b"123", "a/y": b"456"}, tarfile.GNU_FORMAT, mode="w")
    body = data.rstrip(b"\0")
    body += b"\0" * (-len(body) % 512)
    assert list(archive.iter_files(io.BytesIO(body))) == [("a/x", b"123"), ("a/y", b"456")]


def test_corrupt_header_fails_its_checksum():
    data = bytearray(_tar({"a/x": b"123"}, tarfile.GNU_FORMAT, mode="w"))
    data[0] = ord("b")  # the name changes, the checksum does not
    with pytest.raises(FormatError, match="checksum"):
        list(archive.iter_files(io.BytesIO(bytes(data))))


def test_truncated_member_is_a_format_error():
    data = _tar({"a/x": bytes(5000)}, tarfile.GNU_FORMAT, mode="w")
    with pytest.raises(FormatError, match="truncated"):
        list(archive.iter_files(io.BytesIO(data[:2048])))


def test_iter_files_from_a_path(tmp_path):
    p = tmp_path / "a.tar.gz"
    p.write_bytes(tar_gz_bytes({"d/one": b"1"}))
    assert list(archive.iter_files(p)) == [("d/one", b"1")]


def test_dot_directory_entries_are_fine():
    """``tar czf x.tar.gz -C dir .`` starts with a "./" directory entry."""
    def extra(tf):
        d = tarfile.TarInfo("./")
        d.type = tarfile.DIRTYPE
        tf.addfile(d)
        info = tarfile.TarInfo("./A/x.png")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"hi"))

    data = tar_gz_bytes({}, extra=extra)
    assert list(archive.iter_files(io.BytesIO(data))) == [("A/x.png", b"hi")]


def _pax_tar(record: bytes) -> bytes:
    """A plain tar whose one member has a pax header; its 13-byte record is replaced."""
    assert len(record) == 13
    buf = io.BytesIO()
    info = tarfile.TarInfo("a.txt")
    info.size = 3
    info.pax_headers = {"comment": "x"}  # the record "13 comment=x\n"
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        tf.addfile(info, io.BytesIO(b"abc"))
    raw = bytearray(buf.getvalue())
    assert raw[156:157] == b"x" and raw[512:525] == b"13 comment=x\n"
    raw[512:525] = record
    return bytes(raw)


def test_pax_records_are_read():
    assert list(archive.iter_files(io.BytesIO(_pax_tar(b"13 comment=y\n")))) == [
        ("a.txt", b"abc")
    ]


@pytest.mark.parametrize("record", [b"0 comment=xy\n", b"-5 comment=x\n", b"99 comment=x\n",
                                    b"13 size=-512\n"])
def test_hostile_pax_header_is_a_format_error_not_a_hang(record):
    """A zero-length record never advanced (the reader hung); a negative size moved the
    stream backwards (members were read twice, or forever)."""
    with pytest.raises(FormatError, match="pax"):
        list(archive.iter_files(io.BytesIO(_pax_tar(record))))


def test_members_are_streamed_and_unwanted_ones_skipped_without_buffering():
    """A 64 MiB member that compresses to 64 KB: iterating past it holds a megabyte or so at a
    time, never the member; bounds refuse a member before any of it is read."""
    import tracemalloc

    from dlsets.errors import FormatError
    from tests import hostile

    data = hostile.tar_gz_with_member("d/big.bin", 64 << 20, before={"d/a.txt": b"hello"})
    tracemalloc.start()
    try:
        got = [(p, d) for p, d in archive.iter_files(io.BytesIO(data),
                                                     want=lambda p: p.endswith(".txt"))]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got == [("d/a.txt", b"hello")] and peak < 8 << 20, peak
    with pytest.raises(FormatError, match=r"x.tar.gz: member 'd/big.bin' is 67,108,864 bytes, "
                                          r"more than the 1,000"):
        list(archive.iter_files(io.BytesIO(data), name="x.tar.gz", max_member=1000))
    with pytest.raises(FormatError, match="x.tar.gz: inflates to more than 5,000,000 bytes"):
        list(archive.iter_files(io.BytesIO(data), name="x.tar.gz", max_total=5_000_000))
