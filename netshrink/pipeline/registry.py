"""The built-in methods, listed by hand, and the registry functions callers use.

Importing this module registers every built-in method in `netshrink.core.registry`
(the mechanism) exactly once; import `create`, `get`, `all_methods`, `register` from
here, so the built-ins are always there.
"""
from __future__ import annotations

from netshrink.core.method import Method
from netshrink.core.registry import all_methods, create, get, register, unregister
from netshrink.methods.calibrated.embedding import EmbeddingBits
from netshrink.methods.calibrated.gptq import GPTQ
from netshrink.methods.calibrated.scaling import AWQ, SmoothQuant
from netshrink.methods.calibrated.sparse import SparseGPT, Wanda
from netshrink.methods.distill import Distill, Hints, Mimic
from netshrink.methods.factorize import LowRank, Sketch
from netshrink.methods.frequency import FrequencyPack
from netshrink.methods.hashing import Hashing
from netshrink.methods.hyper import Hypernetwork
from netshrink.methods.l0 import L0
from netshrink.methods.lassonet import LassoNet
from netshrink.methods.lottery import EarlyBird, Lottery
from netshrink.methods.patterns import BlockPrune, NMPrune
from netshrink.methods.pruning import GradualMagnitude, Magnitude, RandomPrune
from netshrink.methods.recover import Recover
from netshrink.methods.quantize import QAT, Binary, Quantize, Ternary
from netshrink.methods.regularize import L1, DropNeuron, GroupLasso
from netshrink.methods.saliency import OBD, Taylor
from netshrink.methods.share import KMeans, SoftSharing
from netshrink.methods.stochastic_depth import StochasticDepth
from netshrink.methods.structured import ChannelPrune, DepthPrune
from netshrink.methods.tie import Tie
from netshrink.methods.variational import VariationalDropout

__all__ = ["BUILTIN", "all_methods", "create", "get", "register", "unregister"]

BUILTIN: list[type[Method]] = [
    # pruning (issues 2-3)
    Magnitude, RandomPrune, GradualMagnitude, Lottery, EarlyBird, OBD, Taylor, BlockPrune, NMPrune,
    # quantization and weight sharing (issue 4)
    Quantize, QAT, Binary, Ternary, KMeans, SoftSharing,
    # sparsity learned in training (issue 5)
    L1, GroupLasso, DropNeuron, L0, VariationalDropout, LassoNet,
    # distillation and low rank (issue 6)
    Distill, Mimic, Hints, LowRank, Sketch,
    # structured pruning (issue 7)
    ChannelPrune, DepthPrune,
    # generated weights (issue 8)
    Hashing, FrequencyPack, Hypernetwork, Tie, StochasticDepth,
    # one-shot calibrated (issue 15)
    GPTQ, AWQ, SmoothQuant, SparseGPT, Wanda, EmbeddingBits,
    # recovery by hidden-state distillation (issue 15)
    Recover,
]

for _cls in BUILTIN:
    register(_cls, builtin=True)
