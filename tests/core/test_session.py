"""A user's own training loop through recipe.start(model, optimizer)."""
import torch
import torch.nn.functional as F

import netshrink as ns
from netshrink.core.reparam import find
from tests.helpers import tiny_mlp


def test_own_loop_keeps_pruned_weights_zero_and_finishes_plain(digits):
    train, _ = digits
    model = tiny_mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    recipe = ns.Recipe.of(ns.create("magnitude", sparsity=0.8, runtime="dense"))
    session = recipe.start(model, opt)
    loader = torch.utils.data.DataLoader(train, batch_size=64)
    for x, y in loader:
        loss = F.cross_entropy(model(x), y) + session.loss(x=x, y=y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        session.after_step()
    session.finish()
    assert not list(find(model))  # baked: no parametrisation left
    for site in ns.select(model):
        w = site.tensor
        assert abs(float((w == 0).float().mean()) - 0.8) < 0.01
