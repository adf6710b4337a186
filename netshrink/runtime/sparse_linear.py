"""SparseLinear: a pruned Linear computed through torch's CSR sparse kernels on CPU
(runtime/sparsify.py decides where it replaces a Linear).

The weight (out, in) is stored as CSR: `crow` (out + 1,) row pointers, `col` (nnz,)
column indices (int32: half the bytes of int64, and MKL's CSR kernels take them), and
`values` (nnz,) fp32. y = b + W x is computed as addmm(b, W_csr, x^T)^T, whose work is
proportional to the non-zeros. The CSR tensor is derived state, rebuilt by
`ns_after_load` from the three buffers, so state_dict and the artifact round-trip it.
It is an inference module: the weight values are buffers (not trained further); only
the bias stays a Parameter.

    >>> lin = nn.Linear(1024, 1024); lin.weight.data *= torch.rand(1024, 1024) > 0.95
    >>> sp = SparseLinear.from_linear(lin)
    >>> torch.allclose(sp(x), lin(x), atol=1e-5)
    True
"""
from __future__ import annotations

import contextlib
import warnings

import torch
from torch import nn

from netshrink.errors import ArtifactError



@contextlib.contextmanager
def quiet_csr():
    """CSR support is marked beta in torch and warns; our tests cover what we use."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        yield


class SparseLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int, nnz: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features, self.nnz = in_features, out_features, nnz
        self.register_buffer("crow", torch.zeros(out_features + 1, dtype=torch.int32))   # (out + 1,)
        self.register_buffer("col", torch.zeros(nnz, dtype=torch.int32))                 # (nnz,)
        self.register_buffer("values", torch.zeros(nnz))                                 # (nnz,)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None            # (out,)
        self._csr = None
        # Built from the buffers on first use and after every load_state_dict.
        self.register_load_state_dict_post_hook(lambda module, keys: module.ns_after_load())

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "SparseLinear":
        """The CSR form of `linear`'s weight (its zeros are dropped, nothing else)."""
        with quiet_csr():
            csr = linear.weight.detach().float().to_sparse_csr()
        m = cls(linear.in_features, linear.out_features, int(csr.values().numel()), linear.bias is not None)
        with torch.no_grad():
            m.crow.copy_(csr.crow_indices().to(torch.int32))
            m.col.copy_(csr.col_indices().to(torch.int32))
            m.values.copy_(csr.values())
            if linear.bias is not None:
                m.bias.copy_(linear.bias.detach())
        m.ns_after_load()
        return m

    def __getstate__(self):
        # copy.deepcopy / pickling cannot reach a sparse CSR tensor's storage; the
        # tensor is derived state, rebuilt from the buffers on next use.
        state = self.__dict__.copy()
        state["_csr"] = None
        return state

    def dense_weight(self) -> torch.Tensor:
        """The (out, in) dense weight this module computes with."""
        if self._csr is None:
            self.ns_after_load()
        return self._csr.to_dense()

    @property
    def weight(self) -> torch.Tensor:
        """The (out, in) weight as the sparse CSR tensor it computes with, for code that
        reads a Linear's `weight` (transformers' T5 reads its dtype in every forward)."""
        if self._csr is None:
            self.ns_after_load()
        return self._csr

    # -- artifact protocol ------------------------------------------------------------
    def ns_config(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features, "nnz": self.nnz,
                "bias": self.bias is not None}

    @classmethod
    def from_ns_config(cls, cfg: dict) -> "SparseLinear":
        nnz, i, o = int(cfg["nnz"]), int(cfg["in_features"]), int(cfg["out_features"])
        if not (0 <= nnz <= i * o):
            raise ValueError(f"nnz = {nnz} does not fit a {o}x{i} weight")
        return cls(i, o, nnz, bool(cfg["bias"]))

    def ns_after_load(self) -> None:
        """(Re)build the CSR tensor from the stored buffers (checked: a file with bad
        indices fails here, not inside a kernel)."""
        crow, col = self.crow, self.col
        if self.nnz and (int(col.min()) < 0 or int(col.max()) >= self.in_features):
            raise ArtifactError("SparseLinear: column index out of range")
        if int(crow[0]) != 0 or int(crow[-1]) != self.nnz or bool((crow[1:] < crow[:-1]).any()):
            raise ArtifactError("SparseLinear: row pointers are not a valid CSR structure")
        with quiet_csr():   # invariants were checked above, so torch's own (slow) check is off
            self._csr = torch.sparse_csr_tensor(crow, col, self.values, (self.out_features, self.in_features),
                                                check_invariants=False)

    def ns_counts(self) -> tuple[int, int]:
        nb = self.out_features if self.bias is not None else 0
        nzb = int((self.bias != 0).sum()) if self.bias is not None else 0
        return self.in_features * self.out_features + nb, int((self.values != 0).sum()) + nzb

    def ns_flops(self, batch: int) -> tuple[int, int]:
        """(dense, effective) multiply-adds x 2 for `batch` rows of input."""
        return 2 * batch * self.in_features * self.out_features, 2 * batch * self.nnz

    # -- compute ----------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._csr is None:
            self.ns_after_load()
        lead = x.shape[:-1]
        xt = x.reshape(-1, self.in_features).t()                      # (in, N)
        if self.bias is not None:
            y = torch.addmm(self.bias.unsqueeze(1), self._csr, xt)    # (out, 1) + (out, in) @ (in, N)
        else:
            y = torch.sparse.mm(self._csr, xt)                         # (out, N)
        return y.t().reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, nnz={self.nnz} "
                f"({100 * (1 - self.nnz / max(1, self.in_features * self.out_features)):.1f} % sparse)")
