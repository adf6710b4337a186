"""Factorised layers: physically two (or three) smaller layers, so fewer FLOPs and a
measurably lower latency, not a weight that merely has low rank.

- LowRankLinear: W (out, in) ≈ A (out, r) @ B (r, in)  ->  Linear(in, r) then Linear(r, out).
- TuckerConv: a Tucker-2 kernel  ->  1×1 conv I → r_in, k×k conv r_in → r_out (the
  original stride / padding / dilation), 1×1 conv r_out → O (Kim et al. 2016).

Both follow the runtime-module protocol of DEVELOPERS.md: `ns_config` /
`from_ns_config` rebuild them from an artifact and their state is ordinary
parameters. They define no `ns_counts` / `ns_flops` on purpose: their sub-layers are
real, so the default counting (parameters, FlopCounterMode) is already the honest
figure, and it stays honest when a later step prunes or quantizes the factors (a CSR
factor reports its own counts). `weight_counts()` compares them with the dense layer.

    >>> lr = LowRankLinear.from_factors(a, b, bias=linear.bias)    # a (out, r), b (r, in)
    >>> y = lr(x)                                                  # (N, out)
"""
from __future__ import annotations

import math

import torch
from torch import nn

_CONVS = {1: nn.Conv1d, 2: nn.Conv2d}


class LowRankLinear(nn.Module):
    """y = second(first(x)) = A (B x) + bias; first: Linear(in, rank, no bias),
    second: Linear(rank, out)."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.first = nn.Linear(in_features, rank, bias=False)    # weight B: (rank, in)
        self.second = nn.Linear(rank, out_features, bias=bias)   # weight A: (out, rank)

    @classmethod
    def from_factors(cls, a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> "LowRankLinear":
        """From A (out, r), B (r, in) and the dense layer's bias (out,) or None."""
        m = cls(b.shape[1], a.shape[0], a.shape[1], bias is not None).to(a.dtype)
        with torch.no_grad():
            m.first.weight.copy_(b)
            m.second.weight.copy_(a)
            if bias is not None:
                m.second.bias.copy_(bias)
        return m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))       # (..., in) -> (..., r) -> (..., out)

    def dense_weight(self) -> torch.Tensor:
        """A @ B: (out, in)."""
        return self.second.weight @ self.first.weight

    @property
    def weight(self) -> torch.Tensor:
        """The dense (out, in) weight, for code that reads a Linear's `weight` (transformers'
        T5 reads its dtype in every forward); one matmul per read, never stored."""
        return self.dense_weight()

    # -- artifact protocol ------------------------------------------------------------
    def ns_config(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features, "rank": self.rank,
                "bias": self.second.bias is not None}

    @classmethod
    def from_ns_config(cls, cfg: dict) -> "LowRankLinear":
        return cls(int(cfg["in_features"]), int(cfg["out_features"]), int(cfg["rank"]), bool(cfg["bias"]))

    def weight_counts(self) -> tuple[int, int]:
        """(weights of the dense Linear it replaces, weights of the factors), biases excluded."""
        return self.in_features * self.out_features, self.rank * (self.in_features + self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


class TuckerConv(nn.Module):
    """A Tucker-2 factorised Conv1d / Conv2d (groups = 1)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, ranks, stride=1, padding=0,
                 dilation=1, bias: bool = True, padding_mode: str = "zeros", dims: int = 2):
        super().__init__()
        if dims not in _CONVS:
            raise ValueError(f"TuckerConv supports 1-D and 2-D convolutions, not dims={dims}")
        conv = _CONVS[dims]
        self.in_channels, self.out_channels, self.dims = in_channels, out_channels, dims
        self.r_out, self.r_in = int(ranks[0]), int(ranks[1])
        # Pointwise maps commute with every padding mode (zeros, reflect, replicate,
        # circular), so padding the r_in-channel tensor equals padding the input.
        self.first = conv(in_channels, self.r_in, 1, bias=False)                  # (r_in, I, 1..)
        self.core = conv(self.r_in, self.r_out, kernel_size, stride=stride, padding=padding, dilation=dilation,
                         bias=False, padding_mode=padding_mode)                   # (r_out, r_in, k..)
        self.last = conv(self.r_out, out_channels, 1, bias=bias)                  # (O, r_out, 1..)

    @classmethod
    def from_factors(cls, conv: nn.Module, u_out: torch.Tensor, core: torch.Tensor, u_in: torch.Tensor
                     ) -> "TuckerConv":
        """From the dense `conv` (its hyperparameters and bias) and its Tucker-2 factors
        u_out (O, r_out), core (r_out, r_in, k..), u_in (I, r_in)."""
        dims = core.dim() - 2
        m = cls(conv.in_channels, conv.out_channels, conv.kernel_size, (u_out.shape[1], u_in.shape[1]),
                stride=conv.stride, padding=conv.padding, dilation=conv.dilation, bias=conv.bias is not None,
                padding_mode=conv.padding_mode, dims=dims).to(core.dtype)
        ones = (1,) * dims
        with torch.no_grad():
            m.first.weight.copy_(u_in.T.reshape(u_in.shape[1], u_in.shape[0], *ones))
            m.core.weight.copy_(core)
            m.last.weight.copy_(u_out.reshape(*u_out.shape, *ones))
            if conv.bias is not None:
                m.last.bias.copy_(conv.bias)
        return m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.core(self.first(x)))  # (N, I, ..) -> (N, r_in, ..) -> (N, r_out, ..') -> (N, O, ..')

    # A conv's hyperparameters, for code that reads them (transformers' Whisper reads `stride`)
    kernel_size = property(lambda self: self.core.kernel_size)
    stride = property(lambda self: self.core.stride)
    padding = property(lambda self: self.core.padding)
    dilation = property(lambda self: self.core.dilation)
    groups = property(lambda self: 1)

    @property
    def weight(self) -> torch.Tensor:
        """The dense kernel (O, I, k..), for code that reads a conv's `weight` (transformers'
        ViT reads its dtype); computed per read, never stored."""
        return self.dense_weight()

    def dense_weight(self) -> torch.Tensor:
        """The kernel (O, I, k..) the three convolutions compute together."""
        u_in = self.first.weight.reshape(self.r_in, self.in_channels)      # (r_in, I)
        u_out = self.last.weight.reshape(self.out_channels, self.r_out)    # (O, r_out)
        return torch.einsum("ab...,oa,bi->oi...", self.core.weight, u_out, u_in)

    # -- artifact protocol ------------------------------------------------------------
    def ns_config(self) -> dict:
        c = self.core
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(c.kernel_size), "ranks": [self.r_out, self.r_in], "stride": list(c.stride),
                "padding": c.padding if isinstance(c.padding, str) else list(c.padding),
                "dilation": list(c.dilation), "bias": self.last.bias is not None,
                "padding_mode": c.padding_mode, "dims": self.dims}

    @classmethod
    def from_ns_config(cls, cfg: dict) -> "TuckerConv":
        pad = cfg["padding"]
        return cls(int(cfg["in_channels"]), int(cfg["out_channels"]), tuple(cfg["kernel_size"]),
                   tuple(cfg["ranks"]), stride=tuple(cfg["stride"]),
                   padding=pad if isinstance(pad, str) else tuple(pad), dilation=tuple(cfg["dilation"]),
                   bias=bool(cfg["bias"]), padding_mode=str(cfg["padding_mode"]), dims=int(cfg["dims"]))

    def weight_counts(self) -> tuple[int, int]:
        """(weights of the dense kernel it replaces, weights of the three factors)."""
        k = math.prod(self.core.kernel_size)
        stored = self.in_channels * self.r_in + self.r_in * self.r_out * k + self.r_out * self.out_channels
        return self.in_channels * self.out_channels * k, stored

    def extra_repr(self) -> str:
        return f"{self.in_channels} -> {self.out_channels}, ranks (out, in) = ({self.r_out}, {self.r_in})"


_CELLS = {"LSTM": nn.LSTM, "GRU": nn.GRU}


class LowRankRNN(nn.Module):
    """An LSTM / GRU whose weight matrices (some or all of weight_ih_l*, weight_hh_l*)
    are stored as factors U (gates·H, r) @ V (r, in).

    The recurrence itself runs in torch's fused kernel with W = U V rebuilt at each
    forward (torch.func.functional_call), so the layer is smaller on disk and in
    parameters but NOT faster: the dense gate matrices are multiplied at every step.
    Bias vectors and any matrix not in `ranks` stay dense inside `rnn`.

    >>> m = LowRankRNN.from_rnn(lstm, {"weight_ih_l0": (u, v)})
    >>> out, (h, c) = m(x)          # like nn.LSTM
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, ranks: dict, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False):
        super().__init__()
        if cell not in _CELLS:
            raise ValueError(f"LowRankRNN cell must be LSTM or GRU, not {cell!r}")
        self.cell = cell
        self.rnn = _CELLS[cell](input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first,
                                dropout=dropout, bidirectional=bidirectional)
        self.ranks = {str(k): int(v) for k, v in ranks.items()}
        self.u, self.v = nn.ParameterDict(), nn.ParameterDict()
        for name, r in self.ranks.items():
            w = getattr(self.rnn, name)                               # (gates·H, in) — a dense template
            self.u[name] = nn.Parameter(torch.zeros(w.shape[0], r))   # (gates·H, r)
            self.v[name] = nn.Parameter(torch.zeros(r, w.shape[1]))   # (r, in)
            delattr(self.rnn, name)                                   # the factors replace it
        self.rnn._init_flat_weights()

    @classmethod
    def from_rnn(cls, rnn: nn.Module, factors: dict) -> "LowRankRNN":
        """From a dense nn.LSTM / nn.GRU and {weight name: (U, V)}."""
        if getattr(rnn, "proj_size", 0):
            raise ValueError("LowRankRNN does not support LSTM projections (proj_size > 0)")
        m = cls(type(rnn).__name__, rnn.input_size, rnn.hidden_size, {k: u.shape[1] for k, (u, _) in factors.items()},
                num_layers=rnn.num_layers, bias=rnn.bias, batch_first=rnn.batch_first, dropout=rnn.dropout,
                bidirectional=rnn.bidirectional)
        m.to(next(iter(factors.values()))[0].dtype)
        with torch.no_grad():
            for name, p in rnn.named_parameters():
                if name in factors:
                    m.u[name].copy_(factors[name][0])
                    m.v[name].copy_(factors[name][1])
                else:
                    getattr(m.rnn, name).copy_(p)
        return m

    def dense_weights(self) -> dict:
        return {name: self.u[name] @ self.v[name] for name in self.ranks}   # (gates·H, in) each

    def forward(self, x, hx=None):
        from torch.func import functional_call

        out = functional_call(self.rnn, self.dense_weights(), (x,) if hx is None else (x, hx))
        self.rnn._init_flat_weights()   # drop the references to this step's graph
        return out

    def weight_counts(self) -> tuple[int, int]:
        """(weights of the dense matrices it replaces, weights of their factors)."""
        dense = sum(self.u[n].shape[0] * self.v[n].shape[1] for n in self.ranks)
        return dense, sum(self.u[n].numel() + self.v[n].numel() for n in self.ranks)

    # -- artifact protocol ------------------------------------------------------------
    def ns_config(self) -> dict:
        r = self.rnn
        return {"cell": self.cell, "input_size": r.input_size, "hidden_size": r.hidden_size, "ranks": self.ranks,
                "num_layers": r.num_layers, "bias": r.bias, "batch_first": r.batch_first, "dropout": r.dropout,
                "bidirectional": r.bidirectional}

    @classmethod
    def from_ns_config(cls, cfg: dict) -> "LowRankRNN":
        if not isinstance(cfg.get("ranks"), dict):
            raise ValueError("ranks must be a table")
        return cls(str(cfg["cell"]), int(cfg["input_size"]), int(cfg["hidden_size"]), cfg["ranks"],
                   num_layers=int(cfg["num_layers"]), bias=bool(cfg["bias"]), batch_first=bool(cfg["batch_first"]),
                   dropout=float(cfg["dropout"]), bidirectional=bool(cfg["bidirectional"]))
