"""Per-layer sensitivity to each candidate choice, measured on calibration data.

For every searched weight and every `Choice` (sparsity x bits), the layer alone is
replaced by its candidate (magnitude-pruned, then k-means-shared) and we record
- `bytes`:  what the codec stores for the candidate (cost.tensor_bytes),
- `loss`:   the increase of the run's loss (the fine-tuning loss, resolved as the
            trainer resolves it: cross-entropy for classes, MSE for float targets, the
            user's callable, distillation for unlabelled data) over the calibration
            batches, read through the batch adapter (a direct loss probe, the other
            layers left as they are),
- `fisher`: the cheap proxy 1/2 sum_i F_ii (w_i - q_i)^2 with F the empirical Fisher
            diagonal (mean squared per-batch gradient), as HAWQ / AutoQuantize use
            second-order information; additive over layers by construction.

Tables are cached per (model weights, calibration data, choices) under
$NETSHRINK_CACHE/auto/, so a second search on the same model starts at the knapsack.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset, IterableDataset, Subset

from netshrink.auto.cost import Choice, prune_like, share_like, tensor_bytes
from netshrink.core.batches import Batches, Inputs, as_batches, batch_len
from netshrink.core.targets import Site, Targets, select
from netshrink.errors import NetshrinkError
from netshrink.train.losses import BatchLoss, resolve
from netshrink.train.progress import progress_bar
from netshrink.zoo.baseline import cache_dir

SPARSITIES = (0.0, 0.5, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 0.998)
BITS = (2, 3, 4, 5, 6, 8)
VERSION = 2


@dataclass
class LayerTable:
    """One searched weight: its options and what each costs and hurts."""

    name: str
    numel: int
    choices: list[Choice]
    bytes: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    fisher: list[float] = field(default_factory=list)

    def damage(self, proxy: str) -> list[float]:
        return self.loss if proxy == "loss" else self.fisher

    def measure(self, site: Site, q: torch.Tensor, fisher: float, model: nn.Module, calib: "Calib",
                base: float) -> None:
        """Record the candidate `q` of `site`: its codec bytes, its proxy value, and the loss
        increase over `base` with the site set to it (the caller restores the weight)."""
        self.bytes.append(tensor_bytes(q))
        self.fisher.append(fisher)
        set_weight(site, q)
        self.loss.append(mean_loss(model, calib) - base)

    def to_dict(self) -> dict:
        return {"name": self.name, "numel": self.numel, "bytes": self.bytes, "loss": self.loss,
                "fisher": self.fisher,
                "choices": [[c.sparsity, c.bits] + ([c.method] if c.method else []) for c in self.choices]}

    @classmethod
    def from_dict(cls, d: dict) -> "LayerTable":
        return cls(d["name"], d["numel"], [Choice(*c) for c in d["choices"]], d["bytes"], d["loss"], d["fisher"])


def choices_for(sparsities=SPARSITIES, bits=BITS) -> list[Choice]:
    return [Choice(float(s), None if b is None else int(b)) for s in sparsities for b in bits]


def site_choices(w: torch.Tensor, choices: list[Choice]) -> list[Choice]:
    """A vector (a bias) is never pruned; it may be shared or stay float32."""
    if w.dim() > 1:
        return list(choices)
    bits = sorted({c.bits for c in choices if c.bits is not None})
    return [Choice(0.0, b) for b in bits] + [Choice(0.0, None)]


def default_targets(model: nn.Module) -> Targets:
    """Every layer weight that `select` picks by default, and the bias of its module."""
    names = []
    for s in select(model):
        names.append(s.name)
        if s.param_name == "weight" and isinstance(getattr(s.module, "bias", None), nn.Parameter):
            names.append(f"{s.module_name}.bias" if s.module_name else "bias")
    return Targets(include=names)


@dataclass
class Calib:
    """Calibration batches of the user's data, read through the batch adapter
    (core/batches.py: tensors, tuples, dicts, the user's forward / target rules), and the
    run's fine-tuning loss on them (train/losses.BatchLoss, resolved on the first batch
    as the trainer resolves it: cross-entropy for classes, MSE for float targets, the
    user's callable, distillation toward the model as given where the data has no
    targets)."""

    batches: Batches
    items: list
    loss: BatchLoss
    samples: int

    def example(self, n: int) -> Inputs:
        """Model inputs of `n` samples (repeated when the calibration holds fewer): the
        latency example at the budget's batch size."""
        parts = [self.batches.split(batch)[0] for batch in self.items]
        if any(p is None for p in parts):
            raise NetshrinkError("the latency example needs the model's inputs, but only the given forward() "
                                 "knows how to read a batch: pass data whose batches are tensors, tuples or dicts")
        have = sum(batch_len(p.tensors()) or 0 for p in parts)
        reps = -(-n // max(have, 1))

        def cat(values):
            return torch.cat(list(values) * reps)[:n] if torch.is_tensor(values[0]) else values[0]

        return Inputs(tuple(cat([p.args[i] for p in parts]) for i in range(len(parts[0].args))),
                      {k: cat([p.kwargs[k] for p in parts]) for k in parts[0].kwargs})


def calibration(data, model: nn.Module, n: int = 1024, seed: int = 0, *, loss="auto",
                batch_size: int = 64) -> Calib:
    """Up to `n` samples of `data` (a fixed random subset where the data is a map-style
    Dataset; else its first `n` samples), in batches, with the loss `loss` (a name or a
    callable, as TrainConfig.loss) resolved on `model`'s outputs. `model` is also the
    reference of a distillation loss."""
    b = as_batches(data)
    inner = b.data
    if isinstance(inner, Dataset) and not isinstance(inner, IterableDataset) and hasattr(inner, "__len__"):
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(inner), generator=g)[: min(n, len(inner))].tolist()
        b = Batches(Subset(inner, idx), forward=b.forward, target=b.target, n_inputs=b.n_inputs,
                    collate=b.collate)      # the same rules over the subset
    items = b.take(n, batch_size)
    if not items:
        raise NetshrinkError("the calibration data is empty")
    was = model.training
    model.eval()
    with torch.no_grad():   # resolved here: a loss that cannot apply is one message before any probe
        try:
            distills = resolve(loss, b.call(model, items[0]), b.split(items[0])[1], has_teacher=True).distills
        except NetshrinkError as e:
            raise NetshrinkError(f"auto (sensitivity): {e}") from None
        # The reference of a distillation loss is a frozen copy: the probes change the model's weights.
        reference = copy.deepcopy(model).eval().requires_grad_(False) if distills else None
        task = BatchLoss(loss, reference, owner="auto (sensitivity)")
        task(b, model, items[0])           # resolves it (its name keys the probe cache)
    model.train(was)
    return Calib(b, items, task, sum(batch_len(batch) or 1 for batch in items))


def set_weight(site: Site, value: torch.Tensor) -> None:
    with torch.no_grad():
        getattr(site.module, site.param_name).copy_(value)
    if hasattr(site.module, "_init_flat_weights"):   # LSTM/GRU flat weights
        site.module._init_flat_weights()


def batch_loss(model: nn.Module, calib: Calib, i: int) -> torch.Tensor:
    """The run's loss of `model` on calibration batch `i` (mean over its samples)."""
    return calib.loss(calib.batches, model, calib.items[i])


@torch.no_grad()
def mean_loss(model: nn.Module, calib: Calib) -> float:
    """The run's loss of `model` over the calibration samples (eval mode)."""
    was = model.training
    model.eval()
    total = 0.0
    for i, batch in enumerate(calib.items):
        total += float(batch_loss(model, calib, i)) * (batch_len(batch) or 1)
    model.train(was)
    return total / max(calib.samples, 1)


def fisher_diagonal(model: nn.Module, sites: list[Site], calib: Calib) -> dict[str, torch.Tensor]:
    """Mean over the calibration mini-batches of the squared gradient of the run's loss,
    per weight (the empirical Fisher diagonal)."""
    out = {s.name: torch.zeros_like(s.tensor) for s in sites}
    was = model.training
    model.eval()
    for i in range(len(calib.items)):
        model.zero_grad(set_to_none=True)
        batch_loss(model, calib, i).backward()
        for s in sites:
            g = getattr(s.module, s.param_name).grad
            if g is not None:
                out[s.name] += g.detach() ** 2
    model.zero_grad(set_to_none=True)
    model.train(was)
    return {k: v / max(len(calib.items), 1) for k, v in out.items()}


def _tensors(obj):
    if torch.is_tensor(obj):
        yield obj
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            yield from _tensors(obj[k])
    elif isinstance(obj, (tuple, list)):
        for v in obj:
            yield from _tensors(v)


def cache_key(header: dict, model: nn.Module, calib: Calib) -> str:
    """The name of a probe cache: a hash of `header` (what was probed, how), the model's
    state and the calibration batches."""
    h = hashlib.sha256(json.dumps(header, sort_keys=True, default=str).encode())
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    for t in _tensors(calib.items):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


def read_tables(path: Path, cache: bool) -> list[LayerTable] | None:
    """The tables cached at `path`, if caching is on and they are there."""
    if cache and path.exists():
        return [LayerTable.from_dict(d) for d in json.loads(path.read_text())]
    return None


def write_tables(path: Path, tables: list[LayerTable], cache: bool) -> None:
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([t.to_dict() for t in tables]))


def probe(model: nn.Module, calib: Calib, choices: list[Choice], *,
          targets: Targets | None = None, cache: bool = True, progress: bool = True,
          kmeans_iters: int = 20) -> list[LayerTable]:
    """Sensitivity tables of every selected weight (module order). The model is left as it was."""
    sites = select(model, targets or default_targets(model))
    key = cache_key({"v": VERSION, "sites": [s.name for s in sites], "loss": calib.loss.name,
                     "choices": [[c.sparsity, c.bits] for c in choices]}, model, calib)
    path = cache_dir() / "auto" / f"probe-{key}.json"
    cached = read_tables(path, cache)
    if cached is not None:
        return cached
    was = model.training
    model.eval()
    fisher = fisher_diagonal(model, sites, calib)
    base = mean_loss(model, calib)
    tables = []
    with progress_bar(total=len(sites) * len(choices), desc="sensitivity", enabled=progress) as bar:
        for site in sites:
            w = site.tensor.detach().clone()
            order = torch.argsort(w.reshape(-1).abs().float(), descending=True, stable=True)
            t = LayerTable(site.name, w.numel(), site_choices(w, choices))
            pruned = {}
            for c in t.choices:
                if c.sparsity not in pruned:
                    pruned[c.sparsity] = prune_like(w, c.sparsity, order)
                q = share_like(pruned[c.sparsity], c.bits, iters=kmeans_iters)
                t.measure(site, q, float(0.5 * (fisher[site.name] * (w - q) ** 2).sum()), model, calib, base)
                bar.advance(1)
            set_weight(site, w)
            tables.append(t)
    model.train(was)
    write_tables(path, tables, cache)
    return tables
