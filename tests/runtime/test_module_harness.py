"""Every netshrink module type of the architecture registry through the public harness
(netshrink.testing.check_module): config round trip, state_dict round trip with the
same outputs, a build on the meta device. One small instance of each, made here."""
import pytest
import torch
from torch import nn

from netshrink.artifact import architecture
from netshrink.reparams.hyper import HyperNetwork
from netshrink.runtime.attention import PrunedMultiheadAttention
from netshrink.runtime.frequency import FrequencyConv2d, FrequencyLinear
from netshrink.runtime.generated import HyperConv2d, TiedConv2d
from netshrink.runtime.hashed_linear import HashedConv2d, HashedLinear
from netshrink.runtime.int8_dynamic import Int8DynamicLinear, fuse
from netshrink.runtime.int8_linear import Int8Linear
from netshrink.runtime.low_rank import LowRankLinear, LowRankRNN, TuckerConv
from netshrink.runtime.scaled_linear import ScaledLinear
from netshrink.runtime.sparse_conv import SparseConv2d
from netshrink.runtime.sparse_linear import SparseLinear
from netshrink.testing import check_module


def _linear(zeros: bool = False) -> nn.Linear:
    torch.manual_seed(0)
    lin = nn.Linear(8, 6)
    if zeros:
        with torch.no_grad():
            lin.weight[lin.weight.abs() < 0.2] = 0
    return lin


def _conv(zeros: bool = False) -> nn.Conv2d:
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 4, 3, padding=1)
    if zeros:
        with torch.no_grad():
            conv.weight[conv.weight.abs() < 0.15] = 0
    return conv


def _random_params(m: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return m


X_LIN, X_CONV = torch.randn(3, 8), torch.randn(2, 2, 5, 5)

# type name -> (a module, its example input or None when it reads a tensor linked elsewhere)
INSTANCES = {
    "SparseLinear": lambda: (SparseLinear.from_linear(_linear(zeros=True)), X_LIN),
    "SparseConv2d": lambda: (SparseConv2d.from_conv(_conv(zeros=True)), X_CONV),
    "Int8Linear": lambda: (Int8Linear.from_linear(_linear()), X_LIN),
    "Int8DynamicLinear": lambda: (Int8DynamicLinear.from_linear(_linear()), X_LIN),
    "Int8FusedLinear": lambda: (fuse([Int8DynamicLinear.from_linear(_linear()), Int8DynamicLinear.from_linear(_linear())],
                                     "q")[1], None),
    "ScaledLinear": lambda: (ScaledLinear.from_linear(_linear(), torch.linspace(0.5, 2, 8)), X_LIN),
    "HashedLinear": lambda: (_random_params(HashedLinear(8, 6, 10, seed=3)), X_LIN),
    "HashedConv2d": lambda: (_random_params(HashedConv2d(2, 4, 3, 12, seed=3, padding=1)), X_CONV),
    "FrequencyLinear": lambda: (_random_params(FrequencyLinear(8, 6, block=4)), X_LIN),
    "FrequencyConv2d": lambda: (_random_params(FrequencyConv2d(2, 4, 3, padding=1)), X_CONV),
    "LowRankLinear": lambda: (_random_params(LowRankLinear(8, 6, rank=2)), X_LIN),
    "TuckerConv": lambda: (_random_params(TuckerConv(2, 4, 3, [2, 1], padding=1)), X_CONV),
    "LowRankRNN": lambda: (_random_params(LowRankRNN("LSTM", 8, 5, {"weight_ih_l0": 2, "weight_hh_l0": 2},
                                                      batch_first=True)), (torch.randn(2, 3, 8),)),
    "HyperNetwork": lambda: (_random_params(HyperNetwork(4, tile=2, kernel=3, z_dim=3, hidden=3)), None),
    "HyperConv2d": lambda: (HyperConv2d("ns_hyper", 2, 4, 3, padding=1), None),
    "TiedConv2d": lambda: (TiedConv2d("conv0", 2, 4, 3, padding=1), None),
    "PrunedMultiheadAttention": lambda: (PrunedMultiheadAttention.from_mha(nn.MultiheadAttention(8, 2)),
                                         (torch.randn(3, 1, 8),) * 3),
}


def test_every_netshrink_module_type_has_an_instance_here():
    ours = {n for n in architecture.known_types() if not hasattr(nn, n)}
    assert ours == set(INSTANCES), f"missing: {sorted(ours - set(INSTANCES))}, stale: {sorted(set(INSTANCES) - ours)}"


@pytest.mark.parametrize("name", sorted(INSTANCES))
def test_module_conforms(name):
    module, x = INSTANCES[name]()
    assert architecture.type_name(module) == name
    assert check_module(module.eval(), x) == ("config_round_trip", "state_dict_round_trip", "meta_build")
