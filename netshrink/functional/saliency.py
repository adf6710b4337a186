"""Saliency scores for pruning from data: second order (Optimal Brain Damage) and
first order (Taylor).

- OBD (LeCun et al. 1990): deleting w_k changes the loss by about
  s_k = 1/2 * h_kk * w_k**2, with h_kk the diagonal of the Hessian. We estimate the
  diagonal either by the empirical Fisher E[(dL_i/dw_k)**2] over samples i (the
  Gauss-Newton approximation at a trained model), or by Hutchinson's estimator
  E_z[z * (H z)] with Rademacher z (unbiased for the true Hessian diagonal).
- Taylor (Molchanov et al. 2016/2019): first-order change |w_k * dL/dw_k|,
  averaged over mini-batches.

`batches` yields items that are passed to `loss_of(*item)`: `(x, y)` pairs with
`loss_of(x, y)`, or `(batch,)` 1-tuples of any batch (a dict, several tensors ...)
with `loss_of(batch)`. The Fisher splits each item into samples: every tensor in it
is sliced on dim 0.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Callable, Iterable

import torch

from netshrink.errors import NetshrinkError


def obd_saliency(weight: torch.Tensor, *, hessian_diag: torch.Tensor) -> torch.Tensor:
    """1/2 * h_kk * w_k**2, elementwise; same shape as `weight`."""
    return 0.5 * hessian_diag * weight.detach() ** 2


def taylor_saliency(weight: torch.Tensor, *, grad: torch.Tensor) -> torch.Tensor:
    """|w_k * dL/dw_k|, elementwise; same shape as `weight`."""
    return (weight.detach() * grad).abs()


def fisher_diag(loss_of: Callable[..., torch.Tensor], params: list[torch.Tensor],
                batches: Iterable[tuple]) -> list[torch.Tensor]:
    """Empirical Fisher diagonal: the mean over single samples of (dL_i/dp)**2.

    loss_of(*item) -> scalar loss; `batches` yields mini-batch items ((x, y), or (batch,)),
    split here into samples (per-sample gradients are what the Fisher needs; squared
    batch gradients would underestimate it by the batch size).
    """
    acc = [torch.zeros_like(p) for p in params]
    count = 0
    for item in batches:
        n = _length(item)
        if n is None:
            raise NetshrinkError("fisher: a batch holds no tensor to split into samples")
        for i in range(n):
            grads = torch.autograd.grad(loss_of(*_sample(item, i)), params, allow_unused=True)
            for a, g in zip(acc, grads):
                if g is not None:
                    a += g.detach() ** 2
            count += 1
    return [a / max(count, 1) for a in acc]


def _sample(obj, i: int):
    """Sample `i` of a batch (every tensor sliced to [i:i+1] on dim 0), same containers."""
    if isinstance(obj, torch.Tensor):
        return obj[i:i + 1] if obj.dim() else obj
    if isinstance(obj, Mapping):
        return {k: _sample(v, i) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(_sample(v, i) for v in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(_sample(v, i) for v in obj)
    return obj


def _length(obj) -> int | None:
    """The leading size of the first tensor in `obj`."""
    if isinstance(obj, torch.Tensor):
        return int(obj.shape[0]) if obj.dim() else None
    vals = obj.values() if isinstance(obj, Mapping) else obj if isinstance(obj, (tuple, list)) else ()
    for v in vals:
        n = _length(v)
        if n is not None:
            return n
    return None


def hutchinson_diag(loss_of: Callable[..., torch.Tensor], params: list[torch.Tensor],
                    batches: Iterable[tuple], *, probes: int = 1,
                    generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """Hutchinson's diagonal Hessian estimate, mean of z * (H z) over Rademacher
    probes z (`probes` per batch) and over batches."""
    acc = [torch.zeros_like(p) for p in params]
    count = 0
    for item in batches:
        grads = torch.autograd.grad(loss_of(*item), params, create_graph=True)
        for _ in range(probes):
            zs = [torch.randint(0, 2, p.shape, generator=generator).to(p.dtype) * 2 - 1 for p in params]
            hz = torch.autograd.grad(grads, params, grad_outputs=zs, retain_graph=True)
            for a, z, h in zip(acc, zs, hz):
                a += z * h.detach()
            count += 1
    return [a / max(count, 1) for a in acc]


def batch_grads(loss_of: Callable[..., torch.Tensor], params: list[torch.Tensor],
                batches: Iterable[tuple], *, absolute_with=None) -> list[torch.Tensor]:
    """Mean over mini-batches of |w * dL_b/dw| when `absolute_with` gives the
    weights (Taylor), else of dL_b/dw."""
    acc = [torch.zeros_like(p) for p in params]
    count = 0
    for item in batches:
        grads = torch.autograd.grad(loss_of(*item), params)
        for k, (a, g) in enumerate(zip(acc, grads)):
            a += taylor_saliency(absolute_with[k], grad=g) if absolute_with is not None else g
        count += 1
    return [a / max(count, 1) for a in acc]
