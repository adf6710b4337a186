import torch
from torch import nn

from netshrink.measure.flops import count_flops


def test_transformer_layer_flops_are_counted_in_eval():
    """The fused eval kernel of nn.TransformerEncoderLayer is invisible to
    FlopCounterMode; count_flops must still count every matmul (hand formula)."""
    torch.manual_seed(0)
    d, ff, heads, L = 16, 32, 2, 5
    layer = nn.TransformerEncoderLayer(d, heads, ff, dropout=0.0, batch_first=True).eval()
    x = torch.randn(1, L, d)
    projections = 2 * L * (d * 3 * d + d * d)      # q, k, v and the output projection
    attention = 2 * (2 * L * L * d)                # Q K^T and A V over all heads
    ffn = 2 * L * (d * ff + ff * d)
    dense, effective = count_flops(layer, x)
    assert dense == effective == projections + attention + ffn
    assert torch.backends.mha.get_fastpath_enabled()  # restored afterwards


def test_int8_layers_count_every_token_row():
    """An int8 layer reports its own FLOPs (ns_flops): on a (N, T, in) input that is N * T
    rows, as many as the fp32 Linear it replaces (hand formula 2 * N * T * in * out)."""
    from netshrink.runtime.int8_dynamic import Int8DynamicLinear

    torch.manual_seed(0)
    fp32 = nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 4))
    q = nn.Sequential(Int8DynamicLinear.from_linear(fp32[0]), nn.ReLU(), Int8DynamicLinear.from_linear(fp32[2]))
    x = torch.randn(3, 5, 8)
    hand = 2 * 3 * 5 * (8 * 12 + 12 * 4)
    assert count_flops(fp32, x) == (hand, hand)
    assert count_flops(q, x) == (hand, hand)
