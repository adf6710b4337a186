"""`tie`: every group of targeted Conv2d layers with identical shape and configuration
shares one kernel (initialised to the group's mean): the "all layers equal" end of the
trade-off of hypernetworks (methods/hyper.py; a residual stage becomes an unrolled RNN).
Followers become TiedConv2d layers that store no kernel.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from netshrink.core.context import PrepareContext
from netshrink.core.method import Method
from netshrink.core.reparam import reparams_of
from netshrink.core.submodules import set_submodule
from netshrink.core.targets import Site
from netshrink.errors import TargetError
from netshrink.runtime.generated import TiedConv2d, conv_args


@dataclass
class Tie(Method):
    """Share one kernel across every group of identical Conv2d layers:

    >>> ns.create("tie", targets={"include": ["re:stages\\\\.2\\\\..*conv2\\\\.weight"]})
    """

    name = "tie"
    summary = "weight tying: identical Conv2d layers share one kernel (the RNN end of hypernetworks)"

    # "mean": the shared kernel starts as the group's mean; "first": as the first layer's.
    init: Literal["mean", "first"] = "mean"

    @torch.no_grad()
    def prepare(self, model: nn.Module, ctx: PrepareContext) -> None:
        groups: dict[tuple, list[Site]] = defaultdict(list)
        for s in self.sites(model):
            if not isinstance(s.module, nn.Conv2d) or s.param_name != "weight":
                if self.targets.include:
                    raise TargetError(f"tie: {s.name} is not the weight of a Conv2d layer")
                continue
            if reparams_of(s.module, "weight"):
                raise TargetError(f"tie: {s.name} is already re-parametrised; tie before other methods")
            groups[(tuple(s.tensor.shape), s.module.stride, s.module.padding, s.module.dilation,
                    s.module.groups)].append(s)
        self.groups_ = [g for g in groups.values() if len(g) > 1]
        if not self.groups_:
            raise TargetError(f"tie: no two targeted Conv2d layers of {type(model).__name__} have the same shape")
        for g in self.groups_:
            leader = g[0].module
            if self.init == "mean":
                leader.weight.copy_(torch.stack([s.module.weight for s in g]).mean(0))
            for s in g[1:]:
                s.module.weight = leader.weight  # one Parameter, registered in every member

    @torch.no_grad()
    def finalize(self, model: nn.Module) -> None:
        for g in self.groups_:
            for s in g[1:]:
                m = s.module
                new = TiedConv2d(g[0].module_name, *conv_args(m), bias=m.bias is not None)
                if m.bias is not None:
                    new.bias.copy_(m.bias.detach())
                set_submodule(model, s.module_name, new.train(m.training))
        for m in model.modules():
            if isinstance(m, TiedConv2d):
                m.ns_link(model)
