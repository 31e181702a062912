"""Safe zip extraction (Kaggle downloads): every member checked before anything is written."""

import hashlib
import io
import zipfile

import pytest

from dlsets.errors import FormatError, UnsafeArchiveError
from dlsets.formats import archive


def _zip(members, *, compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for info, data in members:
            z.writestr(info, data)
    return buf.getvalue()


def test_extracts_files_with_their_hashes(tmp_path):
    src = tmp_path / "a.zip"
    src.write_bytes(_zip([("d/x.txt", b"hello"), ("d/sub/", b""), ("y.bin", b"\0" * 10)]))
    assert archive.is_zip(src)
    got = archive.extract_zip(src, tmp_path / "out")
    assert got == {"d/x.txt": (5, hashlib.sha256(b"hello").hexdigest()),
                   "y.bin": (10, hashlib.sha256(b"\0" * 10).hexdigest())}
    assert (tmp_path / "out" / "d" / "x.txt").read_bytes() == b"hello"


def _symlink():
    info = zipfile.ZipInfo("link")
    info.external_attr = 0o120777 << 16
    return info, b"/etc/passwd"


def _encrypted():
    return zipfile.ZipInfo("secret.txt"), b"x"  # flagged encrypted below: zipfile cannot write it


def _flag_encrypted(data: bytes, name: bytes) -> bytes:
    """Set the 'encrypted' bit of member ``name`` in its local and central headers."""
    out = bytearray(data)
    for sig, flag_at, name_at in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        pos = out.find(sig)
        while pos >= 0:
            if out[pos + name_at:pos + name_at + len(name)] == name:
                out[pos + flag_at] |= 0x1
            pos = out.find(sig, pos + 4)
    return bytes(out)


@pytest.mark.parametrize("bad, error, words", [
    (("../evil.txt", b"x"), UnsafeArchiveError, "outside the archive"),
    (("/abs.txt", b"x"), UnsafeArchiveError, "absolute path"),
    (_symlink(), UnsafeArchiveError, "symbolic link"),
    (_encrypted(), FormatError, "encrypted"),
])
def test_unsafe_members_fail_the_archive_before_any_write(tmp_path, bad, error, words):
    src = tmp_path / "bad.zip"
    data = _zip([("fine.txt", b"ok"), bad])
    src.write_bytes(_flag_encrypted(data, b"secret.txt") if words == "encrypted" else data)
    with pytest.raises(error, match=words):
        archive.extract_zip(src, tmp_path / "out")
    assert not (tmp_path / "out" / "fine.txt").exists()


def test_zip_bombs_and_damage_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(archive, "ZIP_RATIO_FLOOR", 1 << 16)
    src = tmp_path / "bomb.zip"
    src.write_bytes(_zip([("zeros.bin", b"\0" * (4 << 20))]))
    with pytest.raises(UnsafeArchiveError, match="zip bomb"):
        archive.extract_zip(src, tmp_path / "out")
    good = _zip([("a.txt", b"a" * 1000)], compression=zipfile.ZIP_STORED)
    (tmp_path / "cut.zip").write_bytes(good[:-30])
    with pytest.raises(FormatError, match="not a readable zip"):
        archive.extract_zip(tmp_path / "cut.zip", tmp_path / "out2")
    flipped = bytearray(good)
    flipped[good.index(b"aaaa")] ^= 1  # content no longer matches its CRC
    (tmp_path / "crc.zip").write_bytes(bytes(flipped))
    with pytest.raises(FormatError, match="damaged zip"):
        archive.extract_zip(tmp_path / "crc.zip", tmp_path / "out3")
