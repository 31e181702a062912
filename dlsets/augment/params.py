"""Random parameters addressed by sample index: sample i's draws depend only on (seed, stream, i).

Each stream is a counter-based ``Philox`` generator keyed by (seed, stream). A sample owns a fixed
number of 64-bit words, so the draws of samples ``start .. start+n-1`` are read by setting the
counter to ``start * words / 4`` (Philox yields four words per counter step): no per-sample
Generator, and any chunking of a batch reproduces the draws of one big call. The ``*_at``
functions draw for any list of sample ids (shuffled batches) and give each sample exactly the
words it gets in a contiguous call.
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
    key = _key(seed, stream)  # a SeedSequence costs ~12 us: once per (seed, stream)
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
    return _irwin_hall(raw.reshape(n, words)[:, :k])


def uniform16(seed: int, stream: int, start: int, n: int, k: int) -> np.ndarray:
    """(n, k) float32 uniforms on (-1, 1) (variance 1/3), 16 bits each, four per 64-bit word:
    the noise of elastic fields on a grid, for samples start..start+n-1."""
    words = -(-k // 4)
    raw = generator(seed, stream, start, words).bit_generator.random_raw(n * _words(words))
    return _sixteen(raw.reshape(n, -1)[:, :words], k)


def _sixteen(raw: np.ndarray, k: int) -> np.ndarray:
    # little-endian 16-bit pieces whatever the machine's byte order
    bits = np.ascontiguousarray(raw, dtype="<u8").view("<u2")[:, :k]
    return (bits.astype(np.float32) - np.float32(32767.5)) * np.float32(1.0 / 32768.0)


def _irwin_hall(raw: np.ndarray) -> np.ndarray:
    mask = np.uint64(0xFFFF)
    total = raw & mask
    for shift in (16, 32, 48):
        total += (raw >> np.uint64(shift)) & mask
    # the sum of four uniforms on [0, 65535] has mean 131070 and variance 4 * 65536**2 / 12
    return ((total.astype(np.float32) - np.float32(131070.0)) * np.float32(3**0.5 / 65536.0))


# ---------------------------------------------------------------------------- draws by id
# Philox4x64-10 constants (Salmon et al. 2011), as numpy's Philox uses them
_M = np.array([[0xD2E7470EE14C6C93], [0xCA5A826395121157]], dtype=np.uint64)
_M_LO, _M_HI = _M & np.uint64(0xFFFFFFFF), _M >> np.uint64(32)
_W = np.array([[0x9E3779B97F4A7C15], [0xBB67AE8584CAA73B]], dtype=np.uint64)
_LOW32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_ROUNDS = 10
# Above this many counter steps per sample, one jump of numpy's own generator per sample is
# cheaper than the emulated rounds (whose cost grows with the words drawn).
_VECTOR_STEPS = 4
_KEYS: dict[tuple[int, int], np.ndarray] = {}


def _key(seed: int, stream: int) -> np.ndarray:
    """numpy's Philox key (2,) uint64 of (seed, stream)."""
    return _round_keys(seed, stream)[0, :, 0]


def _round_keys(seed: int, stream: int) -> np.ndarray:
    """The (ROUNDS, 2, 1) round keys of (seed, stream); round 0's is :func:`_key`."""
    keys = _KEYS.get((seed, stream))
    if keys is None:
        keys = np.empty((_ROUNDS, 2, 1), np.uint64)
        keys[0, :, 0] = np.random.SeedSequence([seed, stream]).generate_state(2, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for r in range(1, _ROUNDS):
                keys[r] = keys[r - 1] + _W
        if len(_KEYS) > 256:
            _KEYS.clear()
        _KEYS[(seed, stream)] = keys
    return keys


def _philox(counters: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Philox4x64-10 of counters (m,) uint64 (the other three counter words 0) under round
    keys ``keys`` (:func:`_round_keys`), vectorised: (m, 4) uint64, equal to what numpy's Philox
    yields for those counter values."""
    m = counters.shape[0]
    # words 0 and 2 (multiplied by M0 and M1 at once) and words 1 and 3; every step writes
    # into buffers made once: per-call overhead, not arithmetic, is the cost at batch sizes
    a = np.zeros((2, m), np.uint64)
    b = np.zeros((2, m), np.uint64)
    a[0] = counters
    lo, a_lo, a_hi, cross, hi_lo, hi = (np.empty((2, m), np.uint64) for _ in range(6))
    with np.errstate(over="ignore"):
        for r in range(_ROUNDS):
            # (hi, lo) = the 128-bit products a * M, hi from 32-bit halves
            np.multiply(a, _M, out=lo)
            np.bitwise_and(a, _LOW32, out=a_lo)
            np.right_shift(a, _S32, out=a_hi)
            np.multiply(a_lo, _M_LO, out=cross)
            cross >>= _S32
            np.multiply(a_hi, _M_LO, out=hi_lo)
            np.bitwise_and(hi_lo, _LOW32, out=hi)
            cross += hi
            np.multiply(a_lo, _M_HI, out=hi)
            cross += hi
            hi_lo >>= _S32
            np.multiply(a_hi, _M_HI, out=hi)
            hi += hi_lo
            cross >>= _S32
            hi += cross
            # words 0, 2 <- hi1 ^ x1 ^ k0, hi0 ^ x3 ^ k1; words 1, 3 <- lo1, lo0
            np.bitwise_xor(hi[::-1], b, out=a)
            a ^= keys[r]
            b[:] = lo[::-1]
    out = np.empty((m, 4), np.uint64)
    out[:, 0::2] = a.T
    out[:, 1::2] = b.T
    return out


def raw_at(seed: int, stream: int, ids: np.ndarray, words: int) -> np.ndarray:
    """(n, words) uint64: the raw words of samples ``ids`` (any order, repeats allowed), equal
    row for row to the words sample ``i`` gets from :func:`generator`."""
    ids = np.asarray(ids, dtype=np.uint64)
    steps = _words(words) // _WORDS_PER_STEP
    if steps <= _VECTOR_STEPS:
        # numpy's Philox increments its counter before each block of four words
        counters = ids[:, None] * np.uint64(steps) + np.arange(1, steps + 1, dtype=np.uint64)
        out = _philox(counters.ravel(), _round_keys(seed, stream))
        out = out.reshape(len(ids), steps * _WORDS_PER_STEP)
        return out[:, :words]
    out = np.empty((len(ids), words), np.uint64)
    order = np.argsort(ids, kind="stable")
    bits = np.random.Philox(key=_key(seed, stream))
    at, last = 0, None
    for row in order.tolist():
        step = int(ids[row]) * steps
        if step + steps == at:  # a repeated id: the same words again
            out[row] = out[last]
            continue
        bits.advance(step - at)  # in counter steps; also drops the buffered words
        out[row] = bits.random_raw(steps * _WORDS_PER_STEP)[:words]
        at, last = step + steps, row
    return out


def uniform_at(seed: int, stream: int, ids: np.ndarray, k: int) -> np.ndarray:
    """(n, k) float64 uniforms in [0, 1) of samples ``ids``: row j equals
    ``uniform(seed, stream, ids[j], 1, k)[0]``."""
    raw = raw_at(seed, stream, ids, k)
    # numpy's conversion of a 64-bit word to a double in [0, 1)
    return (raw >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def normal_at(seed: int, stream: int, ids: np.ndarray, k: int) -> np.ndarray:
    """(n, k) float32 draws of samples ``ids``, as :func:`normal` gives them."""
    return _irwin_hall(raw_at(seed, stream, ids, k))


def uniform16_at(seed: int, stream: int, ids: np.ndarray, k: int) -> np.ndarray:
    """(n, k) float32 uniforms of samples ``ids``, as :func:`uniform16` gives them."""
    return _sixteen(raw_at(seed, stream, ids, -(-k // 4)), k)
