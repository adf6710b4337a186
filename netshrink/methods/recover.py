"""`recover`: recovery of a compressed model by hidden-state distillation toward the model
before compression, block by block or end to end, with its own budget (samples, epochs,
lr) in the recipe and every pruned weight kept at zero.

    >>> ns.create("recover", mode="block", epochs=3, lr=1e-3)          # after sparsegpt / magnitude / channel_prune
    >>> ns.create("recover", mode="end_to_end", epochs=3, lr=1e-4)     # the whole model at once

mode = "block" — block-wise reconstruction (Li et al. 2021, BRECQ; Nagel et al. 2020,
AdaRound's asymmetric reconstruction; the sequential order of Frantar & Alistarh's OBC /
SparseGPT): the blocks (the children of the model's longest ModuleList, e.g. a BERT's
`encoder.layer`; or `blocks` naming one) are visited in forward order; block i reads the
inputs the *compressed* model gives it (blocks < i already recovered, so their errors are
corrected downstream) and is trained with Adam to reproduce the output the teacher's
block i gives on the teacher's own inputs, min ‖f_i(x̂) − f_i^T(x)‖² over real tokens.
Memory: one block's inputs and targets for the calibration samples.

mode = "end_to_end" — hidden-state distillation of the whole model (Jiao et al. 2020,
TinyBERT's hidden-state loss; Sun et al. 2020, MobileBERT's feature maps; Wang et al.
2020, MiniLM): the model's main output (HF `last_hidden_state`) and, with
`intermediate`, every block's output are matched per token to the teacher's.

The loss: `mse` — Σ‖s − t‖² / Σ‖t‖² over real tokens (the batch's `attention_mask`;
padding tokens never count), so 1.0 is as far as zeros; `cosine` — mean over real tokens
of 1 − cos(s, t). The model stays in eval mode (dropout off, as the reconstruction
papers calibrate). Only the blocks' parameters are trained (all of the model's where no
block list is found; with tune = "vectors" only their biases and normalisation
weights, 1-D tensors: after a quantizer the weight matrices stay on their grids bit for
bit and the file keeps its size — bias correction learned from the hidden states, as
Nagel et al. 2019 (DFQ) / Finkelstein et al. 2019 correct a quantized layer's mean
output shift, here for every statistic the loss sees; measured on all-MiniLM-L6-v2, block
mode, 3 epochs, lr 1e-3, 1,024 sentences: after GPTQ 8-bit (query / key 6, FFN-in 7) +
embedding_bits 5.5 mean cos 0.99979 -> 0.99983, after recipes/minilm_8x 0.99788 -> 0.99796, top-5 unchanged within
its noise: small where GPTQ already compensates); with `keep_zeros`, the exact
zeros of every weight matrix at the start (a pruning mask) are re-applied after every
optimiser step, so sparsity stays.
The teacher is `ctx.teacher` (the model before `compress_` changed it) or `teacher`
(a .nshr file). `report_` holds each block's (or the whole model's) loss before and after.

Why the earlier recovery (`mimic` under `[finetune]`) was weak on all-MiniLM-L6-v2
(magnitude 50 %: mean cos 0.717 -> 0.82): the fine-tuning lr (1e-3, Adam) is far above
what a pretrained transformer tolerates, the loss counted padding tokens, and one output
at the end of six blocks is a weak signal for weights deep inside. Measured on that model
(Linear weights pruned, 512 held-out sentences, mean cos of the sentence embeddings vs
fp32; block mode, 3 epochs, lr 1e-3): magnitude 50 % 0.717 -> 0.936 (256 calibration
sentences) / 0.957 (594); sparsegpt 50 % 0.924 -> 0.950 (256) / 0.963 (594);
channel_prune 25 % -> quantize 8-bit 0.729 -> 0.895 (256) / 0.925 (594) with `recover`
between them. For magnitude 50 % on 594 sentences: the old route at a sane lr
([finetune] loss = "distill", lr 1e-4, 2 epochs) 0.878; end to end here (real tokens,
every block, lr 1e-4, 3 epochs) 0.912; block-wise 0.957, and an end-to-end pass after
it adds 0.002.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from netshrink.artifact import load
from netshrink.core.batches import StopForward, as_batches, output_tensor, run_each, token_mask
from netshrink.core.context import PrepareContext
from netshrink.core.method import Method
from netshrink.errors import NetshrinkError, RecipeError, TargetError

__all__ = ["Recover"]


@dataclass
class Recover(Method):
    name = "recover"
    summary = ("recovery by hidden-state distillation toward the model before compression: block-wise "
               "reconstruction (BRECQ) or end to end (TinyBERT), pruning masks kept")
    finetunes = False         # trains in prepare with its own budget, not under [finetune]

    mode: Literal["block", "end_to_end"] = "block"
    blocks: str = ""          # a ModuleList / Sequential whose children are the blocks; "" = the longest ModuleList
    samples: int = 1024       # calibration samples (the first of the data)
    batch_size: int = 16
    epochs: int = 3           # passes over the samples (per block in mode "block")
    lr: float = 1e-3          # Adam, cosine decay to 0 (end_to_end: ~1e-4, a pretrained model's fine-tuning scale)
    loss: Literal["mse", "cosine"] = "mse"
    intermediate: bool = True  # end_to_end: match every block's output too, not the final output only
    keep_zeros: bool = True   # re-apply the zeros of each weight matrix after every step
    tune: Literal["all", "vectors"] = "all"     # "vectors": biases and norms only, weight matrices untouched
    teacher: str = ""         # a .nshr file; "" = the model before compression
    seed: int = 0

    def validate(self):
        self.check(self.samples >= 1, "samples", "an integer >= 1")
        self.check(self.batch_size >= 1, "batch_size", "an integer >= 1")
        self.check(self.epochs >= 0, "epochs", "an integer >= 0")
        self.check(math.isfinite(self.lr) and self.lr > 0, "lr", "a finite number > 0")

    # -- lifecycle ------------------------------------------------------------------
    def prepare(self, model: nn.Module, ctx: PrepareContext) -> None:
        if ctx.data is None:
            raise RecipeError(f"{self.name}: needs calibration data (compress_(model, recipe, data=...))")
        if self.teacher:
            teacher = load(self.teacher)
        elif ctx.teacher is not None:
            teacher = ctx.teacher
        else:
            raise RecipeError(f"{self.name}: there is no teacher: run it in compress_ (the model before "
                              "compression) or give teacher = 'file.nshr'")
        data = as_batches(ctx.data)
        batches = data.take(self.samples, batch_size=self.batch_size)
        if not batches:
            raise RecipeError(f"{self.name}: the calibration data is empty")
        teacher = teacher.eval()
        s_blocks, t_blocks = self._blocks(model), self._blocks(teacher)
        if len(s_blocks) != len(t_blocks):
            raise TargetError(f"{self.name}: the student has {len(s_blocks)} blocks, the teacher {len(t_blocks)}")
        self.report_: dict[str, dict] = {}
        was = model.training
        model.eval()
        grads = {id(p): p.requires_grad for p in model.parameters()}
        try:
            if self.mode == "block" and s_blocks:
                for i, (name, blk) in enumerate(s_blocks):
                    self._block(model, teacher, data, batches, i, name, blk, t_blocks[i][1])
            else:
                self._end_to_end(model, teacher, data, batches, s_blocks, t_blocks)
        finally:
            for p in model.parameters():
                p.requires_grad_(grads.get(id(p), True))
            model.train(was)

    # -- the blocks -----------------------------------------------------------------
    def _blocks(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        if self.blocks:
            try:
                holder = model.get_submodule(self.blocks)
            except AttributeError:
                lists = [n for n, m in model.named_modules() if isinstance(m, (nn.ModuleList, nn.Sequential))]
                raise TargetError(f"{self.name}: blocks {self.blocks!r} is not a module; lists of modules: "
                                  f"{', '.join(lists) or 'none'}") from None
            if not isinstance(holder, (nn.ModuleList, nn.Sequential)):
                raise TargetError(f"{self.name}: blocks {self.blocks!r} is a {type(holder).__name__}, "
                                  "not a ModuleList / Sequential")
            prefix = self.blocks
        else:
            found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) >= 2]
            if not found:
                return []
            prefix, holder = max(found, key=lambda nm: len(nm[1]))
        return [(f"{prefix}.{k}", m) for k, m in holder.named_children()]

    @torch.no_grad()
    def _capture(self, model, data, batches, module, *, inputs: bool):
        """Per batch: (args, kwargs) `module` is called with (inputs) or its output tensor."""
        out, handles = [], []
        if inputs:
            def pre(m, args, kwargs):
                out.append((tuple(a.detach() if torch.is_tensor(a) else a for a in args),
                            {k: v.detach() if torch.is_tensor(v) else v for k, v in kwargs.items()}))
                raise StopForward
            handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
        else:
            def post(m, args, o):
                out.append(output_tensor(o).detach())
                raise StopForward
            handles.append(module.register_forward_hook(post))
        try:
            run_each(data, model, batches)
        finally:
            for h in handles:
                h.remove()
        return out

    def _block(self, model, teacher, data, batches, i, name, blk, t_blk):
        xs = self._capture(model, data, batches, blk, inputs=True)
        ts = self._capture(teacher, data, batches, t_blk, inputs=False)
        if len(xs) != len(batches) or len(ts) != len(batches):
            raise NetshrinkError(f"{self.name}: block {name} was not called on every batch")
        masks = [token_mask(b, t) for b, t in zip(batches, ts)]

        def step_loss(j):
            args, kwargs = xs[j]
            return _hidden_loss(output_tensor(blk(*args, **kwargs)), ts[j], masks[j], self.loss)

        self.report_[name] = self._train(list(blk.parameters()), len(batches), step_loss, model)

    def _end_to_end(self, model, teacher, data, batches, s_blocks, t_blocks):
        def grab(blocks, store):
            return [m.register_forward_hook(lambda m, a, o, k=k: store.__setitem__(k, output_tensor(o)))
                    for k, (_, m) in enumerate(blocks)]

        s_out, t_out = {}, {}
        matched = range(len(s_blocks)) if self.intermediate else ()
        handles = grab(s_blocks, s_out) + grab(t_blocks, t_out) if self.intermediate else []
        t_final = []
        try:
            with torch.no_grad():
                t_layers = []
                for b in batches:
                    t_final.append(output_tensor(data.call(teacher, b)).detach())
                    t_layers.append({k: t_out[k].detach() for k in matched})
            masks = [token_mask(b, t) for b, t in zip(batches, t_final)]

            def step_loss(j):
                s = output_tensor(data.call(model, batches[j]))
                terms = [_hidden_loss(s, t_final[j], masks[j], self.loss)]
                terms += [_hidden_loss(s_out[k], t_layers[j][k], masks[j], self.loss) for k in matched]
                return sum(terms) / len(terms)

            params = [p for _, m in s_blocks for p in m.parameters()] or list(model.parameters())
            self.report_["model"] = self._train(params, len(batches), step_loss, model)
        finally:
            for h in handles:
                h.remove()

    # -- the optimisation ---------------------------------------------------------------
    def _train(self, params, n_batches: int, step_loss, model) -> dict:
        params = [p for p in params if p.is_floating_point() and (self.tune == "all" or p.dim() < 2)]
        owned = {id(p) for p in params}
        for p in model.parameters():
            p.requires_grad_(id(p) in owned)
        zeros = [(p, p.detach() != 0) for p in params if self.keep_zeros and p.dim() >= 2 and bool((p == 0).any())]

        @torch.no_grad()
        def mean_loss():
            return sum(float(step_loss(j)) for j in range(n_batches)) / n_batches

        before = mean_loss()
        total = self.epochs * n_batches
        if total == 0 or not params:
            return {"loss_before": before, "loss_after": before, "steps": 0}
        opt = torch.optim.Adam(params, lr=self.lr)
        gen = torch.Generator().manual_seed(self.seed)
        step = 0
        for _ in range(self.epochs):
            for j in torch.randperm(n_batches, generator=gen).tolist():
                for g in opt.param_groups:
                    g["lr"] = self.lr * 0.5 * (1 + math.cos(math.pi * step / total))
                loss = step_loss(j)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    for p, keep in zeros:
                        p.mul_(keep)
                step += 1
        return {"loss_before": before, "loss_after": mean_loss(), "steps": step}


def _hidden_loss(s: torch.Tensor, t: torch.Tensor, mask, kind: str) -> torch.Tensor:
    """Σ‖s − t‖² / Σ‖t‖² (mse) or mean 1 − cos (cosine) over the real tokens."""
    if s.shape != t.shape:
        raise TargetError(f"recover: the student's hidden state {tuple(s.shape)} and the teacher's "
                          f"{tuple(t.shape)} differ in shape")
    s, t = s.float(), t.float()
    if mask is not None:
        s, t = s[mask], t[mask]
    elif s.dim() >= 1:
        s, t = s.reshape(-1, s.shape[-1]), t.reshape(-1, t.shape[-1])
    else:
        s, t = s.reshape(1, 1), t.reshape(1, 1)
    if kind == "cosine":
        return (1 - torch.nn.functional.cosine_similarity(s, t, dim=-1)).mean()
    return (s - t).pow(2).sum() / t.pow(2).sum().clamp_min(1e-12)

