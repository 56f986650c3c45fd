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


def option(help_text: str, default: Any = None, *, at_least: float | None = None,
           above: float | None = None) -> Any:
    """A config field with the help text that `--help` shows (which names the default unless
    the text does), and the bounds that `parse_config` checks: `at_least` (inclusive) and
    `above` (exclusive), where given."""
    return dataclasses.field(default=default, metadata={"help": help_text, "at_least": at_least, "above": above})


def flag(name: str) -> str:
    """The command-line flag of a config field: --field-name."""
    return "--" + name.replace("_", "-")


def check_bounds(config: Any) -> None:
    """Refuse a field outside the bounds of its `option`, before any work starts."""
    for field in dataclasses.fields(config):
        value, at_least, above = getattr(config, field.name), field.metadata.get("at_least"), field.metadata.get("above")
        if value is not None and at_least is not None and not value >= at_least:
            raise ValueError(f"{flag(field.name)} must be at least {at_least}, got {value}")
        if value is not None and above is not None and not value > above:
            raise ValueError(f"{flag(field.name)} must be above {above}, got {value}")


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
    base = _base_type(annotation)
    default, help_text = field.default, field.metadata.get("help", "")
    shown = f"per preset: {per_preset[field.name]}" if field.name in per_preset else default
    kwargs: dict[str, Any] = {
        "default": default,
        "help": help_text if "(default" in help_text else f"{help_text} (default {shown})",
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
    parser.add_argument(flag(field.name), **kwargs)


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
    config = config_class(**vars(parser.parse_args(argv)))
    check_bounds(config)
    # Imported here: experiments.backend declares its options with this module's `option`.
    from experiments.backend import BackendOptions, use_backend

    if isinstance(config, BackendOptions):
        use_backend(config)
    return config
