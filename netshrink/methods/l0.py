"""L0 regularisation with hard-concrete gates (Louizos, Welling & Kingma 2018).

granularity = "unit" (the paper's structured version): one gate per conv output
filter, per Linear input neuron, per LSTM/GRU hidden unit (across its gates);
"weight": one gate per weight. The loss adds, per gate j,

    P(z_j != 0) * (lam * |g_j| + weight_decay / 2 * ||w_g_j||^2) / N

(the expected L0 norm of the group's weights plus the gated L2 term of the authors'
code; N = training-set size). `finalize` multiplies the test-time gate into the
weights and records the surviving units in `alive_`, `dead_units_`, `dead_inputs_`.

    >>> ns.create("l0", per_layer={"conv1": 10, "conv2": 0.5, "fc1": 0.1, "fc2": 10})
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
from torch import nn

from netshrink.core.context import PrepareContext, StepContext
from netshrink.core.method import Method
from netshrink.core.reparam import attach, bake, reparams_of
from netshrink.core.targets import PerLayer, Site
from netshrink.errors import RecipeError, TargetError
from netshrink.functional.groups import group_matrix, num_groups
from netshrink.methods.regularize import record_dead, site_gates, unit_key
from netshrink.reparams.l0 import HardConcreteGate

L0_KINDS = ("linear", "conv", "recurrent")


@dataclass
class L0(Method):
    name = "l0"
    summary = "L0 hard-concrete gates per unit or weight (Louizos 2018), expected-L0 penalty"

    lam: float = 0.1
    # Per-layer lam by target pattern (the paper's "lambda sep").
    per_layer: PerLayer[float] = field(default_factory=PerLayer)
    granularity: Literal["unit", "weight"] = "unit"
    drop_rate: float = 0.5   # gates start at this drop rate (paper: 0.5)
    # Gates learn this many times faster than the weights (Adam), so a short fine-tune
    # of a trained model can close them; 1 = the paper's single learning rate.
    gate_lr_scale: float = 1.0
    weight_decay: float = 0.0
    dataset_size: int = 0    # N; 0 = size of the training data

    renamed: ClassVar[dict[str, str]] = {"lam_map": "'per_layer' (the same table)"}

    def validate(self):
        self.check(self.lam >= 0, "lam", ">= 0")
        self.check(0 < self.drop_rate < 1, "drop_rate", "in (0, 1)")
        self.check(self.weight_decay >= 0, "weight_decay", ">= 0")
        self.check(self.gate_lr_scale > 0, "gate_lr_scale", "> 0")
        self.check(self.dataset_size >= 0, "dataset_size", ">= 0")
        bad = {k: v for k, v in self.per_layer.items() if v < 0}
        self.check(not bad, "per_layer", f"a table of lambdas >= 0 (not {bad})")

    @staticmethod
    def direction(site: Site) -> str:
        """Louizos et al.: gates on conv output filters and on Linear input neurons."""
        return "in" if site.kind == "linear" else "out"

    def prepare(self, model: nn.Module, ctx: PrepareContext) -> None:
        self.sites_ = [s for s in self.sites(model) if s.tensor.dim() >= 2]
        bad = [s.name for s in self.sites_ if s.kind not in L0_KINDS]
        if bad or not self.sites_:
            raise TargetError(f"{self.name}: needs Linear, Conv, LSTM or GRU weights; got {bad or 'none'}")
        self.lams_ = self.per_layer.resolve(self.sites_, self.lam, owner=self.name)
        self.n_ = self.dataset_size or ctx.num_samples()
        if self.n_ <= 0:
            raise RecipeError(f"{self.name}: dataset_size must be set when there is no training data to count")
        self.gates_ = []
        for s in self.sites_:
            shape = s.tensor.shape
            zeros = s.tensor.detach() == 0
            keep = ~zeros if bool(zeros.any()) else None
            if self.granularity == "weight":
                rp = HardConcreteGate(shape, drop_rate=self.drop_rate, lr_scale=self.gate_lr_scale, keep=keep)
            else:
                d = self.direction(s)
                g = site_gates(s) if d == "out" else 1
                rp = HardConcreteGate((num_groups(shape, direction=d, gates=g),), direction=d, gates=g,
                                      drop_rate=self.drop_rate, lr_scale=self.gate_lr_scale, keep=keep)
            attach(s, rp)
            self.gates_.append(rp)

    def loss(self, ctx: StepContext):
        terms = []
        for s, rp, lam in zip(self.sites_, self.gates_, self.lams_):
            p = rp.prob_nonzero()                                 # (gates,)
            w = s.module.parametrizations[s.param_name].original  # the ungated weight
            if rp.direction is None:
                cost = lam * torch.ones_like(w)
                if self.weight_decay:
                    cost = cost + 0.5 * self.weight_decay * w * w
            else:
                gm = group_matrix(w, direction=rp.direction, gates=rp.gates)  # (G, |g|)
                cost = lam * gm.shape[1] * torch.ones(gm.shape[0])
                if self.weight_decay:
                    cost = cost + 0.5 * self.weight_decay * (gm * gm).sum(1)
            terms.append((p * cost).sum())
        return torch.stack(terms).sum() / self.n_

    @torch.no_grad()
    def expected_l0(self) -> float:
        """Expected number of non-zero weights under the current gates."""
        total = 0.0
        for s, rp in zip(self.sites_, self.gates_):
            p = rp.prob_nonzero()
            size = 1 if rp.direction is None else s.tensor.numel() // p.numel()
            total += float(p.sum()) * size
        return total

    def finalize(self, model: nn.Module) -> None:
        self.alive_ = {unit_key(s): rp.alive() for s, rp in zip(self.sites_, self.gates_)}
        for s, rp in zip(self.sites_, self.gates_):
            if rp in reparams_of(s.module, s.param_name):
                bake(s.module, s.param_name, HardConcreteGate)
        self.dead_units_, self.dead_inputs_ = record_dead(self.sites_)
