"""Small shared pieces of the test suite: tiny models and data."""
import torch
from torch.utils.data import TensorDataset

from netshrink.zoo import models


def tiny_mlp(seed: int = 0):
    torch.manual_seed(seed)
    return models.create("mlp", in_features=64, hidden=[32, 16], num_classes=10)


def random_images(n: int = 64, shape=(1, 28, 28), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.rand(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g))


def same_outputs(a, b, x) -> bool:
    a.eval(), b.eval()
    with torch.no_grad():
        return torch.equal(a(x), b(x))
