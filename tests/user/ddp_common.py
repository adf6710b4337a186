"""The model, data and recipe of the torchrun test, shared by the worker and the
single-process run it is compared with."""
import torch
from torch import nn
from torch.utils.data import TensorDataset

import netshrink as ns

# batch_size is the global batch: under torchrun each of P processes takes 1/P of it,
# so the single-process equivalent is this same recipe run in one process.
RECIPE = ns.Recipe.of(ns.create("magnitude", sparsity=0.6, runtime="dense"),
                      finetune=ns.TrainConfig(epochs=2, lr=1e-2, batch_size=32, optimizer="sgd", momentum=0.9))


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))


def data():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(200, 8, generator=g)          # 200 = 6 full batches of 32 and one of 8
    return TensorDataset(x, (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long())
