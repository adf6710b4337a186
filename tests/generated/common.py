"""Issue 8's conformance checks: the generated-weights target was reached."""
from __future__ import annotations

import math

import torch
from torch import nn


def hashed_at(factor: float):
    """Every targeted layer is a hashed runtime layer storing ceil(factor x numel) buckets."""
    def check(model, method):
        from netshrink.runtime.hashed_linear import HashedConv2d, HashedLinear

        layers = [m for m in model.modules() if isinstance(m, (HashedLinear, HashedConv2d))]
        assert len(layers) == len(method.sites_) > 0
        for m in layers:
            numel = math.prod(m.weight_shape)
            assert m.buckets.numel() == math.ceil(factor * numel)
            assert not any("weight" in n for n, _ in m.named_parameters())  # no dense weight stored
    return check


def frequency_at(keep: float, bits: int):
    """At most `keep` of each layer's DCT coefficients are non-zero, with <= 2**bits values."""
    def check(model, method):
        from netshrink.runtime.frequency import FrequencyConv2d, FrequencyLinear

        layers = [m for m in model.modules() if isinstance(m, (FrequencyLinear, FrequencyConv2d))]
        assert len(layers) == len(method.sites_) > 0
        for m in layers:
            nz = m.coef[m.coef != 0]
            assert nz.numel() <= math.ceil(keep * m.coef.numel()) + 1
            assert torch.unique(nz).numel() <= 2 ** bits
    return check


def generated_by_hypernetwork(model, method):
    from netshrink.runtime.generated import HyperConv2d

    convs = [m for m in model.modules() if isinstance(m, HyperConv2d)]
    assert len(convs) == len(method.sites_) > 0
    hyper = model.get_submodule(convs[0].source)
    with torch.no_grad():
        for c in convs:
            k = hyper.layer_kernel(start=c.start, grid=c.grid(hyper.tile))
            assert torch.equal(c.kernel(), k)
    # The generator and the embeddings hold fewer numbers than the kernels they make, and
    # no generated conv stores a kernel of its own.
    generated = sum(math.prod(c.weight_shape) for c in convs)
    assert hyper.n_generator_params() + hyper.z.numel() < generated
    assert not any("weight" in n for c in convs for n, _ in c.named_parameters())


def tied(model, method):
    from netshrink.runtime.generated import TiedConv2d

    tied_convs = [m for m in model.modules() if isinstance(m, TiedConv2d)]
    assert len(tied_convs) == sum(len(g) - 1 for g in method.groups_) > 0
    for m in tied_convs:
        assert m.kernel() is model.get_submodule(m.source).weight


