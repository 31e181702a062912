"""Bounded streaming decompression (dlsets/inflate.py)."""

import bz2
import gzip
import io
import lzma
import tracemalloc

import pytest

from dlsets.errors import FormatError
from dlsets.formats.inflate import STEP, Inflater
from tests import hostile


def test_every_codec_and_plain_read_back_exactly():
    data = bytes(range(256)) * 800
    for packed in (data, gzip.compress(data), bz2.compress(data), lzma.compress(data),
                   gzip.compress(data[:1000]) + gzip.compress(data[1000:]) + bytes(10),
                   bz2.compress(data[:7]) + bz2.compress(data[7:])):
        f = Inflater(io.BytesIO(packed), "x")
        assert f.read(3) + f.read(len(data)) == data
        assert f.read(1) == b""


def test_a_gzip_bomb_is_inflated_a_step_at_a_time():
    """One 64 KB member inflates to 64 MiB: no step may produce more than STEP bytes, so
    skipping through it holds about a megabyte at a time, not 64."""
    f = Inflater(io.BytesIO(hostile.zeros_member()), "bomb.gz")
    tracemalloc.start()
    try:
        assert f.skip(hostile.ZEROS_MEMBER_BYTES) == hostile.ZEROS_MEMBER_BYTES
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * STEP, peak


def test_the_limit_stops_a_stream_as_soon_as_it_inflates_past_it():
    src = hostile.TrailingMembers(b"", copies=256)  # 16 GiB of zeros, 16 MB of gzip
    f = Inflater(src, "big.gz", limit=3 << 20, what="a test file")
    with pytest.raises(FormatError, match=r"big.gz: inflates to more than 3,145,728 bytes.*test"):
        f.skip(1 << 40)
    assert src.consumed < 1 << 20


def test_a_truncated_stream_is_a_format_error():
    data = gzip.compress(bytes(range(256)) * 1000)
    with pytest.raises(FormatError, match="t.gz.*truncated"):
        Inflater(io.BytesIO(data[:-30]), "t.gz").skip(1 << 20)
    with pytest.raises(FormatError, match="t.gz.*cannot be decompressed"):
        Inflater(io.BytesIO(data[:20] + b"\xff" * 50), "t.gz").skip(1 << 20)
