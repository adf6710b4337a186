"""Shared helpers for the codec tests."""

import json
import struct
import zlib

import torch

from netshrink.codec import archive

INT_VIEW = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def bits(t: torch.Tensor) -> torch.Tensor:
    """Bit patterns as integers, so NaN payloads and -0.0 compare exactly."""
    return t.view(INT_VIEW[t.element_size()])


def assert_bit_exact(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert torch.equal(bits(a[k]), bits(b[k])), k


def sparse_codebook(n: int, bits_: int = 5, sparsity: float = 0.95, seed: int = 0) -> torch.Tensor:
    """A Deep-Compression'd layer: `sparsity` zeros, the rest from 2**bits shared values."""
    g = torch.Generator().manual_seed(seed)
    codebook = torch.randn(2 ** bits_, generator=g) * 0.1
    w = codebook[torch.randint(0, 2 ** bits_, (n,), generator=g)]
    w[torch.rand(n, generator=g) < sparsity] = 0.0
    return w


def pruned(n: int, keep: float, g: torch.Generator) -> torch.Tensor:
    """Magnitude-pruned-like weights whose zeros are +0.0 (torch.where, not w * mask)."""
    w = torch.randn(n, generator=g)
    return torch.where(torch.rand(n, generator=g) < keep, w, torch.zeros(()))


def split(data: bytes):
    """(parsed header JSON, list of section bytes) of a valid archive."""
    pre = archive._PRE.unpack_from(data)
    hlen, flags = pre[3], pre[2]
    stored = data[24:24 + hlen]
    meta = json.loads(zlib.decompress(stored) if flags & 1 else stored)
    sections, off = [], 24 + hlen
    for e in meta["tensors"]:
        sections.append(data[off:off + e["len"]])
        off += e["len"]
    return meta, sections


def rebuild(meta, sections, *, fix_crc: bool = True, version: int = archive.VERSION,
            raw_header: bytes | None = None) -> bytes:
    """Reassemble an archive with valid checksums around a (possibly hostile) header."""
    if fix_crc and isinstance(meta, dict):
        for e, s in zip(meta.get("tensors", []), sections):
            if isinstance(e, dict):
                e["crc"] = zlib.crc32(s)
    text = raw_header if raw_header is not None else json.dumps(meta).encode()
    pre = archive._PRE.pack(archive.MAGIC, version, 0, len(text), len(text), 0)[:20]
    pre += struct.pack("<I", zlib.crc32(pre + text))
    return pre + text + b"".join(sections)


def put(path, data: bytes) -> None:
    """Overwrite a file without O_TRUNC: ext4 flushes on truncate-and-rewrite, which made
    the thousands of writes in the corruption tests take ~5 ms each."""
    import os

    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)
