"""The conformance cases: at least one per registered method, run by
tests/test_conformance.py through netshrink.testing.check_method.

Adding a method to the registry without a case here fails the suite. A case names
the method's parameters, a tiny zoo model and dataset, and a `check(model, method)`
that asserts the method's target (sparsity / bits / rank ...) was reached on the
finished model. The harness also runs the check on the uncompressed model, where it
must fail; `vacuous` gives the reason where that cannot hold.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import nn

import netshrink as ns
from tests.pruning import common as _p3  # issue 3's checks
from tests.structure import common as _s7  # issue 7's checks
from tests.distill import common as _d6  # issue 6's checks
from tests.lowrank import common as _l6  # issue 6's checks
from tests.generated import common as _g8  # issue 8's checks
from tests.quantization import common as _q4  # issue 4's checks
from tests.regularize import common as _r5  # issue 5's checks


@dataclass
class Case:
    params: dict
    model: str = "lenet300_100"
    model_kwargs: dict = field(default_factory=lambda: {"in_features": 64})
    data: str = "digits"
    epochs: int = 1
    check: Callable[[nn.Module, ns.Method], None] | None = None
    id: str = ""
    vacuous: str = ""   # why the check may pass on the uncompressed model too


# The pruning checks see through CSR runtime layers (tests/pruning/common.py).
sparsity_at_least = _p3.pruned_at_least
_TEACHER = "the uncompressed model is its own teacher: it agrees with it by definition"


CASES: dict[str, list[Case]] = {
    "magnitude": [
        Case({"sparsity": 0.9}, check=sparsity_at_least(0.9), id="layer"),
        Case({"sparsity": 0.9, "scope": "global", "max_sparsity": 0.95}, check=sparsity_at_least(0.9), id="global"),
        Case({"sparsity": 0.8}, model="lenet5", model_kwargs={"input_size": 28}, data="mnist5k-small",
             check=sparsity_at_least(0.8), id="conv"),
        Case({"sparsity": 0.8}, model="lstm", model_kwargs={"input_size": 8, "hidden_size": 16},
             check=sparsity_at_least(0.8), id="lstm"),
    ],
    "random": [Case({"sparsity": 0.7, "seed": 3}, check=sparsity_at_least(0.7))],
    # issue 6: distillation and low rank (checks in tests/distill/common.py, tests/lowrank/common.py)
    "distill": [Case({"temperature": 4.0, "weight": 0.9, "label_weight": 0.1}, check=_d6.agrees_with_teacher(0.8),
                     vacuous=_TEACHER)],
    "mimic": [Case({"weight": 1.0, "label_weight": 0.1}, check=_d6.agrees_with_teacher(0.8), vacuous=_TEACHER)],
    "hints": [Case({"student_layer": "fc2", "weight": 0.5}, check=_d6.hint_learnt,
                   vacuous="the promise is about training (the hint loss falls), read from the run")],
    "low_rank": [
        Case({"mode": "ratio", "ratio": 0.25}, check=_l6.factorised(at_least=3, ratio=0.25), id="ratio"),
        Case({"mode": "budget", "ratio": 0.3, "data_aware": True}, check=_l6.factorised(at_least=2), id="budget"),
        Case({"mode": "energy", "energy": 0.9}, check=_l6.factorised(at_least=1), id="energy"),
        Case({"mode": "ratio", "ratio": 0.4}, model="lenet5", model_kwargs={"input_size": 28},
             data="mnist5k-small", check=_l6.factorised(_l6.TuckerConv, at_least=1, ratio=0.4), id="tucker"),
        Case({"mode": "ratio", "ratio": 0.3}, model="lstm", model_kwargs={"input_size": 8, "hidden_size": 16},
             check=_l6.factorised(_l6.LowRankRNN, at_least=1, ratio=0.3), id="lstm"),
    ],
    "sketch": [
        Case({"mode": "rank", "rank": 8}, check=_l6.factorised(at_least=2, max_rank=8), id="gaussian"),
        Case({"mode": "ratio", "ratio": 0.2, "sketch": "countsketch"}, check=_l6.factorised(at_least=3, ratio=0.2),
             id="countsketch"),
    ],
    # issue 3: the pruning family (checks see through SparseLinear; tests/pruning/common.py)
    "gradual_magnitude": [
        Case({"sparsity": 0.9, "frequency": 5}, check=_p3.pruned_at_least(0.9), id="mlp"),
        Case({"sparsity": 0.9, "frequency": 5, "runtime": "sparse"}, check=_p3.pruned_at_least(0.9), id="sparse-runtime"),
        Case({"sparsity": 0.8, "frequency": 5}, model="lstm", model_kwargs={"input_size": 8, "hidden_size": 16},
             check=_p3.pruned_at_least(0.8), id="lstm"),
    ],
    "lottery": [
        Case({"sparsity": 0.5, "rate": 0.3, "rewind": "init"}, check=_p3.pruned_at_least(0.5), id="init"),
        Case({"sparsity": 0.5, "rate": 0.3, "rewind": "step", "rewind_step": 5}, check=_p3.pruned_at_least(0.5),
             id="step"),
        Case({"sparsity": 0.5, "rate": 0.3, "rewind": "lr", "reinit": True, "runtime": "sparse"},
             check=_p3.pruned_at_least(0.5), id="lr-reinit"),
    ],
    "early_bird": [Case({"sparsity": 0.8, "max_epochs": 3, "window": 1, "epsilon": 0.5},
                        check=_p3.pruned_at_least(0.8))],
    "obd": [
        Case({"sparsity": 0.8, "samples": 32}, check=_p3.pruned_at_least(0.8), id="fisher"),
        Case({"sparsity": 0.8, "samples": 32, "hessian": "hutchinson", "scope": "global"},
             check=_p3.pruned_at_least(0.8), id="hutchinson"),
    ],
    "taylor": [Case({"sparsity": 0.8, "samples": 64}, check=_p3.pruned_at_least(0.8))],
    "channel_prune": [
        Case({"sparsity": 0.5, "scope": "global"}, check=_s7.units_removed(0.5), id="mlp-l1-global"),
        Case({"sparsity": 0.4, "target": "flops", "importance": "taylor", "scope": "layer", "rounds": 2},
             model="lenet5", model_kwargs={"input_size": 28}, data="mnist5k-small",
             check=_s7.flops_removed(0.4, "mnist5k-small"), id="conv-taylor-flops-iterative"),
        Case({"sparsity": 0.5, "importance": "bn_scale", "scope": "global"}, model="resnet_small",
             model_kwargs={"widths": [4, 8, 8], "blocks": [1, 1, 1]}, data="mnist5k-small",
             check=_s7.units_removed(0.5, "mnist5k-small"), id="resnet-bn"),
        Case({"sparsity": 0.5, "importance": "activation", "scope": "global"}, model="lstm",
             model_kwargs={"input_size": 8, "hidden_size": 16}, check=_s7.units_removed(0.5), id="lstm"),
    ],
    "depth_prune": [Case({"blocks": 1}, model="resnet_small",
                         model_kwargs={"widths": [4, 8, 8], "blocks": [2, 1, 1]}, data="mnist5k-small",
                         check=_s7.blocks_removed(1))],
    "hashing": [
        Case({"ratio": 0.125}, check=_g8.hashed_at(0.125), id="trained"),
        Case({"ratio": 0.25, "init": "scratch", "seed": 5}, model="resnet_small",
             model_kwargs={"widths": [4, 8, 8], "blocks": [1, 1, 1]}, data="digits", check=_g8.hashed_at(0.25),
             id="conv-scratch"),
    ],
    "frequency": [
        Case({"sparsity": 0.8, "bits": 4}, check=_g8.frequency_at(0.2, 4), id="fc-blocks"),
        Case({"sparsity": 0.9, "bits": 5, "block": 4}, model="lenet5", model_kwargs={"input_size": 28},
             data="mnist5k-small", check=_g8.frequency_at(0.1, 5), id="conv"),
    ],
    "hypernetwork": [Case({"tile": 4, "z_dim": 4, "hidden": 4, "fit_steps": 20}, model="resnet_small",
                          model_kwargs={"widths": [4, 8, 8], "blocks": [2, 1, 1]}, data="digits",
                          check=_g8.generated_by_hypernetwork)],
    "tie": [Case({}, model="resnet_small", model_kwargs={"widths": [4, 8, 8], "blocks": [2, 2, 1]}, data="digits",
                 check=_g8.tied)],
    "stochastic_depth": [Case({"p_last": 0.5, "blocks": 1, "samples": 256}, model="resnet_small",
                              model_kwargs={"widths": [4, 8, 8], "blocks": [2, 1, 1]}, data="digits",
                              check=_s7.blocks_removed(1))],
    "block": [Case({"sparsity": 0.75, "block": [4, 4]}, check=_p3.whole_blocks((4, 4), 0.75))],
    "nm": [Case({"n": 2, "m": 4}, check=_p3.nm_exact(2, 4)),
           Case({"n": 1, "m": 4}, model="lenet5", model_kwargs={"input_size": 28}, data="mnist5k-small",
                check=_p3.nm_exact(1, 4), id="conv")],
    # issue 4: quantization and weight sharing (checks in tests/quantization/common.py)
    "quantize": [
        Case({"bits": 4, "granularity": "tensor"}, check=_q4.distinct_at_most(16), id="tensor4"),
        Case({"bits": 3, "granularity": "channel", "symmetric": False, "calibration": "mse"},
             check=_q4.per_channel_distinct_at_most(8), id="channel3-affine-mse"),
        Case({"bits": 2, "granularity": "group", "group_size": 5, "calibration": "percentile"},
             model="lenet5", model_kwargs={"input_size": 28}, data="mnist5k-small",
             check=_q4.group_distinct_at_most(3, 5), id="group-conv"),
        Case({"bits": 8, "execute": "int8"}, check=_q4.runs_int8(3), id="int8"),
    ],
    "qat": [Case({"bits": 4, "granularity": "tensor"}, check=_q4.distinct_at_most(16), id="tensor4"),
            Case({"bits": 8, "execute": "int8", "activations": True}, check=_q4.runs_int8(3), id="int8")],
    "binary": [Case({"scaling": "layer"}, check=_q4.distinct_at_most(2), id="layer"),
               Case({"scaling": "channel"}, check=_q4.per_channel_distinct_at_most(2), id="xnor")],
    "ternary": [Case({}, check=_q4.ternary)],
    "kmeans": [
        Case({"bits": 3}, check=_q4.distinct_at_most(8, plus_zero=True), id="mlp"),
        Case({"bits": 4, "per_layer": {"type:Conv2d": 6}}, model="lenet5", model_kwargs={"input_size": 28},
             data="mnist5k-small", check=_q4.distinct_at_most(64, plus_zero=True), id="conv"),
    ],
    "soft_sharing": [Case({"components": 9}, check=_q4.shared_and_sparse(9))],
    # issue 5: regularising weights and neurons away (checks in tests/regularize/common.py)
    "l1": [Case({"lam": 6.0, "prox": True}, check=_r5.exact_zeros(0.3), id="prox")],
    "group_lasso": [
        Case({"lam": 6.0}, check=_r5.dead_units_recorded(5), id="outgoing-prox"),
        Case({"lam": 30.0, "group": "output", "l1": 0.5}, model="lstm", model_kwargs={"input_size": 8, "hidden_size": 16},
             check=_r5.dead_units_recorded(1), id="lstm-units"),
    ],
    "dropneuron": [Case({"lam_output": 20.0, "lam_input": 20.0, "prox": True}, check=_r5.dead_units_recorded(5))],
    "l0": [
        Case({"lam": 5.0, "gate_lr_scale": 400.0}, check=_r5.l0_gates_applied(5), id="units"),
        Case({"lam": 5.0, "granularity": "weight", "gate_lr_scale": 400.0}, model="lstm",
             model_kwargs={"input_size": 8, "hidden_size": 16}, check=_r5.l0_gates_applied(10), id="lstm-weights"),
        Case({"per_layer": {"conv1": 100.0, "conv2": 50.0, "fc1": 10.0, "fc2": 100.0}, "gate_lr_scale": 1000.0},
             model="lenet5", model_kwargs={"input_size": 28}, data="mnist5k-small", epochs=2, check=_r5.l0_gates_applied(1), id="conv"),
    ],
    "variational_dropout": [
        Case({"warmup": 0.0}, epochs=2, check=_r5.vd_pruned(0.05), id="linear-lrt"),
        Case({"warmup": 0.0}, model="lenet5", model_kwargs={"input_size": 28}, data="mnist5k-small",
             check=_r5.vd_pruned(0.001), id="conv-lrt"),
        Case({"warmup": 0.0}, model="lstm", model_kwargs={"input_size": 8, "hidden_size": 16},
             check=_r5.vd_pruned(0.001), id="lstm"),
    ],
    "lassonet": [Case({"features": 10, "lam_start": 100.0, "multiplier": 2.0, "dense_epochs": 0, "epochs_per_lambda": 2},
                      check=_r5.features_kept(10))],
    # issue 9: one-shot methods on calibration data (no fine-tuning)
    "sparsegpt": [Case({"sparsity": 0.5, "samples": 64}, check=_p3.pruned_at_least(0.5))],
    "wanda": [Case({"sparsity": 0.5, "samples": 64}, check=_p3.pruned_at_least(0.5))],
    "gptq": [Case({"bits": 4, "granularity": "channel", "samples": 64}, check=_q4.per_channel_distinct_at_most(16))],
    "awq": [Case({"bits": 4, "granularity": "channel", "samples": 64},
                 check=_q4.scaled_per_channel_distinct_at_most(16, 3))],
    "smoothquant": [Case({"samples": 64}, check=_q4.runs_int8_kernels(3))],
    # the digits as 64-token sequences (pixel intensity 0..16 = token id) through a tiny BERT
    "embedding_bits": [Case({"bits": 3.0, "min_bits": 2, "samples": 128}, model="bert_tiny",
                            model_kwargs={"vocab_size": 17, "hidden_size": 32, "num_heads": 2,
                                          "intermediate_size": 32, "max_len": 64, "num_classes": 10},
                            data="digit-tokens", check=_q4.embedding_rows_mean_bits_at_most(3.0))],
    # issue 15: recovery by hidden-state distillation (the MLP has no block list: end to end on its output)
    "recover": [Case({"samples": 128, "epochs": 1, "lr": 1e-4}, check=_d6.recovered,
                     vacuous="it distils toward the model before the run: on the uncompressed model, its own "
                             "teacher, nothing can tell the two apart (tests/distill/test_recover.py measures "
                             "recovery of a pruned BERT)")],
}
