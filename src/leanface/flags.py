"""Command-line flags derived from frozen config dataclasses (TrainConfig for `train`, the proxy training of a
`search`): one flag per field, named and documented by the field, typed by its annotation, and `--set a.b=v`
for any field, nested ones included. The configs are written once; their flags follow them."""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing

from .errors import LeanfaceError


def option(default=dataclasses.MISSING, help: str = "", **kw):
    """A config field with its help, the docs of the Python argument and of its flag (no default: a required
    field). kw: `metavar`, `choices`; `flag`: False for a field the command line sets its own way (or only by
    --set), a string for a flag named otherwise than the field; `flat=True` on a nested config: its fields are
    flags of the command itself, by their own names (TrainConfig.augment: --img-size, not --augment.img-size)."""
    return dataclasses.field(default=default, metadata={"help": help, **kw})


def _floats_arg(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _ints_arg(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _value_parser(kind):
    """argparse `type` for a config field's type: int, float, str, bool, tuple[T, ...], each optionally None."""
    args = [k for k in typing.get_args(kind) if k is not type(None)]
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        return _value_parser(args[0])
    if typing.get_origin(kind) is tuple:
        return _ints_arg if args[0] is int else _floats_arg
    if kind is bool:
        return _bool_arg
    return kind


def _bool_arg(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_config_flags(p: argparse.ArgumentParser, defaults, skip: tuple[str, ...] = (), unset: bool = False,
                     prefix: str = "") -> list[str]:
    """One flag per field of a frozen config (e.g. TrainConfig), named and documented by the field itself:
    `--img-size`, and `--no-amp` for a field that defaults to True. Nested configs are set with --set, except
    those marked `flat` (their fields get flags too); fields marked `flag=False` are the command's own. unset:
    every flag defaults to "not given" (None; booleans get --x and --no-x), for configs whose defaults are
    chosen later (the search's proxy training, by task). Returns the (dotted, for nested fields) field names
    given flags, read back with `config_from_flags`."""
    hints = typing.get_type_hints(type(defaults))
    names = []
    for f in dataclasses.fields(defaults):
        value, dest, named = getattr(defaults, f.name), prefix + f.name, f.metadata.get("flag", True)
        if dest in skip or named is False:
            continue
        if dataclasses.is_dataclass(value):
            if f.metadata.get("flat"):
                names += add_config_flags(p, value, skip, unset, prefix=f"{dest}.")
            continue
        flag = (named if isinstance(named, str) else f.name).replace("_", "-")
        help_ = f.metadata.get("help", "").replace("%", "%%")  # argparse formats it
        extra = {k: f.metadata[k] for k in ("metavar", "choices") if k in f.metadata}
        if prefix and not isinstance(value, bool):
            extra.setdefault("metavar", flag.upper().replace("-", "_"))  # not the dotted destination
        if isinstance(value, bool) and unset:
            p.add_argument(f"--{flag}", dest=dest, default=None, action=argparse.BooleanOptionalAction, help=help_)
        elif isinstance(value, bool):
            p.add_argument(f"--{'no-' if value else ''}{flag}", dest=dest, default=value,
                           action="store_false" if value else "store_true",
                           help=f"{help_} [on by default; this flag turns it off]" if value else help_)
        else:
            shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
            p.add_argument(f"--{flag}", dest=dest, type=_value_parser(hints[f.name]), default=None if unset else value,
                           help=help_ if value is None or unset else f"{help_} (default {shown})", **extra)
        names.append(dest)
    return names


def add_set_flag(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help=f"set any {what} field, nested ones by a dotted path (e.g. loss.box=1.5); repeatable")


def help_of(cls, name: str) -> str:
    """The help of a config class's field (its flag's, and its Python argument's); a nested config's field by
    its dotted name (`augment.img_size`)."""
    head, _, rest = name.partition(".")
    if rest:
        return help_of(typing.get_type_hints(cls)[head], rest)
    return next(f.metadata["help"] for f in dataclasses.fields(cls) if f.name == name)


def config_from_flags(defaults, args, names: list[str], overrides: tuple[str, ...] | list[str] = ()):
    """The config the flags describe: `defaults` with each flag given (not None), then `overrides` (--set)."""
    cfg = defaults
    for name in names:
        if getattr(args, name) is not None:
            cfg = _replace(cfg, name.split("."), getattr(args, name))
    for item in overrides:
        cfg = override(cfg, item)
    return cfg


def _replace(cfg, path: list[str], value):
    """cfg with the (nested) field at `path` set to value."""
    head, *rest = path
    return dataclasses.replace(cfg, **{head: _replace(getattr(cfg, head), rest, value) if rest else value})


def override(cfg, item: str):
    """cfg with `key.sub=value` applied, the value parsed as the field's type."""
    key, sep, text = item.partition("=")
    if not sep:
        raise LeanfaceError(f"--set {item}: expected KEY=VALUE")
    head, _, rest = key.strip().partition(".")
    fields = {f.name for f in dataclasses.fields(cfg)}
    if head not in fields:
        raise LeanfaceError(f"--set {item}: {type(cfg).__name__} has no field {head!r} "
                            f"(fields: {', '.join(sorted(fields))})")
    value = getattr(cfg, head)
    if dataclasses.is_dataclass(value):
        if not rest:
            raise LeanfaceError(f"--set {item}: {head} is a group; set one of its fields, e.g. {head}.<field>=...")
        return dataclasses.replace(cfg, **{head: override(value, f"{rest}={text}")})
    if rest:
        raise LeanfaceError(f"--set {item}: {head} has no fields")
    kind = typing.get_type_hints(type(cfg))[head]
    if text.strip().lower() == "none" and type(None) in typing.get_args(kind):
        return dataclasses.replace(cfg, **{head: None})
    try:
        parsed = _value_parser(kind)(text.strip())
    except (argparse.ArgumentTypeError, ValueError) as exc:
        raise LeanfaceError(f"--set {item}: {exc}") from None
    return dataclasses.replace(cfg, **{head: parsed})
