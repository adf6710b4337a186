"""HessianAccumulator's row sample (the rows the output-error searches of awq /
smoothquant / gptq's static ranges are measured on) is uniform over every batch seen."""
import torch

from netshrink.functional.hessian import HessianAccumulator


def test_row_sample_is_uniform_over_all_batches_and_keeps_real_rows():
    acc = HessianAccumulator(3, hessian=False, keep_rows=200, seed=0)
    for b in range(40):                      # 40 batches of 100 rows; column 0 holds the batch index
        x = torch.full((100, 3), float(b))
        x[:, 1] = torch.arange(100).float()
        acc.add(x)
    rows = acc.rows
    assert rows.shape == (200, 3) and acc.n == 4000
    batch = rows[:, 0]
    # Each batch holds 1/40 of the rows: the first half of the stream ~ half of the sample
    # (binomial 200 x 0.5: 3.5 sigma is +-25). Re-drawing from sample + batch kept ~ none of them.
    assert 75 <= int((batch < 20).sum()) <= 125
    assert int((batch < 10).sum()) >= 25
    # Every kept row is a row that was seen, and none twice.
    assert len({(int(r[0]), int(r[1])) for r in rows}) == 200


def test_row_sample_keeps_everything_below_its_size():
    acc = HessianAccumulator(2, hessian=False, keep_rows=50)
    xs = [torch.randn(7, 2) for _ in range(5)]
    for x in xs:
        acc.add(x)
    assert torch.equal(acc.rows, torch.cat(xs))
