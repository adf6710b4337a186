"""`netshrink bench fuzz`: mutated .nshr files loaded in a worker process (issue 14).

Every load runs in a forked worker that the parent watches: a worker that dies is a
crash, one that takes longer than HANG_S for one file is a hang (the worker is killed
and a fresh one started). Mutations and outcomes: netshrink_bench/fuzzing.py.
Seeds are fixed, so a rerun loads the same files.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import random
import tempfile
import time
from collections import Counter

import torch

import netshrink as ns
from netshrink_bench import fuzzing as F

HANG_S = 30.0
PER_MODEL = {True: 100, False: 2600}    # mutated loads per fixture model (--quick, full): 4 x 2600 = 10,400


def _worker(conn, fixtures_refs) -> None:
    torch.set_num_threads(1)
    tmp = tempfile.mkdtemp(prefix="ns-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    path = os.path.join(tmp, "m.nshr")
    while True:
        msg = conn.recv()
        if msg is None:
            return
        name, data = msg
        ref, x = fixtures_refs[name]
        with open(path, "wb") as f:
            f.write(data)
        conn.send(F.judge(path, ref, x))


class _Pool:
    """One forked worker; restarted after a crash or a hang."""

    def __init__(self, refs):
        self.refs, self.proc = refs, None
        self.ctx = mp.get_context("fork")

    def _start(self):
        self.conn, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_worker, args=(child, self.refs), daemon=True)
        self.proc.start()

    def judge(self, name: str, data: bytes) -> str:
        if self.proc is None or not self.proc.is_alive():
            self._start()
        self.conn.send((name, data))
        if not self.conn.poll(HANG_S):
            self.proc.kill()
            self.proc.join()
            self.proc = None
            return F.OUTCOMES[3]
        try:
            return self.conn.recv()
        except EOFError:
            self.proc.join()
            self.proc = None
            return F.OUTCOMES[2]

    def close(self):
        if self.proc is not None and self.proc.is_alive():
            self.conn.send(None)
            self.proc.join(5)


def run(ctx) -> None:
    torch.set_num_threads(1)
    fixtures = F.fixtures()
    files, refs = {}, {}
    with tempfile.TemporaryDirectory() as d:
        for name, (model, x, hints) in fixtures.items():
            files[name] = F.saved(model, hints)
            p = os.path.join(d, f"{name}.nshr")
            with open(p, "wb") as f:
                f.write(files[name])
            refs[name] = (F._run(ns.load(p), x), x)  # the reference is the loaded file (fp16 storage rounds)
    pool = _Pool(refs)
    n = PER_MODEL[ctx.quick]
    counts: dict[tuple[str, str], Counter] = {}
    t0 = time.time()
    try:
        for name, data in files.items():
            rng = random.Random(f"fuzz-{name}")
            for i in range(n):
                kind = F.KINDS[i % len(F.KINDS)]
                outcome = pool.judge(name, F.mutate(data, kind, rng))
                counts.setdefault((name, kind), Counter())[outcome] += 1
            ctx.log(f"{name}: {n} loads ({time.time() - t0:.0f} s)")
    finally:
        pool.close()
    for (name, kind), c in counts.items():
        ctx.record(model=name, mutation=kind, loads=sum(c.values()), **{o: c[o] for o in F.OUTCOMES})
    _report(ctx, files, fixtures)


def _report(ctx, files, fixtures) -> None:
    from netshrink.codec import inspect_archive

    encodings = {}
    with tempfile.TemporaryDirectory() as d:
        for name, data in files.items():
            p = os.path.join(d, "m.nshr")
            with open(p, "wb") as f:
                f.write(data)
            encodings[name] = ", ".join(sorted({r["encoding"] for r in inspect_archive(p)[:-1]}))
    short = ["ArtifactError", "other exception", "crash", "hang", "same outputs", "other valid model",
             "different outputs"]
    by_model, by_kind = Counter(), {}
    rows_m, rows_k = [], []
    for name in files:
        tot = Counter()
        for r in ctx.rows:
            if r["model"] == name:
                tot.update({o: r[o] for o in F.OUTCOMES})
        rows_m.append([name, f"{len(files[name]):,}", encodings[name], sum(tot.values())]
                      + [tot[o] for o in F.OUTCOMES])
        by_model.update(tot)
    for kind in F.KINDS:
        tot = Counter()
        for r in ctx.rows:
            if r["mutation"] == kind:
                tot.update({o: r[o] for o in F.OUTCOMES})
        by_kind[kind] = tot
        rows_k.append([kind, sum(tot.values())] + [tot[o] for o in F.OUTCOMES])
    rows_k.append(["**all**", sum(by_model.values())] + [by_model[o] for o in F.OUTCOMES])
    notes = (
        "Each mutated file is loaded by `ns.load` in a forked worker (a dead worker is a crash, more than "
        f"{HANG_S:.0f} s for one file a hang). Mutations (netshrink_bench/fuzzing.py): **bytes** (1-4 bytes "
        "changed or the file cut, no checksum fixed), **header** (one node of the model header replaced, "
        "deleted or duplicated; header checksum recomputed), **table** (one field of a tensor entry: dtype, "
        "shape, encoding descriptor, lengths; checksums recomputed), **section** (1-4 bytes of a tensor "
        "section, its checksum recomputed, the value checksum left), **value** (1-4 bytes of a dense "
        "section with both checksums recomputed: a legitimate file with other weights). An accepted file "
        "counts as *same outputs* (bit-identical to the original's), *other valid model* (outputs differ and "
        "the loaded model round-trips exactly: save -> load gives the same architecture and bit-identical "
        "outputs, so the file was read as written; expected for value mutations and for mutations of a "
        "value that describes the model) or *different outputs* (a misread: must be 0). Must be 0 too: "
        "other exception, crash, hang.")
    ctx.write_markdown("Fuzzed loads of .nshr files (issue 14)", [
        ("Outcomes by mutation", ["mutation", "loads"] + short, rows_k),
        ("Outcomes by model", ["model", "file bytes", "encodings", "loads"] + short, rows_m),
    ], notes=notes)
