"""channel_prune with importance "obs" and reconstruct (ZipLM-style): the saliency and the
re-fit against least squares computed by hand on a toy MLP, lower output error than
pruning without the re-fit on a tiny BERT, padding left out of the Hessians, a bit-exact
save / load of the result, and a clear error without calibration data."""
import copy

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import netshrink as ns
from netshrink.core.context import PrepareContext
from netshrink.structure import DependencyGraph, analyze, remove_components
from netshrink.structure.importance import scores
from netshrink.structure.reconstruct import consumer_stats, greedy, obs_scores, refit
from netshrink.structure.select import plan
from tests.tiny_bert import outlier_bert

torch.set_num_threads(1)


def _toy():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2)).eval()
    with torch.no_grad():
        m[0].bias.fill_(0.5)   # every hidden neuron active on some inputs: H has no dead channel
    return m


def _toy_data(n=40):
    g = torch.Generator().manual_seed(1)
    return TensorDataset(torch.randn(n, 2, generator=g), torch.zeros(n, dtype=torch.long))


def _lstsq_without(a, y, j):
    """Least squares of y on the hidden activations a without column j, plus a ones column:
    (weight (2, 2), bias (2,), residual sum of squares)."""
    keep = [i for i in range(a.shape[1]) if i != j]
    x = torch.cat([a[:, keep], torch.ones(a.shape[0], 1, dtype=a.dtype)], 1)
    sol = torch.linalg.lstsq(x, y).solution                  # (3, 2)
    return sol[:-1].t(), sol[-1], float(((x @ sol - y) ** 2).sum())


def test_toy_saliency_and_refit_are_the_least_squares_solution():
    m, data = _toy(), _toy_data()
    x = data.tensors[0].double()
    with torch.no_grad():
        a = torch.relu(x @ m[0].weight.double().t() + m[0].bias.double())
        y = a @ m[2].weight.double().t() + m[2].bias.double()   # the original output, exactly linear in [a, 1]
    assert bool((a != 0).any(0).all())
    fits = [_lstsq_without(a, y, j) for j in range(3)]
    # undamped OBS saliency of neuron j = the squared output error the best re-fit without it leaves
    g = analyze(m, torch.zeros(2, 2))
    s = obs_scores(m, g, consumer_stats(m, g, data, batches=1), damp=0.0)["0"]
    torch.testing.assert_close(s.double(), torch.tensor([f[2] for f in fits], dtype=torch.float64),
                               rtol=1e-4, atol=1e-8)
    ref = copy.deepcopy(m)
    method = ns.create("channel_prune", sparsity=1 / 3, importance="obs", reconstruct=True, damp=0.0, batches=1)
    method.prepare(m, PrepareContext(data=data))
    j = int(torch.argmin(s))
    keep = [i for i in range(3) if i != j]
    assert m[0].out_features == 2 and method.refitted_ == ["2"]
    torch.testing.assert_close(m[0].weight, ref[0].weight[keep], rtol=0, atol=0)   # producers: only sliced
    w, b, _ = fits[j]
    torch.testing.assert_close(m[2].weight.double(), w, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(m[2].bias.double(), b, rtol=1e-4, atol=1e-5)


def _batches(n, seed, pad=False):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        mask = torch.ones(8, 16, dtype=torch.long)
        if pad:
            mask[:, 12:] = 0
        out.append({"input_ids": torch.randint(4, 99, (8, 16), generator=g), "attention_mask": mask})
    return out


def _rel_error(m, ref, data):
    with torch.no_grad():
        a = torch.cat([m(**b).last_hidden_state for b in data])
        r = torch.cat([ref(**b).last_hidden_state for b in data])
    return float((a - r).norm() / r.norm())


@pytest.fixture(scope="module")
def bert():
    """(model, its dependency graph): analysed once, the analysis is most of a prune's time here."""
    m = outlier_bert(32, 64)
    return m, analyze(m, _batches(1, seed=1)[0])


def _kind(graph, kind):
    return DependencyGraph([g for g in graph.groups if g.kind == kind], graph.producer_dims)


def _pruned(ref, graph, criterion, calib, reconstruct=False):
    """What channel_prune(sparsity=0.25, importance=criterion, reconstruct=...) does, on a
    graph analysed once (the toy test above runs the method itself)."""
    m = copy.deepcopy(ref)
    if not reconstruct:
        p = plan(graph, scores(m, graph, criterion, data=calib, batches=len(calib)), 0.25, scope="layer")
    else:
        stats = consumer_stats(m, graph, calib, batches=len(calib))
        p = greedy(m, graph, stats, plan(graph, obs_scores(m, graph, stats), 0.25, scope="layer"), steps=4)
        assert len(refit(m, graph, stats, p)) == 2   # one consumer Linear per layer
    remove_components(m, graph, p)
    return m


def test_bert_ffn_obs_with_reconstruct_beats_pruning_without_and_saves_bit_exact(bert, tmp_path):
    (ref, graph), calib, held_out = bert, _batches(4, seed=1), _batches(2, seed=3)
    g = _kind(graph, "ffn")
    ours = _pruned(ref, g, "obs", calib, reconstruct=True)
    assert ours.encoder.layer[0].intermediate.dense.out_features == 48
    assert ours.encoder.layer[1].output.dense.in_features == 48
    e_ours = _rel_error(ours, ref, held_out)
    e_l1 = _rel_error(_pruned(ref, g, "l1", calib), ref, held_out)
    e_obs = _rel_error(_pruned(ref, g, "obs", calib), ref, held_out)
    assert e_ours < 0.5 * e_l1 and e_ours < 0.5 * e_obs, (e_ours, e_l1, e_obs)
    p = tmp_path / "m.nshr"
    ns.save(ours, p)
    back = ns.load(p)
    with torch.no_grad():
        assert torch.equal(ours(**held_out[0]).last_hidden_state, back(**held_out[0]).last_hidden_state)


def test_bert_heads_obs_with_reconstruct_beats_l1(bert):
    """A head is 8 columns of attention.output.dense removed together: (H^-1)_MM is 8 x 8."""
    (ref, graph), calib, held_out = bert, _batches(4, seed=1), _batches(2, seed=3)
    g = _kind(graph, "heads")
    ours = _pruned(ref, g, "obs", calib, reconstruct=True)
    assert ours.encoder.layer[0].attention.self.num_attention_heads == 3
    e_ours = _rel_error(ours, ref, held_out)
    e_l1 = _rel_error(_pruned(ref, g, "l1", calib), ref, held_out)
    assert e_ours < 0.5 * e_l1, (e_ours, e_l1)


def test_padding_tokens_are_left_out_of_the_consumer_hessians(bert):
    m, g = bert[0], _kind(bert[1], "ffn")
    stats = consumer_stats(m, g, _batches(2, seed=1, pad=True), batches=2)
    st = stats["encoder.layer.0.output.dense"]
    assert st.ones and st.n == 2 * 8 * 12 and st.xtx.shape == (65, 65)
    assert float(st.xtx[-1, -1]) == st.n          # the ones channel: 1 * 1 per real token


def test_reconstruct_without_calibration_data_is_a_clear_error():
    m = _toy()
    for kw in ({"reconstruct": True}, {"importance": "obs"}):
        with pytest.raises(ns.RecipeError, match="needs calibration data"):
            ns.create("channel_prune", sparsity=0.3, **kw).prepare(
                m, PrepareContext(data=None, extras={"example": torch.zeros(2, 2)}))
    for field, value in (("damp", -0.1), ("obs_steps", 0)):
        with pytest.raises(ns.RecipeError, match=field):
            ns.create("channel_prune", **{field: value})
