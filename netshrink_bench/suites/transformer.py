"""`netshrink bench transformer`: all-MiniLM-L6-v2 (22.7 M parameters), compressed.

Every row compresses a fresh copy of the fp32 encoder and is measured on the same
held-out sentences against the fp32 model in the same process: mean / min cosine of the
normalised sentence embeddings, top-5 neighbour agreement, bytes of the file `ns.save`
writes (peers whose modules netshrink cannot save: torch.save of their state_dict, marked),
batch-1 and batch-64 speedups (eager against eager, interleaved, fixed threads), the
compression wall time and which kernel runs the Linear layers. The must-show rows run
the recipes shipped in recipes/minilm_*.toml. Calibration sentences (pydoc topics of
one half, then the standard library's docstring prose: minilm.calibration_sentences) and
evaluation sentences (the other half of the topics) are disjoint.
"""
from __future__ import annotations

import copy
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch
from torch import nn

import netshrink as ns
from netshrink.core.batches import Inputs
from netshrink.measure.latency import compare_latency
from netshrink_bench import minilm

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
LIN = 'targets = { include = ["type:Linear"] }'
EMB = 'targets = { include = ["type:Embedding"] }'


def _toml(*steps: str) -> str:
    return "[finetune]\nepochs = 0\n" + "".join(f"\n[[step]]\n{s.strip()}\n" for s in steps)


def _emb(bits: int) -> str:
    return f'method = "quantize"\nbits = {bits}\ngranularity = "channel"\ncalibration = "mse"\n{EMB}'


def _emb_bits(bits: float, lo: int = 2) -> str:
    return f'method = "embedding_bits"\nbits = {bits}\nmin_bits = {lo}\nmax_bits = 8\nsamples = 256\n{EMB}'


# label -> recipe TOML (netshrink rows). Order: existing methods, then one-shot methods.
def netshrink_rows(quick: bool) -> dict[str, str]:
    # 1,024 calibration sentences (64 quick: all there are), 3 passes per block
    RECOVER = 'method = "recover"\nmode = "block"\nepochs = 3\nlr = 1e-3\nsamples = 1024'
    rows = {
        "quantize 8-bit channel, Linear only": _toml(f'method = "quantize"\nbits = 8\n{LIN}'),
        "quantize 8-bit channel, Linear + embeddings": _toml(f'method = "quantize"\nbits = 8\n{LIN}', _emb(8)),
        "quantize 4-bit g64 MSE, Linear + embeddings": _toml(
            f'method = "quantize"\nbits = 4\ngranularity = "group"\ngroup_size = 64\ncalibration = "mse"\n{LIN}',
            'method = "quantize"\nbits = 4\ngranularity = "group"\ngroup_size = 64\ncalibration = "mse"\n' + EMB),
        "RTN 4-bit g128 asym (quantize) + emb 8-bit": _toml(
            f'method = "quantize"\nbits = 4\ngranularity = "group"\ngroup_size = 128\nsymmetric = false\n{LIN}', _emb(8)),
        "gptq 4-bit g128 asym + emb 8-bit": _toml(f'method = "gptq"\nbits = 4\ngroup_size = 128\n{LIN}', _emb(8)),
        "awq 4-bit g128 asym + emb 8-bit": _toml(f'method = "awq"\nbits = 4\ngroup_size = 128\n{LIN}', _emb(8)),
        "magnitude 50 % (no recovery)": _toml(f'method = "magnitude"\nsparsity = 0.5\n{LIN}'),
        "sparsegpt 50 %": _toml(f'method = "sparsegpt"\nsparsity = 0.5\n{LIN}'),
        "wanda 50 %": _toml(f'method = "wanda"\nsparsity = 0.5\n{LIN}'),
        "smoothquant W8A8 (int8 kernels) + emb 8-bit": _toml(f'method = "smoothquant"\nalpha = 0.5\n{LIN}', _emb(8)),
        # recovery by block-wise hidden-state distillation toward fp32 (`recover`, BRECQ-style)
        "magnitude 50 % + recover (block, 3 ep, lr 1e-3)": _toml(
            f'method = "magnitude"\nsparsity = 0.5\n{LIN}', RECOVER),
    }
    if not quick:
        rows.update({
            "kmeans 4-bit, Linear + embeddings": _toml('method = "kmeans"\nbits = 4\nfinetune_centroids = false\n'
                                                       'targets = { include = ["type:Linear", "type:Embedding"] }'),
            "RTN 3-bit g128 asym + emb 8-bit": _toml(
                f'method = "quantize"\nbits = 3\ngranularity = "group"\ngroup_size = 128\nsymmetric = false\n{LIN}',
                _emb(8)),
            "gptq 3-bit g128 asym + emb 8-bit": _toml(f'method = "gptq"\nbits = 3\ngroup_size = 128\n{LIN}', _emb(8)),
            "magnitude 2:4": _toml(f'method = "nm"\nn = 2\nm = 4\n{LIN}'),
            "sparsegpt 2:4": _toml(f'method = "sparsegpt"\nn = 2\nm = 4\n{LIN}'),
            "wanda 2:4": _toml(f'method = "wanda"\nn = 2\nm = 4\n{LIN}'),
            "sparsegpt 50 % -> gptq 4-bit g128 + emb 8-bit": _toml(
                f'method = "sparsegpt"\nsparsity = 0.5\n{LIN}', f'method = "gptq"\nbits = 4\ngroup_size = 128\n{LIN}',
                _emb(8)),
            "sparsegpt 50 % + recover (block, 3 ep, lr 1e-3)": _toml(
                f'method = "sparsegpt"\nsparsity = 0.5\n{LIN}', RECOVER),
            "channel_prune heads/FFN 25 % + recover (block) + quantize 8-bit": _toml(
                'method = "channel_prune"\nsparsity = 0.25', RECOVER, f'method = "quantize"\nbits = 8\n{LIN}'),
            # structured: FFN neurons by magnitude, no update, against ZipLM-style OBS
            # selection with the least-squares re-fit of each FFN output layer
            "channel_prune FFN 10 % l1 (no update)": _toml(
                'method = "channel_prune"\nsparsity = 0.1\nkinds = ["ffn"]'),
            "channel_prune FFN 10 % obs + reconstruct": _toml(
                'method = "channel_prune"\nsparsity = 0.1\nkinds = ["ffn"]\nimportance = "obs"\n'
                'reconstruct = true\nbatches = 64'),
            "int8 per-token W8A8, no smoothing + emb 8-bit": _toml(
                f'method = "gptq"\nbits = 8\ngranularity = "channel"\nsymmetric = true\nexecute = "int8"\n{LIN}',
                _emb(8)),
        })
    # Embedding rows at widths from calibration token counts (embedding_bits) against
    # uniform widths: the word-embedding table is half the model's parameters.
    rows.update({
        "quantize 6-bit channel, embeddings only": _toml(_emb(6)),
        "embedding_bits mean 4 (2..8), embeddings only": _toml(_emb_bits(4.0)),
        "quantize 4-bit channel, embeddings only": _toml(_emb(4)),
    })
    for p in sorted(RECIPES.glob("minilm_*.toml")):
        rows[f"recipes/{p.name}"] = p.read_text()
    return rows


# -- peers --------------------------------------------------------------------------
def _peer_ao_dynamic(model):
    return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)


def _peer_torchao(config_name: str):
    def run(model):
        import torchao.quantization as q

        q.quantize_(model, getattr(q, config_name)())
        return model
    return run


def _peer_prune(amount: float):
    def run(model):
        import torch.nn.utils.prune as prune

        for m in model.modules():
            if isinstance(m, nn.Linear):
                prune.l1_unstructured(m, "weight", amount=amount)
                prune.remove(m, "weight")
        return model
    return run


PEERS = {
    "torch.ao dynamic int8 (peer)": _peer_ao_dynamic,
    "torchao int8 weight-only (peer)": _peer_torchao("Int8WeightOnlyConfig"),
    "torchao int8 dyn-act int8 weight (peer)": _peer_torchao("Int8DynamicActivationInt8WeightConfig"),
    "torch prune l1 30 % (peer)": _peer_prune(0.3),
    "torch prune l1 50 % (peer)": _peer_prune(0.5),
}


# -- measuring ----------------------------------------------------------------------
def _kernels(model: nn.Module) -> str:
    c = Counter()
    for m in model.modules():
        name = type(m).__name__
        if name in ("Int8DynamicLinear", "Int8FusedLinear"):      # fused: one GEMM per input group (q/k/v)
            c[f"int8 {m.act} {m.kernel}{' fused' if name == 'Int8FusedLinear' else ''}"] += 1
        elif name in ("Linear", "ScaledLinear", "Int8Linear"):
            w = getattr(m, "weight", None)
            sub = type(getattr(w, "data", w)).__name__ if w is not None else ""
            c[f"{name}{'' if sub in ('Tensor', 'Parameter', '') else ' ' + sub}"] += 1
        elif "Quantized" in name or "quantized" in type(m).__module__:
            c[name] += 1
    return ", ".join(f"{k} x{v}" for k, v in sorted(c.items()))


def _bytes(model: nn.Module, verify: list | None = None) -> tuple[int, str, str]:
    """(bytes, how, round trip) — ns.save where it can, else torch.save of the state_dict."""
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "m.nshr")
        try:
            n = ns.save(model, p)
        except Exception as e:  # noqa: BLE001 - a peer's modules: say so in the row
            q = os.path.join(d, "m.pt")
            torch.save(model.state_dict(), q)
            return os.path.getsize(q), f"torch.save ({type(e).__name__})", "-"
        trip = "-"
        if verify is not None:
            loaded = ns.load(p)
            a, b = minilm.embed(model, verify), minilm.embed(loaded, verify)
            trip = "bit-exact" if torch.equal(a, b) else f"max diff {float((a - b).abs().max()):.1e}"
        return n, "ns.save", trip


def _speed(model, ref, ex1, ex64, quick):
    # CPU time per call at one intra-op thread: the machine is shared, and wall time
    # there counts the waits for a free core (fp32 against itself read 0.76x at b1).
    # 9 interleaved rounds: a batch-64 round is one ~1.2 s call, and on this shared host the
    # fp32 reference alone ranged 1.45-2.0 s between runs minutes apart (5 rounds: ratios
    # of one model 1.30-1.59 over five runs)
    rounds, t = (3, 0.1) if quick else (9, 0.3)
    a1, b1 = compare_latency(model, ref, Inputs((), ex1), rounds=rounds, min_run_time=t, clock="cpu")
    a64, b64 = compare_latency(model, ref, Inputs((), ex64), rounds=rounds, min_run_time=t, clock="cpu")
    return b1 / a1, b64 / a64, a1, a64


def run(ctx) -> None:
    torch.manual_seed(0)
    threads = int(os.environ.get("NETSHRINK_BENCH_THREADS", "1"))
    torch.set_num_threads(threads)
    base, tok = minilm.load_encoder()
    n_cal, n_eval = (64, 128) if ctx.quick else (None, 512)     # None: all 13,043
    calib = minilm.batches(tok, minilm.calibration_sentences(n_cal), 16)
    evals = minilm.batches(tok, minilm.sentences("eval")[:n_eval], 64)
    ex64 = evals[0]
    one = sorted(minilm.sentences("eval")[:n_eval], key=len)[n_eval // 2]
    ex1 = minilm.batches(tok, [one], 1)[0]
    ref_emb = minilm.embed(base, evals)
    params = sum(p.numel() for p in base.parameters())
    fp32_bytes = params * 4
    ctx.log(f"MiniLM: {params} parameters, {len(calib)} calibration / {len(evals)} evaluation batches")

    # Most telling rows first (a long run's table is rewritten after each): the shipped
    # recipes, the must-show pairs, the peers, then the rest.
    rows = netshrink_rows(ctx.quick)
    first = [k for k in rows if k.startswith("recipes/")] + [
        "RTN 4-bit g128 asym (quantize) + emb 8-bit", "gptq 4-bit g128 asym + emb 8-bit",
        "magnitude 50 % (no recovery)", "sparsegpt 50 %", "wanda 50 %"]
    jobs = [("fp32 (reference)", None, None)]
    jobs += [(k, "recipe", rows[k]) for k in first if k in rows]
    jobs += [(k, "peer", v) for k, v in PEERS.items()]
    jobs += [(k, "recipe", rows[k]) for k in rows if k not in first and ("embeddings only" in k or "recover" in k)]
    jobs += [(k, "recipe", v) for k, v in rows.items() if k not in first and k not in [j[0] for j in jobs]]
    # NETSHRINK_BENCH_ROWS="a,b": only rows whose label contains one of these, in that order;
    # NETSHRINK_BENCH_RESUME=1: keep the rows already in transformer.jsonl and run the others.
    only = [x.strip() for x in os.environ.get("NETSHRINK_BENCH_ROWS", "").split(",") if x.strip()]
    if only:
        jobs = [j for o in only for j in jobs if o in j[0]]
        jobs = [j for i, j in enumerate(jobs) if j[0] not in [k[0] for k in jobs[:i]]]
    if os.environ.get("NETSHRINK_BENCH_RESUME") == "1" and (ctx.dir / "transformer.jsonl").is_file():
        import json

        ctx.rows.extend(json.loads(line) for line in (ctx.dir / "transformer.jsonl").read_text().splitlines())
        done = {r["label"] for r in ctx.rows}
        jobs = [j for j in jobs if j[0] not in done]
    for label, kind, spec in jobs:
        model = copy.deepcopy(base)
        t0 = time.time()
        try:
            if kind == "recipe":
                ns.compress_(model, ns.Recipe.from_toml(spec), data=calib, progress=False)
            elif kind == "peer":
                model = spec(model)
        except Exception as e:  # noqa: BLE001 - a failing peer or row is reported, the run goes on
            ctx.log(f"{label}: failed: {type(e).__name__}: {e}")
            ctx.record(label=label, error=f"{type(e).__name__}: {e}")
            continue
        wall = time.time() - t0
        model.eval()
        fid = minilm.fidelity(ref_emb, minilm.embed(model, evals))
        verify = evals[:1] if label.startswith("recipes/") else None
        nbytes, how, trip = _bytes(model, verify)
        s1, s64, ms1, ms64 = _speed(model, base, ex1, ex64, ctx.quick)
        row = dict(label=label, kind=kind or "reference", **fid, bytes=nbytes, bytes_how=how,
                   ratio=fp32_bytes / nbytes, speedup_b1=s1, speedup_b64=s64, ms_b1=ms1, ms_b64=ms64,
                   compress_s=wall, kernels=_kernels(model), roundtrip=trip, threads=threads,
                   recipe=spec if kind == "recipe" else None, date=time.strftime("%Y-%m-%d"))
        ctx.record(**row)
        ctx.log(f"{label}: cos {fid['cos_mean']:.4f} (min {fid['cos_min']:.3f}) top5 {fid['top5']:.3f} "
                f"{nbytes / 1e6:.1f} MB x{s1:.2f} b1 x{s64:.2f} b64 {wall:.0f}s [{row['kernels']}]")
        del model
        _write(ctx)            # after every row: a long run's partial results are readable


def _write(ctx) -> None:
    from netshrink_bench.suites.transformer_report import write_recipe_results, write_report

    write_report(ctx)
    write_recipe_results(ctx, RECIPES)
