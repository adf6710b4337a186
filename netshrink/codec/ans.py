"""Asymmetric-numeral-system coding of byte-alphabet streams via `constriction`.

Stream payload:

    byte 0         m - 1: the model covers symbols 0..m-1 (m <= alphabet)
    byte 1         cw: bits per stored count (1..24), or 0: counts are Elias-gamma coded
    byte 2         P: the counts sum to exactly 2**P (1..24)
    byte 3         j: the most frequent symbol, whose count is implied (2**P - the rest)
    count table    the other m-1 counts, cw bits each or gamma-coded, whichever is smaller
    data           the AnsCoder's compressed uint32 words, little-endian

The model is `constriction.stream.model.Categorical(counts, perfect=False)` built from
the stored integer counts, so encoder and decoder build bit-identical models. Counts are
the empirical ones rescaled to a total of 2**P; P is picked per stream to minimise table
bits + coded bits (a coarse table is cheaper but costs cross-entropy). Leaving out the
largest count matters for the skewed streams that dominate pruned models: the table
width is then set by the rare symbols, so it costs a few bits per symbol, not ~log2(n).
The coder quantises to 24 bits internally, so P stops there.
"""

from __future__ import annotations

import constriction
import numpy as np

from netshrink.codec import bitpack
from netshrink.codec.validate import Corrupt, need

_DECODE_BLOCK = 1 << 20


def _padded(counts: np.ndarray) -> np.ndarray:
    # constriction's Categorical needs at least two entries; a zero count is never used.
    return np.pad(counts, (0, max(0, 2 - counts.size))).astype(np.float64)


def _categorical(counts: np.ndarray):
    return constriction.stream.model.Categorical(_padded(counts), perfect=False)


def cross_entropy_bits(counts: np.ndarray, q: np.ndarray) -> float:
    """Bits to code a stream with symbol counts `counts` under a model proportional to q."""
    used = counts > 0
    return float(-(counts[used] * np.log2(q[used] / q.sum())).sum())


def quantized_counts(counts: np.ndarray) -> tuple[np.ndarray, int, float]:
    """Pick the stored table: (m,) counts summing to 2**P, P, and the estimated payload bytes."""
    counts = np.asarray(counts, dtype=np.int64)
    m = int(np.flatnonzero(counts)[-1]) + 1
    c = counts[:m]
    n, j = int(c.sum()), int(np.argmax(c))
    present = int(np.count_nonzero(c))
    best = (c, 0, float("inf"))
    for p in range(max(1, (present - 1).bit_length()), 25):
        q = np.where(c > 0, np.maximum(np.rint(c * ((1 << p) / n)), 1), 0).astype(np.int64)
        q[j] = 0
        q[j] = (1 << p) - q.sum()
        if q[j] < 1:
            continue
        est = 4 + _table_size(q, j)[1] + 4 * np.ceil((cross_entropy_bits(c, q) + 33) / 32)
        if est < best[2]:
            best = (q, p, float(est))
        if (1 << p) >= 2 * n:  # already finer than the counts themselves
            break
    return best


def _table_size(q: np.ndarray, j: int) -> tuple[int, int]:
    """(cw, bytes) of the count table without entry j: fixed width, or gamma (cw = 0)."""
    rest = np.delete(q, j)
    if rest.size == 0:
        return 1, 0
    cw = max(1, int(rest.max()).bit_length())
    gamma_bits = int((2 * (np.floor(np.log2(rest + 1)) + 1) - 1).sum())
    fixed, gamma = (rest.size * cw + 7) // 8, (gamma_bits + 7) // 8
    return (cw, fixed) if fixed <= gamma else (0, gamma)


def _table(q: np.ndarray, j: int) -> tuple[int, bytes]:
    cw, _ = _table_size(q, j)
    rest = np.delete(q, j)
    if rest.size == 0:
        return 1, b""
    return cw, (bitpack.pack_wide(rest, cw) if cw else bitpack.pack_gamma(rest))


def estimate_size(counts: np.ndarray) -> float:
    """Estimated payload bytes (within a few bytes), without running the coder."""
    if int(np.sum(counts)) == 0:
        return 0.0
    return quantized_counts(counts)[2]


def encode(sym: np.ndarray, alphabet: int) -> bytes:
    """sym: (n,) ints in [0, alphabet), alphabet <= 256. Returns the payload."""
    if sym.size == 0:
        return b""
    q, p, _ = quantized_counts(np.bincount(sym, minlength=alphabet))
    m, j = q.size, int(np.argmax(q))
    cw, table = _table(q, j)
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(sym.astype(np.int32), _categorical(q))
    words = coder.get_compressed().astype("<u4")
    return bytes([m - 1, cw, p, j]) + table + words.tobytes()


def decode(payload: bytes | memoryview, n: int, alphabet: int) -> np.ndarray:
    """Inverse of `encode`: (n,) uint8. Raises Corrupt on any inconsistency."""
    if n == 0:
        need(len(payload) == 0, "empty ANS stream carries bytes")
        return np.zeros(0, dtype=np.uint8)
    need(len(payload) >= 4, "ANS stream shorter than its header")
    m, cw, p, j = payload[0] + 1, payload[1], payload[2], payload[3]
    need(m <= alphabet and j < m, "ANS count table larger than the alphabet")
    need(cw <= 24 and 1 <= p <= 24, "ANS count width or precision out of range")
    if m == 1:
        rest, tbytes = np.zeros(0, dtype=np.int64), 0
    elif cw == 0:
        # <= 255 gamma codes of <= 63 bits each: never unpack more than that
        rest, tbytes = bitpack.unpack_gamma(payload[4: 4 + 2048], m - 1)
    else:
        tbytes = bitpack.packed_size((m - 1) * cw, 1)
        need(len(payload) >= 4 + tbytes, "ANS stream shorter than its count table")
        rest = bitpack.unpack_wide(payload[4: 4 + tbytes], m - 1, cw)
    q = np.insert(rest, j, (1 << p) - int(rest.sum()))
    need(int(q[j]) >= 1, "ANS counts exceed their stated total")
    data = payload[4 + tbytes:]
    need(len(data) % 4 == 0, "ANS data is not a whole number of 32-bit words")
    words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
    out = np.empty(n, dtype=np.uint8)
    try:
        coder, model = constriction.stream.stack.AnsCoder(words), _categorical(q)
        # Blocks keep the coder's int32 output small: peak memory stays ~n bytes even
        # when a hostile header asks for a huge, highly compressible stream.
        for lo in range(0, n, _DECODE_BLOCK):
            out[lo:lo + _DECODE_BLOCK] = coder.decode(model, min(_DECODE_BLOCK, n - lo))
        empty = coder.is_empty()
    except (ValueError, RuntimeError, OverflowError) as e:
        raise Corrupt(f"ANS data rejected by the decoder ({e})") from None
    need(empty, "ANS data has bytes left after the last symbol")
    # Counts of 0 still get the coder's minimum probability; a valid stream never uses them.
    used = np.bincount(out, minlength=max(2, m))
    need(not np.any(used[_padded(q) == 0]), "ANS stream decodes to a symbol with zero count")
    return out
