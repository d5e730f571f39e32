"""The ``ember`` command: one subcommand per module in this package."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import ember.cli.config_command as config_command
import ember.cli.conformance_command as conformance_command
import ember.cli.demo as demo
import ember.cli.echo_server as echo_server
import ember.cli.keygen as keygen
import ember.cli.plugins_command as plugins_command
from ember.kernel.errors import EmberError

__all__ = ["main"]

_COMMANDS = (demo, echo_server, keygen, plugins_command, config_command, conformance_command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ember",
        description="Publish Python objects over the network and call them remotely.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more: -v for INFO, -vv for DEBUG")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in _COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        result: int = args.run(args)
    except EmberError as error:
        print(f"ember {args.command}: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of our output went away (as in "ember config | head"); point stdout
        # at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return result
