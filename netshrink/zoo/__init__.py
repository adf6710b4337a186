"""Data, models and cached baselines that need no download."""
from netshrink.zoo import data, models
from netshrink.zoo.baseline import baseline
from netshrink.zoo.students import derive_student, student_spec

__all__ = ["data", "models", "baseline", "derive_student", "student_spec"]
