"""The registry *mechanism*: methods by the name used in TOML and on the CLI.

Which methods exist is not decided here: the built-in ones are listed by hand in
`netshrink.pipeline.registry` (imported by `import netshrink`), which registers
them with `builtin=True`; users add their own with `register`. Keeping the list above
the methods keeps core free of imports of methods.
"""
from __future__ import annotations

from netshrink.core.method import Method
from netshrink.errors import RecipeError

_METHODS: dict[str, type[Method]] = {}
_BUILTIN: set[str] = set()


def register(cls: type[Method], *, builtin: bool = False) -> type[Method]:
    """Register a method class (usable as a decorator). A name already taken (a
    built-in method's or another registered one's) is refused: a recipe naming it would
    otherwise silently change meaning."""
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise RecipeError(f"register: {cls!r} is not a Method subclass")
    if not cls.name:
        raise RecipeError(f"register: {cls.__name__} has no `name`")
    if cls.name in _METHODS:
        raise RecipeError(f"register: a method named {cls.name!r} already exists; choose another name "
                          "(or `unregister` yours first)")
    _METHODS[cls.name] = cls
    if builtin:
        _BUILTIN.add(cls.name)
    return cls


def unregister(name: str) -> None:
    """Remove a user-registered method (built-in ones cannot be removed)."""
    if name not in _METHODS or name in _BUILTIN:
        raise RecipeError(f"unregister: {name!r} is not a user-registered method")
    del _METHODS[name]


def all_methods() -> dict[str, type[Method]]:
    """name -> class of every registered method, sorted by name."""
    return dict(sorted(_METHODS.items()))


def get(name: str) -> type[Method]:
    if name not in _METHODS:
        raise RecipeError(f"unknown method {name!r}; valid methods: {', '.join(all_methods())}")
    return _METHODS[name]


def create(name: str, **params) -> Method:
    """`create("magnitude", sparsity=0.9)`, validated like a recipe step."""
    return get(name).from_params(params)
