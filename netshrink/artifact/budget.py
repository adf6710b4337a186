"""Limits of what a file may make `load` build, checked before any real allocation.

`load` first builds the whole architecture on torch's "meta" device (tensors without
storage) inside `BuildBudget`: torch's global registration hooks count every module,
parameter and buffer as it is registered, and abort the build as soon as a count passes
its limit, so a file describing a billion-element layer or 200,000 blocks costs a few
milliseconds, not the memory. Weight initialisers are no-ops meanwhile (the meta build
only needs shapes; skipping them makes a module ~5x cheaper to build).

The limits come from the file: a model may hold at most `floor + ratio * file
size` bytes of tensors (real models compress 2-200x; only near-constant tensors
compress further, and the floor covers small models whatever their ratio), and never
more than `cap`; it may describe at most 256 + size / 32 modules, and never more than
`max_modules`. A user who trusts a file raises the limits: `ns.load(path,
max_bytes=...)`.
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules import module as torch_module

from netshrink.errors import ArtifactError


@dataclass(frozen=True)
class LoadLimits:
    """What one `load` may cost. `max_bytes` given by the user replaces the file-size rule."""
    max_bytes: int | None = None        # None: min(cap, floor + ratio * file size)
    cap: int = 8 << 30                  # 8 GiB: no file alone gets more
    floor: int = 64 << 20               # 64 MiB: any small model loads whatever its ratio
    ratio: int = 256                    # tensor bytes per byte of file
    max_modules: int = 2048             # modules in the model (BERT-base ~230, Llama-2-70B ~1,100)
    max_header_bytes: int = 32 << 20    # inflated JSON header
    max_depth: int = 64                 # JSON nesting

    def modules(self, file_size: int) -> int:
        """Modules a file of this size may describe: every module with tensors costs
        its file at least one table entry and its values, so 256 + size / 32 leaves
        room for parameterless modules (activations, dropout, containers)."""
        if self.max_bytes is not None:
            return self.max_modules
        return min(self.max_modules, 256 + file_size // 32)

    def tensor_bytes(self, file_size: int) -> int:
        if self.max_bytes is not None:
            return int(self.max_bytes)
        return min(self.cap, self.floor + self.ratio * file_size)


class _Over(BaseException):  # not an Exception: a factory's `except Exception` cannot swallow it
    pass


_active = threading.local()


def _state():
    return getattr(_active, "budget", None)


def _count_tensor(module, name, t):
    b = _state()
    if b is not None and t is not None:
        b.add_bytes(t.numel() * t.element_size(), f"{type(module).__name__}.{name}")


def _count_module(module, name, sub):
    b = _state()
    if b is not None and sub is not None:
        b.add_module()


_hooks_installed = False
_hooks_lock = threading.Lock()


def _install_hooks() -> None:
    """torch's registration hooks are global: install ours once; they do nothing
    outside a BuildBudget (one thread-local lookup)."""
    global _hooks_installed
    with _hooks_lock:
        if not _hooks_installed:
            torch_module.register_module_parameter_registration_hook(_count_tensor)
            torch_module.register_module_buffer_registration_hook(_count_tensor)
            torch_module.register_module_module_registration_hook(_count_module)
            _hooks_installed = True


@contextlib.contextmanager
def _no_init():
    names = [n for n in dir(nn.init) if n.endswith("_") and not n.startswith("_")]
    old = {n: getattr(nn.init, n) for n in names}
    def skip(*args, **kwargs):   # returns the tensor, however it was passed
        return args[0] if args else kwargs.get("tensor")

    for n in names:
        setattr(nn.init, n, skip)
    try:
        yield
    finally:
        for n, f in old.items():
            setattr(nn.init, n, f)


class BuildBudget:
    """`with BuildBudget(max_bytes, max_modules, what) as b:` build on "meta"; raises
    ArtifactError the moment the build passes a limit. Modules and tensors replaced
    later by edits count too, so the limits during the build are 2x (bytes) and 1.25x
    (modules) the final ones; `check_final(model)` applies the exact limits to what
    remains."""

    def __init__(self, max_bytes: int, max_modules: int, what: str, meta: bool = True):
        self.max_bytes, self.max_modules, self.what, self.meta = max_bytes, max_modules, what, meta
        self.bytes = self.modules = 0
        self._stack = contextlib.ExitStack()

    def add_bytes(self, n: int, where: str) -> None:
        self.bytes += n
        if self.bytes > 2 * self.max_bytes:
            raise _Over(f"{self.what} would hold over {self.bytes:,} bytes of tensors at {where} "
                        f"(limit {self.max_bytes:,} for this file; pass max_bytes= to raise it)")

    def add_module(self) -> None:
        self.modules += 1
        if self.modules > self.max_modules + self.max_modules // 4:
            raise _Over(f"{self.what} builds over {self.modules:,} modules (limit {self.max_modules:,})")

    def __enter__(self) -> "BuildBudget":
        _install_hooks()
        if _state() is not None:
            raise RuntimeError("nested BuildBudget")
        if self.meta:
            self._stack.enter_context(torch.device("meta"))
            self._stack.enter_context(_no_init())
        _active.budget = self
        return self

    def __exit__(self, et, e, tb):
        _active.budget = None
        self._stack.close()
        if isinstance(e, _Over):
            raise ArtifactError(f"refusing to load: {e}") from None
        return False

    def check_final(self, model: nn.Module) -> int:
        """Bytes of `model`'s parameters and buffers, refused past the limit."""
        n = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
        k = sum(1 for _ in model.modules())
        if n > self.max_bytes:
            raise ArtifactError(f"refusing to load: {self.what} would hold {n:,} bytes of tensors "
                                f"(limit {self.max_bytes:,} for this file; pass max_bytes= to raise it)")
        if k > self.max_modules:
            raise ArtifactError(f"refusing to load: {self.what} has {k:,} modules (limit {self.max_modules:,})")
        return n
