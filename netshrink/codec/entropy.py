"""Symbol streams: pick the smallest of raw bit-packing, Huffman and ANS per stream.

A stream is a (n,) array of small integers in [0, alphabet), alphabet <= 256: codebook
indices, sparse-index gaps, or the bytes of one byte plane. Its descriptor in the archive
header is {"c": coder, "b": payload bytes}; n and the alphabet always come from the
enclosing tensor encoding, so they are never stored twice.

Sizes are compared with every side table counted (Huffman code lengths and chunk table,
ANS count table). Raw and Huffman sizes are computed exactly without encoding; ANS is
run for real whenever its estimate could win, so the choice is made on true sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netshrink.codec import ans, bitpack, huffman
from netshrink.codec.validate import get_int, get_str, need

CODERS = ("raw", "huffman", "ans")


def raw_width(alphabet: int) -> int:
    """Bits per symbol for plain bit-packing: 0 for a one-symbol alphabet."""
    return max(0, int(alphabet - 1).bit_length())


def shannon_bytes(counts: np.ndarray) -> float:
    """Empirical order-0 bound: n * H(counts) / 8 bytes."""
    c = np.asarray(counts, dtype=np.float64)
    c = c[c > 0]
    n = c.sum()
    if n == 0:
        return 0.0
    return float(-(c * np.log2(c / n)).sum() / 8)


def estimate_bytes(counts: np.ndarray, alphabet: int) -> float:
    """Best achievable payload size (ANS estimated, others exact). Cheap: O(alphabet)."""
    n = int(np.sum(counts))
    raw = bitpack.packed_size(n, raw_width(alphabet))
    if alphabet <= 1 or n == 0:
        return float(raw)
    return float(min(raw, huffman.encoded_size(counts)[0], ans.estimate_size(counts)))


@dataclass
class Stream:
    coder: str
    payload: bytes

    @property
    def desc(self) -> dict:
        return {"c": self.coder, "b": len(self.payload)}


def encode_stream(sym: np.ndarray, alphabet: int) -> Stream:
    """sym: (n,) ints in [0, alphabet). Returns the smallest coding of it."""
    n = sym.size
    width = raw_width(alphabet)
    raw_size = bitpack.packed_size(n, width)
    if alphabet <= 1 or n == 0:
        return Stream("raw", bitpack.pack(sym, width))
    counts = np.bincount(sym, minlength=alphabet)
    huff_size, lengths = huffman.encoded_size(counts)
    best = min(raw_size, huff_size)
    ans_payload = None
    # The estimate is within a few bytes; 16 bytes of slack means we never skip a win.
    if ans.estimate_size(counts) < best + 16:
        ans_payload = ans.encode(sym, alphabet)
    if ans_payload is not None and len(ans_payload) < best:
        return Stream("ans", ans_payload)
    if huff_size < raw_size:
        return Stream("huffman", huffman.encode(sym, alphabet, lengths))
    return Stream("raw", bitpack.pack(sym, width))


def decode_stream(desc: object, payload, n: int, alphabet: int) -> np.ndarray:
    """(n,) uint8 symbols, each checked to be < alphabet."""
    coder = get_str(desc, "c", CODERS)
    get_int(desc, "b", len(payload), len(payload))  # caller sliced exactly this many
    if coder == "raw":
        sym = bitpack.unpack(payload, n, raw_width(alphabet))
    else:
        need(alphabet > 1, "entropy-coded stream over a one-symbol alphabet")
        sym = (huffman.decode if coder == "huffman" else ans.decode)(payload, n, alphabet)
    need(n == 0 or int(sym.max()) < alphabet, f"stream symbol out of range (alphabet {alphabet})")
    return sym
