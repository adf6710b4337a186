"""A user's own models and data, as they would write them (no zoo, no registration).

Importable by name (`--model tests.user.models:cnn`, `--data tests.user.models:digits_train`)
for the CLI tests. Everything is tiny and seeded.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset


def _digits():
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    return x, torch.tensor(d.target)


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16 * 2 * 2, 10)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


def cnn() -> CNN:
    torch.manual_seed(0)
    return CNN()


def digits_train():
    x, y = _digits()
    return TensorDataset(x[:600], y[:600])


def digits_test():
    x, y = _digits()
    return TensorDataset(x[1500:], y[1500:])


# -- regression: an MLP on scikit-learn's diabetes data --------------------------------
def _diabetes():
    from sklearn.datasets import load_diabetes
    d = load_diabetes()
    x = torch.tensor(d.data, dtype=torch.float32)
    x = (x - x.mean(0)) / x.std(0)
    y = torch.tensor(d.target, dtype=torch.float32)
    return x, (y - y.mean()) / y.std()          # targets of shape (N,): a float regression


def regressor() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))


def diabetes_train():
    x, y = _diabetes()
    return TensorDataset(x[:330], y[:330])


def diabetes_test():
    x, y = _diabetes()
    return TensorDataset(x[330:], y[330:])


# -- an LSTM classifier on sequences ----------------------------------------------------
class LSTMClassifier(nn.Module):
    def __init__(self, features=4, hidden=16, classes=3):
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x):                 # (B, T, F) -> (B, classes)
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


def lstm() -> LSTMClassifier:
    torch.manual_seed(0)
    return LSTMClassifier()


def sequences(n=192):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 6, 4, generator=g)
    y = (x[:, :, 0].sum(1) > 0).long() + (x[:, :, 1].sum(1) > 1).long()
    return TensorDataset(x, y)


# -- a model whose forward takes a dict, read from a DataLoader with its own collate ---
class DictNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(8, 32)
        self.emb = nn.Embedding(5, 32)
        self.out = nn.Linear(32, 4)

    def forward(self, features, category):
        return self.out(torch.relu(self.dense(features) + self.emb(category)))


def dictnet() -> DictNet:
    torch.manual_seed(0)
    return DictNet()


class Records(Dataset):
    """Samples as dicts, as a user's pipeline yields them."""

    def __init__(self, n=160):
        g = torch.Generator().manual_seed(2)
        self.f = torch.randn(n, 8, generator=g)
        self.c = torch.randint(0, 5, (n,), generator=g)
        self.y = ((self.f[:, 0] > 0).long() * 2 + (self.c % 2))

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"features": self.f[i], "category": self.c[i], "label": self.y[i]}


def records_loader():
    def collate(samples):   # the user's own collate: a dict of stacked tensors
        return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}
    return DataLoader(Records(), batch_size=32, shuffle=False, collate_fn=collate)


# -- a model taking two tensors -----------------------------------------------------------
class TwoTower(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 32)
        self.b = nn.Linear(5, 32)
        self.head = nn.Linear(32, 3)

    def forward(self, left, right):
        return self.head(torch.relu(self.a(left)) * torch.relu(self.b(right)))


def two_tower() -> TwoTower:
    torch.manual_seed(0)
    return TwoTower()


def pairs(n=160):
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(n, 6, generator=g), torch.randn(n, 5, generator=g)
    y = ((a[:, 0] * b[:, 0]) > 0).long() + (a[:, 1] > 1).long()
    return TensorDataset(a, b, y)           # (left, right, target): n_inputs = 2 (the default rule)


# -- a transformers BERT from a small config, dict batches and no labels --------------
def bert():
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=32)
    return BertModel(cfg).eval()


def token_batches(n_batches=6, batch=8, length=12):
    g = torch.Generator().manual_seed(4)
    return [{"input_ids": torch.randint(1, 64, (batch, length), generator=g),
             "attention_mask": torch.ones(batch, length, dtype=torch.long)} for _ in range(n_batches)]


def digits():
    """(train, test) for `--data tests.user.models:digits`."""
    return digits_train(), digits_test()


def diabetes():
    return diabetes_train(), diabetes_test()


def my_mae(outputs, targets):
    """A user's metric for `--metric tests.user.models:my_mae`."""
    return float((outputs.reshape(-1) - targets.reshape(-1)).abs().mean())


def sequence_data():
    """(train, test) for `--data tests.user.models:sequence_data`."""
    return sequences(), sequences(64)


def records_data():
    return records_loader(), records_loader()


def pair_data():
    return pairs(), pairs(64)
