"""Multi-head attention whose inner width (heads x head_dim) is not tied to embed_dim.

torch's nn.MultiheadAttention derives head_dim = embed_dim / num_heads and packs
q, k, v into one (3E, E) matrix, so it cannot lose a head: the residual stream
(embed_dim) must keep its width while the attention's inner width shrinks.
`PrunedMultiheadAttention` holds the same tensors under the same names
(in_proj_weight (3I, E) or q/k/v_proj_weight (I, E|kdim|vdim), in_proj_bias (3I,),
bias_k / bias_v (1, 1, I), out_proj: Linear(I, E)) with I = num_heads * head_dim,
and computes what nn.MultiheadAttention's reference path computes (the code of
F.multi_head_attention_forward with head_dim fixed): batch_first or not, unbatched
inputs, key_padding_mask, 2-D / 3-D attn_mask (a 3-D mask written for the original
heads is read for the kept ones), need_weights and average_attn_weights, is_causal,
add_bias_kv, add_zero_attn, dropout in training.

    attn = PrunedMultiheadAttention.from_mha(mha)       # same outputs as `mha`
    attn.remove_heads([1, 3])                            # 2 heads fewer, embed_dim unchanged

It never takes torch's fused kernels (they derive head_dim from embed_dim):
`_qkv_same_embed_dim` is False so nn.TransformerEncoderLayer takes its reference
path, and an nn.TransformerEncoder holding it must not build nested tensors
(`use_nested_tensor = False`, which structure.shrink sets). Nested inputs are still
accepted (padded, attended with their padding masked, nested again).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class PrunedMultiheadAttention(nn.Module):
    def __init__(self, embed_dim: int, num_heads: int, head_dim: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim: int | None = None,
                 vdim: int | None = None, batch_first: bool = False, packed: bool | None = None,
                 head_ids: list[int] | None = None, source_heads: int | None = None):
        super().__init__()
        if min(embed_dim, num_heads, head_dim) <= 0:
            raise ValueError(f"embed_dim, num_heads and head_dim must be > 0, got {embed_dim}, {num_heads}, {head_dim}")
        self.embed_dim, self.num_heads, self.head_dim = int(embed_dim), int(num_heads), int(head_dim)
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self.packed = (self.kdim == embed_dim and self.vdim == embed_dim) if packed is None else bool(packed)
        if self.packed and not (self.kdim == embed_dim and self.vdim == embed_dim):
            raise ValueError("packed q/k/v projections need kdim == vdim == embed_dim")
        self._qkv_same_embed_dim = False  # keeps torch's fused kernels (head_dim = E / heads) away
        self.dropout, self.batch_first, self.add_zero_attn = float(dropout), bool(batch_first), bool(add_zero_attn)
        self.head_ids = list(range(num_heads)) if head_ids is None else [int(h) for h in head_ids]
        self.source_heads = int(source_heads if source_heads is not None else num_heads)
        if len(self.head_ids) != self.num_heads:
            raise ValueError(f"head_ids has {len(self.head_ids)} entries for {num_heads} heads")
        inner = self.num_heads * self.head_dim
        if self.packed:
            self.in_proj_weight = nn.Parameter(torch.empty(3 * inner, embed_dim))
            self.register_parameter("q_proj_weight", None)
            self.register_parameter("k_proj_weight", None)
            self.register_parameter("v_proj_weight", None)
        else:
            self.register_parameter("in_proj_weight", None)
            self.q_proj_weight = nn.Parameter(torch.empty(inner, embed_dim))
            self.k_proj_weight = nn.Parameter(torch.empty(inner, self.kdim))
            self.v_proj_weight = nn.Parameter(torch.empty(inner, self.vdim))
        if bias:
            self.in_proj_bias = nn.Parameter(torch.zeros(3 * inner))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = nn.Linear(inner, embed_dim, bias=bias)
        if add_bias_kv:
            self.bias_k = nn.Parameter(torch.zeros(1, 1, inner))
            self.bias_v = nn.Parameter(torch.zeros(1, 1, inner))
        else:
            self.bias_k = self.bias_v = None
        for w in (self.in_proj_weight, self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
            if w is not None and w.device.type != "meta":
                nn.init.xavier_uniform_(w)

    @property
    def inner_dim(self) -> int:
        return self.num_heads * self.head_dim

    # -- building ------------------------------------------------------------------
    @classmethod
    def from_mha(cls, m: nn.MultiheadAttention) -> "PrunedMultiheadAttention":
        """The same attention as torch's `m` (tensors copied)."""
        new = cls(m.embed_dim, m.num_heads, m.head_dim, dropout=m.dropout, bias=m.in_proj_bias is not None,
                  add_bias_kv=m.bias_k is not None, add_zero_attn=m.add_zero_attn, kdim=m.kdim, vdim=m.vdim,
                  batch_first=m.batch_first, packed=m._qkv_same_embed_dim)
        ref = m.in_proj_weight if m.in_proj_weight is not None else m.q_proj_weight
        new = new.to(device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            for name in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight", "in_proj_bias",
                         "bias_k", "bias_v"):
                if getattr(new, name) is not None:
                    getattr(new, name).copy_(getattr(m, name))
            new.out_proj.weight.copy_(m.out_proj.weight)
            if m.out_proj.bias is not None:
                new.out_proj.bias.copy_(m.out_proj.bias)
        new.train(m.training)
        return new

    def ns_config(self) -> dict:
        return {"embed_dim": self.embed_dim, "num_heads": self.num_heads, "head_dim": self.head_dim,
                "dropout": self.dropout, "bias": self.in_proj_bias is not None,
                "add_bias_kv": self.bias_k is not None, "add_zero_attn": self.add_zero_attn,
                "kdim": self.kdim, "vdim": self.vdim, "batch_first": self.batch_first, "packed": self.packed,
                "head_ids": list(self.head_ids), "source_heads": self.source_heads}

    @classmethod
    def from_ns_config(cls, cfg: dict) -> "PrunedMultiheadAttention":
        return cls(**cfg)

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, head_dim={self.head_dim}, "
                f"heads kept={self.head_ids} of {self.source_heads}, batch_first={self.batch_first}")

    # -- shrinking -----------------------------------------------------------------
    def _head_rows(self, heads) -> list[int]:
        d = self.head_dim
        return [h * d + i for h in heads for i in range(d)]

    def remove_heads(self, heads) -> None:
        """Remove heads (indices into the current heads) from every tensor, in place."""
        heads = sorted(set(int(h) for h in heads))
        if not heads:
            return
        if len(heads) >= self.num_heads or heads[0] < 0 or heads[-1] >= self.num_heads:
            raise ValueError(f"cannot remove heads {heads} of {self.num_heads}")
        keep = [h for h in range(self.num_heads) if h not in heads]
        rows = torch.tensor(self._head_rows(keep), dtype=torch.long)
        inner = self.inner_dim
        rows3 = torch.cat([rows, rows + inner, rows + 2 * inner])
        with torch.no_grad():
            def sel(t, dim, idx):
                return nn.Parameter(t.detach().index_select(dim, idx.to(t.device)).clone(),
                                    requires_grad=t.requires_grad)
            if self.packed:
                self.in_proj_weight = sel(self.in_proj_weight, 0, rows3)
            else:
                for n in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                    setattr(self, n, sel(getattr(self, n), 0, rows))
            if self.in_proj_bias is not None:
                self.in_proj_bias = sel(self.in_proj_bias, 0, rows3)
            if self.bias_k is not None:
                self.bias_k, self.bias_v = sel(self.bias_k, 2, rows), sel(self.bias_v, 2, rows)
            self.out_proj.weight = sel(self.out_proj.weight, 1, rows)
            self.out_proj.in_features = self.out_proj.weight.shape[1]
        self.heads_removed(heads)

    def heads_removed(self, heads) -> None:
        """Bookkeeping after the tensors of `heads` (current indices) were cut out."""
        gone = set(int(h) for h in heads)
        self.head_ids = [h for i, h in enumerate(self.head_ids) if i not in gone]
        self.num_heads = len(self.head_ids)
        self.out_proj.in_features = self.out_proj.weight.shape[1]

    # -- computing -----------------------------------------------------------------
    def forward(self, query, key, value, key_padding_mask=None, need_weights: bool = True, attn_mask=None,
                average_attn_weights: bool = True, is_causal: bool = False):
        if query.is_nested or key.is_nested or value.is_nested:
            return self._nested(query, key, value, key_padding_mask, need_weights, attn_mask,
                                average_attn_weights, is_causal)
        is_batched = query.dim() == 3
        key_padding_mask = F._canonical_mask(mask=key_padding_mask, mask_name="key_padding_mask",
                                             other_type=F._none_or_dtype(attn_mask), other_name="attn_mask",
                                             target_type=query.dtype)
        attn_mask = F._canonical_mask(mask=attn_mask, mask_name="attn_mask", other_type=None, other_name="",
                                      target_type=query.dtype, check_other=False)
        if self.batch_first and is_batched:
            if key is value:
                if query is key:
                    query = key = value = query.transpose(1, 0)
                else:
                    query, key = (x.transpose(1, 0) for x in (query, key))
                    value = key
            else:
                query, key, value = (x.transpose(1, 0) for x in (query, key, value))
        out, weights = self._attend(query, key, value, key_padding_mask, need_weights, attn_mask,
                                    average_attn_weights, is_causal)
        if self.batch_first and is_batched:
            out = out.transpose(1, 0)
        return out, weights

    def _project(self, query, key, value):
        inner = self.inner_dim
        w, b = self.in_proj_weight, self.in_proj_bias
        bq = bk = bv = None
        if b is not None:
            bq, bk, bv = b.chunk(3)
        if not self.packed:
            return (F.linear(query, self.q_proj_weight, bq), F.linear(key, self.k_proj_weight, bk),
                    F.linear(value, self.v_proj_weight, bv))
        if key is value:
            if query is key:  # self-attention: one GEMM, as torch's _in_projection_packed
                proj = F.linear(query, w, b)
                proj = proj.unflatten(-1, (3, inner)).unsqueeze(0).transpose(0, -2).squeeze(-2).contiguous()
                return proj[0], proj[1], proj[2]
            w_q, w_kv = w.split([inner, inner * 2])
            b_q, b_kv = (None, None) if b is None else b.split([inner, inner * 2])
            q = F.linear(query, w_q, b_q)
            kv = F.linear(key, w_kv, b_kv)
            kv = kv.unflatten(-1, (2, inner)).unsqueeze(0).transpose(0, -2).squeeze(-2).contiguous()
            return q, kv[0], kv[1]
        w_q, w_k, w_v = w.chunk(3)
        return F.linear(query, w_q, bq), F.linear(key, w_k, bk), F.linear(value, w_v, bv)

    def _heads_of_mask(self, attn_mask, bsz):
        """A 3-D mask (N * heads, L, S) written for the original heads: the rows of the kept ones."""
        if attn_mask is None or attn_mask.dim() != 3 or attn_mask.shape[0] == bsz * self.num_heads:
            return attn_mask
        if attn_mask.shape[0] == bsz * self.source_heads:
            idx = torch.tensor(self.head_ids, dtype=torch.long, device=attn_mask.device)
            return attn_mask.view(bsz, self.source_heads, *attn_mask.shape[1:]).index_select(1, idx).flatten(0, 1)
        return attn_mask  # the size check below says what is wrong

    def _attend(self, query, key, value, key_padding_mask, need_weights, attn_mask, average_attn_weights,
                is_causal):
        is_batched = query.dim() == 3
        if not is_batched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        tgt_len, bsz, embed_dim = query.shape
        src_len = key.shape[0]
        if embed_dim != self.embed_dim:
            raise AssertionError(f"was expecting embedding dimension of {self.embed_dim}, but got {embed_dim}")
        key_padding_mask = F._canonical_mask(mask=key_padding_mask, mask_name="key_padding_mask",
                                             other_type=F._none_or_dtype(attn_mask), other_name="attn_mask",
                                             target_type=query.dtype)
        if is_causal and attn_mask is None:
            raise RuntimeError("Need attn_mask if specifying the is_causal hint. You may use the Transformer "
                               "module method `generate_square_subsequent_mask` to create this mask.")
        if is_causal and key_padding_mask is None and not need_weights:
            attn_mask = None
        else:
            attn_mask = F._canonical_mask(mask=attn_mask, mask_name="attn_mask", other_type=None, other_name="",
                                          target_type=query.dtype, check_other=False)
            if key_padding_mask is not None:
                is_causal = False
        H, d = self.num_heads, self.head_dim
        q, k, v = self._project(query, key, value)
        if attn_mask is not None:
            if attn_mask.dim() == 2:
                if attn_mask.shape != (tgt_len, src_len):
                    raise RuntimeError(f"The shape of the 2D attn_mask is {attn_mask.shape}, but should be "
                                       f"{(tgt_len, src_len)}.")
                attn_mask = attn_mask.unsqueeze(0)
            elif attn_mask.dim() == 3:
                attn_mask = self._heads_of_mask(attn_mask, bsz)
                if attn_mask.shape != (bsz * H, tgt_len, src_len):
                    raise RuntimeError(f"The shape of the 3D attn_mask is {attn_mask.shape}, but should be "
                                       f"{(bsz * self.source_heads, tgt_len, src_len)}.")
            else:
                raise RuntimeError(f"attn_mask's dimension {attn_mask.dim()} is not supported")
        if self.bias_k is not None:
            k = torch.cat([k, self.bias_k.repeat(1, bsz, 1)])
            v = torch.cat([v, self.bias_v.repeat(1, bsz, 1)])
            if attn_mask is not None:
                attn_mask = F.pad(attn_mask, (0, 1))
            if key_padding_mask is not None:
                key_padding_mask = F.pad(key_padding_mask, (0, 1))
        q = q.view(tgt_len, bsz * H, d).transpose(0, 1)
        k = k.view(k.shape[0], bsz * H, d).transpose(0, 1)
        v = v.view(v.shape[0], bsz * H, d).transpose(0, 1)
        if self.add_zero_attn:
            zeros = torch.zeros((bsz * H, 1, d), dtype=k.dtype, device=k.device)
            k, v = torch.cat([k, zeros], dim=1), torch.cat([v, zeros], dim=1)
            if attn_mask is not None:
                attn_mask = F.pad(attn_mask, (0, 1))
            if key_padding_mask is not None:
                key_padding_mask = F.pad(key_padding_mask, (0, 1))
        src_len = k.size(1)
        if key_padding_mask is not None:
            if key_padding_mask.shape != (bsz, src_len):
                raise AssertionError(f"expecting key_padding_mask shape of {(bsz, src_len)}, but got "
                                     f"{tuple(key_padding_mask.shape)}")
            key_padding_mask = key_padding_mask.view(bsz, 1, 1, src_len).expand(-1, H, -1, -1).reshape(
                bsz * H, 1, src_len)
            attn_mask = key_padding_mask if attn_mask is None else attn_mask + key_padding_mask
        dropout_p = self.dropout if self.training else 0.0
        inner = H * d
        if need_weights:
            q_scaled = q * math.sqrt(1.0 / float(d))
            if is_causal and attn_mask is None:
                raise AssertionError("FIXME: is_causal not implemented for need_weights")
            if attn_mask is not None:
                w = torch.baddbmm(attn_mask, q_scaled, k.transpose(-2, -1))
            else:
                w = torch.bmm(q_scaled, k.transpose(-2, -1))
            w = F.softmax(w, dim=-1)
            if dropout_p > 0.0:
                w = F.dropout(w, p=dropout_p)
            out = torch.bmm(w, v)
            out = out.transpose(0, 1).reshape(tgt_len * bsz, inner)
            out = F.linear(out, self.out_proj.weight, self.out_proj.bias)
            out = out.view(tgt_len, bsz, out.size(1))
            w = w.view(bsz, H, tgt_len, src_len)
            if average_attn_weights:
                w = w.mean(dim=1)
            if not is_batched:
                out, w = out.squeeze(1), w.squeeze(0)
            return out, w
        if attn_mask is not None:
            if attn_mask.size(0) == 1 and attn_mask.dim() == 3:
                attn_mask = attn_mask.unsqueeze(0)
            else:
                attn_mask = attn_mask.view(bsz, H, -1, src_len)
        q = q.view(bsz, H, tgt_len, d)
        k = k.view(bsz, H, src_len, d)
        v = v.view(bsz, H, src_len, d)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal)
        out = out.permute(2, 0, 1, 3).reshape(bsz * tgt_len, inner)
        out = F.linear(out, self.out_proj.weight, self.out_proj.bias)
        out = out.view(tgt_len, bsz, out.size(1))
        if not is_batched:
            out = out.squeeze(1)
        return out, None

    def _nested(self, query, key, value, key_padding_mask, need_weights, attn_mask, average_attn_weights,
                is_causal):
        """Nested (ragged) batch-first inputs, as nn.TransformerEncoder builds them: pad, mask the
        padding, attend, and return a nested tensor of the real positions."""
        if not (query is key and key is value) or key_padding_mask is not None or attn_mask is not None:
            raise AssertionError("PrunedMultiheadAttention takes a NestedTensor only for self-attention "
                                 "without masks (as nn.TransformerEncoder's nested path passes it)")
        lengths = [t.shape[0] for t in query.unbind()]
        x = query.to_padded_tensor(0.0)  # (N, L, E)
        pad = torch.arange(x.shape[1], device=x.device)[None, :] >= torch.tensor(lengths, device=x.device)[:, None]
        xf = x if self.batch_first else x.transpose(0, 1)
        out, w = self.forward(xf, xf, xf, key_padding_mask=pad, need_weights=need_weights,
                              average_attn_weights=average_attn_weights)
        out = out if self.batch_first else out.transpose(0, 1)
        return torch._nested_tensor_from_mask(out, pad.logical_not(), mask_check=False), w
