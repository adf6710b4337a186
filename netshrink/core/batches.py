"""The batch adapter: every place that runs a model on data goes through it.

A user's `data` may be a map-style Dataset (batched here), an IterableDataset
(batched here, never shuffled), a DataLoader (used as it is: its own batch size,
sampler and collate) or any other re-iterable of ready batches (a list of dicts ...).
One batch may be

- a tensor: the inputs, no target;
- a tuple / list `(inputs, target)`; `(x1, x2, target)` with `n_inputs=2`; by default
  every element but the last is a positional input and the last is the target
  (a 1-tuple has no target);
- a Mapping (dict, HF `BatchEncoding`): passed as keyword arguments; the first of the
  keys `labels`, `label`, `target` present is the target and is not passed;
- anything else, given `forward=lambda model, batch: ...` (and `target=lambda batch: ...`).

    b = as_batches(train)                        # or Batches(loader, forward=..., n_inputs=2)
    for batch in b.iter(batch_size=64, shuffle=True, seed=0):
        out = b.call(model, batch)               # moved to the model's device / float dtype
        inputs, y = b.split(batch)               # Inputs(args, kwargs), target or None
    ex = b.example_inputs(2)                     # Inputs of 2 samples, for tracing / export
    ex.call(model)                               # model(*ex.args, **ex.kwargs)

`output_tensor(out)` picks the tensor a loss or a metric reads from a model's output
(HF `logits`, else `last_hidden_state`, else the first tensor of a tuple).
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, NamedTuple

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, default_collate

from netshrink.errors import NetshrinkError

TARGET_KEYS = ("labels", "label", "target")


class Inputs(NamedTuple):
    """What one model call receives: `model(*args, **kwargs)`."""

    args: tuple
    kwargs: dict

    def call(self, model: nn.Module):
        return model(*self.args, **self.kwargs)

    def take(self, n: int) -> "Inputs":
        """The first `n` samples (every tensor sliced on dim 0)."""
        return Inputs(tuple(_take(a, n) for a in self.args), {k: _take(v, n) for k, v in self.kwargs.items()})

    def to(self, device=None, dtype: torch.dtype | None = None) -> "Inputs":
        return Inputs(to_device(self.args, device, dtype), to_device(self.kwargs, device, dtype))

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor, positional first (the order fx / export see them)."""
        return [t for t in (*self.args, *self.kwargs.values()) if isinstance(t, torch.Tensor)]


@dataclass(frozen=True)
class Batches:
    """A user's data and the rules that turn one of its batches into a model call.

    forward: `forward(model, batch) -> outputs`, replacing `model(*args, **kwargs)`.
    target: `target(batch) -> Tensor | None`, replacing the default rule.
    n_inputs: for tuple batches, how many leading elements are positional inputs.
    collate: collate_fn when netshrink batches a Dataset itself.
    """

    data: Any
    forward: Callable[[nn.Module, Any], Any] | None = None
    target: Callable[[Any], Any] | None = None
    n_inputs: int | None = None
    collate: Callable | None = None
    _first: list = field(default_factory=list, repr=False, compare=False)

    # -- iteration ---------------------------------------------------------------
    def iter(self, batch_size: int = 64, shuffle: bool = False, seed: int = 0) -> Iterator[Any]:
        """The batches of one pass. A map-style Dataset is batched (shuffled by a
        generator seeded with `seed`); a DataLoader or a list of batches is used as is."""
        d = self.data
        if isinstance(d, DataLoader):
            return iter(d)
        if isinstance(d, IterableDataset):
            return iter(DataLoader(d, batch_size=batch_size, collate_fn=self.collate))
        if _is_map_dataset(d):
            g = torch.Generator().manual_seed(seed)
            return iter(DataLoader(d, batch_size=batch_size, shuffle=shuffle, generator=g,
                                   collate_fn=self.collate))
        if isinstance(d, Iterable):
            if iter(d) is d:
                raise NetshrinkError("data is a one-shot iterator (a generator?): pass a list of batches, "
                                     "a Dataset or a DataLoader, which can be read more than once")
            return iter(d)
        raise NetshrinkError(f"data of type {type(d).__name__} is neither a Dataset, a DataLoader "
                             "nor an iterable of batches")

    def first(self) -> Any:
        """The first batch (cached: tracing and probing ask for it often)."""
        if not self._first:
            try:
                self._first.append(next(self.iter(batch_size=8)))
            except StopIteration:
                raise NetshrinkError("data is empty") from None
        return self._first[0]

    def num_samples(self) -> int | None:
        """Samples in one pass, or None when the data cannot say (iterables)."""
        d = self.data
        if isinstance(d, DataLoader):
            return len(d.dataset) if _is_map_dataset(d.dataset) else None
        if _is_map_dataset(d):
            return len(d)
        return None

    def num_batches(self, batch_size: int) -> int | None:
        """Batches in one pass, or None when unknown."""
        d = self.data
        if isinstance(d, DataLoader):
            try:
                return len(d)
            except TypeError:
                return None
        if _is_map_dataset(d):
            return -(-len(d) // batch_size)
        if isinstance(d, (list, tuple)):
            return len(d)
        return None

    # -- one batch ---------------------------------------------------------------
    def split(self, batch) -> tuple[Inputs | None, Any]:
        """(Inputs, target or None). Inputs is None when only `forward` knows how to
        call the model on this batch."""
        target = self.target(batch) if self.target is not None else None
        if isinstance(batch, torch.Tensor):
            return Inputs((batch,), {}), target
        if isinstance(batch, Mapping):
            key = next((k for k in TARGET_KEYS if k in batch), None)
            kw = {k: v for k, v in batch.items() if k != key}
            if self.target is None and key is not None:
                target = batch[key]
            return Inputs((), kw), target
        if isinstance(batch, (tuple, list)) and batch:
            n = self.n_inputs if self.n_inputs is not None else max(1, len(batch) - 1)
            if self.target is None and len(batch) > n:
                target = batch[n]
            return Inputs(tuple(batch[:n]), {}), target
        if self.forward is None:
            raise NetshrinkError(f"a batch of type {type(batch).__name__} is not a tensor, tuple or dict: "
                                 "pass forward=lambda model, batch: ... to say how the model reads it")
        return None, target

    def has_target(self) -> bool:
        return self.split(self.first())[1] is not None

    def call(self, model: nn.Module, batch, *, cast: bool = True):
        """The model's raw output on `batch`, inputs moved to the model's device and
        floating inputs cast to its floating dtype (`cast=False`: left as they are)."""
        device, dtype = model_device(model), (model_dtype(model) if cast else None)
        if self.forward is not None:
            return self.forward(model, to_device(batch, device, dtype))
        inputs, _ = self.split(batch)
        return inputs.to(device, dtype).call(model)

    def example_inputs(self, n: int = 2) -> Inputs:
        """Inputs of the first `n` samples of the first batch (for tracing, FLOPs, export)."""
        inputs, _ = self.split(self.first())
        if inputs is None:
            raise NetshrinkError("tracing needs the model's inputs, but only the given forward() knows "
                                 "how to read a batch: pass data whose batches are tensors, tuples or dicts")
        return inputs.take(n)

    def take(self, n_samples: int, batch_size: int = 64) -> list:
        """Batches of the first `n_samples` samples in order (calibration, scores)."""
        out, seen = [], 0
        for batch in self.iter(batch_size=batch_size):
            if seen >= n_samples:
                break
            k = batch_len(batch)
            if k is not None and seen + k > n_samples:
                batch = _take(batch, n_samples - seen)
                k = n_samples - seen
            out.append(batch)
            seen += k if k is not None else 1
        return out


class StopForward(Exception):
    """Raised by a forward hook once it has what it came for: `run_each` skips the rest of
    that forward pass (calibration statistics, a block's inputs, ...)."""


def calibration_batches(data, n: int, batch_size: int = 64, seed: int = 0):
    """(adapter, up to `n` batches of `data`). A map-style Dataset gives batches of a
    random permutation (torch.randperm seeded with `seed`, the global RNG untouched);
    a DataLoader or a list of batches gives its first `n` batches."""
    if data is None:
        raise NetshrinkError("this criterion needs calibration data (taylor, activation, obs, reconstruct)")
    b = as_batches(data)
    d = b.data
    if isinstance(d, Dataset) and not isinstance(d, IterableDataset) and hasattr(d, "__len__"):
        idx = torch.randperm(len(d), generator=torch.Generator().manual_seed(seed))
        collate = b.collate or default_collate
        chunks = [idx[k * batch_size:(k + 1) * batch_size] for k in range(n)]
        return b, [collate([d[int(i)] for i in c]) for c in chunks if len(c)]
    return b, list(itertools.islice(b.iter(batch_size=batch_size), n))


def token_mask(batch, x: torch.Tensor) -> torch.Tensor | None:
    """(N, T) bool of real tokens when `batch` has an attention_mask (N, T) matching the
    hidden state x (N, T, d): the rows padding adds are left out of calibration statistics."""
    if not isinstance(batch, Mapping) or "attention_mask" not in batch or x.dim() != 3:
        return None
    m = batch["attention_mask"]
    if not torch.is_tensor(m) or m.dim() != 2 or tuple(m.shape) != tuple(x.shape[:2]):
        return None
    return m.to(x.device).bool()


def run_each(data: Batches, model: nn.Module, batches, before=None) -> None:
    """Run `model` on each batch through the adapter; a hook raising StopForward ends that
    batch's pass early. `before(batch)` is called first (hooks that need the batch)."""
    for batch in batches:
        if before is not None:
            before(batch)
        try:
            data.call(model, batch)
        except StopForward:
            pass


def as_batches(data, **rules) -> Batches:
    """`data` wrapped with `rules` (forward, target, n_inputs, collate); a Batches
    is returned as it is (rules given here replace its own)."""
    if isinstance(data, Batches):
        if not rules:
            return data
        kept = {k: getattr(data, k) for k in ("forward", "target", "n_inputs", "collate")}
        kept.update({k: v for k, v in rules.items() if v is not None})
        return Batches(data.data, **kept)
    return Batches(data, **{k: v for k, v in rules.items() if v is not None})


def iter_batches(data, batch_size: int = 64, shuffle: bool = False, seed: int = 0) -> Iterator[Any]:
    return as_batches(data).iter(batch_size, shuffle, seed)


def call(model: nn.Module, batch, batches: Batches | None = None):
    return (batches or Batches(None)).call(model, batch)


def split(batch, batches: Batches | None = None):
    return (batches or Batches(None)).split(batch)


def example_inputs(data, n: int = 2) -> Inputs:
    """Inputs for tracing: a tensor / tuple of tensors is taken as the inputs
    themselves, anything else as data whose first batch gives them."""
    if isinstance(data, torch.Tensor):
        return Inputs((data,), {})
    if isinstance(data, Inputs):
        return data
    if isinstance(data, tuple) and all(isinstance(t, torch.Tensor) for t in data):
        return Inputs(data, {})
    return as_batches(data).example_inputs(n)


# -- helpers --------------------------------------------------------------------
def to_device(obj, device=None, dtype: torch.dtype | None = None):
    """`obj` with every tensor moved to `device`; floating tensors also cast to
    `dtype` (integer ids and masks keep theirs). Containers keep their shape;
    a Mapping becomes a dict."""
    if isinstance(obj, torch.Tensor):
        cast = dtype if (dtype is not None and obj.is_floating_point() and obj.dtype != dtype) else None
        if (device is None or obj.device == torch.device(device)) and cast is None:
            return obj
        return obj.to(device=device, dtype=cast)
    if isinstance(obj, Mapping):
        return {k: to_device(v, device, dtype) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(to_device(v, device, dtype) for v in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(v, device, dtype) for v in obj)
    return obj


def model_device(model: nn.Module) -> torch.device:
    p = next(itertools.chain(model.parameters(), model.buffers()), None)
    return p.device if p is not None else torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype of the model's first floating parameter (None if it has none)."""
    for p in itertools.chain(model.parameters(), model.buffers()):
        if p.is_floating_point():
            return p.dtype
    return None


def output_tensor(out) -> torch.Tensor:
    """The tensor a loss or metric reads from a model output: the output itself,
    HF `logits` / `last_hidden_state` / `pooler_output`, or the first tensor of a tuple."""
    if isinstance(out, torch.Tensor):
        return out
    for key in ("logits", "last_hidden_state", "pooler_output", "prediction_logits"):
        v = out.get(key) if isinstance(out, Mapping) else getattr(out, key, None)
        if isinstance(v, torch.Tensor):
            return v
    items = out.values() if isinstance(out, Mapping) else out if isinstance(out, (tuple, list)) else ()
    for v in items:
        if isinstance(v, torch.Tensor):
            return v
    raise NetshrinkError(f"cannot find a tensor in the model's output of type {type(out).__name__}")


def batch_len(batch) -> int | None:
    """Samples in a batch: the leading size of its first tensor (None if none)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    vals = batch.values() if isinstance(batch, Mapping) else batch if isinstance(batch, (tuple, list)) else ()
    for v in vals:
        n = batch_len(v)
        if n is not None:
            return n
    return None


def _take(obj, n: int):
    if isinstance(obj, torch.Tensor):
        return obj[:n] if obj.dim() else obj
    if isinstance(obj, Mapping):
        return type(obj)({k: _take(v, n) for k, v in obj.items()}) if isinstance(obj, dict) else \
            {k: _take(v, n) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(_take(v, n) for v in obj)
    return obj


def _is_map_dataset(d) -> bool:
    return isinstance(d, Dataset) and not isinstance(d, IterableDataset) and hasattr(d, "__len__")


__all__ = ["Batches", "Inputs", "as_batches", "iter_batches", "call", "split", "example_inputs",
           "to_device", "model_device", "model_dtype", "output_tensor", "batch_len", "TARGET_KEYS"]
