"""Encode/decode throughput of the codec on a synthetic 10M-parameter model.

The model mimics a Deep-Compression'd network: 60 % of the weights sit in 95 %-sparse
layers whose non-zeros share a 32-entry (5-bit) codebook, 40 % in ordinary dense
float32 layers (trained-like, small magnitudes, plus a unit-variance head), and biases. Throughput is counted in dense fp32 bytes
(4 * parameters) per second of write_archive / read_archive wall time, file I/O included;
the process CPU time of each is reported too.

    >>> from netshrink_bench.throughput import measure_throughput
    >>> measure_throughput(1_000_000)["encode_mb_s"]
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np
import torch

from netshrink.codec.archive import read_archive, write_archive
from netshrink.codec.entropy import encode_stream, shannon_bytes


def synthetic_model(n_params: int = 10_000_000, seed: int = 0) -> dict[str, torch.Tensor]:
    """name -> tensor, totalling exactly n_params elements."""
    g = torch.Generator().manual_seed(seed)
    shares = {"fc1.weight": 0.35, "fc2.weight": 0.25, "conv1.weight": 0.20, "conv2.weight": 0.15}
    tensors: dict[str, torch.Tensor] = {}
    for name, share in shares.items():
        n = int(n_params * share) - 1000
        if name.startswith("fc"):  # pruned to 5 % and k-means-shared to 32 values
            codebook = torch.randn(32, generator=g) * 0.05
            w = codebook[torch.randint(0, 32, (n,), generator=g)]
            w[torch.rand(n, generator=g) < 0.95] = 0.0
        else:
            w = torch.randn(n, generator=g) * 0.05
        tensors[name] = w
        tensors[name.replace("weight", "bias")] = torch.randn(1000, generator=g) * 0.01
    rest = n_params - sum(t.numel() for t in tensors.values())
    tensors["head.weight"] = torch.randn(rest, generator=g)
    return tensors


def measure_throughput(n_params: int = 10_000_000, repeats: int = 3) -> dict:
    """Median-of-`repeats` encode and decode speed in MB/s of dense fp32 weights."""
    tensors = synthetic_model(n_params)
    dense_bytes = 4 * sum(t.numel() for t in tensors.values())
    enc, dec, enc_cpu, dec_cpu = [], [], [], []
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "throughput.nshr")
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            size = write_archive(path, {"bench": "throughput"}, tensors)
            t1, c1 = time.perf_counter(), time.process_time()
            _, back = read_archive(path)
            t2, c2 = time.perf_counter(), time.process_time()
            enc.append(t1 - t0)
            dec.append(t2 - t1)
            enc_cpu.append(c1 - c0)
            dec_cpu.append(c2 - c1)
    if not all(torch.equal(back[k], v) for k, v in tensors.items()):
        raise RuntimeError("codec round trip changed a tensor")
    def median(xs: list[float]) -> float:
        return sorted(xs)[len(xs) // 2]

    mb = dense_bytes / 1e6
    # Wall time is what a user waits; CPU time (this process, all threads) says what the
    # codec itself costs when other jobs share the cores.
    return {"n_params": n_params, "dense_mb": mb, "file_bytes": size, "ratio": dense_bytes / size,
            "encode_s": median(enc), "decode_s": median(dec),
            "encode_mb_s": mb / median(enc), "decode_mb_s": mb / median(dec),
            "encode_cpu_s": median(enc_cpu), "decode_cpu_s": median(dec_cpu)}


def measure_entropy_gap(n_symbols: int = 100_000, seed: int = 0) -> list[dict]:
    """Coded size vs the order-0 Shannon bound for the streams a compressed model holds:
    sparse gaps (5 % density, 8-bit gaps), 5-bit codebook indices over a 95 %-sparse layer,
    6-bit indices of k-means'd dense weights, and the sign/exponent byte of fp32 weights."""
    rng = np.random.default_rng(seed)
    n = n_symbols
    streams = {
        "gaps (p=0.05, F=255)": (np.minimum(rng.geometric(0.05, n) - 1, 255), 256),
        "index cb5, 95% zeros": (np.where(rng.random(n) < 0.95, 0, rng.integers(1, 32, n)), 32),
        "index cb6, gaussian": (np.clip(np.rint(rng.normal(32, 8, n)), 0, 63), 64),
        "fp32 exponent byte": ((rng.standard_normal(n).astype(np.float32) * 0.05)
                               .view(np.uint32) >> 24, 256),
    }
    rows = []
    for name, (sym, alphabet) in streams.items():
        sym = sym.astype(np.uint8)
        st = encode_stream(sym, alphabet)
        bound = shannon_bytes(np.bincount(sym, minlength=alphabet))
        rows.append({"stream": name, "symbols": n, "coder": st.coder, "bytes": len(st.payload),
                     "shannon_bytes": bound, "gap_pct": 100 * (len(st.payload) / bound - 1)})
    return rows


if __name__ == "__main__":
    for k, v in measure_throughput().items():
        print(f"{k:>12}: {v:.3f}" if isinstance(v, float) else f"{k:>12}: {v}")
    for n in (10_000, 100_000, 1_000_000):
        for r in measure_entropy_gap(n):
            print(f"{r['stream']:>22} n={n:>9,} {r['coder']:>7} {r['bytes']:>9,} B"
                  f"  bound {r['shannon_bytes']:>11,.1f} B  gap {r['gap_pct']:+.2f} %")
