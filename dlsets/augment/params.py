"""Random parameters addressed by sample index: sample i's draws depend only on (seed, stream, i).

Each stream is a counter-based ``Philox`` generator keyed by (seed, stream). A sample owns a fixed
number of 64-bit words, so the draws of samples ``start .. start+n-1`` are read by setting the
counter to ``start * words / 4`` (Philox yields four words per counter step): no per-sample
Generator, and any chunking of a batch reproduces the draws of one big call.
"""

from __future__ import annotations

import numpy as np

from ..errors import OptionError

_WORDS_PER_STEP = 4  # Philox4x64 yields four 64-bit words per counter increment


SEED_LIMIT = 2**64  # seeds are 64-bit: what HDF5 attributes and most frameworks can store


def check_seed(seed: object) -> int:
    """Return ``seed`` as an int in [0, 2**64), or raise OptionError."""
    if (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
            or not 0 <= seed < SEED_LIMIT):
        raise OptionError(f"seed={seed!r} is not allowed: give an integer from 0 to 2**64 - 1")
    return int(seed)


def _words(per_sample: int) -> int:
    """Words reserved per sample: ``per_sample`` rounded up to whole counter steps."""
    return -(-per_sample // _WORDS_PER_STEP) * _WORDS_PER_STEP


def generator(seed: int, stream: int, start: int, words: int) -> np.random.Generator:
    """A Generator positioned at sample ``start`` of stream (seed, stream), ``words`` words each."""
    key = np.random.SeedSequence([seed, stream]).generate_state(2, dtype=np.uint64)
    step = start * (_words(words) // _WORDS_PER_STEP)
    return np.random.Generator(np.random.Philox(key=key, counter=[step, 0, 0, 0]))


def uniform(seed: int, stream: int, start: int, n: int, k: int) -> np.ndarray:
    """(n, k) float64 uniforms in [0, 1) for samples start..start+n-1 (one word per value)."""
    words = _words(k)
    return generator(seed, stream, start, words).random((n, words))[:, :k]


def normal(seed: int, stream: int, start: int, n: int, k: int) -> np.ndarray:
    """(n, k) float32 draws with mean 0 and variance 1, for samples start..start+n-1.

    Each value is the sum of four 16-bit uniforms from one 64-bit word (Irwin-Hall), rescaled:
    much cheaper than exact normals, and the smoothing in elastic fields erases the difference.
    """
    words = _words(k)
    raw = generator(seed, stream, start, words).bit_generator.random_raw(n * words)
    raw = raw.reshape(n, words)[:, :k]
    mask = np.uint64(0xFFFF)
    total = raw & mask
    for shift in (16, 32, 48):
        total += (raw >> np.uint64(shift)) & mask
    # the sum of four uniforms on [0, 65535] has mean 131070 and variance 4 * 65536**2 / 12
    return ((total.astype(np.float32) - np.float32(131070.0)) * np.float32(3**0.5 / 65536.0))
