"""Every pipeline on real `transformers` architectures (tiny configs, random weights, dict
batches): compress -> its effect checked -> save -> load with identical outputs -> ONNX
export verified in ONNX Runtime (here on one pipeline per architecture, in turn, for
time; `netshrink bench architectures` exports every cell and writes the README's counts).

A pair netshrink cannot handle must stop with a NetshrinkError naming the part
(UNSUPPORTED lists each one with words of its message); every other pair must pass, no
pair may fail with any other exception, and the bench's table must agree with both.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import pytest
import torch

from netshrink_bench.hf_archs import ARCH_LIST
from netshrink_bench.suites.architectures import (PIPELINES, README_BEGIN, README_END, Cell, counts_line,
                                                  run_cell)

ROOT = Path(__file__).resolve().parents[2]

# (architecture, pipeline) -> a regular expression its NetshrinkError must match
UNSUPPORTED: dict[tuple[str, str], str] = {
    # FalconLinear (an nn.Linear subclass) is not a type an artifact rebuilds; its shrunk size is refused
    ("falcon", "channel_prune"): r"cannot save: attribute\(s\) \['out_features'\] of module "
                                 r"'transformer\.h\.0\.mlp\.dense_h_to_4h'",
}

CELLS = [(a.name, p) for a in ARCH_LIST for p in PIPELINES]
# `make test` runs one pipeline per architecture, rotating (every pipeline meets every family
# over the table), with ONNX on every third architecture (the export and its ONNX Runtime check
# were ~half of this file's 43 s, in a suite at its 5-minute budget); the full grid is `netshrink bench architectures`, whose
# table the last test checks against UNSUPPORTED. NETSHRINK_FULL_GRID=1 runs all of it here.
FULL = os.environ.get("NETSHRINK_FULL_GRID") == "1"
RUN = CELLS if FULL else [(a.name, list(PIPELINES)[i % len(PIPELINES)]) for i, a in enumerate(ARCH_LIST)]


@pytest.fixture(scope="module")
def grid():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny models: one thread is fastest, and the 2 cores are shared
    try:
        n = len(PIPELINES)
        return {(a.name, p): run_cell(a, p, onnx=(i % 3 == 0) if not FULL else j == i % n)
                for i, a in enumerate(ARCH_LIST) for j, p in enumerate(PIPELINES) if (a.name, p) in RUN}
    finally:
        torch.set_num_threads(threads)


def _check(c: Cell) -> None:
    assert c.status != "error", f"{c.arch} / {c.pipeline}: raw exception at stage {c.stage}: {c.message}"
    expected = UNSUPPORTED.get((c.arch, c.pipeline))
    if expected is None:
        assert c.status == "ok", f"{c.arch} / {c.pipeline}: {c.stage}: {c.message}"
    else:
        assert c.status == "unsupported", f"{c.arch} / {c.pipeline} now passes: remove it from UNSUPPORTED"
        assert re.search(expected, c.message), c.message


def test_the_table_covers_every_family():
    fams = {a.family for a in ARCH_LIST}
    assert len(ARCH_LIST) >= 20
    assert fams == {"encoder", "decoder", "encoder-decoder", "vision", "audio"}
    assert all(sum(a.family == f for a in ARCH_LIST) >= 3 for f in fams)
    assert set(UNSUPPORTED) <= set(CELLS)


@pytest.mark.parametrize("arch,pipeline", RUN, ids=[f"{a}-{p}" for a, p in RUN])
def test_cell(grid, arch, pipeline):
    c = grid[arch, pipeline]
    _check(c)
    if c.status == "ok":
        assert c.params_after <= c.params_before and c.effect
        if c.pipeline in ("low_rank", "channel_prune"):
            assert c.params_after < c.params_before


def test_bench_table_and_readme_agree_with_these_expectations():
    rows = [json.loads(line) for line in (ROOT / "benchmarks" / "architectures.jsonl").read_text().splitlines()]
    names = {f.name for f in dataclasses.fields(Cell)}
    cells = [Cell(**{k: v for k, v in r.items() if k in names}) for r in rows]
    assert {(c.arch, c.pipeline) for c in cells} == set(CELLS), "rerun `netshrink bench architectures`"
    for c in cells:
        _check(c)
    text = (ROOT / "README.md").read_text()
    block = text.split(README_BEGIN, 1)[1].split(README_END, 1)[0]
    assert counts_line(cells) in block, "README counts are stale: rerun `netshrink bench architectures`"
