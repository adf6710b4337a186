"""What the user asks for: a file size, a latency at a batch size, and the accuracy
drop they accept.

    >>> Budget.parse(size="200KB", latency="2ms", batch=1, max_drop=0.5)
    Budget(bytes=200000, latency_ms=2.0, batch=1, max_drop=0.5)

Sizes: B, KB / MB / GB (powers of 1000), KiB / MiB / GiB (powers of 1024); a bare
number is bytes. Times: us, ms, s; a bare number is milliseconds. `max_drop` is in
percentage points of accuracy (0.5 = half a point).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from netshrink.errors import NetshrinkError

_SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000 ** 2, "gb": 1000 ** 3,
               "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3, "k": 1000, "m": 1000 ** 2}
_TIME_UNITS = {"": 1.0, "ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3}
_NUMBER = r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-zµ]*)\s*"


def parse_size(text: str | int | float) -> int:
    """'200KB' -> 200000 bytes; '1.5MiB' -> 1572864."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        m = re.fullmatch(_NUMBER, str(text).lower())
        if not m or m.group(2) not in _SIZE_UNITS:
            raise NetshrinkError(f"size {text!r} is not a size; write e.g. 200KB, 1.5MB, 64KiB or 12000 (bytes)")
        value, unit = float(m.group(1)), m.group(2)
    n = int(value * _SIZE_UNITS[unit])
    if n <= 0:
        raise NetshrinkError(f"size {text!r} must be more than 0 bytes")
    return n


def parse_time(text: str | int | float) -> float:
    """'2ms' -> 2.0; '500us' -> 0.5; a bare number is milliseconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        m = re.fullmatch(_NUMBER, str(text).lower())
        if not m or m.group(2) not in _TIME_UNITS:
            raise NetshrinkError(f"latency {text!r} is not a time; write e.g. 2ms, 500us or 0.01s")
        value, unit = float(m.group(1)), m.group(2)
    ms = value * _TIME_UNITS[unit]
    if ms <= 0:
        raise NetshrinkError(f"latency {text!r} must be more than 0")
    return ms


@dataclass
class Budget:
    """bytes: the saved file at most this size. latency_ms: one forward pass at `batch`
    at most this long (measured on this machine). max_drop: accuracy drop in points."""

    bytes: int | None = None
    latency_ms: float | None = None
    batch: int = 1
    max_drop: float = 0.5

    def __post_init__(self):
        if self.bytes is not None:
            self.bytes = parse_size(self.bytes)
        if self.latency_ms is not None:
            self.latency_ms = parse_time(self.latency_ms)
        if self.bytes is None and self.latency_ms is None:
            raise NetshrinkError("a budget needs a size (bytes=..., --size) or a latency (latency_ms=..., --latency)")
        if not (isinstance(self.batch, int) and not isinstance(self.batch, bool) and self.batch >= 1):
            raise NetshrinkError(f"batch = {self.batch!r} must be an integer >= 1")
        if not (isinstance(self.max_drop, (int, float)) and self.max_drop >= 0):
            raise NetshrinkError(f"max_drop = {self.max_drop!r} must be a number of points >= 0")
        self.max_drop = float(self.max_drop)

    @classmethod
    def parse(cls, *, size=None, latency=None, batch: int = 1, max_drop: float = 0.5) -> "Budget":
        return cls(bytes=size, latency_ms=latency, batch=batch, max_drop=max_drop)

    def describe(self, unit: str = "pp") -> str:
        parts = []
        if self.bytes is not None:
            parts.append(f"<= {self.bytes:,} bytes")
        if self.latency_ms is not None:
            parts.append(f"<= {self.latency_ms:g} ms at batch {self.batch}")
        return ", ".join(parts) + f", drop <= {self.max_drop:g} {unit}"
