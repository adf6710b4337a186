"""Hyperparameters checked against their dataclass annotations, once, for TOML and
Python construction alike.

`check_fields(obj, owner)` walks the fields of a dataclass instance and, per
annotation, refuses a value of the wrong type or outside a `Literal`'s choices with
one message that names the owner (the method), the field, the value and what is
allowed. It also normalises what TOML cannot spell: an int where a float is annotated
becomes a float, a list where a tuple is annotated becomes a tuple, a table becomes a
`PerLayer` or `Targets`. Range checks (0 <= sparsity < 1 ...) stay in each method's
`validate`: the annotation cannot say them.

Supported annotations: bool, int, float, str, Literal[...], X | None, tuple[X, ...],
tuple[X, Y], list[X], dict, PerLayer[X], Targets (anything else passes unchecked).
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import types
import typing

from netshrink.core.targets import PerLayer, Targets
from netshrink.errors import NetshrinkError, RecipeError

_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


class _Bad(Exception):
    """Internal: what was expected, for the one message of `coerce`."""


@functools.cache
def hints_of(cls: type) -> dict:
    return typing.get_type_hints(cls)


def describe(hint) -> str:
    """What a value of `hint` looks like, for messages."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("none" if a is type(None) else describe(a) for a in args)
    if origin in (tuple, list):
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return f"a list of ({describe(args[0])})"
        if origin is tuple and args:
            return f"a list of {len(args)}: [" + ", ".join(describe(a) for a in args) + "]"
        return f"a list of ({describe(args[0])})" if args else "a list"
    if hint is PerLayer or origin is PerLayer:
        return "a table of pattern = value" + (f" ({describe(args[0])})" if args else "")
    if hint is Targets:
        return "a pattern, a list of patterns or {include, exclude}"
    if hint is dict or origin is dict:
        return "a table"
    return _NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def _convert(value, hint):
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any or hint is object:
        return value
    if origin is typing.Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise _Bad
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a)
            except _Bad:
                continue
        raise _Bad
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _Bad
    if hint in (int, bool, str):
        if type(value) is hint:
            return value
        raise _Bad
    if origin in (tuple, list) or hint in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise _Bad
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise _Bad
            return tuple(_convert(v, a) for v, a in zip(value, args))
        item = args[0] if args else typing.Any
        out = [_convert(v, item) for v in value]
        return tuple(out) if (origin or hint) is tuple else out
    if hint is PerLayer or origin is PerLayer:
        if not isinstance(value, (dict, PerLayer)):
            raise _Bad
        items = value.to_value() if isinstance(value, PerLayer) else value
        if args:
            items = {k: _convert(v, args[0]) for k, v in items.items()}
        return PerLayer(items)
    if hint is Targets:
        return Targets.from_value(value)
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            raise _Bad
        return value
    return value


def coerce(owner: str, fname: str, value, hint):
    """`value` as `hint` wants it, or a RecipeError naming owner, field, value and what is allowed."""
    try:
        return _convert(value, hint)
    except _Bad:
        pass
    if typing.get_origin(hint) is typing.Literal:
        raise RecipeError(f"{owner}: {fname} = {value!r} is not one of {list(typing.get_args(hint))}")
    raise RecipeError(f"{owner}: {fname} = {value!r} has the wrong type (expected {describe(hint)})")


def check_fields(obj, owner: str) -> None:
    """Check (and normalise, in place) every init field of the dataclass `obj`."""
    hints = hints_of(type(obj))
    for f in dataclasses.fields(obj):
        if not f.init or f.name not in hints:
            continue
        v = getattr(obj, f.name)
        try:
            new = coerce(owner, f.name, v, hints[f.name])
        except RecipeError:
            raise
        except NetshrinkError as e:   # a bad pattern inside Targets / PerLayer
            raise type(e)(f"{owner}: {f.name}: {e}") from None
        if new is not v:
            object.__setattr__(obj, f.name, new)


def unknown_field_message(owner: str, key: str, valid: list[str], renamed: dict[str, str] | None = None) -> str:
    """"channel_prune: unknown field 'amount'; it is now 'sparsity' ..." or a did-you-mean."""
    msg = f"{owner}: unknown field {key!r}"
    if renamed and key in renamed:
        msg += f"; it is now {renamed[key]}"
    else:
        close = difflib.get_close_matches(key, valid, n=1)
        if close:
            msg += f"; did you mean {close[0]!r}?"
    return f"{msg} (valid fields: {', '.join(valid)})"
