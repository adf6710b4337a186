"""Static hypernetwork against the paper's per-channel formula; weight tying shares one
kernel and makes the file smaller."""
import pytest
import torch

import netshrink as ns
from netshrink.reparams.hyper import HyperNetwork
from netshrink.runtime.generated import TiedConv2d


def test_tiles_follow_ha_et_al_two_layer_generator():
    torch.manual_seed(0)
    h = HyperNetwork(n_tiles=3, tile=4, kernel=3, z_dim=5, hidden=6)
    with torch.no_grad():
        for p in h.parameters():
            p.normal_()
        tiles = h.tiles()
        for n in range(3):
            for i in range(4):  # input channel i: a_i = W_i z + B_i; K_i = W_out a_i + B_out
                a = h.w_in[i] @ h.z[n] + h.b_in[i]
                k = (h.w_out @ a + h.b_out).reshape(4, 3, 3)
                assert torch.allclose(tiles[n, :, i], k, atol=1e-5)
        kern = h.layer_kernel(start=1, grid=(1, 2))  # (4, 8, 3, 3): tiles 1 and 2 side by side
        assert torch.equal(kern[:, :4], tiles[1]) and torch.equal(kern[:, 4:], tiles[2])


def test_hypernetwork_fits_trained_kernels_and_validates():
    torch.manual_seed(0)
    model = ns.zoo.models.create("resnet_small", widths=[4, 8, 8], blocks=[1, 1, 1])
    w = model.stages[0][0].conv2.weight.detach().clone()
    m = ns.create("hypernetwork", tile=4, z_dim=16, hidden=16, fit_steps=150)
    ns.compress_(model, ns.Recipe.of(m), data=None)
    with torch.no_grad():
        got = model.stages[0][0].conv2.kernel()
    # The fitted generator reproduces the layer far better than a zero kernel would.
    assert float(((got - w) ** 2).mean()) < 0.1 * float((w ** 2).mean())
    with pytest.raises(ns.RecipeError, match="z_dim"):
        ns.create("hypernetwork", z_dim=0)


def test_tie_shares_one_kernel_and_shrinks_the_file(tmp_path):
    torch.manual_seed(0)
    model = ns.zoo.models.create("resnet_small", widths=[4, 8, 8], blocks=[3, 1, 1])
    convs = [model.stages[0][b].conv1.weight.detach() for b in range(3)] + \
            [model.stages[0][b].conv2.weight.detach() for b in range(3)]
    mean = torch.stack(convs).mean(0)
    ns.save(model, tmp_path / "a.nshr")
    ns.compress_(model, ns.Recipe.of(ns.create("tie", targets=["re:stages\\.0\\..*conv.\\.weight"])), data=None)
    assert isinstance(model.stages[0][2].conv2, TiedConv2d)
    assert torch.allclose(model.stages[0][0].conv1.weight, mean)
    assert model.stages[0][1].conv1.kernel() is model.stages[0][0].conv1.weight
    size = ns.save(model, tmp_path / "b.nshr")
    assert size < (tmp_path / "a.nshr").stat().st_size - 5 * 4 * 4 * 9 * 3  # 5 of 6 kernels gone
