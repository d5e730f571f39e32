"""``ember plugins``: every plugin entry point and what became of it.

The command loads the ``ember`` entry-point group with the allow and block lists of the
environment and lists each record (loaded, failed, blocked or rejected) with its reason.
Plugins that failed are part of the report, so the command still exits 0. Only an
invalid ``EMBER_*`` environment makes it exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Iterable, Sequence

from ember.kernel.config import Config
from ember.kernel.errors import ConfigError
from ember.kernel.hookspecs import PROJECT_NAME
from ember.kernel.registry import PluginRecord, Registry

__all__ = ["add_parser", "format_table", "render_json", "render_table", "run"]

_HEADERS = ("KIND", "NAME", "WIRE ID", "DISTRIBUTION", "ENTRY POINT", "STATUS", "REASON")

#: Exit status for an invalid configuration.
EXIT_CONFIG_ERROR = 2


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``plugins`` subcommand to the ``ember`` argument parser."""
    parser = subparsers.add_parser(
        "plugins",
        help="list installed plugins and whether each one loaded",
        description=(
            f"Load every plugin of the '{PROJECT_NAME}' entry-point group, applying "
            "EMBER_PLUGINS_ALLOW and EMBER_PLUGINS_BLOCK, and list each declared object "
            "and each entry point that failed, was blocked or was rejected, with the reason."
        ),
    )
    parser.add_argument(
        "--json", action="store_true", help="print the records as a JSON array instead of a table"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the plugin records; return 0, or 2 for an invalid configuration."""
    try:
        config = Config.from_environment()
    except ConfigError as exc:
        print(f"ember plugins: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR

    records = Registry.load(config).records
    print(render_json(records) if args.json else render_table(records))
    return 0


def render_table(records: Sequence[PluginRecord]) -> str:
    """Format records as an aligned table, one row per record."""
    if not records:
        return f"no plugins are installed in the '{PROJECT_NAME}' entry-point group"
    rows = [
        (
            record.kind,
            record.name,
            "-" if record.wire_id is None else str(record.wire_id),
            record.distribution,
            record.entry_point or "-",
            record.status,
            record.reason or "-",
        )
        for record in records
    ]
    return format_table(_HEADERS, rows)


def render_json(records: Iterable[PluginRecord]) -> str:
    """Format records as a JSON array of objects keyed by the record's field names."""
    return json.dumps([dataclasses.asdict(record) for record in records], indent=2)


def format_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Align ``rows`` under ``headers`` in columns two spaces apart.

    The last column is not padded, so long reasons add no trailing spaces.
    """
    table = [list(headers), *(list(row) for row in rows)]
    widths = [max(len(row[column]) for row in table) for column in range(len(headers))]
    lines = []
    for row in table:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths[:-1], strict=True)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)
