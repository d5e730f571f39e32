"""A name resolver for ember that looks names up in a text file.

URIs: ``ember+file://NAME`` or ``ember+file://localhost/NAME``, optionally followed by
``?names=PATH`` to choose the names file. Use the ``localhost`` form with
:class:`ember.Proxy`, whose URI parser expects an ``ADDRESS/OBJECT_ID`` shape before it
hands a URI to a resolver. Any other query option is passed on to the resolved URI, so
``ember+file://localhost/kv?serializer=serpent`` still chooses the serializer.

The names file contains one ``NAME DIRECT-URI`` pair per line; blank lines and lines
starting with ``#`` are ignored::

    # name      direct URI
    kvstore     ember+tcp://127.0.0.1:5555/kvstore

Without ``?names=``, the path comes from the environment variable ``EMBERFILE_NAMES``.
It deliberately does not start with ``EMBER_``: ember treats every ``EMBER_*``
variable as one of its own settings and refuses to start when it finds one it does not
know, so a plugin must never invent one.

The file is read again whenever its modification time or size changes, so edits apply
to the next lookup without a restart.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote

from ember.kernel.errors import UsageError
from ember.kernel.resolver import Resolver
from ember.remote.uri import URI

__all__ = ["ENVIRONMENT_VARIABLE", "FileNamesResolver", "SCHEME"]

SCHEME = "ember+file"
#: Environment variable naming the names file when a URI has no ``names`` option.
ENVIRONMENT_VARIABLE = "EMBERFILE_NAMES"
# Query option that names the file; every other option goes on to the resolved URI.
_FILE_OPTION = "names"
# Names follow ember's object-id rules, so a name is valid wherever an object id is.
_NAME_PATTERN = re.compile(r"[A-Za-z0-9._~-]{1,128}")
# A names file is a small local table; a larger file is a mistake, not a table.
_MAX_FILE_SIZE = 1024 * 1024
_LOCAL_HOST = "localhost"


@dataclass(frozen=True, slots=True)
class _Table:
    signature: tuple[int, int]
    targets: dict[str, str]


class FileNamesResolver(Resolver):
    """Resolves ``ember+file://`` URIs through a names file."""

    name = "filenames"
    schemes = (SCHEME,)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tables: dict[Path, _Table] = {}

    def resolve(self, uri: str, options: Mapping[str, object]) -> str:
        name, query = _split(uri)
        path = _names_path(uri, query)
        target = self._table(path).get(name)
        if target is None:
            raise UsageError(
                f"cannot resolve {_shown(uri)}: name {name!r} is not listed in the names file "
                f"{str(path)!r}; add a line '{name} DIRECT-URI' to it"
            )
        passed_on = [(key, value) for key, value in query if key != _FILE_OPTION]
        if not passed_on:
            return target
        separator = "&" if "?" in target else "?"
        return target + separator + "&".join(
            f"{quote(key, safe='')}={quote(value, safe='')}" for key, value in passed_on)

    def _table(self, path: Path) -> dict[str, str]:
        try:
            status = path.stat()
        except OSError as error:
            raise UsageError(
                f"cannot read the names file {str(path)!r}: {error.strerror}; create it, or "
                f"point ?{_FILE_OPTION}= or {ENVIRONMENT_VARIABLE} at an existing one"
            ) from None
        signature = (status.st_mtime_ns, status.st_size)

        with self._lock:
            table = self._tables.get(path)
            if table is None or table.signature != signature:
                table = _Table(signature, _read_table(path, status.st_size))
                self._tables[path] = table
            return table.targets


def _split(uri: str) -> tuple[str, list[tuple[str, str]]]:
    """Return the name and the query options of ``uri``; raise UsageError naming it."""
    if not isinstance(uri, str):
        raise UsageError(f"a URI must be a str, got {type(uri).__name__}")
    prefix = SCHEME + "://"
    if uri[:len(prefix)].lower() != prefix:
        raise UsageError(f"invalid URI {_shown(uri)}: expected {prefix}NAME")

    rest, _, query_text = uri[len(prefix):].partition("?")
    host, slash, name = rest.partition("/")
    if not slash:
        host, name = "", rest
    elif host.lower() != _LOCAL_HOST:
        raise UsageError(f"invalid URI {_shown(uri)}: the part before the name must be "
                         f"{_LOCAL_HOST!r} or absent, as in {prefix}NAME")
    if not _NAME_PATTERN.fullmatch(name):
        raise UsageError(f"invalid name in URI {_shown(uri)}: a name has 1 to 128 characters "
                         f"from A-Z a-z 0-9 . _ ~ -")
    return name, parse_qsl(query_text, keep_blank_values=True)


def _names_path(uri: str, query: list[tuple[str, str]]) -> Path:
    chosen = [value for key, value in query if key == _FILE_OPTION]
    if len(chosen) > 1:
        raise UsageError(f"URI {_shown(uri)} gives ?{_FILE_OPTION}= more than once")
    text = chosen[0] if chosen else os.environ.get(ENVIRONMENT_VARIABLE, "")
    if not text:
        raise UsageError(
            f"cannot resolve {_shown(uri)}: no names file; add ?{_FILE_OPTION}=PATH to the URI "
            f"or set {ENVIRONMENT_VARIABLE}"
        )
    return Path(text)


def _read_table(path: Path, size: int) -> dict[str, str]:
    if size > _MAX_FILE_SIZE:
        raise UsageError(f"the names file {str(path)!r} has {size} bytes; the limit is "
                         f"{_MAX_FILE_SIZE}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read the names file {str(path)!r}: {error}") from None

    targets: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{str(path)!r} line {number}"
        fields = stripped.split()
        if len(fields) != 2:
            raise UsageError(f"{where}: expected 'NAME DIRECT-URI', got {len(fields)} fields")
        name, target = fields
        if not _NAME_PATTERN.fullmatch(name):
            raise UsageError(f"{where}: invalid name {name!r}")
        if name in targets:
            raise UsageError(f"{where}: name {name!r} is listed twice")
        try:
            parsed = URI.parse(target)
        except UsageError as error:
            raise UsageError(f"{where}: {error}") from None
        if parsed.scheme == SCHEME:
            raise UsageError(f"{where}: {name!r} points to another {SCHEME} URI; give a "
                             f"direct URI such as ember+tcp://127.0.0.1:5555/{name}")
        targets[name] = target
    return targets


def _shown(uri: str) -> str:
    return repr(uri) if len(uri) <= 100 else repr(uri[:97] + "...")
