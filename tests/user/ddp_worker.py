"""Run by tests/user/test_ddp.py under `torchrun --nproc-per-node 2`: every process
compresses the same pruned MLP with DDP fine-tuning (gloo, CPU); each writes its final
weights, and only rank 0 writes the artifact.

    torchrun --standalone --nproc-per-node 2 tests/user/ddp_worker.py OUT_DIR
"""
import sys
from pathlib import Path

import torch

import netshrink as ns
from netshrink.train.engine import is_main_process, world
from tests.user.ddp_common import RECIPE, data, model


def main(out: Path) -> None:
    torch.set_num_threads(1)
    m = model()
    ns.compress_(m, RECIPE, data=data(), progress=False)
    rank, size = world()
    torch.save({k: v.detach().clone() for k, v in m.state_dict().items()}, out / f"rank{rank}.pt")
    if is_main_process():
        ns.save(m, out / "model.nshr", base=model())
    (out / f"world{rank}.txt").write_text(str(size))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
