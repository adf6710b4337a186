"""L0 hard-concrete gates as a re-parametrisation: w_eff = w * z.

Gates per weight (z has the weight's shape) or per unit (one gate per output filter /
hidden unit or per input feature, broadcast over its group, see functional.groups).
Training samples z afresh at every forward pass; eval uses the deterministic test-time
gate, which is exactly what `bake` multiplies into the weight.
"""
from __future__ import annotations

import torch
from torch import nn

from netshrink.core.reparam import Reparam
from netshrink.functional import hard_concrete as hc
from netshrink.functional.groups import Direction, expand


class HardConcreteGate(Reparam):
    """`HardConcreteGate((20,), direction="out")` gates the 20 filters of a conv.

    gate_shape: the weight's shape (per-weight gates) or (units,) with `direction`.
    """

    def __init__(self, gate_shape, *, direction: Direction | None = None, gates: int = 1,
                 drop_rate: float = 0.5, lr_scale: float = 1.0, beta: float = hc.BETA, gamma: float = hc.GAMMA,
                 zeta: float = hc.ZETA, keep: torch.Tensor | None = None):
        super().__init__()
        # Weights an earlier step already removed stay exactly zero (weight's shape, or None).
        if keep is not None:
            self.register_buffer("keep", keep.bool())
        else:
            self.keep = None
        # log_alpha = lr_scale * raw: under Adam (scale-free steps) the gates then learn
        # lr_scale times faster than the weights, a per-parameter learning rate.
        self.lr_scale = float(lr_scale)
        self.log_alpha_raw = nn.Parameter(hc.init_log_alpha(tuple(gate_shape), drop_rate=drop_rate) / self.lr_scale)
        self.direction, self.gates = direction, int(gates)
        self.beta, self.gamma, self.zeta = float(beta), float(gamma), float(zeta)

    @property
    def log_alpha(self) -> torch.Tensor:
        return self.lr_scale * self.log_alpha_raw

    def gate(self) -> torch.Tensor:
        """A sample in training, the test-time gate in eval (shape of log_alpha)."""
        if self.training:
            return hc.sample(self.log_alpha, beta=self.beta, gamma=self.gamma, zeta=self.zeta)
        return hc.test_gate(self.log_alpha, gamma=self.gamma, zeta=self.zeta)

    def _broadcast(self, z: torch.Tensor, shape) -> torch.Tensor:
        return z if self.direction is None else expand(z, shape, direction=self.direction, gates=self.gates)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.keep is not None:
            w = w * self.keep
        return w * self._broadcast(self.gate(), w.shape)

    def prob_nonzero(self) -> torch.Tensor:
        """P(z != 0) per gate: the expected L0 of each gate (differentiable)."""
        return hc.prob_nonzero(self.log_alpha, beta=self.beta, gamma=self.gamma, zeta=self.zeta)

    @torch.no_grad()
    def alive(self) -> torch.Tensor:
        """Gates whose test-time value is non-zero."""
        return hc.test_gate(self.log_alpha, gamma=self.gamma, zeta=self.zeta) > 0
