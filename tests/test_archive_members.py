"""The member set of an archive: no path given twice (the later copy never silently wins) and,
for CIFAR, every training batch the format numbers."""

import io
import tarfile

import numpy as np
import pytest

from dlsets.errors import FormatError
from dlsets.formats import archive, cifar
from dlsets.formats.stl10 import read_stl10_tar
from tests import formats

RNG = np.random.default_rng(3)
C10 = [f"c{i}" for i in range(10)]


def _members(body: bytes) -> list[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(body)) as tf:
        return [(m.name, tf.extractfile(m).read()) for m in tf.getmembers() if m.isfile()]


def _tar(members: list[tuple[str, bytes]]) -> bytes:
    """A tar.gz of ``members`` in order, the same name as often as it is listed."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.GNU_FORMAT) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _cifar10(flavour: str, batches: int = 5):
    x = RNG.integers(0, 256, (batches * 2, 32, 32, 3), dtype=np.uint8)
    y = (np.arange(len(x)) % 10).astype(np.uint8)
    make = formats.cifar10_python_tar if flavour == "python" else formats.cifar10_binary_tar
    return _members(make(x, y, x[:3], y[:3], C10, batches=batches)), x


def _read(members):
    return cifar.read_cifar_tar(io.BytesIO(_tar(members)), coarse=False, name="c.tar.gz")


@pytest.mark.parametrize("name", ["d/a.bin", "./d/a.bin"])
def test_a_member_path_given_twice_fails_every_tar_reader(name):
    body = _tar([("d/a.bin", b"first"), ("d/b.bin", b"b"), (name, b"second")])
    with pytest.raises(FormatError, match=r"x\.tar\.gz: member 'd/a\.bin' appears twice"):
        list(archive.iter_files(io.BytesIO(body), name="x.tar.gz"))
    with pytest.raises(FormatError, match="appears twice"):  # even when it is not wanted
        list(archive.iter_files(io.BytesIO(body), want=lambda p: p == "d/b.bin"))
    assert [p for p, _ in archive.iter_files(io.BytesIO(_tar([("d/a.bin", b"1")])))] == [
        "d/a.bin"]


@pytest.mark.parametrize("flavour", ["python", "binary"])
def test_a_cifar_batch_given_twice_is_refused_not_replaced(flavour):
    members, _ = _cifar10(flavour)
    first = next(i for i, (n, _) in enumerate(members) if "data_batch_1" in n)
    # the hostile trial's case: a second data_batch_1 holding batch 2's bytes
    twice = [*members, (members[first][0], members[first + 1][1])]
    with pytest.raises(FormatError, match="c.tar.gz: member .*data_batch_1.* appears twice"):
        _read(twice)
    # one base name in two folders is as ambiguous
    other = [*members, ("elsewhere/" + members[first][0].rsplit("/", 1)[1], members[first][1])]
    with pytest.raises(FormatError, match="data_batch_1.* appears twice"):
        _read(other)


@pytest.mark.parametrize("flavour", ["python", "binary"])
@pytest.mark.parametrize("gone", [1, 3])
def test_a_cifar_archive_missing_a_batch_names_it(flavour, gone):
    members, _ = _cifar10(flavour)
    kept = [m for m in members if f"data_batch_{gone}" not in m[0].rsplit("/", 1)[1]]
    assert len(kept) == len(members) - 1
    with pytest.raises(FormatError, match=f"c.tar.gz: missing data_batch_{gone}"):
        _read(kept)


def test_a_python_batch_saying_of_5_needs_all_5():
    members, _ = _cifar10("python")
    kept = [m for m in members if not m[0].endswith("data_batch_5")]
    with pytest.raises(FormatError, match="'training batch 1 of 5' but the archive has 4; "
                                          "missing data_batch_5"):
        _read(kept)


@pytest.mark.parametrize("extra", ["data_batch_01", "data_batch_0"])
def test_a_batch_number_given_twice_or_zero_is_refused(extra):
    members, _ = _cifar10("python")
    batch = next(d for n, d in members if n.endswith("data_batch_1"))
    with pytest.raises(FormatError, match=f"{extra}"):
        _read([*members, (f"cifar-10-batches-py/{extra}", batch)])


@pytest.mark.parametrize("flavour", ["python", "binary"])
def test_fewer_batches_numbered_from_1_are_a_smaller_set(flavour):
    members, x = _cifar10(flavour, batches=2)
    got = _read(members)
    np.testing.assert_array_equal(got.x_train, x)


def test_stl10_member_given_twice_is_refused():
    from tests.test_stl10 import _data

    members = _members(formats.stl10_tar(*_data()))
    name, data = next(m for m in members if m[0].endswith("test_y.bin"))
    # before the last member needed (reading stops there, documented)
    body = _tar([(name, data[::-1]), *members])
    with pytest.raises(FormatError, match="member 'stl10_binary/test_y.bin' appears twice"):
        read_stl10_tar(io.BytesIO(body), compressed_size=len(body), name="s.tar.gz")
    moved = _tar([*members[:1], ("other/test_y.bin", data), *members[1:]])
    with pytest.raises(FormatError, match="member 'test_y.bin' appears twice"):
        read_stl10_tar(io.BytesIO(moved), compressed_size=len(moved))
