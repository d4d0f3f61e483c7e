"""The command line of predictor.settings: one flag per setting, `--help` by group.

`parse_settings(argv)` is what `main()` calls: flags beat `HOUSING_*` variables, which beat
the older names, which beat the defaults; a bad value exits 2 naming the flag and its
variables, without a traceback and without echoing a secret.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError
from pydantic.fields import FieldInfo

from predictor.settings import ENV_PREFIX, GROUPS, Settings, field_extra


def flag_of(name: str) -> str:
    return str(field_extra(name)["flag"] or f"--{name}")


def env_names(name: str) -> list[str]:
    return [f"{ENV_PREFIX}{name.upper()}", *field_extra(name)["env"]]


def shown_default(name: str) -> str:
    value = Settings.model_fields[name].default
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def help_text(name: str) -> str:
    info = Settings.model_fields[name]
    default = "required" if info.is_required() else f"default: {shown_default(name)}"
    return f"{info.description} [{default}; env: {', '.join(env_names(name))}]"


def build_parser() -> argparse.ArgumentParser:
    """The flags, one per field (`cli=False` ones excepted), grouped, with their defaults
    and environment variables. Absent flags stay out of the namespace (the environment or
    the default decides), so even `--model_dir` is not required here: it may come from
    the environment, and pydantic says when it comes from nowhere."""
    parser = argparse.ArgumentParser(
        prog="python -m predictor",
        description="Serve the California housing model with KServe. Every flag can also "
        f"be set by its environment variable ({ENV_PREFIX}<NAME>); a flag wins.",
        usage="%(prog)s --model_dir DIR [flags]",
        argument_default=argparse.SUPPRESS,
        allow_abbrev=False,
    )
    groups = {key: parser.add_argument_group(title) for key, title in GROUPS.items()}
    for name, info in Settings.model_fields.items():
        extra = field_extra(name)
        if not extra["cli"]:
            continue
        spellings = [flag_of(name)]
        if extra["flag"]:
            spellings.append(f"--{name}")  # --event_loop as well as kserve's --event-loop
        choices = _choices(info)
        groups[extra["group"]].add_argument(
            *spellings,
            dest=name,
            choices=choices,
            type=str.upper if choices and all(c.isupper() for c in choices) else str,
            metavar=None if choices else _metavar(info),
            help=help_text(name).replace("%", "%%"),  # argparse formats help with %
        )
    return parser


def _choices(info: FieldInfo) -> list[str] | None:
    args = get_args(info.annotation)
    if args and all(isinstance(arg, str) for arg in args):
        return list(args)
    return None


def _metavar(info: FieldInfo) -> str:
    annotation = info.annotation
    if annotation is bool:
        return "{true,false}"
    for kind, name in ((int, "N"), (float, "X"), (Path, "DIR")):
        if annotation is kind or kind in get_args(annotation):
            return name
    return "TEXT"


def parse_settings(argv: Sequence[str] | None = None) -> Settings:
    """Flags (`argv`, default `sys.argv[1:]`) over the environment over the defaults; a
    bad value exits 2 naming the flag and its variables, never echoing a secret."""
    parser = build_parser()
    given = vars(parser.parse_args(argv))
    try:
        return Settings(**given)
    except ValidationError as e:
        parser.error("; ".join(_explain(error) for error in e.errors()))


def _explain(error: Mapping[str, Any]) -> str:
    name = str(error["loc"][0]) if error["loc"] else ""
    if name not in Settings.model_fields:
        return str(error["msg"])
    where = " / ".join([flag_of(name)] * bool(field_extra(name)["cli"]) + env_names(name))
    message = str(error["msg"]).removeprefix("Value error, ")
    if field_extra(name)["secret"]:
        return f"{where}: {message}"
    return f"{where}: {message}, got {error['input']!r}"
