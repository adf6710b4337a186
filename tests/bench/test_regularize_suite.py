"""The regularize suite's report: rendered from recorded rows only (no training)."""
import torch

from netshrink_bench.results import BenchContext
from netshrink_bench.suites import regularize as R
from netshrink.methods.lassonet import PathPoint


def _rows():
    vd = [dict(experiment="vd", model=m, data="d", fold=f, baseline_acc=0.97, acc=0.965, sparsity=0.99,
               nonzero_ratio=100.0, storage_ratio=50.0) for m in ("lenet5", "lstm") for f in range(2)]
    path = [[5.0, 700, 0.98, 10], [5.1, 60, 0.9, 4], [5.2, 0, 0.1, 3]]
    ln = [dict(experiment="lassonet", fold=0, baseline_acc=0.94, acc=0.85, variance_acc=0.80, path_points=3,
               path_epochs=17, path_last_features=0, lam_first=5.0, lam_last=5.2, path=path)]
    return vd + ln


def test_report_renders_lassonet_rows_and_plots_every_path(tmp_path):
    torch.set_num_threads(1)
    ctx = BenchContext(suite="regularize", quick=True, out=str(tmp_path))
    ctx.rows = _rows()
    none = torch.zeros(0)
    paths = {0: [PathPoint(p[0], p[1], p[2], none, none) for p in ctx.rows[-1]["path"]]}
    R._report(ctx, paths)
    md = (ctx.dir / "regularize.md").read_text()
    assert "| LassoNet, 50 pixels | 1 | 94.00 ± 0.00 | 85.00 ± 0.00 | 9.00 ± 0.00 | 80.00 ± 0.00 | 5.00 ± 0.00 | 3 ± 0 | 17 ± 0 | 5 - 5.2 | 0 ± 0 |" in md
    assert "| lstm (seqmnist) | 2 |" in md
    assert "validation split" in md and "never on a test split" in md
    assert (ctx.dir / "regularize_lassonet_path.png").stat().st_size > 0


def test_retrain_uses_only_the_kept_pixels():
    torch.manual_seed(0)
    keep = torch.zeros(784, dtype=torch.bool)
    keep[torch.randperm(784)[:50]] = True
    data = torch.utils.data.TensorDataset(torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,)))
    old = R.BASELINE_CONFIGS["lenet300_100"]
    R.BASELINE_CONFIGS["lenet300_100"] = old.replace(epochs=1)
    try:
        net = R._retrain(keep, data, seed=0)
    finally:
        R.BASELINE_CONFIGS["lenet300_100"] = old
    w = net.fc1.weight.detach()
    assert (w[:, ~keep] == 0).all() and (w[:, keep] != 0).any(1).all()
