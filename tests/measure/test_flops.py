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
