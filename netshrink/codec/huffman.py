"""Canonical, length-limited Huffman coding of byte-alphabet streams, vectorised.

Stream payload (all sizes derive from the symbol count n and alphabet size A):

    byte 0         m - 1: the length table covers symbols 0..m-1 (m <= A)
    code lengths   ceil(m/2) bytes: one 4-bit length per symbol (0 = absent)
    chunk table    2*(K-1) bytes: bit length of chunks 0..K-2, little-endian uint16
    data           the codes, MSB-first, concatenated without gaps

Codes are canonical (DEFLATE's convention), so the table is all a decoder needs. Lengths
are capped at 15 bits so that one 15-bit window lookup decodes one symbol. The stream is
cut into K chunks of CHUNK symbols whose start offsets the chunk table gives; the decoder
steps all K chunks in lockstep, one numpy table lookup per step, which turns the
inherently serial Huffman decode into CHUNK vector operations of width K. The chunk table
costs 2 bytes per 4096 symbols (< 0.5 % of even a 1-bit/symbol stream). Streams of at
most SERIAL_MAX symbols are decoded by a scalar loop instead, which is faster at that size.
"""

from __future__ import annotations

import heapq

import numpy as np

from netshrink.codec import bitpack
from netshrink.codec.validate import Corrupt, need

MAX_LEN = 15
CHUNK = 4096  # symbols per chunk; 15 * 4096 bits still fits the uint16 chunk table
_BLOCK = 1 << 16  # symbols per encoder block
# Up to this many symbols a plain scalar loop (~0.2 us/symbol) beats the lockstep decoder,
# whose CHUNK numpy steps cost ~10 ms whatever n is. Bounded, so it never sets throughput.
SERIAL_MAX = 4 * CHUNK


def code_lengths(counts: np.ndarray) -> np.ndarray:
    """(A,) counts -> (A,) code lengths in 0..15 (0 for absent symbols).

    A lone symbol gets length 1 (code "0"), as in DEFLATE, so every present symbol has a
    code. Over-long codes are fixed by halving the counts and rebuilding, a simple
    heuristic that costs a fraction of a percent on the rare streams where it triggers.
    """
    counts = np.asarray(counts, dtype=np.int64)
    lengths = np.zeros(counts.size, dtype=np.int64)
    present = np.flatnonzero(counts)
    if present.size == 1:
        lengths[present] = 1
    if present.size <= 1:
        return lengths
    c = counts[present].copy()
    while True:
        depth = _huffman_depths(c)
        if depth.max() <= MAX_LEN:
            lengths[present] = depth
            return lengths
        c = np.maximum(c >> 1, 1)


def _huffman_depths(c: np.ndarray) -> np.ndarray:
    # A <= 256 leaves, so a heap of Python lists is cheap; this never loops over symbols
    # of the stream itself.
    depth = np.zeros(c.size, dtype=np.int64)
    heap = [(int(w), i, [i]) for i, w in enumerate(c)]
    heapq.heapify(heap)
    tie = c.size
    while len(heap) > 1:
        wa, _, a = heapq.heappop(heap)
        wb, _, b = heapq.heappop(heap)
        depth[a + b] += 1
        heapq.heappush(heap, (wa + wb, tie, a + b))
        tie += 1
    return depth


def canonical_codes(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Canonical code values for `lengths`; also returns symbols in canonical order."""
    order = np.lexsort((np.arange(lengths.size), lengths))
    order = order[lengths[order] > 0]
    codes = np.zeros(lengths.size, dtype=np.int64)
    code, prev = 0, 0
    for s in order:  # at most 256 iterations
        ln = int(lengths[s])
        code <<= ln - prev
        codes[s] = code
        code += 1
        prev = ln
    return codes, order


def _num_chunks(n: int) -> int:
    return -(-n // CHUNK)


def encoded_size(counts: np.ndarray) -> tuple[int, np.ndarray]:
    """Exact payload bytes for a stream with these symbol counts, and the code lengths."""
    n = int(counts.sum())
    lengths = code_lengths(counts)
    if n == 0:
        return 0, lengths
    bits = int((np.asarray(counts, dtype=np.int64) * lengths).sum())
    m = int(np.flatnonzero(lengths)[-1]) + 1
    size = 1 + (m + 1) // 2 + 2 * (_num_chunks(n) - 1) + (bits + 7) // 8
    return size, lengths


def encode(sym: np.ndarray, alphabet: int, lengths: np.ndarray | None = None) -> bytes:
    """sym: (n,) ints in [0, alphabet). Returns the payload described above."""
    n = sym.size
    if n == 0:
        return b""
    if lengths is None:
        lengths = code_lengths(np.bincount(sym, minlength=alphabet))
    codes, _ = canonical_codes(lengths)
    m = int(np.flatnonzero(lengths)[-1]) + 1
    table = bytes([m - 1]) + bitpack.pack(lengths[:m].astype(np.uint8), 4)
    ln = lengths[sym]  # (n,) bits per symbol
    ends = np.cumsum(ln)
    total = int(ends[-1])
    out = np.zeros((total >> 5) + 3, dtype=np.float64)  # 32-bit words, as exact floats
    for lo in range(0, n, _BLOCK):  # blocks keep the int64 temporaries in cache
        b_ln, b_end = ln[lo:lo + _BLOCK], ends[lo:lo + _BLOCK]
        starts = b_end - b_ln
        # Each code lands in a 64-bit big-endian window starting at word start>>5; codes
        # never overlap, so adding the two 32-bit halves into their words is an exact OR.
        # (int64 may wrap into the sign bit here; the 32-bit masks below undo that.)
        v = codes[sym[lo:lo + _BLOCK]] << (64 - (starts & 31) - b_ln)
        w0 = int(starts[0]) >> 5
        word = (starts >> 5) - w0
        nw = int(word[-1]) + 2
        out[w0:w0 + nw] += np.bincount(word, weights=(v >> 32) & 0xFFFFFFFF, minlength=nw)
        out[w0 + 1:w0 + 1 + nw] += np.bincount(word, weights=v & 0xFFFFFFFF, minlength=nw)
    data = out.astype(np.uint64).astype(">u4").tobytes()[: (total + 7) // 8]
    chunk_bits = np.add.reduceat(ln, np.arange(0, n, CHUNK))[:-1]
    return table + chunk_bits.astype("<u2").tobytes() + data


def decode(payload: bytes | memoryview, n: int, alphabet: int) -> np.ndarray:
    """Inverse of `encode`: (n,) uint8. Raises Corrupt on any inconsistency."""
    if n == 0:
        need(len(payload) == 0, "empty Huffman stream carries bytes")
        return np.zeros(0, dtype=np.uint8)
    need(len(payload) >= 1, "Huffman stream has no table")
    m = payload[0] + 1
    need(m <= alphabet, "Huffman length table larger than the alphabet")
    tsize = 1 + (m + 1) // 2
    k = _num_chunks(n)
    need(len(payload) >= tsize + 2 * (k - 1), "Huffman stream shorter than its tables")
    buf = np.frombuffer(payload, dtype=np.uint8)
    lengths = bitpack.unpack(buf[1:tsize], (m + 1) // 2 * 2, 4)[:m].astype(np.int64)
    tsym, tlen = _decode_table(lengths, alphabet)
    chunk_bits = buf[tsize: tsize + 2 * (k - 1)].view("<u2").astype(np.int64)
    data = buf[tsize + 2 * (k - 1):]
    nb = data.size
    starts = np.zeros(k, dtype=np.int64)
    np.cumsum(chunk_bits, out=starts[1:])
    need(int(starts[-1]) <= 8 * nb, "Huffman chunk table points past the data")
    need(n <= 8 * nb, "Huffman stream too short for its symbol count")  # codes are >= 1 bit
    # w[i] = the 32 bits starting at byte i (zero-padded), so a 15-bit window at any bit
    # offset p is (w[p>>3] >> (17 - (p&7))) & 0x7FFF.
    b = np.zeros(nb + 4, dtype=np.int64)
    b[:nb] = data
    w = (b[:-3] << 24) | (b[1:-2] << 16) | (b[2:-1] << 8) | b[3:]
    if n <= SERIAL_MAX:
        flat, marks = _decode_serial(w.tolist(), bytes(tsym.astype(np.uint8)),
                                     bytes(tlen.astype(np.uint8)), n, nb)
        need(marks[:-1] == starts[1:].tolist(), "Huffman chunk ends do not match the table")
        need((marks[-1] + 7) // 8 == nb, "Huffman data length does not match its codes")
        return np.array(flat, dtype=np.uint8)
    pos = starts.copy()
    out = np.empty((CHUNK, k), dtype=np.uint16)  # row j = j-th symbol of every chunk
    last = n - (k - 1) * CHUNK
    for j in range(CHUNK):
        p = pos if j < last else pos[: k - 1]
        win = (w[np.minimum(p >> 3, nb)] >> (17 - (p & 7))) & 0x7FFF
        out[j, : p.size] = tsym[win]
        p += tlen[win]
    need(bool(np.all(pos[:-1] == starts[1:])), "Huffman chunk ends do not match the table")
    need((int(pos[-1]) + 7) // 8 == nb, "Huffman data length does not match its codes")
    flat = np.concatenate([out.T[: k - 1].reshape(-1), out[:last, k - 1]])
    need(int(flat.max()) < alphabet, "Huffman stream decodes to an invalid code")
    return flat.astype(np.uint8)


def _decode_serial(w: list, tsym: bytes, tlen: bytes, n: int, nb: int) -> tuple[list, list]:
    """Scalar decode of n <= SERIAL_MAX symbols; also returns the bit offset after every
    CHUNK symbols and at the end, to check against the chunk table."""
    out, marks, pos = [0] * n, [], 0
    for i in range(n):
        win = (w[min(pos >> 3, nb)] >> (17 - (pos & 7))) & 0x7FFF
        ln = tlen[win]
        if ln == 0:
            raise Corrupt("Huffman stream decodes to an invalid code")
        out[i] = tsym[win]
        pos += ln
        if (i + 1) % CHUNK == 0:
            marks.append(pos)
    if n % CHUNK:
        marks.append(pos)
    return out, marks


def _decode_table(lengths: np.ndarray, alphabet: int) -> tuple[np.ndarray, np.ndarray]:
    """15-bit window -> (symbol, code length); windows that hit no code map to symbol A."""
    present = int(np.count_nonzero(lengths))
    kraft = int((1 << (MAX_LEN - lengths[lengths > 0])).sum())
    need(present >= 1, "Huffman table has no symbols")
    complete = kraft == 1 << MAX_LEN
    lone = present == 1 and kraft == 1 << (MAX_LEN - 1)
    need(complete or lone, "Huffman code lengths do not form a prefix code")
    _, order = canonical_codes(lengths)
    spans = 1 << (MAX_LEN - lengths[order])
    tsym = np.full(1 << MAX_LEN, alphabet, dtype=np.uint16)
    tlen = np.zeros(1 << MAX_LEN, dtype=np.int64)
    # Canonical codes in order tile the window space from 0 upwards without holes.
    tsym[:kraft] = np.repeat(order, spans)
    tlen[:kraft] = np.repeat(lengths[order], spans)
    return tsym, tlen
