"""Re-parametrisations: a weight as a function of other tensors.

Built on `torch.nn.utils.parametrize`, so a re-parametrised module trains like the
original one (the user's optimizer keeps its Parameter). Each `Reparam` may offer a
`penalty()` (added to the loss) and always knows how to `bake` itself: baking
replaces the parametrised weight by its plain value, leaving an ordinary module.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from netshrink.core.targets import Site, foreign_parametrization
from netshrink.errors import TargetError


class Reparam(nn.Module):
    """Base class. Subclasses implement `forward(w) -> effective weight`."""

    def penalty(self) -> torch.Tensor | None:
        """A term added to the training loss, or None."""
        return None

    @torch.no_grad()
    def baked(self, original: torch.Tensor) -> torch.Tensor:
        """The plain weight that replaces the parametrisation (deterministic)."""
        return self.forward(original)


def attach(site: Site, reparam: Reparam) -> Reparam:
    """Parametrise `site`'s weight by `reparam` (stacking on netshrink's existing ones)."""
    other = foreign_parametrization(site.module, site.param_name)
    if other:
        raise TargetError(f"{site.name} is computed by a {other} parametrisation (torch.nn.utils.parametrize, "
                          "e.g. weight_norm), which netshrink does not rewrite; exclude it from the targets")
    parametrize.register_parametrization(site.module, site.param_name, reparam)
    return reparam


def reparams_of(module: nn.Module, name: str) -> list[Reparam]:
    if not parametrize.is_parametrized(module, name):
        return []
    return list(module.parametrizations[name])


def find(model: nn.Module, kind: type | None = None):
    """Yield (module, param_name, reparam) for every re-parametrisation of `kind`."""
    for module in model.modules():
        if not parametrize.is_parametrized(module):
            continue
        for name in list(module.parametrizations.keys()):
            for rp in module.parametrizations[name]:
                if kind is None or isinstance(rp, kind):
                    yield module, name, rp


def original(module: nn.Module, name: str) -> nn.Parameter:
    """The trainable tensor underneath a parametrised weight."""
    return module.parametrizations[name].original


def total_penalty(model: nn.Module) -> torch.Tensor | None:
    terms = [p for _, _, rp in find(model) if (p := rp.penalty()) is not None]
    return torch.stack([t.reshape(()) for t in terms]).sum() if terms else None


@torch.no_grad()
def bake(module: nn.Module, name: str, kind: type | None = None) -> None:
    """Replace the parametrisation of `module.name` by its plain value.

    With `kind`, only a chain made entirely of that kind is baked; other chains are
    left for their own method to finish.
    """
    if not parametrize.is_parametrized(module, name):
        return
    chain = list(module.parametrizations[name])
    if kind is not None and not all(isinstance(rp, kind) for rp in chain):
        return
    value = module.parametrizations[name].original.detach()
    for rp in chain:
        was_training = rp.training
        rp.eval()
        value = rp.baked(value)
        rp.train(was_training)
    if value.is_floating_point():
        # w * 0 gives -0.0 for negative w; +0.0 turns it into +0.0, so a pruned
        # weight is one symbol for the codec instead of two (about 1 bit each).
        value = value + 0.0
    parametrize.remove_parametrizations(module, name, leave_parametrized=False)
    getattr(module, name).data = value.detach().clone().contiguous()
    # LSTM/GRU keep a list of their weights; refresh it after the swap.
    if hasattr(module, "_init_flat_weights"):
        module._init_flat_weights()


def bake_all(model: nn.Module, kind: type | None = None) -> None:
    """Bake every parametrisation (of `kind`) in `model`."""
    for module in list(model.modules()):
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations.keys()):
                bake(module, name, kind)
