"""Per-layer sensitivity to each candidate choice, measured on calibration data.

For every searched weight and every `Choice` (sparsity x bits), the layer alone is
replaced by its candidate (magnitude-pruned, then k-means-shared) and we record
- `bytes`:  what the codec stores for the candidate (cost.tensor_bytes),
- `loss`:   the increase of the mean cross-entropy on the calibration batch (a direct
            loss probe, the other layers left as they are),
- `fisher`: the cheap proxy 1/2 sum_i F_ii (w_i - q_i)^2 with F the empirical Fisher
            diagonal (mean squared per-batch gradient), as HAWQ / AutoQuantize use
            second-order information; additive over layers by construction.

Tables are cached per (model weights, calibration data, choices) under
$NETSHRINK_CACHE/auto/, so a second search on the same model starts at the knapsack.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from netshrink.auto.cost import Choice, prune_like, share_like, tensor_bytes
from netshrink.core.targets import Site, Targets, select
from netshrink.train.progress import progress_bar
from netshrink.zoo.baseline import cache_dir

SPARSITIES = (0.0, 0.5, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 0.998)
BITS = (2, 3, 4, 5, 6, 8)
VERSION = 1


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

    def to_dict(self) -> dict:
        return {"name": self.name, "numel": self.numel, "bytes": self.bytes, "loss": self.loss,
                "fisher": self.fisher, "choices": [[c.sparsity, c.bits] for c in self.choices]}

    @classmethod
    def from_dict(cls, d: dict) -> "LayerTable":
        return cls(d["name"], d["numel"], [Choice(s, b) for s, b in d["choices"]], d["bytes"], d["loss"], d["fisher"])


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


def calibration(data, n: int = 1024, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) of up to `n` samples of `data`, a fixed random subset."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data), generator=g)[: min(n, len(data))].tolist()
    xs, ys = zip(*(data[i] for i in idx))
    return torch.stack(xs), torch.as_tensor(ys)


def set_weight(site: Site, value: torch.Tensor) -> None:
    with torch.no_grad():
        getattr(site.module, site.param_name).copy_(value)
    if hasattr(site.module, "_init_flat_weights"):   # LSTM/GRU flat weights
        site.module._init_flat_weights()


@torch.no_grad()
def mean_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 512) -> float:
    total = 0.0
    for i in range(0, len(x), batch):
        total += float(F.cross_entropy(model(x[i:i + batch]), y[i:i + batch], reduction="sum"))
    return total / len(x)


def fisher_diagonal(model: nn.Module, sites: list[Site], x, y, batch: int = 64) -> dict[str, torch.Tensor]:
    """Mean over mini-batches of the squared gradient of the mean loss, per weight."""
    out = {s.name: torch.zeros_like(s.tensor) for s in sites}
    was = model.training
    model.eval()
    n = 0
    for i in range(0, len(x), batch):
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[i:i + batch]), y[i:i + batch]).backward()
        for s in sites:
            g = getattr(s.module, s.param_name).grad
            if g is not None:
                out[s.name] += g.detach() ** 2
        n += 1
    model.zero_grad(set_to_none=True)
    model.train(was)
    return {k: v / max(n, 1) for k, v in out.items()}


def _key(model: nn.Module, sites: list[Site], x, y, choices: list[Choice]) -> str:
    h = hashlib.sha256(json.dumps({"v": VERSION, "sites": [s.name for s in sites],
                                   "choices": [[c.sparsity, c.bits] for c in choices]}).encode())
    for s in sites:
        h.update(s.tensor.detach().cpu().contiguous().numpy().tobytes())
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    h.update(x.numpy().tobytes())
    h.update(y.numpy().tobytes())
    return h.hexdigest()[:20]


def probe(model: nn.Module, calib: tuple[torch.Tensor, torch.Tensor], choices: list[Choice], *,
          targets: Targets | None = None, cache: bool = True, progress: bool = True,
          kmeans_iters: int = 20) -> list[LayerTable]:
    """Sensitivity tables of every selected weight (module order). The model is left as it was."""
    x, y = calib
    sites = select(model, targets or default_targets(model))
    path = cache_dir() / "auto" / f"probe-{_key(model, sites, x, y, choices)}.json"
    if cache and path.exists():
        return [LayerTable.from_dict(d) for d in json.loads(path.read_text())]
    was = model.training
    model.eval()
    fisher = fisher_diagonal(model, sites, x, y)
    base = mean_loss(model, x, y)
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
                t.bytes.append(tensor_bytes(q))
                t.fisher.append(float(0.5 * (fisher[site.name] * (w - q) ** 2).sum()))
                set_weight(site, q)
                t.loss.append(mean_loss(model, x, y) - base)
                bar.advance(1)
            set_weight(site, w)
            tables.append(t)
    model.train(was)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([t.to_dict() for t in tables]))
    return tables
