"""The zoo's models, written here (no torchvision), registered by name in the
model-factory registry (`netshrink.core.factories`) when this module is imported.

`create`, `register`, `names` and `factory_of` are that registry's functions,
re-exported here: `ns.zoo.models.create("lstm", hidden_size=64)`.
"""
from __future__ import annotations

import math
import torch
import torch.nn.functional as F
from torch import nn

from netshrink.core.factories import FACTORY_ATTR, create, factory_of, names, register
from netshrink.errors import NetshrinkError
from netshrink.zoo.data import input_shape

__all__ = ["FACTORY_ATTR", "ZOO", "create", "factory_of", "kwargs_for_data", "names", "register"]


class LeNet300100(nn.Module):
    """LeNet-300-100: MLP 784-300-100-10 (266,610 parameters)."""

    def __init__(self, in_features: int = 784, num_classes: int = 10):
        super().__init__()
        self.fc1 = nn.Linear(in_features, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)

    def forward(self, x):
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class LeNet5(nn.Module):
    """LeNet-5, Caffe variant: conv 20 (5x5), pool, conv 50 (5x5), pool, FC 500, FC 10:
    431,080 parameters on 28x28 inputs. ReLU after each conv as in most reproductions."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int = 28):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        side = ((input_size - 4) // 2 - 4) // 2
        if side < 1:
            raise NetshrinkError(f"lenet5 needs inputs of at least 16x16, got {input_size}")
        self.fc1 = nn.Linear(50 * side * side, 500)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


class MLP(nn.Module):
    """A plain MLP (tabular data, or students): in → hidden... → classes."""

    def __init__(self, in_features: int = 784, hidden: list[int] | tuple[int, ...] = (256, 128), num_classes: int = 10):
        super().__init__()
        sizes = [in_features, *hidden]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = nn.Linear(sizes[-1], num_classes)

    def forward(self, x):
        x = torch.flatten(x, 1)
        for layer in self.hidden:
            x = F.relu(layer(x))
        return self.out(x)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNetSmall(nn.Module):
    """A CIFAR-style ResNet for 28x28 inputs: stem, 3 stages of basic blocks."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10,
                 widths: list[int] | tuple[int, ...] = (16, 32, 64), blocks: list[int] | tuple[int, ...] = (2, 2, 2)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())
        stages, cin = [], widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            layers = []
            for j in range(n):
                layers.append(BasicBlock(cin, w, 2 if (i > 0 and j == 0) else 1))
                cin = w
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.conv = nn.Conv2d(cin, growth, 3, 1, 1, bias=False)

    def forward(self, x):
        return torch.cat([x, self.conv(F.relu(self.bn(x)))], 1)


class Transition(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)


class DenseNetSmall(nn.Module):
    """A small DenseNet (concatenating dense blocks, compressing transitions)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, growth: int = 12,
                 blocks: list[int] | tuple[int, ...] = (4, 4, 4), init_channels: int = 24):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, init_channels, 3, 1, 1, bias=False)
        layers, c = [], init_channels
        for i, n in enumerate(blocks):
            for _ in range(n):
                layers.append(DenseLayer(c, growth))
                c += growth
            if i < len(blocks) - 1:
                layers.append(Transition(c, c // 2))
                c //= 2
        self.features = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        x = F.relu(self.bn(self.features(self.stem(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class RNNClassifier(nn.Module):
    """LSTM / GRU over a sequence (N, T, F), classifying from the last hidden state.
    A (N, T) input is read as T steps of one feature (mnist1d); an image (N, C, H, W)
    row by row."""

    def __init__(self, cell: str = "lstm", input_size: int = 28, hidden_size: int = 128, num_layers: int = 2,
                 num_classes: int = 10, bidirectional: bool = False):
        super().__init__()
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}.get(cell)
        if rnn is None:
            raise NetshrinkError(f"unknown cell {cell!r}; valid: lstm, gru")
        self.rnn = rnn(input_size, hidden_size, num_layers, batch_first=True, bidirectional=bidirectional)
        self.fc = nn.Linear(hidden_size * (2 if bidirectional else 1), num_classes)

    def forward(self, x):
        if x.dim() == 2:
            x = x.unsqueeze(-1)
        elif x.dim() > 3:  # images (N, C, H, W): rows as steps
            x = x.reshape(x.shape[0], -1, x.shape[-1])
        out, _ = self.rnn(x)
        return self.fc(out[:, -1])


class TransformerClassifier(nn.Module):
    """A small Transformer encoder over a sequence (N, T, F) (rows of an image as tokens,
    as RNNClassifier reads them): linear token embedding + learned positions,
    nn.TransformerEncoder (post-norm, batch_first), mean over tokens, LayerNorm, linear head."""

    def __init__(self, input_size: int = 28, d_model: int = 64, num_heads: int = 4, dim_feedforward: int = 128,
                 num_layers: int = 2, max_len: int = 64, num_classes: int = 10, dropout: float = 0.1):
        super().__init__()
        self.embed = nn.Linear(input_size, d_model)
        self.pos = nn.Parameter(0.02 * torch.randn(1, max_len, d_model))
        layer = nn.TransformerEncoderLayer(d_model, num_heads, dim_feedforward, dropout=dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.fc = nn.Linear(d_model, num_classes)

    def forward(self, x):
        if x.dim() == 2:
            x = x.unsqueeze(-1)
        elif x.dim() > 3:  # images (N, C, H, W): rows as tokens
            x = x.reshape(x.shape[0], -1, x.shape[-1])
        h = self.encoder(self.embed(x) + self.pos[:, : x.shape[1]])
        return self.fc(self.norm(h.mean(1)))


ZOO = {   # name -> factory of the zoo's own models
    "lenet300_100": LeNet300100,
    "lenet5": LeNet5,
    "mlp": MLP,
    "resnet_small": ResNetSmall,
    "densenet_small": DenseNetSmall,
    "lstm": lambda **kw: RNNClassifier(cell="lstm", **kw),
    "gru": lambda **kw: RNNClassifier(cell="gru", **kw),
    "transformer_small": TransformerClassifier,
}
for _name, _factory in ZOO.items():
    register(_name, _factory)


def kwargs_for_data(model: str, data: str) -> dict:
    """The keyword arguments that fit a zoo model to a zoo dataset's input shape."""
    shape = input_shape(data)
    if model in ("lenet300_100", "mlp"):
        return {"in_features": math.prod(shape)}
    if model in ("lstm", "gru"):
        if len(shape) != 2 and data != "mnist1d":
            raise NetshrinkError(f"{model} needs sequence data (seqmnist, mnist1d), not {data}")
        return {"input_size": shape[1] if len(shape) == 2 else 1}
    if model == "transformer_small":
        return {"input_size": shape[-1] if len(shape) > 1 else 1}
    if model in ("lenet5", "resnet_small", "densenet_small"):
        if len(shape) != 3:
            raise NetshrinkError(f"{model} needs image data (mnist5k, digits), not {data}")
        return {"input_size": shape[1]} if model == "lenet5" else {}
    return {}
