"""The .nshr container: preamble, JSON header, one checksummed binary section per tensor.

    offset  size  field
    0       8     magic b"\\x89NSHR\\r\\n\\x1a" (PNG-style: catches text-mode mangling)
    8       2     format version (little-endian uint16), currently 1
    10      2     flags: bit 0 = header is zlib-deflated
    12      4     stored header length H
    16      4     header length once inflated (== H when not deflated)
    20      4     crc32 of bytes 0..19 + the stored header
    24      H     header: JSON {"header": <caller's dict>, "tensors": [entry, ...]}
    24+H    ...   tensor sections, in entry order, each exactly entry["len"] bytes

    entry = {"name", "dtype", "shape", "enc": <encodings descriptor>, "len", "crc", "vcrc"}
            (+ "cast": original dtype, for tensors the caller asked to store in fp16/bf16)

"crc" is the crc32 of the section: every section is checked before anything is decoded.
"vcrc" is the crc32 of the decoded little-endian bit patterns: an end-to-end check that
the decoders rebuilt exactly what was written, whatever the header claims.

The file size must equal 24 + H + sum(len): any truncation or trailing bytes is an error.
The header is deflated only when that makes it smaller (it is mostly repeated keys). A
reader never trusts a length before checking it against the bytes actually present, and
refuses to decode more than decode_budget(file size) bytes in total (see below).
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import torch

from netshrink.codec import dtypes
from netshrink.codec.encodings import decode_bits, describe, encode_bits
from netshrink.codec.validate import (MAX_NDIM, MAX_NUMEL, Corrupt, Reader, get_int, get_obj,
                                      get_str, need)
from netshrink.errors import ArtifactError

MAGIC = b"\x89NSHR\r\n\x1a"
VERSION = 1
_PRE = struct.Struct("<8sHHIII")
_DEFLATED = 1
HINTS = {"fp16": ("float16", torch.float16), "bf16": ("bfloat16", torch.bfloat16)}


def decode_budget(file_size: int) -> int:
    """Most tensor bytes a file of this size may decode to: 256 MiB plus 4096x its size.

    Real models compress 10-200x; only a constant tensor compresses further, and then the
    floor covers it. A crafted header asking for more is refused before allocation."""
    return (256 << 20) + 4096 * file_size


# ------------------------------------------------------------------------------ write


def write_archive(path, header: dict, tensors: dict[str, torch.Tensor], *,
                  hints: dict[str, str] | None = None) -> int:
    """Atomically write a .nshr file; returns the bytes written.

    >>> write_archive("m.nshr", {"factory": "lenet"}, {"w": torch.zeros(3)})
    """
    path = Path(path)
    if not isinstance(header, dict):
        raise ArtifactError(f"{path}: the header must be a dict, got {type(header).__name__}")
    hints = dict(hints or {})
    unknown = sorted(set(hints) - set(tensors))
    if unknown:
        raise ArtifactError(f"{path}: hints name unknown tensors {unknown}")
    entries, sections = [], []
    for name, t in tensors.items():
        entry, parts = _encode_tensor(path, name, t, hints.get(name))
        entries.append(entry)
        sections.append(parts)
    try:
        text = json.dumps({"header": header, "tensors": entries}, separators=(",", ":"),
                          allow_nan=False, ensure_ascii=False).encode()
    except (TypeError, ValueError) as e:
        raise ArtifactError(f"{path}: header is not JSON-serialisable ({e})") from None
    packed, flags = text, 0
    deflated = zlib.compress(text, 9)
    if len(deflated) < len(text):
        packed, flags = deflated, _DEFLATED
    if len(packed) >= 1 << 32:
        raise ArtifactError(f"{path}: header too large ({len(packed)} bytes)")
    pre = _PRE.pack(MAGIC, VERSION, flags, len(packed), len(text), 0)[:20]
    pre += struct.pack("<I", zlib.crc32(pre + packed))
    chunks = [pre, packed] + [p for parts in sections for p in parts]
    try:
        return _write_atomic(path, chunks)
    except OSError as e:  # disk full, permissions, missing folder: a user-facing error
        raise ArtifactError(f"{path}: cannot write ({e.strerror or e})") from e


def _encode_tensor(path: Path, name: str, t: object, hint: str | None):
    if not isinstance(name, str):
        raise ArtifactError(f"{path}: tensor names must be strings, got {name!r}")
    if not isinstance(t, torch.Tensor):
        raise ArtifactError(f"{path}: {name!r} is a {type(t).__name__}, not a tensor")
    dname = dtypes.name_of(t.dtype)
    if dname is None or t.layout != torch.strided:
        raise ArtifactError(f"{path}: tensor {name!r} has unsupported dtype/layout {t.dtype}")
    entry = {"name": name, "dtype": dname, "shape": list(t.shape)}
    if hint is not None:
        if hint not in HINTS:
            raise ArtifactError(f"{path}: unknown hint {hint!r} for {name!r} (use fp16 or bf16)")
        if dname not in dtypes.FLOATS:
            raise ArtifactError(f"{path}: hint {hint!r} needs a float tensor, {name!r} is {dname}")
        if HINTS[hint][0] != dname:  # lossy by request: store the rounded tensor
            entry["cast"], entry["dtype"] = dname, HINTS[hint][0]
            t = t.detach().to(HINTS[hint][1])
    u = dtypes.to_bits(t)
    enc = encode_bits(u, grid_shape=tuple(t.shape) if entry["dtype"] == "float32" else None)
    crc = 0
    for p in enc.parts:
        crc = zlib.crc32(p, crc)
    entry.update(enc=enc.desc, len=enc.nbytes, crc=crc, vcrc=_value_crc(u))
    return entry, enc.parts


def _value_crc(u: np.ndarray) -> int:
    return zlib.crc32(u.astype(u.dtype.newbyteorder("<"), copy=False))


def _write_atomic(path: Path, chunks: list[bytes]) -> int:
    """Temp file in the target's directory, fsync, os.replace: all or nothing."""
    try:
        mode = os.stat(path).st_mode & 0o777
    except OSError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        try:
            total = 0
            for chunk in chunks:
                view = memoryview(chunk)
                while view:  # os.write may write less than asked
                    k = os.write(fd, view)
                    view = view[k:]
                    total += k
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)
    return total


def _fsync_dir(d: Path) -> None:
    # Makes the rename itself durable; not every platform lets a directory be opened.
    try:
        fd = os.open(d or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------- read


def read_archive(path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read a .nshr file: (header, {name: tensor}), bit-exact to what was written.

    Never executes anything from the file. Raises ArtifactError for every problem.

    >>> header, tensors = read_archive("m.nshr")
    """
    arc = open_archive(path)
    return arc.header, arc.decode()


def inspect_archive(path) -> list[dict]:
    """One row per tensor, then a "(total)" row, ready to print as a table.

    Row keys: name, shape, dtype, encoding, bytes (the tensor's section), bits_per_weight
    (8 * bytes / numel), dense_fp32_bytes, ratio (dense fp32 / bytes) and streams: per
    stream its coder, symbols, bytes (tables included) and shannon_bytes (order-0 entropy
    times count). The total row's bytes is the file size, headers included.

    >>> for row in inspect_archive("m.nshr"): print(row["name"], row["encoding"])
    """
    arc = open_archive(path)
    rows: list[dict] = []
    arc.decode(rows=rows)
    rows.append(_total_row(rows, arc.size))
    return rows


class Archive:
    """A parsed, checksummed .nshr file whose tensors are not decoded yet.

    `header` (the caller's dict) and `entries` (one validated dict per tensor: name,
    dtype, shape, numel, enc, len, crc, vcrc, cast?) are known after `open_archive`,
    so a reader can check them against what it expects before paying for `decode`."""

    def __init__(self, path, data: bytes, header: dict, entries: list[dict], secs: list[memoryview]):
        self.path, self.size, self.header, self.entries = path, len(data), header, entries
        self._data, self._secs = data, secs

    def decode(self, rows: list | None = None) -> dict[str, torch.Tensor]:
        """{name: tensor} of every tensor (rows: filled with inspect rows when given)."""
        return _guard(self.path, lambda: _decode_all(self.entries, self._secs, rows))


def open_archive(path, *, max_header_bytes: int = 32 << 20, max_depth: int = 64) -> Archive:
    """Parse a .nshr file's preamble and header and check every section's checksum;
    nothing is decoded. The inflated header is refused past `max_header_bytes` or
    nested deeper than `max_depth`. Raises ArtifactError for every problem."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ArtifactError(f"{path}: cannot read ({e.strerror or e})") from None
    header, entries, secs = _guard(path, lambda: _parse(data, max_header_bytes, max_depth))
    return Archive(path, data, header, entries, secs)


def _guard(path, fn):
    try:
        return fn()
    except Corrupt as e:
        raise ArtifactError(f"{path}: {e}") from None
    except ArtifactError:
        raise
    except (Exception, MemoryError, RecursionError) as e:  # a bug or a crafted file we missed
        raise ArtifactError(f"{path}: corrupt archive ({type(e).__name__}: {e})") from None
    except BaseException as e:
        # constriction reports Rust panics as pyo3's PanicException, a BaseException.
        if type(e).__name__ == "PanicException":
            raise ArtifactError(f"{path}: corrupt archive (entropy decoder failed)") from None
        raise


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


def _depth(text: bytes, limit: int) -> None:
    """Refuse JSON nested deeper than `limit`, from the text before it is parsed (strings
    dropped, then the running count of brackets: C-speed, no recursion)."""
    b = np.frombuffer(_STRING.sub(b"", text), dtype=np.uint8)
    step = (np.isin(b, (0x5B, 0x7B)).astype(np.int32) - np.isin(b, (0x5D, 0x7D)).astype(np.int32))
    need(b.size == 0 or int(np.cumsum(step).max()) <= limit, f"header nested deeper than {limit} levels")


def _parse(data: bytes, max_header_bytes: int, max_depth: int):
    need(len(data) >= 8 and data[:8] == MAGIC, "not a .nshr file (bad magic bytes)")
    need(len(data) >= _PRE.size, "truncated inside the preamble")
    _, version, flags, hlen, rawlen, crc = _PRE.unpack_from(data)
    need(version == VERSION,
         f"unsupported format version {version} (this netshrink reads version {VERSION})")
    need(_PRE.size + hlen <= len(data), "truncated inside the header")
    stored = data[_PRE.size:_PRE.size + hlen]
    need(zlib.crc32(data[:20] + stored) == crc, "header checksum mismatch")
    need(flags in (0, _DEFLATED), f"unknown header flags {flags:#x}")
    need(flags or rawlen == hlen, "header lengths disagree")
    need(rawlen <= max_header_bytes, f"header of {rawlen:,} bytes is larger than the limit {max_header_bytes:,}")
    text = _inflate(stored, rawlen) if flags else stored
    _depth(text, max_depth)
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError
        raise Corrupt(f"header is not valid JSON ({type(e).__name__})") from None
    header = get_obj(meta, "header")
    entries = meta.get("tensors")
    need(isinstance(entries, list), "header has no tensor table")
    entries = [_check_entry(e) for e in entries]
    need(len({e["name"] for e in entries}) == len(entries), "duplicate tensor names")
    body = _PRE.size + hlen + sum(e["len"] for e in entries)
    need(body <= len(data), f"truncated: sections need {body} bytes, file has {len(data)}")
    need(body == len(data), f"{len(data) - body} unexpected bytes after the last section")
    need(sum(e["numel"] * dtypes.itemsize(e["dtype"]) for e in entries) <= decode_budget(len(data)),
         "tensor sizes are implausibly large for this file")
    view, off, secs = memoryview(data), _PRE.size + hlen, []
    for e in entries:  # all checksums first: nothing from a damaged file is ever decoded
        secs.append(view[off:off + e["len"]])
        off += e["len"]
        need(zlib.crc32(secs[-1]) == e["crc"], f"checksum mismatch in tensor {e['name']!r}")
    return header, entries, secs


def _decode_all(entries: list[dict], secs: list[memoryview], rows: list | None) -> dict[str, torch.Tensor]:
    tensors = {}
    for e, sec in zip(entries, secs):
        stats = [] if rows is not None else None
        rd = Reader(sec)
        try:
            u = decode_bits(e["enc"], rd, e["numel"], dtypes.itemsize(e["dtype"]), stats)
            rd.done()
            need(_value_crc(u) == e["vcrc"], "decoded values fail their checksum")
            t = dtypes.from_bits(u, e["dtype"], e["shape"])
        except Corrupt as err:
            raise Corrupt(f"tensor {e['name']!r}: {err}") from None
        if "cast" in e:
            t = t.to(dtypes.DTYPES[e["cast"]][0])
        tensors[e["name"]] = t
        if rows is not None:
            rows.append(_row(e, stats))
    return tensors


def _inflate(stored: bytes, rawlen: int) -> bytes:
    # Deflate expands at most ~1032x, but JSON headers deflate 3-20x: past 256 KiB + 32x
    # the stored size, the header is a decompression bomb, refused before inflating.
    need(rawlen <= (256 << 10) + 32 * len(stored), "header inflated length is implausible")
    d = zlib.decompressobj()
    try:
        text = d.decompress(stored, rawlen + 1)
    except zlib.error as e:
        raise Corrupt(f"header does not inflate ({e})") from None
    need(len(text) == rawlen and d.eof and not d.unused_data, "header inflates to the wrong size")
    return text


def _check_entry(e: object) -> dict:
    name = get_str(e, "name")
    try:
        dname = get_str(e, "dtype", tuple(dtypes.DTYPES))
        shape = e.get("shape")
        need(isinstance(shape, list) and len(shape) <= MAX_NDIM, "shape is not a short list")
        for d in shape:
            need(type(d) is int and 0 <= d <= MAX_NUMEL, "shape has a bad dimension")
        numel = math.prod(shape)
        need(numel <= MAX_NUMEL, f"shape {shape} is absurdly large")
        get_obj(e, "enc")
        get_int(e, "len", 0, 1 << 48)
        get_int(e, "crc", 0, 0xFFFFFFFF)
        get_int(e, "vcrc", 0, 0xFFFFFFFF)
        if "cast" in e:
            cast = get_str(e, "cast", dtypes.FLOATS)
            need(dname in ("float16", "bfloat16") and cast != dname, "bad lossy-cast record")
    except Corrupt as err:
        raise Corrupt(f"tensor {name!r}: {err}") from None
    return {**e, "numel": numel}


def _row(e: dict, stats: list) -> dict:
    numel, nbytes = e["numel"], e["len"]
    label = describe(e["enc"], dtypes.DTYPES[e["dtype"]][2])
    if "cast" in e:
        label = f"{dtypes.DTYPES[e['dtype']][2]}:{label}"
    return {"name": e["name"], "shape": tuple(e["shape"]), "dtype": e.get("cast", e["dtype"]),
            "encoding": label, "bytes": nbytes,
            "bits_per_weight": 8 * nbytes / numel if numel else 0.0,
            "dense_fp32_bytes": 4 * numel, "ratio": 4 * numel / nbytes if numel else 1.0,
            "streams": stats}


def _total_row(rows: list[dict], file_size: int) -> dict:
    numel = sum(r["dense_fp32_bytes"] for r in rows) // 4
    return {"name": "(total)", "shape": (), "dtype": "", "encoding": "", "bytes": file_size,
            "bits_per_weight": 8 * file_size / numel if numel else 0.0,
            "dense_fp32_bytes": 4 * numel,
            "ratio": 4 * numel / file_size,
            "streams": [], "header_bytes": file_size - sum(r["bytes"] for r in rows)}


# ------------------------------------------------------------------ raw access (tools)


def split_archive(data: bytes) -> tuple[dict, list[bytes]]:
    """(the whole JSON header: {"header", "tensors"}, section bytes) of a valid archive,
    for tools that rewrite files (the fuzz benchmark, crafted-file tests)."""
    _, _, secs = _guard("archive", lambda: _parse(data, 1 << 62, 1 << 30))  # valid, or ArtifactError
    _, _, flags, hlen, rawlen, _ = _PRE.unpack_from(data)
    stored = data[_PRE.size:_PRE.size + hlen]
    return json.loads(zlib.decompress(stored) if flags & _DEFLATED else stored), [bytes(s) for s in secs]


def join_archive(meta: object, sections: list[bytes], *, fix_crc: bool = True) -> bytes:
    """An archive around `meta` (any JSON value, possibly hostile) and `sections`, with
    a valid header checksum; `fix_crc` also recomputes each entry's section crc."""
    if fix_crc and isinstance(meta, dict) and isinstance(meta.get("tensors"), list):
        for e, s in zip(meta["tensors"], sections):
            if isinstance(e, dict):
                e["crc"] = zlib.crc32(s)
    text = json.dumps(meta, separators=(",", ":")).encode()
    packed, flags = text, 0
    deflated = zlib.compress(text, 9)
    if len(deflated) < len(text):
        packed, flags = deflated, _DEFLATED
    pre = _PRE.pack(MAGIC, VERSION, flags, len(packed), len(text), 0)[:20]
    return pre + struct.pack("<I", zlib.crc32(pre + packed)) + packed + b"".join(sections)
