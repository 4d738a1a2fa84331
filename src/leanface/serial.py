"""Frozen dataclass configs from their JSON form: one rule for every config type (model configs, training and
search settings, open-set statistics), read off the field types.

`dataclasses.asdict` writes them; `from_dict(cls, d)` reads them back: JSON lists become the tuples the frozen
fields hold (nested ones too), a field typed as a config becomes that config, a union of configs picks the member
whose `Literal` tag (e.g. `kind: Literal["mobilenet"]`) the dict carries, and a key the dict lacks takes the
field's default, so records written before a field existed still load. A config whose layout changed says how
to read its older records: a static `upgrade_record(dict) -> dict`, applied first.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from functools import lru_cache

from .errors import LeanfaceError


def from_dict(cls, data: dict):
    if not isinstance(data, dict):
        raise LeanfaceError(f"a {cls.__name__} record must be a JSON object, got {type(data).__name__}")
    if hasattr(cls, "upgrade_record"):
        data = cls.upgrade_record(data)
    hints = _hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise LeanfaceError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
    return cls(**{name: _value(hints[name], value) for name, value in data.items()})


@lru_cache(maxsize=None)
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _value(tp, value):
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        configs = [a for a in members if dataclasses.is_dataclass(a)]
        if configs and isinstance(value, dict):
            return from_dict(_tagged(configs, value), value)
        return _value(members[0], value) if len(members) == 1 else _tuples(value)
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return from_dict(tp, value)
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_value(args[0], v) for v in value)
        return tuple(_value(a, v) for a, v in zip(args, value)) if args else tuple(value)
    return _tuples(value)


def _tuples(value):
    """Untyped JSON lists (e.g. inside a `dict` field) as tuples, as a frozen config would hold them."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _tagged(configs: list, value: dict):
    """The member of a union of configs whose Literal-typed field has the value the dict carries."""
    for cls in configs:
        for name, tp in _hints(cls).items():
            if typing.get_origin(tp) is typing.Literal and value.get(name) in typing.get_args(tp):
                return cls
    raise LeanfaceError(f"cannot tell which of {', '.join(c.__name__ for c in configs)} this record is: {value}")
