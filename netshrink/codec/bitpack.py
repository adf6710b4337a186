"""Fixed-width bit packing of small symbols (0 to 8 bits each), fully vectorised.

Layout: MSB-first. Eight w-bit symbols make exactly w bytes, so we pack groups of eight
into one uint64 (8*w <= 64 bits) and keep its low w bytes in big-endian order. The
final partial group is zero-padded; only ceil(n*w/8) bytes are stored.
"""

from __future__ import annotations

import numpy as np

from netshrink.codec.validate import need


def packed_size(n: int, width: int) -> int:
    """Bytes that `pack(n symbols, width)` produces."""
    return (n * width + 7) // 8


def pack(sym: np.ndarray, width: int) -> bytes:
    """sym: (n,) integers in [0, 2**width). Returns ceil(n*width/8) bytes."""
    n = sym.size
    if width == 0 or n == 0:
        return b""
    if width == 8:
        return sym.astype(np.uint8, copy=False).tobytes()
    if width == 1:
        return np.packbits(sym.astype(np.uint8, copy=False)).tobytes()
    groups = -(-n // 8)
    s = np.zeros(groups * 8, dtype=np.uint64)
    s[:n] = sym
    s = s.reshape(groups, 8)
    acc = np.zeros(groups, dtype=np.uint64)
    for j in range(8):  # 8 passes over n/8 words; symbol j of a group goes highest-first
        acc |= s[:, j] << np.uint64(width * (7 - j))
    # (groups, 8) big-endian bytes; the top 8-width bytes are always zero.
    b = acc.astype(">u8").view(np.uint8).reshape(groups, 8)[:, 8 - width:]
    return b.tobytes()[: packed_size(n, width)]


def unpack(buf: bytes | memoryview, n: int, width: int) -> np.ndarray:
    """Inverse of `pack`: (n,) uint8. The buffer length must match exactly."""
    need(0 <= width <= 8, f"bit width {width} out of range")
    need(len(buf) == packed_size(n, width), "packed stream has the wrong length")
    if width == 0:
        return np.zeros(n, dtype=np.uint8)
    flat = np.frombuffer(buf, dtype=np.uint8)
    if width == 8:
        return flat.copy()
    if width == 1:
        return np.unpackbits(flat, count=n)
    groups = -(-n // 8)
    b = np.zeros((groups, 8), dtype=np.uint8)
    tmp = np.zeros(groups * width, dtype=np.uint8)
    tmp[: flat.size] = flat
    b[:, 8 - width:] = tmp.reshape(groups, width)
    acc = b.view(">u8").reshape(groups).astype(np.uint64)
    out = np.empty((groups, 8), dtype=np.uint8)
    mask = np.uint64((1 << width) - 1)
    for j in range(8):
        out[:, j] = (acc >> np.uint64(width * (7 - j))) & mask
    return out.reshape(-1)[:n]


def pack_wide(values: np.ndarray, width: int) -> bytes:
    """Small tables only (code tables, counts): any width 1..32, MSB-first, bit by bit."""
    v = np.asarray(values, dtype=np.uint64)
    shifts = np.arange(width - 1, -1, -1, dtype=np.uint64)
    bits = ((v[:, None] >> shifts) & np.uint64(1)).astype(np.uint8)
    return np.packbits(bits.reshape(-1)).tobytes()


def unpack_wide(buf: bytes | memoryview, n: int, width: int) -> np.ndarray:
    """Inverse of `pack_wide`: (n,) int64."""
    need(1 <= width <= 32, f"table bit width {width} out of range")
    need(len(buf) == packed_size(n, width), "packed table has the wrong length")
    bits = np.unpackbits(np.frombuffer(buf, dtype=np.uint8), count=n * width)
    weights = np.left_shift(1, np.arange(width - 1, -1, -1, dtype=np.int64))
    return bits.reshape(n, width).astype(np.int64) @ weights


def pack_gamma(values: np.ndarray) -> bytes:
    """Elias-gamma code of each value + 1, MSB-first. Small tables only (<= 256 entries):
    a count of 0 costs 1 bit and a count c about 2*log2(c) bits, which beats a fixed
    width when most entries are zero or small (sparse byte-plane histograms)."""
    bits = "".join("0" * (int(v).bit_length() - 1) + format(int(v), "b") for v in np.add(values, 1))
    if not bits:
        return b""
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big")


def unpack_gamma(buf: bytes | memoryview, n: int) -> tuple[np.ndarray, int]:
    """Inverse of `pack_gamma`: (n,) int64 values and the number of bytes consumed."""
    bits = np.unpackbits(np.frombuffer(buf, dtype=np.uint8)).tolist()
    out, pos = [], 0
    for _ in range(n):  # n <= 256: a table, never a data stream
        zeros = 0
        while pos < len(bits) and bits[pos] == 0 and zeros < 32:
            zeros += 1
            pos += 1
        need(zeros < 32 and pos + zeros + 1 <= len(bits), "gamma-coded table is truncated")
        v = 0
        for b in bits[pos:pos + zeros + 1]:
            v = (v << 1) | b
        out.append(v - 1)
        pos += zeros + 1
    return np.array(out, dtype=np.int64), (pos + 7) // 8
