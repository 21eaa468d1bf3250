"""What a constructor parameter takes, read from its type hints: plain values of its type, and text only where it
takes text (jsonargparse imports the dotted name given to a class- or callable-typed parameter). `Checkpoint.settings`
checks a checkpoint's values with it before anything is built from them."""

from __future__ import annotations

import collections.abc
import functools
import inspect
import types
import typing
from typing import Any, Literal

_PLAIN = (type(None), bool, int, float, str)
_SEQUENCES = (list, tuple, collections.abc.Sequence, collections.abc.Iterable)
UNKNOWN = object()  # an annotation that cannot be resolved: it takes no text


@functools.cache
def constructor_parameters(cls: type) -> dict[str, Any]:
    """``cls``'s constructor parameters and their types; a type that cannot be resolved is `UNKNOWN`."""
    init = cls.__init__
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # a name only imported for type checkers: resolve what can be, one parameter at a time
        hints = {}
        for name, annotation in getattr(init, "__annotations__", {}).items():
            try:
                hints[name] = eval(annotation, init.__globals__) if isinstance(annotation, str) else annotation
            except Exception:
                hints[name] = UNKNOWN
    parameters = inspect.signature(cls).parameters.values()
    found = {p.name: hints.get(p.name, UNKNOWN) for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    if any(p.kind == p.VAR_KEYWORD for p in parameters):  # **kwargs handed to the base class, as jsonargparse reads it
        base = next((c for c in cls.__mro__[1:] if "__init__" in vars(c)), None)
        if base is not None and base is not object:
            found = {**constructor_parameters(base), **found}
    return found


def _alternatives(annotation: Any) -> tuple[Any, ...]:
    """The types a union allows; a single type for anything else."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return tuple(a for arg in typing.get_args(annotation) for a in _alternatives(arg))
    return (annotation,)


def takes(annotation: Any, value: Any) -> bool:
    """Whether a parameter of type ``annotation`` takes the plain ``value`` as it is: text only where it takes text
    (jsonargparse imports the dotted name given to a class- or callable-typed parameter), numbers where it takes
    numbers, lists of what it takes lists of. A type that cannot be resolved takes numbers, booleans and None."""
    return any(_alternative_takes(alternative, value) for alternative in _alternatives(annotation))


def _alternative_takes(alternative: Any, value: Any) -> bool:
    origin, args = typing.get_origin(alternative), typing.get_args(alternative)
    if alternative is UNKNOWN or alternative is Any:
        return value is None or isinstance(value, bool | int | float)
    if origin is Literal:
        return any(type(value) is type(option) and value == option for option in args)
    if origin in _SEQUENCES:
        if not isinstance(value, list | tuple):
            return False
        items = [arg for arg in args if arg is not Ellipsis] or [UNKNOWN]
        if origin is tuple and Ellipsis not in args and len(items) > 1:  # tuple[float, float]: one type per place
            return len(value) == len(items) and all(takes(t, v) for t, v in zip(items, value, strict=True))
        return all(any(takes(t, v) for t in items) for v in value)
    if alternative is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if alternative in _PLAIN:
        return type(value) is alternative  # None, bool, int (not a bool), str
    return False  # a class or a callable: only a {class_path, init_args} setting, checked on its own


def class_kinds(annotation: Any) -> tuple[type, ...]:
    """The base classes a parameter takes a subclass of: the type itself, or what a callable type returns."""
    kinds: list[type] = []
    for alternative in _alternatives(annotation):
        if typing.get_origin(alternative) is collections.abc.Callable:
            returned = typing.get_args(alternative)[-1] if typing.get_args(alternative) else None
            kinds += [r for r in _alternatives(returned) if isinstance(r, type)]
        elif isinstance(alternative, type) and alternative not in _PLAIN:
            kinds.append(alternative)
    return tuple(kinds)


def type_name(annotation: Any) -> str:
    """``int``, ``list[int]``, ``Literal['imagenet', 'cifar']``: a type as its code reads."""
    return annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")
