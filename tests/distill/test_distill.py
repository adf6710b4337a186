"""Distillation losses against hand-computed cases and torch built-ins; the methods'
objectives inside the trainer; derived students."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Subset

import netshrink as ns
from netshrink.core.context import PrepareContext, StepContext
from netshrink.errors import NetshrinkError, RecipeError
from netshrink.methods.distill import Distill
from netshrink.functional.distill import distill_loss, hint_loss, kd_loss, mimic_loss
from netshrink.zoo.students import derive_student
from netshrink.measure.counts import param_counts


def test_kd_loss_equals_a_hand_computed_case():
    # student logits (1, 0), teacher logits (0, 1), T = 2:
    # p_t = softmax((0, .5)) = (1/(1+e^.5), e^.5/(1+e^.5)), p_s = softmax((.5, 0))
    e = math.exp(0.5)
    p_t = [1 / (1 + e), e / (1 + e)]
    p_s = [e / (1 + e), 1 / (1 + e)]
    kl = sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s))
    got = kd_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), temperature=2.0)
    assert abs(float(got) - 4 * kl) < 1e-6          # × T² = 4


def test_kd_loss_matches_torch_kl_div():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(16, 10, generator=g), torch.randn(16, 10, generator=g)
    ref = F.kl_div(F.log_softmax(s / 3, -1), F.log_softmax(t / 3, -1), reduction="batchmean", log_target=True) * 9
    assert torch.allclose(kd_loss(s, t, temperature=3.0), ref, atol=1e-6)
    assert float(kd_loss(t, t, temperature=3.0)) == pytest.approx(0.0, abs=1e-6)


def test_mimic_and_hint_losses_hand_computed():
    assert float(mimic_loss(torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.zeros(2, 2))) == pytest.approx(1.25)
    assert float(hint_loss(torch.ones(2, 3, 2, 2), torch.zeros(2, 3, 2, 2))) == pytest.approx(6.0)


def _step(model, x, y):
    logits = model(x)
    return logits, StepContext(model=model, x=x, y=y, logits=logits)


def test_trainer_objective_is_hintons_weighted_sum(digits):
    torch.manual_seed(0)
    train, _ = digits
    teacher = ns.zoo.models.create("mlp", in_features=64, hidden=[32], num_classes=10).eval()
    student = ns.zoo.models.create("mlp", in_features=64, hidden=[8], num_classes=10)
    x, y = torch.stack([train[i][0] for i in range(20)]), torch.tensor([train[i][1] for i in range(20)])
    d = ns.create("distill", temperature=2.5, weight=0.7, label_weight=0.3)
    d.prepare(student, PrepareContext(teacher=teacher))
    logits, ctx = _step(student, x, y)
    total = F.cross_entropy(logits, y) + d.loss(ctx)        # what `fit` minimises
    with torch.no_grad():
        want = distill_loss(logits, teacher(x), y, temperature=2.5, alpha=0.7)
    assert torch.allclose(total, want, atol=1e-6)
    m = ns.create("mimic", weight=2.0, label_weight=0.25)
    m.prepare(student, PrepareContext(teacher=teacher))
    total = F.cross_entropy(logits, y) + m.loss(ctx)
    with torch.no_grad():
        want = 2.0 * mimic_loss(logits, teacher(x)) + 0.25 * F.cross_entropy(logits, y)
    assert torch.allclose(total, want, atol=1e-6)


@pytest.mark.parametrize("name, params, field", [
    ("distill", {"temperature": 0.0}, "temperature"), ("distill", {"label_weight": -0.5}, "label_weight"),
    ("mimic", {"weight": -1.0}, "weight"), ("hints", {}, "student_layer"),
])
def test_bad_values_name_the_field(name, params, field):
    with pytest.raises(RecipeError, match=field):
        ns.create(name, **params)


def test_distillation_stays_on_in_later_steps_and_keeps_the_original_teacher(digits, monkeypatch):
    train = Subset(digits[0], range(256))
    torch.manual_seed(0)
    model = ns.zoo.models.create("lenet300_100", in_features=64)
    ns.fit(model, train, ns.TrainConfig(epochs=1), progress=False)
    calls = []
    loss = Distill.loss
    monkeypatch.setattr(Distill, "loss", lambda self, ctx: (calls.append(ctx.step), loss(self, ctx))[1])
    recipe = ns.Recipe.of(ns.create("distill", temperature=4.0), ns.create("low_rank", mode="rank", rank=4),
                          finetune=ns.TrainConfig(epochs=1))
    d = ns.run_recipe(model, recipe, data=train, progress=False).method("distill")
    per_phase = math.ceil(len(train) / 64)
    assert len(calls) == 2 * per_phase                       # active in the low_rank phase too
    assert type(d.teacher_.fc1).__name__ == "Linear"         # the teacher was not factorised


def test_users_own_loop_and_teacher_from_a_file(digits, tmp_path):
    train, _ = digits
    torch.manual_seed(0)
    teacher = ns.zoo.models.create("lenet300_100", in_features=64)
    ns.save(teacher, tmp_path / "t.nshr")
    student = derive_student(teacher, width=0.1, drop_layers=1)
    opt = torch.optim.Adam(student.parameters(), 1e-3)
    session = ns.Recipe.of(ns.create("distill", teacher=str(tmp_path / "t.nshr"))).start(student, opt)
    x, y = torch.stack([train[i][0] for i in range(8)]), torch.tensor([train[i][1] for i in range(8)])
    extra = session.loss(x=x, y=y)                           # no logits given: the method runs the student
    assert extra.requires_grad and torch.isfinite(extra)
    with pytest.raises(NetshrinkError):
        ns.create("distill", teacher=str(tmp_path / "missing.nshr")).prepare(student, PrepareContext())


def test_derived_students(tmp_path):
    teacher = ns.zoo.models.create("lenet300_100")
    s = derive_student(teacher, width=0.1, drop_layers=1)
    assert param_counts(s)[0] == 784 * 30 + 30 + 30 * 10 + 10      # MLP 784-30-10
    lstm = derive_student(ns.zoo.models.create("lstm", hidden_size=64, num_layers=2), width=0.5, drop_layers=1)
    assert lstm.rnn.hidden_size == 32 and lstm.rnn.num_layers == 1
    torch.manual_seed(0)
    narrow = derive_student(ns.zoo.models.create("lenet5"), width=0.5)     # conv 10, conv 25, FC 250
    assert (narrow.conv1.out_channels, narrow.conv2.out_channels, narrow.fc1.out_features) == (10, 25, 250)
    ns.save(narrow, tmp_path / "s.nshr")
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(ns.load(tmp_path / "s.nshr")(x), narrow.eval()(x))
    with pytest.raises(NetshrinkError):
        derive_student(teacher, drop_layers=3)


def test_hints_regress_a_narrow_students_feature_map_onto_the_teachers():
    from tests.helpers import random_images

    torch.manual_seed(0)
    teacher = ns.zoo.models.create("lenet5").eval()
    student = derive_student(teacher, width=0.5)                    # conv2: 25 maps instead of 50
    data = random_images(8)
    h = ns.create("hints", student_layer="conv2", weight=1.0)
    h.prepare(student, PrepareContext(data=data, teacher=teacher))
    adapter = getattr(student, h.slot_)
    assert isinstance(adapter, torch.nn.Conv2d) and adapter.weight.shape == (50, 25, 1, 1)
    x = torch.stack([data[i][0] for i in range(4)])
    logits, ctx = _step(student, x, None)
    got = h.loss(ctx)
    with torch.no_grad():
        s_feat = student.conv2(F.max_pool2d(F.relu(student.conv1(x)), 2))
        t_feat = teacher.conv2(F.max_pool2d(F.relu(teacher.conv1(x)), 2))
        want = hint_loss(adapter(s_feat), t_feat)
    assert torch.allclose(got, want, atol=1e-5)
    h.finalize(student)
    assert not hasattr(student, h.slot_)
