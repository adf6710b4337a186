"""Tensor encodings: each tensor is stored by the smallest of a few lossless schemes.

All work on the (numel,) unsigned bit patterns of the tensor (see dtypes.to_bits), so
the schemes are exact for every dtype and "zero" means all bits zero (-0.0 is a value).

    dense     the raw little-endian bit patterns
    planes    byte plane j of every element as its own entropy-coded stream (the sign
              and exponent bytes of trained floats hold ~3 bits, not 8)
    codebook  <= 256 distinct values: the values, then an index stream over them
    sparse    positions of non-zeros as a gap stream, then the non-zero values (which
              are themselves dense, planes or codebook)
    grid      float32 groups each on a uniform grid k * s (per-channel / group-wise
              quantization): a scale and an offset per group, then a stream of k (grid.py)

Sparse gaps follow Deep Compression's scheme generalised: with b-bit gaps the alphabet is
0..F (F = 2**b - 1); symbol g < F means "skip g zeros, then a non-zero", symbol F is a
filler that skips F zeros with no value. b = 1 is exactly a bitmap. Instead of storing
the gaps raw in b bits, the gap stream is entropy-coded like any other stream, and b is
chosen per tensor (1..8) by the estimated total size.

Every stream (index, gap, plane) goes through entropy.encode_stream, which keeps the
smallest of raw bit-packing, Huffman and ANS. Candidate sizes include every byte stored
(codebooks, code tables) plus the JSON descriptor. Candidates are first ranked on size
estimates from symbol histograms (exact for raw and Huffman, within a few bytes for ANS);
every candidate within that error of the best is then built, and the smallest kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from netshrink.codec import grid
from netshrink.codec.entropy import (Stream, decode_stream, encode_stream, estimate_bytes,
                                     raw_width, shannon_bytes)
from netshrink.codec.validate import Reader, get_int, get_obj, get_str, need

KINDS = ("dense", "pl", "cb", "sp", "gr")
VALUE_KINDS = KINDS[:3]  # what may hold the non-zero values of a sparse tensor


@dataclass
class Encoded:
    desc: dict
    parts: list[bytes] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        return sum(len(p) for p in self.parts)

    @property
    def cost(self) -> int:
        return self.nbytes + _json_len(self.desc)


@dataclass
class Plan:
    """A candidate encoding: its estimated cost in bytes and how to build it.

    Estimates are exact for raw and Huffman streams and within a few bytes for ANS, so
    candidates are ranked on estimates and only the ones that may win are built."""
    est: float
    build: Callable[[], Encoded]


def _json_len(desc: dict) -> int:
    return len(json.dumps(desc, separators=(",", ":")))


def encode_bits(u: np.ndarray, allow_sparse: bool = True, grid_shape: tuple[int, ...] | None = None) -> Encoded:
    """u: (n,) unsigned bit patterns. Returns the smallest candidate (dense on ties).

    grid_shape: the tensor's shape when u holds float32 values (the grid encoding's
    groups follow it); None rules the grid out."""
    return _choose(_plans(u, allow_sparse, grid_shape))


def _choose(plans: list[Plan]) -> Encoded:
    best = plans[0].build()
    for plan in plans[1:]:  # build any rival whose estimate is within the estimate error
        if plan.est < best.cost + 64 + 1e-3 * best.cost:
            enc = plan.build()
            if enc.cost < best.cost:
                best = enc
    return best


def _plans(u: np.ndarray, allow_sparse: bool, grid_shape: tuple[int, ...] | None = None) -> list[Plan]:
    dense = Plan(u.size * u.itemsize + _json_len({"k": "dense"}), lambda: _dense(u))
    if u.size == 0:
        return [dense]
    plans = [dense]
    nz = np.flatnonzero(u)  # shared by the codebook search and the sparse candidate
    distinct = _distinct(u, nz)
    if distinct is not None:
        plans.append(_codebook(*distinct))
    elif u.itemsize > 1:
        plans.append(_planes(u))
        if grid_shape is not None and u.itemsize == 4:
            plans += _grid(u, grid_shape)
    if allow_sparse and 0 < nz.size < u.size:
        plans.append(_sparse(u, nz))
    return sorted(plans, key=lambda p: p.est)  # stable: dense first on ties


def _le(u: np.ndarray) -> np.ndarray:
    return u.astype(u.dtype.newbyteorder("<"), copy=False)


def _dense(u: np.ndarray) -> Encoded:
    return Encoded({"k": "dense"}, [_le(u).tobytes()])


def _distinct(u: np.ndarray, nz: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(sorted values, (n,) uint8 indices) when u has <= 256 distinct values, else None.

    nz: positions of the non-zero elements of u."""
    if u.itemsize <= 2:  # a full histogram is cheaper than sorting
        hist = np.bincount(u, minlength=1 << (8 * u.itemsize))
        values = np.flatnonzero(hist)
        if values.size > 256:
            return None
        lut = np.zeros(hist.size, dtype=np.uint8)
        lut[values] = np.arange(values.size)
        return values.astype(u.dtype), lut[u]
    # A strided sample of ~2k elements rules out most dense tensors before a full sort.
    if np.unique(u[:: max(1, u.size // 2048)]).size > 256:
        return None
    if nz.size == u.size:
        values, inverse = np.unique(u, return_inverse=True)
        return (values, inverse.astype(np.uint8)) if values.size <= 256 else None
    # Sort only the non-zeros: pruned tensors are mostly zero, and 0 is the smallest
    # bit pattern, so prepending it keeps the values sorted as np.unique would.
    values, inverse = np.unique(u[nz], return_inverse=True)
    if values.size > 255:
        return None
    idx = np.zeros(u.size, dtype=np.uint8)
    idx[nz] = inverse + 1
    return np.concatenate([np.zeros(1, dtype=u.dtype), values]), idx


def _codebook(values: np.ndarray, idx: np.ndarray) -> Plan:
    k = values.size
    est = k * values.itemsize + estimate_bytes(np.bincount(idx, minlength=k), k) + 40

    def build() -> Encoded:
        st = encode_stream(idx, k)
        return Encoded({"k": "cb", "K": k, "i": st.desc}, [_le(values).tobytes(), st.payload])
    return Plan(est, build)


def _grid(u: np.ndarray, shape: tuple[int, ...]) -> list[Plan]:
    """The grid candidate with the fewest groups that fits, if any (G = 1 is left to
    the codebook, which takes any tensor of <= 256 distinct values)."""
    x = u.view(np.float32)
    if not grid.plausible(x[: grid.MIN_GROUP]):   # inside the first group of every candidate
        return []
    for groups in grid.group_counts(shape)[1:]:
        g = x.size // groups
        if not grid.plausible(x[:g]):   # cheap test on the first group
            continue
        found = grid.find(x, groups)
        if found is None:
            continue
        scales, offsets, sym = found
        a = int(sym.max()) + 1
        est = groups * 6 + estimate_bytes(np.bincount(sym, minlength=a), a) + 60

        def build(scales=scales, offsets=offsets, sym=sym, a=a, groups=groups) -> Encoded:
            st = encode_stream(sym, a)
            return Encoded({"k": "gr", "G": groups, "A": a, "i": st.desc},
                           [_le(scales).tobytes(), _le(offsets).tobytes(), st.payload])
        return [Plan(est, build), _grid_by_width(scales, offsets, sym.reshape(groups, -1))]
    return []


def _grid_by_width(scales: np.ndarray, offsets: np.ndarray, sym: np.ndarray) -> Plan:
    """The grid with one code stream per group width: groups quantized at different bit
    widths (embedding rows by token frequency, mixed-precision channels) have codes of
    different spreads, and one histogram over all of them costs up to log2(#widths) bits a
    code more. Each group's width (bits of its largest code) is itself a stream."""
    groups = sym.shape[0]
    widths = np.array([raw_width(int(m) + 1) for m in sym.max(axis=1)], dtype=np.uint8)   # (G,) 0..8
    classes = [int(w) for w in np.unique(widths)]
    est = groups * 6 + estimate_bytes(np.bincount(widths, minlength=9), 9) + 60 + 30 * len(classes)
    for w in classes:
        est += estimate_bytes(np.bincount(sym[widths == w].reshape(-1), minlength=1 << w), 1 << w)

    def build() -> Encoded:
        ws = encode_stream(widths, 9)
        streams = [encode_stream(sym[widths == w].reshape(-1), 1 << w) for w in classes]
        return Encoded({"k": "gr", "G": groups, "A": int(sym.max()) + 1, "w": ws.desc,
                        "i": [[w, st.desc] for w, st in zip(classes, streams)]},
                       [_le(scales).tobytes(), _le(offsets).tobytes(), ws.payload] + [st.payload for st in streams])
    return Plan(est, build)


def _planes(u: np.ndarray) -> Plan:
    n, s = u.size, u.itemsize
    b = _le(u).view(np.uint8).reshape(n, s)  # (n, s): column j = byte j, low byte first
    planes = [np.ascontiguousarray(b[:, j]) for j in range(s)]
    est = [estimate_bytes(np.bincount(p, minlength=256), 256) for p in planes]

    def build() -> Encoded:
        # A plane that cannot beat raw by a few bytes is not even tried.
        streams = [encode_stream(p, 256) if e < n - 16 else Stream("raw", p.tobytes())
                   for p, e in zip(planes, est)]
        return Encoded({"k": "pl", "s": [st.desc for st in streams]},
                       [st.payload for st in streams])
    return Plan(sum(min(e, n) for e in est) + 25 * s, build)


def _sparse(u: np.ndarray, pos: np.ndarray) -> Plan:
    nnz = pos.size
    gaps = np.diff(pos, prepend=-1) - 1  # (nnz,) zeros skipped before each non-zero
    # Histogram of gap values, so that trying all 8 gap widths costs O(max gap), not O(nnz).
    top = int(gaps.max())
    if top < 4 * nnz:
        g, w = np.arange(top + 1), np.bincount(gaps)
    else:  # a few huge gaps: work on the gaps themselves
        g, w = gaps, None
    best = None
    for b in range(1, 9):
        f = (1 << b) - 1
        fill, r = np.divmod(g, f)
        counts = np.bincount(r, weights=w, minlength=f + 1).astype(np.int64)
        counts[f] += int(fill.sum()) if w is None else int((fill * w).sum())
        est = estimate_bytes(counts, f + 1)
        if best is None or est < best[0]:
            best = (est, b)
    gap_est, b = best
    vals = _plans(u[pos], allow_sparse=False)  # the non-zero values: dense, planes, codebook

    def build() -> Encoded:
        sym = gap_symbols(pos, b)
        st = encode_stream(sym, (1 << b))
        v = _choose(vals)
        desc = {"k": "sp", "F": b, "m": int(sym.size), "nnz": int(nnz), "g": st.desc, "v": v.desc}
        return Encoded(desc, [st.payload] + v.parts)
    return Plan(gap_est + vals[0].est + 60, build)


def _gap_stream(fill: np.ndarray, r: np.ndarray, b: int) -> np.ndarray:
    # Per non-zero: fill[i] filler symbols F, then its residual gap r[i] < F.
    sym = np.full(r.size + int(fill.sum()), (1 << b) - 1, dtype=np.uint8)
    sym[np.cumsum(fill + 1) - 1] = r
    return sym


def gap_symbols(positions: np.ndarray, b: int) -> np.ndarray:
    """Sorted non-zero positions -> b-bit gap symbols with fillers (Deep Compression).

    >>> gap_symbols(np.array([2, 12]), 3)   # gaps 2 and 9 = filler(7) + 2
    array([2, 7, 2], dtype=uint8)
    """
    gaps = np.diff(positions, prepend=-1) - 1
    fill, r = np.divmod(gaps, (1 << b) - 1)
    return _gap_stream(fill, r, b)


def gap_positions(sym: np.ndarray, b: int) -> np.ndarray:
    """Inverse of `gap_symbols`: positions of the non-zeros (fillers skip F zeros)."""
    f = (1 << b) - 1
    is_nz = sym != f
    at = np.cumsum(np.where(is_nz, sym.astype(np.int64) + 1, f)) - 1
    return at[is_nz]


# ---------------------------------------------------------------------------- decoding


def decode_bits(desc: object, rd: Reader, n: int, s: int, stats: list | None = None,
                allow_sparse: bool = True) -> np.ndarray:
    """Inverse of `encode_bits`: a fresh (n,) unsigned array of itemsize s.

    `stats`, when given, collects one dict per stream for `inspect_archive`.
    """
    kind = get_str(desc, "k", KINDS if allow_sparse else VALUE_KINDS)
    le = np.dtype(f"<u{s}")
    if kind == "dense":
        return np.frombuffer(rd.take(n * s), dtype=le).astype(le.newbyteorder("="))
    if kind == "pl":
        planes = desc.get("s")
        need(isinstance(planes, list) and len(planes) == s, "planes descriptor malformed")
        out = np.empty((n, s), dtype=np.uint8)
        for j, d in enumerate(planes):
            out[:, j] = _stream(d, rd, n, 256, stats, f"plane{j}")
        return out.view(le).reshape(n).astype(le.newbyteorder("="))
    if kind == "cb":
        k = get_int(desc, "K", 1, max(1, min(n, 256)))
        values = np.frombuffer(rd.take(k * s), dtype=le).astype(le.newbyteorder("="))
        return values[_stream(desc.get("i"), rd, n, k, stats, "index")]
    if kind == "gr":
        need(s == 4, "grid encoding of a tensor that is not 32-bit")
        groups = get_int(desc, "G", 1, max(1, n))
        need(n % groups == 0, "grid groups do not divide the tensor")
        a = get_int(desc, "A", 1, grid.MAX_SPAN)
        scales = np.frombuffer(rd.take(groups * 4), dtype="<f4").astype(np.float32)
        offsets = np.frombuffer(rd.take(groups * 2), dtype="<i2").astype(np.int64)
        if "w" not in desc:
            k = _stream(desc.get("i"), rd, n, a, stats, "grid").reshape(groups, -1)
        else:   # one stream per group width (_grid_by_width)
            widths = _stream(desc["w"], rd, groups, 9, stats, "grid widths")
            classes = desc.get("i")
            need(isinstance(classes, list) and all(isinstance(c, list) and len(c) == 2 for c in classes),
                 "grid width streams malformed")
            ws = [c[0] for c in classes]
            need(all(isinstance(w, int) and not isinstance(w, bool) for w in ws) and ws == sorted(set(ws))
                 and set(ws) == set(np.unique(widths).tolist()), "grid width streams do not match the widths")
            k = np.empty((groups, n // groups), dtype=np.int64)
            for w, d in classes:
                rows = widths == w
                k[rows] = _stream(d, rd, int(rows.sum()) * (n // groups), 1 << w, stats,
                                  f"grid{w}").reshape(-1, n // groups)
            need(int(k.max(initial=0)) < a, "grid codes run past the alphabet")
        return grid.decode(k + offsets[:, None], scales).reshape(n).view(np.uint32).astype(le.newbyteorder("="))
    b = get_int(desc, "F", 1, 8)
    f = (1 << b) - 1
    m = get_int(desc, "m", 1, n)  # every symbol advances >= 1 position, so m <= n
    nnz = get_int(desc, "nnz", 1, m)
    sym = _stream(desc.get("g"), rd, m, f + 1, stats, "gaps")
    # A valid stream has exactly nnz non-fillers and never ends in a filler.
    need(int(np.count_nonzero(sym != f)) == nnz and sym[-1] != f, "sparse gaps do not match")
    at = gap_positions(sym, b)
    need(int(at[-1]) < n, "sparse positions run past the tensor")
    before = len(stats) if stats is not None else 0
    vals = decode_bits(get_obj(desc, "v"), rd, nnz, s, stats, allow_sparse=False)
    for row in (stats or [])[before:]:
        row["stream"] = "values." + row["stream"]
    out = np.zeros(n, dtype=le.newbyteorder("="))
    out[at] = vals
    return out


def _stream(desc: object, rd: Reader, n: int, alphabet: int, stats: list | None,
            label: str) -> np.ndarray:
    payload = rd.take(get_int(desc, "b", 0, len(rd.buf) - rd.pos))
    sym = decode_stream(desc, payload, n, alphabet)
    if stats is not None:
        stats.append({"stream": label, "coder": desc["c"], "symbols": n, "bytes": len(payload),
                      "shannon_bytes": shannon_bytes(np.bincount(sym, minlength=alphabet))})
    return sym


def _ranges(values: list[int]) -> str:
    """[1, 2, 3, 5, 7, 8] -> '1-3,5,7-8'."""
    out, vs = [], sorted(set(values))
    i = 0
    while i < len(vs):
        j = i
        while j + 1 < len(vs) and vs[j + 1] == vs[j] + 1:
            j += 1
        out.append(str(vs[i]) if i == j else f"{vs[i]}-{vs[j]}")
        i = j + 1
    return ",".join(out)


def describe(desc: dict, dtype_label: str) -> str:
    """Human label of a (validated) descriptor, e.g. 'sparse-gaps8+ans/codebook5+huffman'."""
    kind = desc["k"]
    if kind == "dense":
        return f"dense-{dtype_label}"
    if kind == "pl":
        return f"planes-{dtype_label}+" + "/".join(d["c"] for d in desc["s"])
    if kind == "cb":
        if desc["K"] == 1:
            return "const"
        return f"codebook{raw_width(desc['K'])}+{desc['i']['c']}"
    if kind == "gr":
        if "w" in desc:           # rows of several widths: the widths each coder stores, e.g. w1-6,8:ans/w7:huffman
            by_coder: dict[str, list[int]] = {}
            for w, d in desc["i"]:
                by_coder.setdefault(d["c"], []).append(int(w))
            return f"grid{raw_width(desc['A'])}x{desc['G']}+" + "/".join(
                f"w{_ranges(ws)}:{c}" for c, ws in by_coder.items())
        return f"grid{raw_width(desc['A'])}x{desc['G']}+{desc['i']['c']}"
    return f"sparse-gaps{desc['F']}+{desc['g']['c']}/" + describe(desc["v"], dtype_label)
