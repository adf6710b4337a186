"""Generated conv kernels (tied ones: methods/tie.py).

- `hypernetwork` (Ha, Dai & Le 2016, static hypernetwork): the kxk convs whose channel
  counts are multiples of `tile` get kernels generated from per-tile embeddings by one
  shared two-layer generator (reparams/hyper.py). From a trained model, the generator
  and embeddings are first fitted to the current kernels (least squares, `fit_steps`
  Adam steps), then the whole network fine-tunes. Finalize adds the generator to the
  model as `ns_hyper` and leaves HyperConv2d layers that store no kernel.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from netshrink.core.context import PrepareContext
from netshrink.core.method import Method
from netshrink.core.submodules import set_submodule
from netshrink.core.reparam import attach, original, reparams_of
from netshrink.core.targets import Site
from netshrink.errors import TargetError
from netshrink.reparams.hyper import HyperKernel, HyperNetwork
from netshrink.runtime.generated import HyperConv2d, conv_args


def _free_name(model: nn.Module, base: str) -> str:
    name, k = base, 1
    while hasattr(model, name):
        name, k = f"{base}{k}", k + 1
    return name


@dataclass
class Hypernetwork(Method):
    """Kernels of resnet_small's 3x3 convs from 16x16x3x3 tiles, Nz = d = 8:

    >>> ns.create("hypernetwork", tile=16, z_dim=8, hidden=8)
    """

    name = "hypernetwork"
    summary = "static hypernetwork: conv kernels generated from per-tile embeddings (Ha et al. 2016)"

    tile: int = 16          # T: kernels are grids of (T, T, k, k) tiles
    kernel: int = 3         # only convs with (kernel, kernel) kernels are generated
    z_dim: int = 64         # Nz: embedding size per tile
    hidden: int = 64        # d: the generator's hidden size
    fit_steps: int = 300    # Adam steps fitting the generator to the current kernels (0: random init)
    fit_lr: float = 1e-2
    seed: int = 0

    def validate(self):
        self.check(self.tile >= 1, "tile", "an integer >= 1")
        self.check(self.kernel >= 1, "kernel", "an integer >= 1")
        self.check(self.z_dim >= 1, "z_dim", "an integer >= 1")
        self.check(self.hidden >= 1, "hidden", "an integer >= 1")
        self.check(self.fit_steps >= 0, "fit_steps", "an integer >= 0")
        self.check(self.fit_lr > 0, "fit_lr", "> 0")

    def _eligible(self, site: Site) -> bool:
        m, T = site.module, self.tile
        return (isinstance(m, nn.Conv2d) and site.param_name == "weight" and m.kernel_size == (self.kernel,) * 2
                and m.out_channels % T == 0 and (m.in_channels // m.groups) % T == 0)

    def prepare(self, model: nn.Module, ctx: PrepareContext) -> None:
        sites = self.sites(model)
        if self.targets.include:  # named explicitly: every one must fit
            bad = [s.name for s in sites if not self._eligible(s)]
            if bad:
                raise TargetError(f"hypernetwork: {bad} are not {self.kernel}x{self.kernel} Conv2d weights with "
                                  f"channels divisible by tile = {self.tile}")
        self.sites_ = [s for s in sites if self._eligible(s)]
        if not self.sites_:
            raise TargetError(f"hypernetwork: no {self.kernel}x{self.kernel} Conv2d with channels divisible by "
                              f"tile = {self.tile} in {type(model).__name__}")
        T = self.tile
        grids = [(s.module.out_channels // T, s.module.in_channels // s.module.groups // T) for s in self.sites_]
        self.starts_ = [sum(a * b for a, b in grids[:k]) for k in range(len(grids))]
        g = torch.random.fork_rng()
        with g:
            torch.manual_seed(self.seed)
            self.hyper_ = HyperNetwork(sum(a * b for a, b in grids), T, self.kernel, self.z_dim, self.hidden)
        if self.fit_steps:
            self._fit([s.tensor.detach() for s in self.sites_], grids)
        for site, start, grid in zip(self.sites_, self.starts_, grids):
            attach(site, HyperKernel(self.hyper_, start=start, grid=grid))
            original(site.module, "weight").requires_grad_(False)  # ignored: the kernel is generated

    def _fit(self, kernels: list[torch.Tensor], grids) -> None:
        """Least-squares fit of generator + embeddings to the current kernels, each layer
        weighted by 1 / its variance so small-scale layers count as much as large ones."""
        opt = torch.optim.Adam(self.hyper_.parameters(), lr=self.fit_lr)
        scales = [k.var().clamp_min(1e-12) for k in kernels]
        with torch.enable_grad():
            for _ in range(self.fit_steps):
                tiles = self.hyper_.tiles()  # all tiles at once: (n_tiles, T, T, f, f)
                loss = sum(((HyperNetwork.assemble(tiles[s:s + g[0] * g[1]], grid=g) - k) ** 2).mean() / v
                           for s, g, k, v in zip(self.starts_, grids, kernels, scales))
                opt.zero_grad()
                loss.backward()
                opt.step()

    @torch.no_grad()
    def finalize(self, model: nn.Module) -> None:
        hname = _free_name(model, "ns_hyper")
        setattr(model, hname, self.hyper_)
        for site, start in zip(self.sites_, self.starts_):
            m = site.module
            if len(reparams_of(m, "weight")) != 1:
                raise TargetError(f"hypernetwork: {site.name} carries other re-parametrisations; apply it alone")
            new = HyperConv2d(hname, *conv_args(m), bias=m.bias is not None, start=start)
            if m.bias is not None:
                new.bias.copy_(m.bias.detach())
            set_submodule(model, site.module_name, new.train(m.training))
        for m in model.modules():
            if isinstance(m, HyperConv2d) and m.source == hname:
                m.ns_link(model)
