"""The zoo registers its models in core's factory registry; students are zoo models."""
import pytest
import torch

from netshrink.core import factories
from netshrink.errors import NetshrinkError
from netshrink.zoo import models
from netshrink.zoo.students import derive_student, student_spec


def test_every_zoo_model_is_registered_and_records_its_factory():
    assert set(models.ZOO) <= set(factories.names())
    m = factories.create("mlp", in_features=8, hidden=[4], num_classes=3)
    assert factories.factory_of(m) == {"name": "mlp", "kwargs": {"in_features": 8, "hidden": [4], "num_classes": 3}}
    assert m(torch.zeros(2, 8)).shape == (2, 3)
    assert models.create is factories.create   # one registry, re-exported by the zoo


def test_unknown_model_and_bad_kwargs_are_user_errors():
    with pytest.raises(NetshrinkError, match="unknown model 'nope'"):
        factories.create("nope")
    with pytest.raises(NetshrinkError, match="mlp"):
        factories.create("mlp", widthh=3)


def test_students_are_narrower_zoo_models():
    teacher = factories.create("lenet300_100")
    student = derive_student(teacher, width=0.1, drop_layers=1)
    assert factories.factory_of(student) == {"name": "mlp", "kwargs": {"hidden": [30]}}
    assert sum(p.numel() for p in student.parameters()) == 784 * 30 + 30 + 30 * 10 + 10
    assert student_spec("resnet_small", {}, width=0.5, drop_layers=1) == (
        "resnet_small", {"widths": [8, 16, 32], "blocks": [1, 1, 1]})
