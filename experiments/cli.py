"""A typed command line built from a frozen config dataclass.

Every field becomes `--field-name`, typed from its annotation (int, float,
str, Path, bool as --x / --no-x, Literal as choices, `X | None` as optional)
with its default and its `help` metadata shown by `--help`.
"""

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal


def option(help_text: str, default: Any = None) -> Any:
    """A config field with the help text that `--help` shows."""
    return dataclasses.field(default=default, metadata={"help": help_text})


def _base_type(annotation: Any) -> Any:
    """`X | None` -> X; anything else unchanged."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation


def _add_argument(
    parser: argparse.ArgumentParser, field: dataclasses.Field, annotation: Any, per_preset: dict
) -> None:
    flag = "--" + field.name.replace("_", "-")
    base = _base_type(annotation)
    default = field.default
    shown = f"per preset: {per_preset[field.name]}" if field.name in per_preset else default
    kwargs: dict[str, Any] = {
        "default": default,
        "help": f"{field.metadata.get('help', '')} (default {shown})",
    }
    if base is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(base) is Literal:
        choices = typing.get_args(base)
        kwargs.update(choices=choices, type=type(choices[0]))
    elif base in (int, float, str, Path):
        kwargs["type"] = base
    else:
        raise TypeError(f"no command-line type for field {field.name}: {annotation}")
    parser.add_argument(flag, **kwargs)


def parse_config(
    config_class: type,
    argv: list[str] | None,
    *,
    prog: str,
    description: str,
    preset_defaults: dict[str, dict] | None = None,
) -> Any:
    """Parse `argv` (None: sys.argv) into an instance of `config_class`.

    `preset_defaults` maps preset names to the values that fill a field left
    at None; `--help` lists them.
    """
    per_preset: dict[str, str] = {}
    for preset, values in (preset_defaults or {}).items():
        for name, value in values.items():
            per_preset[name] = f"{per_preset[name]}, " if name in per_preset else ""
            per_preset[name] += f"{preset} {value}"
    parser = argparse.ArgumentParser(prog=prog, description=description)
    hints = typing.get_type_hints(config_class)
    for field in dataclasses.fields(config_class):
        _add_argument(parser, field, hints[field.name], per_preset)
    return config_class(**vars(parser.parse_args(argv)))
