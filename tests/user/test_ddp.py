"""torchrun, 2 CPU processes (gloo): DDP fine-tuning of a pruned model ends with identical
weights on both ranks, equal to the single-process run of the same recipe, and one artifact."""
import os
import subprocess
import sys
from pathlib import Path

import torch

import netshrink as ns
from tests.user.ddp_common import RECIPE, data, model

ROOT = Path(__file__).resolve().parents[2]


def test_two_processes_match_each_other_and_one_process(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "NETSHRINK_PROGRESS": "0"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(ROOT / "tests/user/ddp_worker.py"), str(tmp_path)]
    res = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "world0.txt").read_text() == "2" == (tmp_path / "world1.txt").read_text()
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert all(torch.equal(r0[k], r1[k]) for k in r0)

    torch.manual_seed(0)
    single = ns.compress_(model(), RECIPE, data=data(), progress=False)   # the documented equivalent
    for k, v in single.state_dict().items():
        torch.testing.assert_close(r0[k], v, rtol=1e-5, atol=1e-6)
    assert float((r0["0.weight"] - model().state_dict()["0.weight"]).abs().max()) > 1e-3   # it trained

    assert sorted(p.name for p in tmp_path.glob("*.nshr")) == ["model.nshr"]
    loaded = ns.load(tmp_path / "model.nshr", base=model())
    x = data()[:8][0]
    with torch.no_grad():
        assert torch.equal(loaded(x), single(x))
