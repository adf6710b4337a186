"""The grid encoding: per-channel / group-wise quantized float32 weights are stored as
one scale and offset per group plus a stream of integer codes, losslessly."""
import re

import numpy as np
import pytest
import torch

from netshrink.codec import archive, grid, read_archive, write_archive
from netshrink.functional.quantize import quantize_weight
from tests.codec.helpers import assert_bit_exact


def _quantized(bits, symmetric, granularity, shape=(120, 256), group_size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(*shape, generator=g) * 0.05
    return quantize_weight(w, bits=bits, symmetric=symmetric, granularity=granularity, group_size=group_size)[0]


def _save(tmp_path, tensors):
    path = tmp_path / "q.nshr"
    write_archive(path, {}, tensors)
    rows = {r["name"]: r for r in archive.inspect_archive(path)}
    assert_bit_exact(tensors, read_archive(path)[1])
    return rows


@pytest.mark.parametrize("bits,symmetric,granularity,groups", [
    (8, True, "channel", 120), (8, False, "channel", 120), (4, False, "channel", 120),
    (8, True, "group", 480), (6, False, "group", 480)])
def test_quantized_weights_are_stored_as_codes(tmp_path, bits, symmetric, granularity, groups):
    w = _quantized(bits, symmetric, granularity)
    assert np.unique(w.numpy()).size > 256          # the codebook cannot take it
    row = _save(tmp_path, {"w": w})["w"]
    assert row["encoding"].startswith("grid") and f"x{groups}+" in row["encoding"], row["encoding"]
    # At most `bits` bits per weight plus a scale (4 B) and an offset (2 B) per group.
    assert row["bytes"] <= w.numel() * bits / 8 + 6 * groups + 200, row


def test_pruned_and_quantized_channels(tmp_path):
    w = _quantized(8, True, "channel")
    w[torch.rand(w.shape, generator=torch.Generator().manual_seed(1)) < 0.9] = 0.0
    row = _save(tmp_path, {"w": w})["w"]
    assert row["bytes"] < w.numel() * 8 / 8 / 2     # mostly zeros: far under 8 bits each


def test_one_ulp_off_the_grid_is_still_lossless(tmp_path):
    w = _quantized(8, True, "channel")
    w[3, 7] = torch.nextafter(w[3, 7], torch.tensor(1.0))
    assert not _save(tmp_path, {"w": w})["w"]["encoding"].startswith("grid")


def test_find_recovers_codes_and_scales():
    k = np.array([[-3, 0, 5, 7], [2, 2, -1, 0]])
    s = np.array([0.1, 0.0037], dtype=np.float32)
    x = grid.decode(k, s).reshape(-1)
    scales, offsets, sym = grid.find(x, 2)
    assert np.array_equal(grid.decode(sym.reshape(2, -1).astype(np.int64) + offsets[:, None], scales).view(np.uint32),
                          x.reshape(2, -1).view(np.uint32))
    assert list(offsets) == [-3, -1]


def test_dense_floats_are_turned_away_cheaply():
    x = np.random.default_rng(0).standard_normal(64).astype(np.float32)
    assert not grid.plausible(x)
    assert grid.plausible(_quantized(8, True, "channel").numpy()[0])
    assert grid.group_counts((300, 784))[:2] == [1, 300]
    assert 300 * 784 // 16 in grid.group_counts((300, 784))


def test_negative_zero_weights_never_take_the_grid():
    """fl(round(-0.3) * s) is -0.0; an integer code cannot hold that sign, so such a
    tensor is stored another way, bit-exact (it failed its value checksum before)."""
    import numpy as np

    from netshrink.codec import grid as grid_mod

    w = torch.tensor([[-0.0, 0.25, -0.5, 0.75] * 4] * 4)
    x = w.numpy().reshape(-1)
    assert grid_mod.find(x, 4) is None
    assert grid_mod.find(np.abs(x) + 0.0, 4) is not None


def test_negative_zero_grid_tensor_round_trips(tmp_path):
    w = torch.tensor([[-0.0, 0.25, -0.5, 0.75] * 8] * 8) * torch.arange(1, 9).float()[:, None]
    write_archive(tmp_path / "z.nshr", {}, {"w": w})
    _, got = read_archive(tmp_path / "z.nshr")
    assert_bit_exact({"w": w}, got)


def test_a_finer_exact_grid_does_not_hide_the_coarse_one(tmp_path):
    # A GPTQ group (5 bits, codes -17..12 after the error updates, so neither its range nor
    # |w|max names the scale) that fl(k * s / 15) also reproduces bit for bit: that finer
    # grid spans 436 symbols, which once made the whole tensor fall back to dense floats.
    s = np.float32(0.010338962)
    k = np.arange(-17, 13)
    row = grid.decode(np.resize(k, 128)[None], np.array([s]))
    assert grid.find(row.reshape(-1), 1) is not None
    scales = np.concatenate([[s], np.linspace(0.005, 0.02, 63, dtype=np.float32)]).astype(np.float32)
    w = torch.from_numpy(grid.decode(np.resize(k, (64, 128)), scales))      # > 256 distinct floats
    stored = _save(tmp_path, {"w": w})["w"]
    assert stored["encoding"].startswith("grid") and stored["bytes"] < w.numel() * 5 / 8 + 6 * 64 + 200, stored


def test_groups_of_different_widths_get_a_stream_each(tmp_path):
    # Rows at 2, 4 and 8 bits (as embedding_bits leaves a table): one histogram over all
    # codes would pay for the mixture; a stream per width does not.
    from netshrink.functional.row_bits import quantize_rows

    g = torch.Generator().manual_seed(0)
    w = torch.randn(300, 64, generator=g)
    bits = torch.tensor([2] * 200 + [4] * 80 + [8] * 20)
    q = quantize_rows(w, bits, symmetric=False, calibration="minmax")
    row = _save(tmp_path, {"w": q})["w"]            # _save checks the round trip bit for bit
    # the label lists each coder's widths ("w2,4,8:ans", or "w2,8:ans/w4:huffman"): every width has its stream
    widths = set()
    for part in re.findall(r"w([\d,-]+):", row["encoding"]):
        for r in part.split(","):
            lo, _, hi = r.partition("-")
            widths |= set(range(int(lo), int(hi or lo) + 1))
    assert row["encoding"].startswith("grid") and widths == {2, 4, 8}, row
    assert row["bytes"] < (200 * 2 + 80 * 4 + 20 * 8) * 64 / 8 + 6 * 300 + 300, row
