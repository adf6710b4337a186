"""The batch adapter: every data shape a user brings becomes the same model calls."""
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from netshrink.core.batches import Batches, as_batches, batch_len, output_tensor, to_device
from netshrink.errors import NetshrinkError


def _ds(n=10):
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 3, generator=g), torch.arange(n))


class Stream(IterableDataset):
    def __iter__(self):
        for i in range(5):
            yield torch.full((3,), float(i)), torch.tensor(i)


def test_dataset_is_batched_and_shuffled_by_seed():
    b = as_batches(_ds())
    assert [batch_len(x) for x in b.iter(4)] == [4, 4, 2] and b.num_batches(4) == 3
    order = lambda s: torch.cat([y for _, y in b.iter(4, shuffle=True, seed=s)]).tolist()
    assert order(1) == order(1) and order(1) != order(2) and sorted(order(1)) == list(range(10))


def test_dataloader_keeps_its_own_collate_and_dict_batches_are_kwargs():
    def collate(samples):
        return {"x": torch.stack([a for a, _ in samples]), "labels": torch.stack([c for _, c in samples])}
    b = as_batches(DataLoader(_ds(), batch_size=3, collate_fn=collate))
    inputs, y = b.split(b.first())
    assert list(inputs.kwargs) == ["x"] and y.tolist() == [0, 1, 2] and b.num_batches(64) == 4

    class DictNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(x)
    assert b.call(DictNet(), b.first()).shape == (3, 2)


def test_tuple_rules_iterable_dataset_and_forward():
    two = [(torch.randn(4, 3), torch.randn(4, 3), torch.zeros(4))]
    inputs, y = as_batches(two).split(two[0])
    assert len(inputs.args) == 2 and y.shape == (4,)
    inputs, y = as_batches(two, n_inputs=3).split(two[0])
    assert len(inputs.args) == 3 and y is None
    assert [batch_len(x) for x in as_batches(Stream()).iter(2)] == [2, 2, 1]
    custom = as_batches([{"a": torch.ones(2, 3)}], forward=lambda m, batch: m(batch["a"] * 2))
    assert torch.equal(custom.call(nn.Identity(), custom.first()), torch.full((2, 3), 2.0))


def test_floating_inputs_follow_the_model_dtype_and_ids_keep_theirs():
    batch = {"x": torch.randn(2, 3), "ids": torch.ones(2, dtype=torch.long)}
    out = to_device(batch, "cpu", torch.float64)
    assert out["x"].dtype == torch.float64 and out["ids"].dtype == torch.long
    assert as_batches(_ds()).call(nn.Linear(3, 2).double(), next(iter(_ds()))[0][None]).dtype == torch.float64


def test_one_shot_generator_and_odd_batches_are_refused_clearly():
    with pytest.raises(NetshrinkError, match="one-shot"):
        as_batches(x for x in [torch.ones(1)]).first()
    with pytest.raises(NetshrinkError, match="forward="):
        Batches([object()]).split(object())


def test_output_tensor_reads_hf_style_outputs():
    assert output_tensor({"last_hidden_state": torch.ones(1)}).shape == (1,)
    assert output_tensor((torch.zeros(2), torch.ones(1))).shape == (2,)
