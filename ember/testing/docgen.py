"""Generate the reference parts of docs/plugins.md from the code.

Two sections of the plugin-author guide are never edited by hand: the hook reference,
built from the docstrings in :mod:`ember.kernel.hookspecs`, and the list of conformance
checks, built from the check catalogs. Each sits between a pair of HTML comments::

    <!-- BEGIN GENERATED: hooks -->
    ...
    <!-- END GENERATED: hooks -->

``python -m ember.testing.docgen docs/plugins.md`` rewrites both sections in place, and
``--check`` only reports whether they are current (exit 1 if not). A test runs the
check, so the committed guide cannot drift from the code.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ember.kernel import hookspecs
from ember.testing.profiles import CATALOGS

__all__ = ["SECTIONS", "render_checks", "render_hooks", "update_document", "main"]

# Sphinx roles such as :class:`~ember.kernel.serializer.Serializer`: a leading ~ shows
# only the last component of the dotted name.
_ROLE = re.compile(r":[a-z]+:`(~?)([^`]+)`")
_DOUBLE_BACKTICKS = re.compile(r"``([^`]+)``")


def _markdown(text: str) -> str:
    """Turn the reStructuredText markup used in ember's docstrings into Markdown."""
    def role(match: re.Match[str]) -> str:
        target = match.group(2)
        return f"`{target.rsplit('.', 1)[-1]}`" if match.group(1) else f"`{target}`"

    text = _ROLE.sub(role, text)
    return _DOUBLE_BACKTICKS.sub(r"`\1`", text)


def render_hooks() -> str:
    """Return the hook reference: one subsection per hook specification."""
    parts = []
    for name in hookspecs.HOOK_NAMES:
        function = getattr(hookspecs, name)
        # Annotations are strings here (postponed evaluation); show them without quotes.
        signature = str(inspect.signature(function)).replace("'", "")
        docstring = inspect.getdoc(function)
        if not docstring:
            raise ValueError(f"hook specification {name} has no docstring to document")
        parts.append(f"### `{name}{signature}`\n\n{_markdown(docstring)}\n")
    return "\n".join(parts)


def render_checks() -> str:
    """Return the list of conformance checks, one table per plugin kind."""
    parts = []
    for kind, catalog in CATALOGS.items():
        rows = "\n".join(f"| `{check.name}` | {_markdown(check.summary)} |" for check in catalog)
        parts.append(f"### {kind.capitalize()} checks\n\n| check | what it proves |\n"
                     f"| --- | --- |\n{rows}\n")
    return "\n".join(parts)


#: Each generated section by its marker name.
SECTIONS: dict[str, Callable[[], str]] = {"hooks": render_hooks, "checks": render_checks}


def update_document(text: str) -> str:
    """Return ``text`` with every generated section replaced by its current content.

    Raises ``ValueError`` naming a section whose markers are missing.
    """
    for name, render in SECTIONS.items():
        begin = f"<!-- BEGIN GENERATED: {name} -->"
        end = f"<!-- END GENERATED: {name} -->"
        start = text.find(begin)
        stop = text.find(end)
        if start < 0 or stop < start:
            raise ValueError(f"the document has no {begin} ... {end} section")
        text = text[:start + len(begin)] + "\n\n" + render() + "\n" + text[stop:]
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ember.testing.docgen",
        description="Regenerate the hook and check references in the plugin-author guide.",
    )
    parser.add_argument("document", type=Path, help="the Markdown file, docs/plugins.md")
    parser.add_argument("--check", action="store_true",
                        help="only report whether the file is current; exit 1 if not")
    args = parser.parse_args(argv)

    current = args.document.read_text(encoding="utf-8")
    updated = update_document(current)
    if args.check:
        if updated != current:
            print(f"{args.document} is out of date; run python -m ember.testing.docgen "
                  f"{args.document}", file=sys.stderr)
            return 1
        return 0
    args.document.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
