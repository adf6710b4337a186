"""A user's own models (tests/user/models.py) through the API: compress, save, load against
the user's base, identical outputs; regression reports MSE; unlabelled BERT distils."""
import copy

import pytest
import torch

import netshrink as ns
from netshrink.core.batches import as_batches
from netshrink.train.loop import predict
from tests.user import models as M



def _trained(model, data, epochs=3, lr=3e-3, **kw):
    ns.fit(model, data, ns.TrainConfig(epochs=epochs, lr=lr, batch_size=32), progress=False, **kw)
    return model


def _round_trip(model, factory, data, tmp_path, **rules):
    """save -> load(base=factory()) -> outputs identical on a batch of `data`."""
    path = tmp_path / "m.nshr"
    ns.save(model, path)
    loaded = ns.load(path, base=factory())
    b = as_batches(data, **rules)
    batch = b.first()
    with torch.no_grad():
        a, c = b.call(model.eval(), batch), b.call(loaded, batch)
    from netshrink.core.batches import output_tensor
    assert torch.equal(output_tensor(a), output_tensor(c))
    return loaded


def _recipe(*methods, epochs=2, lr=1e-3, **ft):
    return ns.Recipe.of(*methods, finetune=ns.TrainConfig(epochs=epochs, lr=lr, batch_size=32, **ft))


def test_cnn_on_digits_magnitude_finetune_and_channel_prune(tmp_path):
    train, test = M.digits_train(), M.digits_test()
    model = _trained(M.cnn(), train, epochs=4)
    ref = copy.deepcopy(model)
    ns.compress_(model, _recipe(ns.create("magnitude", sparsity=0.7, runtime="dense"), ns.create("channel_prune", sparsity=0.25)),
                 data=train, progress=False)
    r = ns.measure(model, test, reference=ref, latency=False, size=False)
    assert r.metric == "accuracy" and r.accuracy > r.reference_accuracy - 0.15 and model.conv2.out_channels == 12
    _round_trip(model, M.cnn, test, tmp_path)


def test_regression_reports_mse_and_finetuning_lowers_it(tmp_path):
    train, test = M.diabetes_train(), M.diabetes_test()
    base = _trained(M.regressor(), train, epochs=30, lr=3e-3)
    mse = lambda m: ns.measure(m, test, latency=False, size=False)
    r0 = mse(base)
    assert r0.metric == "mse" and r0.accuracy is None and "mse" in str(r0)
    pruned = ns.compress_(copy.deepcopy(base), _recipe(ns.create("magnitude", sparsity=0.9), epochs=0),
                          data=train, progress=False)
    tuned = ns.compress_(copy.deepcopy(base), _recipe(ns.create("magnitude", sparsity=0.9), epochs=15, lr=3e-3),
                         data=train, progress=False)
    assert mse(tuned).metric_value < mse(pruned).metric_value
    _round_trip(tuned, M.regressor, test, tmp_path)


def test_lstm_classifier_quantize_and_low_rank(tmp_path):
    data = M.sequences()
    model = _trained(M.lstm(), data, epochs=3)
    ns.compress_(model, _recipe(ns.create("low_rank", ratio=0.5, targets=["head.weight"]),
                                ns.create("quantize", bits=8), epochs=1), data=data, progress=False)
    _round_trip(model, M.lstm, data, tmp_path)


def test_dict_forward_model_from_a_dataloader_kmeans(tmp_path):
    loader = M.records_loader()
    model = _trained(M.dictnet(), loader, epochs=3)
    ref = copy.deepcopy(model)
    ns.compress_(model, _recipe(ns.create("kmeans", bits=3), epochs=1), data=loader, progress=False)
    r = ns.measure(model, loader, reference=ref, latency=False, size=False)
    assert r.metric == "accuracy" and r.flops_dense > 0
    _round_trip(model, M.dictnet, loader, tmp_path)


def test_two_tensor_model_low_rank_and_distill(tmp_path):
    data = M.pairs()
    model = _trained(M.two_tower(), data, epochs=3)
    ns.compress_(model, _recipe(ns.create("distill"), ns.create("low_rank", ratio=0.5, targets=["a.weight"]),
                                epochs=1), data=data, progress=False)
    assert model.a.__class__.__name__ != "Linear" or model.a.weight.shape == (32, 6)
    _round_trip(model, M.two_tower, data, tmp_path)


def test_bert_without_labels_distils_toward_the_original(tmp_path):
    pytest.importorskip("transformers")
    batches = M.token_batches()
    model = M.bert()
    ref = copy.deepcopy(model)
    h = {}
    orig_fit = ns.fit

    def spy(*a, **kw):
        out = orig_fit(*a, **kw)
        h.update(out)
        return out
    import netshrink.pipeline.compress as C
    C.fit, saved = spy, C.fit
    try:
        ns.compress_(model, _recipe(ns.create("magnitude", sparsity=0.5, targets=["re:.*encoder.*dense.weight"]),
                                    epochs=1, lr=1e-4), data=batches, progress=False)
    finally:
        C.fit = saved
    assert h["loss_name"] == "distill_cosine"
    r = ns.measure(model, batches, reference=ref, latency=False, size=False)
    assert r.metric == "fidelity_cosine" and 0.5 < r.metric_value <= 1.0 and r.accuracy is None
    loaded = ns.load(_save(model, tmp_path))
    with torch.no_grad():
        a = model(**batches[0]).last_hidden_state
        b = loaded(**batches[0]).last_hidden_state
    assert torch.equal(a, b)


def _save(model, tmp_path):
    p = tmp_path / "bert.nshr"
    ns.save(model, p)
    return p


def test_bad_losses_stop_with_a_clear_message():
    from netshrink.errors import NetshrinkError, RecipeError
    train = M.diabetes_train()
    with pytest.raises(NetshrinkError, match="integer class targets"):
        ns.fit(M.regressor(), train, ns.TrainConfig(epochs=1, loss="cross_entropy"), progress=False)
    with pytest.raises(NetshrinkError, match="exactly 0"):
        ns.fit(M.regressor(), train, ns.TrainConfig(epochs=1), loss_fn=lambda out, y: out.sum() * 0,
               progress=False)
    with pytest.raises(NetshrinkError, match="nan"):
        ns.fit(M.regressor(), train, ns.TrainConfig(epochs=1), loss_fn=lambda out, y: out.sum() * float("nan"),
               progress=False)
    for bad in ("inf", "nan"):
        with pytest.raises(RecipeError, match="lr"):
            ns.Recipe.from_toml(f"[finetune]\nlr = {bad}\n[[step]]\nmethod = 'magnitude'\n")
    with pytest.raises(RecipeError, match="loss"):
        ns.Recipe.from_toml("[finetune]\nloss = 'hinge'\n[[step]]\nmethod = 'magnitude'\n")


def test_float64_and_bf16_models_compress_or_name_what_is_unsupported(tmp_path):
    from netshrink.errors import NetshrinkError
    train = M.digits_train()
    for dtype in (torch.float64, torch.bfloat16):
        model = M.cnn().to(dtype)
        ns.compress_(model, _recipe(ns.create("magnitude", sparsity=0.5), ns.create("channel_prune", sparsity=0.25),
                                    epochs=1), data=train, progress=False)
        out = model(train[:4][0].to(dtype))
        assert out.dtype == dtype and torch.isfinite(out.float()).all() and model.conv2.out_channels == 12
        ns.save(model, tmp_path / "m.nshr", base=M.cnn())          # the base in float32, as its class builds it
        back = ns.load(tmp_path / "m.nshr", base=M.cnn())
        assert back.conv1.weight.dtype == dtype and torch.equal(back(train[:4][0].to(dtype)), out)
        with pytest.raises(NetshrinkError, match=f"kmeans does not support {dtype}"):
            ns.compress_(M.cnn().to(dtype), _recipe(ns.create("kmeans", bits=4), epochs=0), data=train,
                         progress=False)


def test_mixed_precision_finetuning_keeps_fp32_weights():
    train = M.digits_train()
    model = M.cnn()
    h = ns.fit(model, train, ns.TrainConfig(epochs=1, precision="bf16-mixed"), progress=False)
    assert model.conv1.weight.dtype == torch.float32 and h["loss"] < 2.5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_finetuning_runs_where_the_model_is_on_cuda():
    train = M.digits_train()
    model = M.cnn().cuda()
    ns.compress_(model, _recipe(ns.create("magnitude", sparsity=0.5), epochs=1), data=train, progress=False)
    assert model.conv1.weight.is_cuda
    assert predict(model, M.digits_test())[0].is_cuda
