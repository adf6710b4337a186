"""The trials behind the settings of `netshrink bench regularize` (benchmarks/regularize-tuning.jsonl).

Every trial uses fold 0 only, and only its training data: 90 % to train (baselines retrained
there with the zoo's recipe) and 10 % to validate; no test split is read. Run one trial:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/regularize_tuning.py 'vd("lenet5", "mnist5k", 30, ft=2, kl_weight=0.2)'
"""
import sys, time, copy, json, torch
torch.set_num_threads(1)
import netshrink as ns
from netshrink.zoo.baseline import BASELINE_CONFIGS
from netshrink.bench.suites import regularize as R

def split(train, fold=0):
    n_val = len(train) // 10
    return torch.utils.data.random_split(train, [len(train) - n_val, n_val], generator=torch.Generator().manual_seed(1000 + fold))

_cache = {}
def val_baseline(model, data, fold=0):
    key = (model, data, fold)
    p = f"/tmp/netshrink-tuning-base-{model}-{data}-{fold}.pt"
    train, _ = ns.zoo.data.load(data, fold)
    tr, val = split(train, fold)
    kw = ns.zoo.models.kwargs_for_data(model, data)
    torch.manual_seed(0)
    net = ns.zoo.models.create(model, **kw)
    import os
    if os.path.exists(p):
        net.load_state_dict(torch.load(p))
    else:
        t = time.time()
        ns.fit(net, tr, BASELINE_CONFIGS[model], progress=False)
        torch.save(net.state_dict(), p)
        print(f"baseline {model} {time.time()-t:.0f}s", flush=True)
    net.eval()
    return net, tr, val

def vd(model, data, epochs, ft=0, **params):
    net, tr, val = val_baseline(model, data)
    b = ns.evaluate(net, val)
    m = copy.deepcopy(net)
    meth = ns.create("variational_dropout", **params)
    t = time.time()
    _, meth = R._compress(m, meth, tr, epochs, ft_epochs=ft)   # the run's fitted copy
    s = R._sparsity(m)[0]
    a = ns.evaluate(m, val)
    print(json.dumps(dict(model=model, epochs=epochs, ft=ft, params=params, base=b, acc=a, drop=b - a, sparsity=s,
                          layers=meth.layer_sparsity_, secs=round(time.time() - t))), flush=True)


import netshrink.methods.lassonet as LN
_orig_ttc = LN.train_to_convergence
_t0 = [time.time()]
def _ttc(*a, **kw):
    r = _orig_ttc(*a, **kw)
    th = kw["theta"].detach()
    print(f"  [{time.time()-_t0[0]:.0f}s] lam {kw['lam']:.4g} ep {r[0]} loss {r[1]:.3f} acc {r[2]:.3f} n {int((th != 0).any(0).sum())}", flush=True)
    return r
LN.train_to_convergence = _ttc

def lasso(max_epochs=100, patience=10, bs=64, lr=1e-3, dense_epochs=100, dense_patience=10, mult=1.02, lam_start=None, idle=None, k=50, fold=0, retrain=20):
    from netshrink.methods.lassonet import lassonet_path, select_features, restrict
    from netshrink.core.reparam import bake_all
    net, tr, val = val_baseline("lenet300_100", "mnist5k", fold)
    # the path's own split of tr (90/10), as the bench does with the training fold
    n_val = len(tr) // 10
    ptr, pval = torch.utils.data.random_split(tr, [len(tr) - n_val, n_val], generator=torch.Generator().manual_seed(fold))
    m = copy.deepcopy(net)
    t = time.time()
    cfg = ns.TrainConfig(epochs=max_epochs, lr=lr, optimizer="sgd", momentum=0.9, schedule="constant", batch_size=bs)
    path = lassonet_path(m, ptr, pval, cfg=cfg, dense_cfg=cfg.replace(optimizer="adam", lr=1e-3), dense_epochs=dense_epochs,
                         dense_patience=dense_patience, patience=patience, multiplier=mult, lam_start=lam_start, idle_multiplier=idle)
    secs = time.time() - t
    print("path", len(path), "points", round(secs), "s; epochs", sum(p.epochs for p in path), flush=True)
    for p in path[::max(1, len(path)//40)]:
        print(f"  lam {p.lam:.4g} n {p.n_features} acc {p.accuracy:.3f} ep {p.epochs}")
    keep = select_features(path, k)
    res = {}
    x = torch.stack([tr[i][0].flatten() for i in range(len(tr))])
    by_var = torch.zeros(784, dtype=torch.bool); by_var[torch.argsort(x.var(0), descending=True, stable=True)[:k]] = True
    for name, mask in (("lassonet", keep), ("variance", by_var)):
        torch.manual_seed(1)
        small = ns.zoo.models.create("lenet300_100")
        restrict(small, mask, inplace=True)
        ns.fit(small, tr, BASELINE_CONFIGS["lenet300_100"].replace(epochs=retrain), progress=False)
        bake_all(small)
        res[name] = ns.evaluate(small, val)
    print(json.dumps(dict(fn="lasso", max_epochs=max_epochs, patience=patience, bs=bs, mult=mult, points=len(path), secs=round(secs), **res)), flush=True)
    return path


def others():
    net, tr, val = val_baseline("lenet5", "mnist5k")
    b = ns.evaluate(net, val)
    m = copy.deepcopy(net)
    R._compress(m, ns.create("l0", **R.L0), tr, 5, ft_epochs=2)
    u = R.lenet5_units(m)
    dense = R.lenet5_units(net)["flops"]
    print(json.dumps(dict(fn="l0", base=b, acc=ns.evaluate(m, val), drop=b - ns.evaluate(m, val), arch=u, flops_removed=1 - u["flops"] / dense)), flush=True)
    net, tr, val = val_baseline("lenet300_100", "mnist5k")
    b = ns.evaluate(net, val)
    for name, params in R.GROUP.items():
        m = copy.deepcopy(net)
        R._compress(m, ns.create(name, **params), tr, 10, **R.GROUP_CFG)
        u = R.mlp_units(m)
        a = ns.evaluate(m, val)
        print(json.dumps(dict(fn=name, base=b, acc=a, drop=b - a, units=u, hidden_removed=400 - u["h1"] - u["h2"])), flush=True)

if __name__ == "__main__":
    exec(sys.argv[1])
