"""The layer-wise Hessian of one-shot methods (OBS / GPTQ / SparseGPT).

For a layer y = W x with calibration inputs X (n tokens x d_in), the squared output
error ||W X^T - W_hat X^T||^2 is a quadratic in each row of W with Hessian
H = 2 X^T X (d_in, d_in). It is accumulated in a streaming way (no activation is kept):
after n tokens H = (2 / n) * sum_t x_t x_t^T, the average the GPTQ reference keeps.

    acc = HessianAccumulator(d_in)
    for x in batches: acc.add(x)          # x: (..., d_in)
    hinv_u = inverse_cholesky(acc.h, damp=0.01)   # upper Cholesky factor of H^-1
"""
from __future__ import annotations

import torch


class HessianAccumulator:
    """Running H = 2/n * X^T X (d, d) in float64 (sums of many small products) and the
    per-input-channel statistics the scaling methods need (mean |x_j|, max |x_j|, sum x_j^2)."""

    def __init__(self, d: int, *, hessian: bool = True, keep_rows: int = 0, seed: int = 0):
        self.d, self.n = d, 0
        self.xtx = torch.zeros(d, d, dtype=torch.float64) if hessian else None
        self.abs_sum = torch.zeros(d, dtype=torch.float64)
        self.sq_sum = torch.zeros(d, dtype=torch.float64)
        self.abs_max = torch.zeros(d, dtype=torch.float32)
        self.lo = torch.zeros(d, dtype=torch.float32)               # per channel min(x, 0) and max(x, 0)
        self.hi = torch.zeros(d, dtype=torch.float32)
        # A uniform sample of `keep_rows` input rows (AWQ's / smoothquant's output-error searches).
        self.keep_rows = keep_rows
        self.rows: torch.Tensor | None = None
        self._g = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def add(self, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, self.d).float()                 # (tokens, d)
        if x.shape[0] == 0:
            return
        self.n += x.shape[0]
        if self.xtx is not None:
            x64 = x.double()
            self.xtx.addmm_(x64.t(), x64)
        self.abs_sum += x.abs().sum(0).double()
        self.sq_sum += (x.double() ** 2).sum(0)
        self.abs_max = torch.maximum(self.abs_max, x.abs().amax(0))
        self.lo = torch.minimum(self.lo, x.amin(0))
        self.hi = torch.maximum(self.hi, x.amax(0))
        if self.keep_rows:
            self._sample(x)

    def _sample(self, x: torch.Tensor) -> None:
        """Reservoir sampling (Vitter's algorithm R): after n rows, each is kept with
        probability keep_rows / n, whichever batch it came in (re-drawing keep_rows from the
        sample plus each new batch, as before, kept mostly the last batches' rows)."""
        have = 0 if self.rows is None else self.rows.shape[0]
        room = max(self.keep_rows - have, 0)
        head, rest = x[:room], x[room:]
        if head.shape[0]:
            self.rows = head.clone() if self.rows is None else torch.cat([self.rows, head])
        if rest.shape[0]:
            seen = self.n - rest.shape[0]          # rows before the first of `rest`
            # row i of rest is the (seen + i + 1)-th: it takes slot j ~ U{0 .. seen + i} if j < keep
            j = (torch.rand(rest.shape[0], generator=self._g, dtype=torch.float64)
                 * (seen + 1 + torch.arange(rest.shape[0], dtype=torch.float64))).long()
            for i in (j < self.keep_rows).nonzero().flatten().tolist():   # in order: a later row wins its slot
                self.rows[j[i]] = rest[i]

    @property
    def h(self) -> torch.Tensor:
        """(d, d) float32: 2/n X^T X."""
        if self.xtx is None:
            raise ValueError("this accumulator does not keep the Hessian")
        return (2.0 / max(self.n, 1) * self.xtx).float()

    @property
    def mean_abs(self) -> torch.Tensor:
        return (self.abs_sum / max(self.n, 1)).float()

    @property
    def norm(self) -> torch.Tensor:
        """(d,) ||X_j||_2 over all tokens seen (Wanda's input norm)."""
        return self.sq_sum.sqrt().float()


def prepare_hessian(h: torch.Tensor, w: torch.Tensor, *, damp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GPTQ's conditioning: dead inputs (H_jj = 0: a channel that is always zero) get
    H_jj = 1 and W[:, j] = 0; then H += damp * mean(diag H) * I. Returns (H, W) copies."""
    h, w = h.clone().float(), w.clone().float()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h += damp * torch.mean(torch.diag(h)) * torch.eye(h.shape[0])
    return h, w


def inverse_cholesky(h: torch.Tensor) -> torch.Tensor:
    """Upper-triangular U with H^-1 = U^T U (GPTQ: Cholesky of H, its inverse, then the
    upper Cholesky factor of H^-1). Row q of U holds [H_F^-1]_{q, q:} / sqrt([H_F^-1]_qq) for
    the remaining columns F = q.., which is all the column-by-column OBS update needs."""
    eye_boost = 0.0
    for _ in range(6):   # a numerically indefinite H (too few samples): add a little more damping
        try:
            L = torch.linalg.cholesky(h.double() + eye_boost * torch.eye(h.shape[0], dtype=torch.float64))
            hinv = torch.cholesky_inverse(L)
            return torch.linalg.cholesky(hinv, upper=True).float()
        except RuntimeError:
            eye_boost = max(eye_boost * 10, 1e-6 * float(torch.diag(h).mean()))
    raise ValueError("the layer Hessian is not positive definite even after extra damping")
