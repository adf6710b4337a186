"""Conformance checks of issue 5's methods (used by tests/conformance_cases.py)."""
from __future__ import annotations

import torch

import netshrink as ns
from netshrink.measure.dead_neurons import removable_units


def _sparsity(model) -> float:
    ws = [s.tensor.detach() for s in ns.select(model)]
    return 1 - sum(int((w != 0).sum()) for w in ws) / sum(w.numel() for w in ws)


def dead_units_recorded(min_dead: int, min_sparsity: float = 0.0):
    """The method's dead_units_ / dead_inputs_ agree with the zero groups of the
    finished weights, at least `min_dead` units or features died, and the weights are
    at least `min_sparsity` exact zeros."""
    def check(model, method):
        units = removable_units(model)
        total = 0
        for attr, key in (("dead_units_", "dead_units"), ("dead_inputs_", "dead_inputs")):
            for layer, dead in getattr(method, attr).items():
                assert int(dead.sum()) == units[layer][key], f"{attr}[{layer}] disagrees with the weights"
                total += int(dead.sum())
        assert total >= min_dead, f"only {total} units / features died (wanted >= {min_dead})"
        s = _sparsity(model)
        assert s >= min_sparsity, f"sparsity {s:.3f} < {min_sparsity}"
    return check


def exact_zeros(min_sparsity: float):
    def check(model, method):
        s = _sparsity(model)
        assert s >= min_sparsity, f"sparsity {s:.3f} < {min_sparsity}"
    return check


def vd_pruned(min_sparsity: float):
    """Every weight with log alpha > 3 at the end of training is exactly zero (and the
    layer sparsities VD reported are those of the finished weights), and the weights are
    more than `min_sparsity` exact zeros (> 0: a bound of 0 would hold for any model)."""
    assert min_sparsity > 0, "a sparsity bound of 0 cannot fail"

    def check(model, method):
        for site in method.sites_:
            w = site.tensor.detach()
            zeros = float((w == 0).float().mean())
            assert zeros >= method.layer_sparsity_[site.name] - 1e-9, site.name
        s = _sparsity(model)
        assert s >= min_sparsity, f"sparsity {s:.3f} < {min_sparsity}"
    return check


def l0_gates_applied(min_closed: int):
    """Units whose test-time gate is 0 have all-zero weights; at least `min_closed` closed."""
    def check(model, method):
        closed = 0
        for site, rp in zip(method.sites_, method.gates_):
            key = site.module_name if site.param_name == "weight" else site.name
            alive = method.alive_[key]
            closed += int((~alive).sum())
            # the model's own tensor (not the method's handle): the check must fail on a model l0 did not touch
            w = getattr(model.get_submodule(site.module_name), site.param_name).detach()
            if rp.direction is None:
                assert (w[~alive] == 0).all()
            else:
                from netshrink.functional.groups import group_norms
                norms = group_norms(w, direction=rp.direction, gates=rp.gates)
                assert (norms[~alive] == 0).all(), site.name
        assert closed >= min_closed, f"only {closed} gates closed"
    return check


def features_kept(k: int):
    """LassoNet: the first layer reads exactly the k selected input features."""
    def check(model, method):
        lin = model.get_submodule(method.layer_)
        used = (lin.weight.detach() != 0).any(0)
        assert int(used.sum()) <= k and int(method.keep_.sum()) == k
        assert not (used & ~method.keep_).any()
        assert torch.equal(method.dead_inputs_[method.layer_], ~method.keep_)
    return check
