"""``ember conformance``: run the conformance suite against one installed plugin.

The plugin is found by name in the registry, loaded with the environment's allow and
block lists like ``ember plugins`` does. Its kind comes from the registry unless
``--kind`` names it. Its capabilities and harness come from the conformance profile its
distribution publishes (entry-point group ``ember.conformance``); without one, only the
declaration is checked and every other check is reported as skipped.

Exit status: 0 when no check failed, 1 when one did, 2 for an unknown plugin or an
invalid configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ember.kernel.config import Config
from ember.kernel.errors import ConfigError, PluginError
from ember.kernel.registry import Registry
from ember.testing.profiles import (
    CATALOGS,
    PROFILE_GROUP,
    find_profile,
    lookup_plugin,
    run_profile,
)
from ember.testing.suite import CheckResult, ConformanceReport

__all__ = ["add_parser", "render_summary", "run"]

#: Exit status when at least one check failed.
EXIT_FAILED = 1
#: Exit status for an unknown plugin or an invalid configuration.
EXIT_USAGE = 2

_OUTCOME_WIDTH = len("skipped")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``conformance`` subcommand to the ``ember`` argument parser."""
    parser = subparsers.add_parser(
        "conformance",
        help="check that an installed plugin honours its contract",
        description=(
            "Run ember's conformance suite against an installed plugin and print one line "
            "per check: passed, failed (with what the plugin did and what the contract "
            "requires) or skipped (with the reason). Exits 1 if any check failed."
        ),
    )
    parser.add_argument("--plugin", required=True, metavar="NAME",
                        help="registry name of the plugin, as listed by 'ember plugins'")
    parser.add_argument("--kind", choices=tuple(CATALOGS),
                        help="kind of the plugin; needed only when several kinds share NAME")
    parser.add_argument("--check", action="append", metavar="CHECK", dest="checks",
                        help="run only this check (repeatable); see --list-checks")
    parser.add_argument("--json", metavar="FILE", type=Path,
                        help="also write the report to FILE as JSON")
    parser.add_argument("--list-checks", action="store_true",
                        help="list the checks of the plugin's kind and exit")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the suite; return 0 if no check failed, 1 if one did, 2 for a usage error."""
    try:
        config = Config.from_environment()
    except ConfigError as error:
        print(f"ember conformance: {error}", file=sys.stderr)
        return EXIT_USAGE

    registry = Registry.load(config)
    try:
        kind = _find_kind(registry, args.plugin, args.kind)
    except PluginError as error:
        print(f"ember conformance: {error}", file=sys.stderr)
        return EXIT_USAGE

    catalog = CATALOGS[kind]
    if args.list_checks:
        width = max(len(name) for name in catalog.names())
        for check in catalog:
            print(f"{check.name.ljust(width)}  {check.summary}")
        return 0

    unknown = sorted(set(args.checks or ()) - set(catalog.names()))
    if unknown:
        print(f"ember conformance: unknown {kind} checks: {', '.join(unknown)}; "
              f"see 'ember conformance --plugin {args.plugin} --list-checks'", file=sys.stderr)
        return EXIT_USAGE

    plugin = lookup_plugin(registry, kind, args.plugin)
    distribution = _distribution(registry, kind, args.plugin)
    profile = find_profile(args.plugin, kind)
    print(f"ember conformance: {kind} {args.plugin!r} from distribution {distribution!r}")
    if profile is None:
        print(f"  no conformance profile is published (entry-point group {PROFILE_GROUP}); "
              f"only the declaration is checked")

    report = run_profile(plugin, kind, profile, name=args.plugin, distribution=distribution,
                         selected=args.checks, progress=_print_result)
    print(render_summary(report))

    if args.json is not None:
        args.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    return EXIT_FAILED if report.failed else 0


def render_summary(report: ConformanceReport) -> str:
    """Return the closing line, such as ``35 checks: 33 passed, 1 failed, 1 skipped``."""
    counts = report.counts()
    return (f"{len(report.results)} checks: {counts['passed']} passed, {counts['failed']} "
            f"failed, {counts['skipped']} skipped")


def _print_result(result: CheckResult) -> None:
    line = f"  {result.outcome.ljust(_OUTCOME_WIDTH)}  {result.check}"
    if result.outcome == "skipped":
        line += f": {result.message}"
    print(line, flush=True)
    if result.outcome == "failed":
        print(f"  {' ' * _OUTCOME_WIDTH}  {result.message}", flush=True)


def _find_kind(registry: Registry, name: str, requested: str | None) -> str:
    """Return the kind of the registered plugin ``name``, or raise PluginError."""
    kinds = [kind for kind in CATALOGS if name in registry.names(kind)]
    if requested is not None:
        if requested in kinds:
            return requested
        kinds = []
    if len(kinds) == 1:
        return kinds[0]
    if len(kinds) > 1:
        raise PluginError(f"{' and '.join(kinds)} plugins are both named {name!r}; choose "
                          f"one with --kind", plugin=name)

    for record in registry.records:
        if record.name == name and record.status != "loaded":
            raise PluginError(
                f"plugin {name!r} of distribution {record.distribution!r} did not load "
                f"({record.status}): {record.reason}", plugin=name)
    registered = "; ".join(f"{kind}s: {', '.join(registry.names(kind)) or 'none'}"
                           for kind in CATALOGS)
    what = f"{requested} {name!r}" if requested else f"plugin {name!r}"
    raise PluginError(f"{what} is not registered; registered {registered}", plugin=name)


def _distribution(registry: Registry, kind: str, name: str) -> str:
    for record in registry.records:
        if record.kind == kind and record.name == name and record.status == "loaded":
            return record.distribution
    return "<unknown>"
