"""`netshrink bench architectures`: which real `transformers` architectures each pipeline handles.

Every architecture of `netshrink_bench.hf_archs` (tiny configs, random weights, dict
batches) goes through each pipeline of `PIPELINES`, the way a user's own model would:

    compress_(model, Recipe.of(method), data=[batch])   -> the pipeline's effect is checked
    save -> load                                         -> outputs identical (torch.equal)
    export_onnx                                          -> ONNX Runtime agrees with torch

A cell is "ok" when all three pass, "unsupported" when netshrink stopped with a
NetshrinkError (its message names the part it does not handle), and "error" for any
other exception (a bug: tests/transformers asserts there are none). The suite writes
benchmarks/architectures.md and the counts line of the README's architectures block.
"""
from __future__ import annotations

import re
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

import netshrink as ns
from netshrink.core.batches import Inputs, output_tensor
from netshrink.measure.counts import param_counts
from netshrink.runtime.onnx_export import export_onnx
from netshrink_bench.hf_archs import ARCH_LIST, ARCHS, Arch

NO_FINETUNE = ns.TrainConfig(epochs=0)


@dataclass(frozen=True)
class Pipeline:
    name: str
    method: str
    params: dict

    def create(self):
        return ns.create(self.method, **self.params)


PIPELINES = {p.name: p for p in [
    Pipeline("quantize", "quantize", {"bits": 4}),                 # per-channel 4-bit weights
    Pipeline("magnitude", "magnitude", {"sparsity": 0.5, "runtime": "sparse"}),  # half zero, CSR layers
    Pipeline("low_rank", "low_rank", {"ratio": 0.5}),              # factors hold <= half a layer's weights
    Pipeline("channel_prune", "channel_prune", {"sparsity": 0.25, "scope": "global"}),  # a quarter of the units go
]}


@dataclass
class Cell:
    arch: str
    family: str
    pipeline: str
    status: str            # ok, unsupported, error
    stage: str = ""        # where it stopped: build, compress, effect, save_load, onnx
    message: str = ""
    params_before: int = 0
    params_after: int = 0
    effect: str = ""       # what the pipeline did, in words (e.g. "50.0 % of 24.1k weights zero")
    onnx_diff: float = float("nan")
    seconds: float = 0.0


def _outputs(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return output_tensor(model(**batch))


def _check_effect(pipeline: str, method, model, before: tuple[int, int]) -> str:
    """What the pipeline did to the model; raises AssertionError if it did nothing."""
    total0, nz0 = before
    total, nz = param_counts(model)
    if pipeline == "quantize":
        n = 0
        for s in method.sites_:
            w = getattr(s.module, s.param_name).detach()
            rows = w.reshape(w.shape[0], -1)
            worst = max(int(torch.unique(r).numel()) for r in rows)
            assert worst <= 16, f"{s.name}: {worst} distinct values in a channel after 4-bit quantization"
            n += w.numel()
        assert n, "no weight quantized"
        return f"{n / total0:.0%} of weights 4-bit"
    if pipeline == "magnitude":
        zeroed = (total - nz) - (total0 - nz0)
        assert zeroed > 0.2 * total0, f"only {zeroed} of {total0} weights zeroed"
        return f"{zeroed / total0:.0%} of weights zeroed"
    if pipeline == "low_rank":
        done = [k for k, r in method.ranks_.items() if r is not None]
        assert done and total < total0, "no layer factorised"
        return f"{len(done)} layers factorised, params {total / total0:.0%}"
    if pipeline == "channel_prune":
        assert method.removed_ and total < total0, "nothing removed"
        return f"{sum(method.removed_.values())} units removed, params {total / total0:.0%}"
    raise ValueError(pipeline)


def run_cell(arch: Arch | str, pipeline: str, *, onnx: bool = True, workdir: str | Path | None = None) -> Cell:
    """Run one pipeline on one architecture; never raises (the Cell says what happened)."""
    arch = ARCHS[arch] if isinstance(arch, str) else arch
    cell = Cell(arch.name, arch.family, pipeline, "ok")
    t0 = time.perf_counter()
    stage = "build"
    try:
        model, batch = arch.build()
        before = param_counts(model)
        cell.params_before = before[0]
        stage = "compress"
        method = PIPELINES[pipeline].create()
        method = ns.run_recipe(model, ns.Recipe.of(method, finetune=NO_FINETUNE), data=[batch], progress=False).methods[0]
        stage = "effect"
        cell.params_after = param_counts(model)[0]
        ref = _outputs(model, batch)
        assert torch.isfinite(ref).all(), "outputs not finite after compression"
        cell.effect = _check_effect(pipeline, method, model, before)
        stage = "save_load"
        with tempfile.TemporaryDirectory(dir=workdir) as d:
            ns.save(model, Path(d) / "m.nshr")
            loaded = ns.load(Path(d) / "m.nshr")
            got = _outputs(loaded, batch)
            assert got.shape == ref.shape and torch.equal(got, ref), \
                f"loaded model's outputs differ (max |diff| {(got - ref).abs().max():.3g})"
            if onnx:
                stage = "onnx"
                cell.onnx_diff = export_onnx(model, Inputs((), batch), Path(d) / "m.onnx").max_abs_diff
        stage = ""
    except ns.NetshrinkError as e:
        cell.status, cell.message = "unsupported", str(e)
    except Exception as e:  # a bug: where it happened, for whoever fixes it
        frames = [f for f in traceback.extract_tb(e.__traceback__) if "netshrink" in f.filename]
        where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
        cell.status, cell.message = "error", f"{type(e).__name__}: {str(e).strip()[:300]}{where}"
    cell.stage = stage
    cell.seconds = time.perf_counter() - t0
    return cell


def run_grid(archs=None, pipelines=None, *, onnx: bool = True, log=None) -> list[Cell]:
    cells = []
    for a in archs or ARCH_LIST:
        for p in pipelines or PIPELINES:
            c = run_cell(a, p, onnx=onnx)
            cells.append(c)
            if log:
                log(f"{c.arch:12s} {c.pipeline:14s} {c.status:12s} {c.seconds:5.1f}s {c.effect if c.status == 'ok' else c.stage + ': ' + c.message[:200]}")
    return cells


# -- reporting ----------------------------------------------------------------------
def counts_line(cells: list[Cell]) -> str:
    """'quantize: 27 of 27 architectures, ...' (ok cells per pipeline)."""
    archs = sorted({c.arch for c in cells})
    parts = []
    for p in PIPELINES:
        ok = sum(1 for c in cells if c.pipeline == p and c.status == "ok")
        parts.append(f"{p}: {ok} of {len(archs)}")
    return ", ".join(parts)


def _short(msg: str) -> str:
    msg = re.sub(r"\s+", " ", msg)
    return msg if len(msg) <= 140 else msg[:137] + "..."


def markdown_sections(cells: list[Cell]):
    headers = ["architecture", "family", "params"] + list(PIPELINES)
    rows, notes = [], []
    by = {(c.arch, c.pipeline): c for c in cells}
    for a in ARCH_LIST:
        if not any(c.arch == a.name for c in cells):
            continue
        row = [a.name, a.family, f"{by[a.name, next(iter(PIPELINES))].params_before:,}"]
        for p in PIPELINES:
            c = by.get((a.name, p))
            if c is None:
                row.append("")
            elif c.status == "ok":
                row.append(f"ok ({c.effect})")
            else:
                notes.append(c)
                row.append(f"{c.status} [{len(notes)}]")
        rows.append(row)
    failures = [[str(i), c.arch, c.pipeline, c.stage, _short(c.message)] for i, c in enumerate(notes, 1)]
    sections = [("Per architecture and pipeline (compress -> effect checked -> save -> load identical "
                 "-> ONNX verified)", headers, rows)]
    if failures:
        sections.append(("What stopped each failing cell", ["#", "architecture", "pipeline", "stage", "message"],
                         failures))
    return sections


README_BEGIN, README_END = "<!-- architectures:begin -->", "<!-- architectures:end -->"


def update_readme(cells: list[Cell], readme: Path, command: str) -> bool:
    """Rewrite the README's architectures block (between the markers) from this run."""
    if not readme.exists():
        return False
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        return False
    n = len({c.arch for c in cells})
    fams = sorted({c.family for c in cells})
    block = (f"{README_BEGIN}\nReal `transformers` architectures ({n}: {', '.join(fams)}; tiny configs, random "
             f"weights; compress → save → load identical → ONNX verified), from `{command}` "
             f"([table](benchmarks/architectures.md)): {counts_line(cells)}.\n{README_END}")
    head, rest = text.split(README_BEGIN, 1)
    readme.write_text(head + block + rest.split(README_END, 1)[1])
    return True


def run(ctx) -> None:
    """Every architecture x pipeline (--quick: the first architecture of each family)."""
    torch.set_num_threads(1)
    archs = ARCH_LIST
    if ctx.quick:
        archs = [a for i, a in enumerate(ARCH_LIST) if a.family not in {b.family for b in ARCH_LIST[:i]}]
    cells = run_grid(archs, onnx=True, log=ctx.log)
    for c in cells:
        ctx.record(**c.__dict__)
    ctx.write_markdown("Architectures: pipelines on real transformers models", markdown_sections(cells),
                       notes=f"Counts (cells that pass every stage): {counts_line(cells)}.")
    if not ctx.quick:
        update_readme(cells, Path(ctx.out).parent / "README.md", ctx.command)
