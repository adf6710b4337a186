"""User-facing errors.

Every problem caused by the user's input (a bad recipe, an unknown method, a corrupt
file, an impossible target) is raised as a `NetshrinkError`. The CLI prints its
message on one line and exits with code 2; it never shows a traceback for these.
"""


class NetshrinkError(Exception):
    """A problem with the user's input, reported as one clear message."""


class RecipeError(NetshrinkError):
    """A recipe is malformed: unknown method, unknown field, out-of-range value."""


class ArtifactError(NetshrinkError):
    """A .nshr file is corrupt, truncated, of an unknown version, or not ours."""


class TargetError(NetshrinkError):
    """A target pattern matches no parameter, or a method cannot handle a module."""
