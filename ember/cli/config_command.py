"""``ember config``: the effective configuration and where each value came from.

Secret settings print as ``<set>`` or ``<unset>``, never their value. An invalid
``EMBER_*`` variable prints its error and exits 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from typing import Any

from ember.cli.plugins_command import EXIT_CONFIG_ERROR, format_table
from ember.kernel.config import Config, Setting, Source
from ember.kernel.config_reference import format_value
from ember.kernel.errors import ConfigError

__all__ = ["add_parser", "render_json", "render_table", "run"]

_HEADERS = ("SETTING", "VALUE", "UNIT", "SOURCE", "ENVIRONMENT VARIABLE")

Entry = tuple[Setting, Any, Source]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``config`` subcommand to the ``ember`` argument parser."""
    parser = subparsers.add_parser(
        "config",
        help="print the effective configuration",
        description=(
            "Print each setting with its effective value, unit, source (default, "
            "environment or code) and environment variable. Secret settings print only "
            "whether they are set."
        ),
    )
    parser.add_argument(
        "--json", action="store_true", help="print a JSON object keyed by setting name"
    )
    parser.add_argument(
        "--defaults",
        action="store_true",
        help="print the built-in defaults, ignoring EMBER_* environment variables",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the configuration; return 0, or 2 for an invalid ``EMBER_*`` variable."""
    try:
        config = Config.defaults() if args.defaults else Config.from_environment()
    except ConfigError as exc:
        print(f"ember config: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR

    entries = list(config.describe())
    print(render_json(entries) if args.json else render_table(entries))
    return 0


def render_table(entries: Iterable[Entry]) -> str:
    """Format settings as an aligned table, values written as in the environment."""
    rows = [
        (setting.name, format_value(setting, value), setting.unit or "-", source,
         setting.env_var)
        for setting, value, source in entries
    ]
    return format_table(_HEADERS, rows)


def render_json(entries: Iterable[Entry]) -> str:
    """Format settings as a JSON object keyed by setting name, in declaration order.

    Values keep their JSON type (lists for list settings); a secret is ``"<set>"`` or
    ``"<unset>"``.
    """
    document = {
        setting.name: {
            "value": _json_value(setting, value),
            "unit": setting.unit,
            "source": source,
            "env_var": setting.env_var,
        }
        for setting, value, source in entries
    }
    return json.dumps(document, indent=2)


def _json_value(setting: Setting, value: Any) -> Any:
    if setting.secret:
        return format_value(setting, value)
    if isinstance(value, tuple):
        return list(value)
    return value
