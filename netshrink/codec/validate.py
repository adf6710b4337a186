"""Checks shared by every decoder of untrusted `.nshr` bytes.

Decoders raise `Corrupt` with a short description of what is wrong; the archive layer
adds the file name and the tensor, and turns it into `netshrink.errors.ArtifactError`.
Keeping the path out of the low-level modules lets them stay pure functions of bytes.
"""

from __future__ import annotations

# Hard ceilings on what a header may declare, checked before anything is allocated.
MAX_NDIM = 64
MAX_NUMEL = 1 << 40


class Corrupt(Exception):
    """Internal: the bytes or the descriptor of one stream/tensor are inconsistent."""


def need(cond: bool, msg: str) -> None:
    if not cond:
        raise Corrupt(msg)


def get_int(d: object, key: str, lo: int, hi: int) -> int:
    """`d[key]` as an int in [lo, hi]; bools and floats are refused (JSON gives both)."""
    need(isinstance(d, dict), "descriptor is not an object")
    v = d.get(key)  # type: ignore[union-attr]
    need(type(v) is int, f"field {key!r} missing or not an integer")
    need(lo <= v <= hi, f"field {key!r}={v} out of range [{lo}, {hi}]")
    return v


def get_str(d: object, key: str, allowed: tuple[str, ...] | None = None) -> str:
    need(isinstance(d, dict), "descriptor is not an object")
    v = d.get(key)  # type: ignore[union-attr]
    need(isinstance(v, str), f"field {key!r} missing or not a string")
    if allowed is not None:
        need(v in allowed, f"field {key!r}={v!r} is not one of {', '.join(allowed)}")
    return v


def get_obj(d: object, key: str) -> dict:
    need(isinstance(d, dict), "descriptor is not an object")
    v = d.get(key)  # type: ignore[union-attr]
    need(isinstance(v, dict), f"field {key!r} missing or not an object")
    return v


def get_lens(d: object, key: str, count: int) -> list[int]:
    """A list of exactly `count` non-negative byte lengths."""
    need(isinstance(d, dict), "descriptor is not an object")
    v = d.get(key)  # type: ignore[union-attr]
    need(isinstance(v, list) and len(v) == count, f"field {key!r} must list {count} lengths")
    for x in v:
        need(type(x) is int and 0 <= x < (1 << 48), f"field {key!r} has a bad length")
    return v


class Reader:
    """Hands out consecutive slices of one section; every take is bounds-checked."""

    def __init__(self, buf: memoryview):
        self.buf = buf
        self.pos = 0

    def take(self, n: int) -> memoryview:
        need(0 <= n <= len(self.buf) - self.pos, "section shorter than its descriptor says")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def done(self) -> None:
        need(self.pos == len(self.buf), "section longer than its descriptor says")
