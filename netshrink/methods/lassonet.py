"""LassoNet (Lemhadri et al. 2021): feature selection with a skip layer and Hier-Prox.

A linear skip layer theta (K outputs x d features) is added beside the network, and
after every optimiser step the hierarchical proximal operator (functional.prox.hier_prox)
runs per input feature j with threshold lambda x lr, so that feature j may use its
first-layer weights W_j only while ||W_j||_inf <= M ||theta_j||. Walking lambda up by
x1.02 per point with warm starts drives features out one by one: the *path*. As in the
authors' package, a dense phase (lambda = 0, Adam) comes first, the path starts at the
dense model's validation loss, and every point trains until the validation objective
(the task loss + lambda sum_j ||theta_j||) stops improving by 1 % for `patience` epochs.
The task loss is the run's (train/losses.py: auto = cross-entropy for class targets, MSE
for float targets, as the paper's regression experiments use); each point records the
validation metric of measure/metrics.py (accuracy for classification, MSE for a regression).

    >>> cfg = ns.TrainConfig(epochs=100, optimizer="sgd", schedule="constant")   # <= 100 epochs a point
    >>> path = lassonet_path(model, train, val, cfg=cfg, patience=10, dense_epochs=100, dense_patience=10)
    >>> keep = select_features(path, 50)                  # (d,) bool, the 50 best
    >>> small = restrict(model, keep)                      # first layer sees only those
    >>> plot_path(path, "lassonet_path.png")

The `lassonet` method runs the path on the training data (10 % held out to score
it), keeps the `features` best (those that leave the path last) and masks the rest out
of the first layer; the recipe's fine-tuning then retrains the restricted network.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from netshrink.core.batches import as_batches
from netshrink.core.context import PrepareContext, StepContext
from netshrink.core.method import Method
from netshrink.core.reparam import attach, bake, original
from netshrink.core.targets import Site
from netshrink.errors import NetshrinkError, RecipeError, TargetError
from netshrink.functional.prox import hier_prox
from netshrink.measure import metrics
from netshrink.measure.plots import line_plot
from netshrink.reparams.mask import Mask
from netshrink.train.config import TrainConfig
from netshrink.train.losses import resolve
from netshrink.train.loop import fit, make_optimizer, predict

SKIP = "lassonet_skip"


@dataclass
class PathPoint:
    lam: float
    n_features: int
    accuracy: float | None          # on the validation data, with the skip layer (None: not a classification)
    kept: torch.Tensor              # (d,) bool
    theta_norm: torch.Tensor        # (d,) ||theta_j||, to rank features dropped at the same lambda
    val_loss: float | None = None   # the task loss (cross-entropy, MSE ...) on the validation data
    epochs: int = 0                 # epochs this point trained (early stopping)
    metric: str = "accuracy"        # the validation metric (measure/metrics.py) `score` holds
    score: float | None = None      # its value (= accuracy for a classification)

    @property
    def value(self) -> float | None:
        return self.score if self.score is not None else self.accuracy


def first_linear(model: nn.Module, name: str | None = None) -> tuple[str, nn.Linear]:
    """The layer that reads the input features: `name`, or the first Linear."""
    for n, m in model.named_modules():
        if isinstance(m, nn.Linear) and (name is None or n == name):
            return n, m
    raise TargetError(f"lassonet: no Linear layer {name or ''} reads the input features".replace("  ", " "))


def _weight(layer: nn.Linear) -> torch.Tensor:
    """The first layer's trainable (out, d) weight, under any re-parametrisation."""
    return original(layer, "weight") if parametrize.is_parametrized(layer, "weight") else layer.weight


class _Skip:
    """theta registered on the model (so the optimiser trains it) + a forward hook
    adding theta @ x to the output."""

    def __init__(self, model: nn.Module, d: int, k: int):
        self.model = model
        model.register_parameter(SKIP, nn.Parameter(torch.zeros(k, d)))
        self.handle = model.register_forward_hook(
            lambda m, inputs, out: out + F.linear(torch.flatten(inputs[0], 1), getattr(m, SKIP)))

    @property
    def theta(self) -> nn.Parameter:
        return getattr(self.model, SKIP)

    def remove(self) -> None:
        self.handle.remove()
        del self.model._parameters[SKIP]


class _HierProxHooks:
    """Trainer hooks: Hier-Prox on (theta, W) after each step, threshold lam x lr."""

    def __init__(self, theta: nn.Parameter, layer: nn.Linear, lam: float, M: float):
        self.theta, self.layer, self.lam, self.M = theta, layer, lam, M

    def loss(self, ctx: StepContext):
        return None

    @torch.no_grad()
    def after_step(self, ctx: StepContext) -> None:
        lr = float(ctx.optimizer.param_groups[0]["lr"])
        W = _weight(self.layer)
        # per feature j: theta[:, j] (K,) and W[:, j] (H,). A feature already out (theta_j
        # and W_j zero) stays out (Hier-Prox maps zero to zero), so only the others are solved.
        alive = _kept(self.theta, W)
        if bool(alive.all()):
            t, w = hier_prox(self.theta.t(), W.t(), lam=self.lam * lr, M=self.M)
            self.theta.copy_(t.t())
            W.copy_(w.t())
        elif bool(alive.any()):
            idx = torch.nonzero(alive).flatten()
            t, w = hier_prox(self.theta[:, idx].t(), W[:, idx].t(), lam=self.lam * lr, M=self.M)
            self.theta[:, idx] = t.t()
            W[:, idx] = w.t()


def _kept(theta: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    return (theta != 0).any(0) | (W != 0).any(0)


@torch.no_grad()
def _val_scores(model: nn.Module, val, loss="auto") -> tuple[float, float, str]:
    """(the task loss `loss` resolves to, the validation metric, its name) on `val`, in eval mode."""
    out, y = predict(model, val)
    if y is None:
        raise RecipeError("lassonet: its validation objective needs targets, and the data has none "
                          "(LassoNet selects features for a supervised task)")
    try:
        task = resolve(loss, out, y, has_teacher=False)
    except NetshrinkError as e:
        raise RecipeError(f"lassonet: {e}") from None
    name = metrics.choose("auto", out, y, has_reference=False)
    return float(task(out, y)), metrics.compute(name, "auto", out, y, None), name


def train_to_convergence(model: nn.Module, train, val, *, cfg: TrainConfig, optimizer, hooks, lam: float,
                         theta: torch.Tensor, patience: int | None, tol: float = 0.99,
                         seed: int = 0, desc: str = "lassonet", progress: bool = False,
                         loss=None) -> tuple[int, float | None, float | None]:
    """At most cfg.epochs epochs (one shared optimiser: warm starts keep its momentum),
    stopped early as the authors' package does: after `patience` epochs in which the
    validation objective, the val task loss + lam x sum_j ||theta_j||_2, did not fall
    below `tol` x its best. `loss`: a name or a callable (None: cfg.loss). Returns
    (epochs run, val loss, val metric: accuracy for a classification, MSE for a regression ...)."""
    spec = cfg.loss if loss is None else loss
    fn = spec if callable(spec) else None
    if isinstance(spec, str):
        cfg = cfg.replace(loss=spec)

    def objective():
        vl, value, _ = _val_scores(model, val, spec)
        return vl + lam * float(theta.detach().norm(dim=0).sum()), vl, value

    best, v_loss, score = objective() if (val is not None and patience is not None) else (float("inf"), None, None)
    since, epochs = 0, 0
    for epoch in range(cfg.epochs):
        # a different shuffle every epoch of the path
        fit(model, train, cfg.replace(epochs=1, seed=seed + epoch), optimizer=optimizer, hooks=hooks,
            progress=progress, desc=desc, loss_fn=fn)
        epochs += 1
        if val is None or patience is None:
            continue
        obj, v_loss, score = objective()
        if obj < tol * best:
            best, since = obj, 0
        else:
            since += 1
        if since >= patience:
            break
    if val is not None and v_loss is None:
        v_loss, score, _ = _val_scores(model, val, spec)
    return epochs, v_loss, score


def lassonet_path(model: nn.Module, train, val=None, *, cfg: TrainConfig | None = None, M: float = 10.0,
                  lam_start: float | None = None, eps_start: float = 1.0, multiplier: float = 1.02,
                  dense_epochs: int = 1, dense_cfg: TrainConfig | None = None, patience: int | None = None,
                  dense_patience: int | None = None, tol: float = 0.99, min_features: int = 0,
                  idle_multiplier: float | None = None, max_points: int = 2000, layer: str | None = None,
                  progress: bool = False, loss=None) -> list[PathPoint]:
    """Train `model` (in place) along a path of growing lambda with warm starts.

    As the authors' package: a dense phase (lambda = 0, Hier-Prox enforcing only the
    hierarchy ||W_j||_inf <= M ||theta_j||; Adam, `dense_cfg`, at most `dense_epochs`
    epochs, early-stopped with `dense_patience`), then lambda = lam_start x
    multiplier^i (SGD, `cfg`: at most cfg.epochs epochs per point, early-stopped with
    `patience` on the validation objective; one optimiser for the whole path) until
    at most `min_features` features remain (0: until none). lam_start = None takes
    eps_start x the dense model's validation loss (the package's default).
    idle_multiplier: lambda's factor while no feature has left the path since its first
    point (the dense stretch, whose points all keep every feature); None = `multiplier`.
    cfg default: SGD lr 1e-3 momentum 0.9 (the package's path optimiser), 1 epoch per
    point. `loss`: the task loss, a name or a callable `loss(outputs, target)` (None:
    cfg.loss, auto by default). Returns one PathPoint per lambda. The skip layer is
    removed at the end.
    """
    task = loss   # the task loss spec; `loss` below is each point's validation loss
    cfg = cfg or TrainConfig(epochs=1, lr=1e-3, optimizer="sgd", momentum=0.9, schedule="constant")
    dense_cfg = dense_cfg or cfg.replace(optimizer="adam")
    if lam_start is None and val is None:
        raise RecipeError("lassonet: lam_start must be given when there is no validation data")
    _, lin = first_linear(model, layer)
    was = model.training
    model.eval()
    with torch.no_grad():
        k = as_batches(train).example_inputs(1).call(model).shape[-1]
    model.train(was)
    skip = _Skip(model, lin.in_features, k)
    params = lambda: [p for p in model.parameters() if p.requires_grad]  # noqa: E731
    points = []
    try:
        metric = _val_scores(model, val, cfg.loss if task is None else task)[2] if val is not None else "accuracy"
        dense_loss = None
        if dense_epochs:
            _, dense_loss, _ = train_to_convergence(
                model, train, val, cfg=dense_cfg.replace(epochs=dense_epochs), optimizer=make_optimizer(params(), dense_cfg),
                hooks=_HierProxHooks(skip.theta, lin, 0.0, M), lam=0.0, theta=skip.theta, patience=dense_patience,
                tol=tol, seed=dense_cfg.seed, desc="lassonet dense", progress=progress, loss=task)
        if lam_start is None:
            lam_start = eps_start * (dense_loss if dense_loss is not None else
                                     _val_scores(model, val, cfg.loss if task is None else task)[0])
        opt = make_optimizer(params(), cfg)
        lam, seed, moving = lam_start, cfg.seed + 1000, False
        while len(points) < max_points:
            epochs, loss, score = train_to_convergence(
                model, train, val, cfg=cfg, optimizer=opt, hooks=_HierProxHooks(skip.theta, lin, lam, M), lam=lam,
                theta=skip.theta, patience=patience, tol=tol, seed=seed, desc=f"lassonet lambda {lam:.3g}",
                progress=progress, loss=task)
            seed += epochs
            theta, W = skip.theta.detach(), _weight(lin).detach()
            kept = _kept(theta, W)
            points.append(PathPoint(lam, int(kept.sum()), score if metric == "accuracy" else None, kept.clone(),
                                    theta.norm(dim=0).clone(), loss, epochs, metric=metric, score=score))
            if int(kept.sum()) <= min_features:
                break
            moving = moving or (len(points) >= 2 and points[-1].n_features < points[-2].n_features)
            lam *= multiplier if (moving or idle_multiplier is None) else idle_multiplier
    finally:
        skip.remove()
    return points


def feature_scores(path: list[PathPoint]) -> torch.Tensor:
    """(d,) importance: the index of the last path point that kept each feature, plus
    its ||theta_j|| there (in [0, 1) after squashing) to order features that left
    together; features never dropped score highest."""
    d = path[0].kept.numel()
    score = torch.full((d,), -1.0)
    for i, p in enumerate(path):
        squash = p.theta_norm / (1 + p.theta_norm)
        score = torch.where(p.kept, i + squash, score)
    return score


def select_features(path: list[PathPoint], k: int) -> torch.Tensor:
    """(d,) bool: the k features that stay longest on the path."""
    score = feature_scores(path)
    keep = torch.zeros_like(score, dtype=torch.bool)
    keep[torch.argsort(score, descending=True, stable=True)[:k]] = True
    return keep


def restrict(model: nn.Module, keep: torch.Tensor, *, layer: str | None = None, inplace: bool = False) -> nn.Module:
    """A model whose first layer reads only the `keep` features: their columns stay,
    the others are masked to zero (a Mask re-parametrisation, so fine-tuning keeps them
    out; `ns.core.reparam.bake_all` or a recipe's finish makes it plain)."""
    model = model if inplace else copy.deepcopy(model)
    name, lin = first_linear(model, layer)
    mask = keep.reshape(1, -1).expand_as(lin.weight).clone()
    attach(Site(name, "weight", lin), Mask(mask))
    return model


@dataclass
class LassoNet(Method):
    name = "lassonet"
    summary = "LassoNet (Lemhadri 2021): skip layer + Hier-Prox path, keep the k best input features"

    features: int = 50
    M: float = 10.0
    # First lambda of the path; 0 = the dense model's validation loss (the package's default).
    lam_start: float = 0.0
    multiplier: float = 1.02
    # Per path point: at most this many epochs, stopped after `patience` epochs without a
    # `tol` relative improvement of the validation objective (the package: 100, 10, 0.99).
    epochs_per_lambda: int = 100
    patience: int = 10
    tol: float = 0.99
    # The dense phase (lambda = 0, Adam): at most this many epochs, same early stopping.
    dense_epochs: int = 100
    path_lr: float = 1e-3
    val_fraction: float = 0.1
    layer: str = ""           # the first layer's name; "" = the first Linear
    seed: int = 0

    def validate(self):
        self.check(self.features >= 1, "features", ">= 1")
        self.check(self.M > 0, "M", "> 0")
        self.check(self.lam_start >= 0, "lam_start", ">= 0 (0 = automatic)")
        self.check(self.multiplier > 1, "multiplier", "> 1")
        self.check(self.epochs_per_lambda >= 1, "epochs_per_lambda", ">= 1")
        self.check(self.patience >= 1, "patience", ">= 1")
        self.check(0 < self.tol <= 1, "tol", "in (0, 1]")
        self.check(self.dense_epochs >= 0, "dense_epochs", ">= 0")
        self.check(self.path_lr > 0, "path_lr", "> 0")
        self.check(0 < self.val_fraction < 1, "val_fraction", "in (0, 1)")

    def prepare(self, model: nn.Module, ctx: PrepareContext) -> None:
        if ctx.data is None:
            raise RecipeError("lassonet: needs training data to walk its path")
        name, lin = first_linear(model, self.layer or None)
        if self.features > lin.in_features:
            self.check(False, "features", f"<= the {lin.in_features} input features of {name}")
        dataset = ctx.dataset(self.name)
        n_val = max(1, int(round(self.val_fraction * len(dataset))))
        g = torch.Generator().manual_seed(self.seed)
        train, val = torch.utils.data.random_split(dataset, [len(dataset) - n_val, n_val], generator=g)
        cfg = TrainConfig(epochs=self.epochs_per_lambda, lr=self.path_lr, optimizer="sgd", momentum=0.9,
                          schedule="constant", batch_size=ctx.finetune.batch_size if ctx.finetune else 64,
                          seed=self.seed)
        max_points = 1 + math.ceil(math.log(1e6) / math.log(self.multiplier))  # lambda up to 1e6 x start
        self.path_ = lassonet_path(model, train, val, cfg=cfg, M=self.M, lam_start=self.lam_start or None,
                                   multiplier=self.multiplier, dense_epochs=self.dense_epochs,
                                   dense_cfg=cfg.replace(optimizer="adam"), patience=self.patience,
                                   dense_patience=self.patience, tol=self.tol, min_features=self.features,
                                   max_points=max_points, layer=name, progress=False,
                                   loss=ctx.loss if ctx.loss is not None else (ctx.finetune.loss if ctx.finetune
                                                                                else None))
        self.keep_ = select_features(self.path_, self.features)
        self.layer_ = name
        restrict(model, self.keep_, layer=name, inplace=True)

    def finalize(self, model: nn.Module) -> None:
        bake(model.get_submodule(self.layer_), "weight", Mask)
        self.features_ = torch.nonzero(self.keep_).flatten().tolist()
        self.dead_inputs_ = {self.layer_: ~self.keep_}
        self.dead_units_ = {}


def plot_path(path: list[PathPoint], out, *, title: str = "LassoNet path", baseline: float | None = None) -> None:
    """The validation metric (accuracy, MSE ...) against features kept, one point per lambda
    (log-scaled x)."""
    pts = [p for p in path if p.value is not None and p.n_features > 0]
    name = pts[0].metric if pts else "accuracy"
    scale = 100 if metrics.is_fraction(name) else 1
    line_plot(out, {"LassoNet path": ([p.n_features for p in pts], [scale * p.value for p in pts])},
              xlabel="input features kept", ylabel=f"validation {name}" + (" (%)" if scale == 100 else ""),
              title=title, logx=True, baseline=None if baseline is None else scale * baseline)
