"""Vector files: known answers and must-reject inputs, one JSON object per line.

Vector files are data, so a new attack is a new line and needs no code. Files shipped
with ember live in ``ember/testing/vectors/``; a plugin may add its own files in the same
format. In every file, blank lines and lines starting with ``#`` are ignored, and every
other line is one JSON object with an ``id`` unique within the file.

Serializer vectors (``serializer-FORMAT.jsonl``)::

    {"id": "...", "expect": "value", "hex": "83010203", "value": [1, 2, 3]}
    {"id": "...", "expect": "reject", "parts": [["81", 100000], ["00", 1]]}

``hex`` gives the body; ``parts`` builds a large body from ``[hex, repeat]`` pairs.
``value`` uses the notation of :func:`ember.testing.values.decode_notation`. Optional:
``max_depth``, ``max_size`` and ``max_items`` (the decode limits, default 64, 64 MiB
and 250,000), ``requires``
(type names the serializer must declare, else the vector is skipped) and ``note``.

Transport address vectors (``transport-addresses.jsonl``) hold ``transport`` (a name,
or ``"*"`` for every transport), ``text``, ``expect`` (``"valid"`` or ``"reject"``),
optional ``listening`` and, for a valid address, optional ``formatted``: the text that
``format_address`` must return.

Resolver vectors (``resolver-uris.jsonl``) hold ``uri``, where ``{scheme}`` stands for
each scheme the resolver declares and ``{filler}`` for ``filler`` (a count) letters
``x``, and ``expect`` (only ``"reject"`` so far).

Session attacks (``authenticator-attacks.jsonl``) are described in
:mod:`ember.testing.authenticator_checks`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ember.testing.values import TYPE_NAMES, decode_notation

__all__ = [
    "AddressVector",
    "ResolverVector",
    "SerializerVector",
    "VectorError",
    "read_address_vectors",
    "read_records",
    "read_resolver_vectors",
    "read_serializer_vectors",
    "shipped_vector_file",
]

# A vector body is built in memory before it is decoded; this bounds what a file can ask.
_MAX_VECTOR_BODY = 64 * 1024 * 1024


class VectorError(ValueError):
    """A vector file is malformed; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class SerializerVector:
    id: str
    expect: str
    data: bytes
    value: object
    max_depth: int
    max_size: int
    requires: frozenset[str]
    where: str
    note: str = ""
    max_items: int = 250_000


@dataclass(frozen=True, slots=True)
class AddressVector:
    transport: str
    text: str
    expect: str
    listening: bool
    formatted: str | None
    where: str


@dataclass(frozen=True, slots=True)
class ResolverVector:
    id: str
    uri: str
    expect: str
    where: str


def shipped_vector_file(name: str) -> Path | None:
    """Return the path of the vector file ``name`` shipped with ember, if it exists."""
    path = Path(str(resources.files("ember.testing").joinpath("vectors", name)))
    return path if path.is_file() else None


def read_records(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(where, record)`` for every JSON object line of ``path``.

    ``where`` reads ``file:line`` for messages. Raises :class:`VectorError` for a line
    that is not a JSON object or lacks a unique ``id``.
    """
    path = Path(path)
    seen: set[str] = set()
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            where = f"{path.name}:{number}"
            try:
                record = json.loads(stripped)
            except ValueError as error:
                raise VectorError(f"{where}: invalid JSON: {error}") from None
            if not isinstance(record, dict):
                raise VectorError(f"{where}: expected a JSON object, got {type(record).__name__}")
            identifier = record.get("id")
            if not isinstance(identifier, str) or not identifier:
                raise VectorError(f"{where}: missing \"id\"")
            if identifier in seen:
                raise VectorError(f"{where}: id {identifier!r} appears twice in the file")
            seen.add(identifier)
            yield where, record


def read_serializer_vectors(path: str | Path) -> list[SerializerVector]:
    """Parse a serializer vector file; raises :class:`VectorError` naming the line."""
    vectors = []
    for where, record in read_records(path):
        expect = _choice(record, "expect", ("value", "reject"), where)
        data = _body(record, where)
        value = None
        if expect == "value":
            if "value" not in record:
                raise VectorError(f"{where}: a vector expecting a value needs \"value\"")
            try:
                value = decode_notation(record["value"])
            except ValueError as error:
                raise VectorError(f"{where}: {error}") from None
        requires = frozenset(record.get("requires", ()))
        unknown = sorted(requires - set(TYPE_NAMES))
        if unknown:
            raise VectorError(f"{where}: unknown type names in \"requires\": {unknown}")
        vectors.append(SerializerVector(
            id=record["id"],
            expect=expect,
            data=data,
            value=value,
            max_depth=_positive(record, "max_depth", 64, where),
            max_size=_positive(record, "max_size", 64 * 1024 * 1024, where),
            max_items=_positive(record, "max_items", 250_000, where),
            requires=requires,
            where=where,
            note=str(record.get("note", "")),
        ))
    return vectors


def read_address_vectors(path: str | Path) -> list[AddressVector]:
    vectors = []
    for where, record in read_records(path):
        text = record.get("text")
        transport = record.get("transport")
        if not isinstance(text, str) or not isinstance(transport, str):
            raise VectorError(f"{where}: \"transport\" and \"text\" must be strings")
        formatted = record.get("formatted")
        vectors.append(AddressVector(
            transport=transport,
            text=text,
            expect=_choice(record, "expect", ("valid", "reject"), where),
            listening=bool(record.get("listening", False)),
            formatted=formatted if isinstance(formatted, str) else None,
            where=where,
        ))
    return vectors


def read_resolver_vectors(path: str | Path) -> list[ResolverVector]:
    vectors = []
    for where, record in read_records(path):
        uri = record.get("uri")
        if not isinstance(uri, str):
            raise VectorError(f"{where}: \"uri\" must be a string")
        filler = record.get("filler", 0)
        if not isinstance(filler, int) or not 0 <= filler <= _MAX_VECTOR_BODY:
            raise VectorError(f"{where}: \"filler\" must be an integer from 0 to "
                              f"{_MAX_VECTOR_BODY}")
        vectors.append(ResolverVector(
            id=record["id"],
            uri=uri.replace("{filler}", "x" * filler),
            expect=_choice(record, "expect", ("reject",), where),
            where=where,
        ))
    return vectors


def _body(record: dict[str, Any], where: str) -> bytes:
    if "hex" in record:
        try:
            return bytes.fromhex(record["hex"])
        except (TypeError, ValueError) as error:
            raise VectorError(f"{where}: invalid \"hex\": {error}") from None

    parts = record.get("parts")
    if not isinstance(parts, list) or not parts:
        raise VectorError(f"{where}: a vector needs \"hex\" or a non-empty \"parts\" list")
    chunks = []
    total = 0
    for part in parts:
        if (not isinstance(part, list) or len(part) != 2 or not isinstance(part[0], str)
                or not isinstance(part[1], int) or part[1] < 1):
            raise VectorError(f"{where}: each part must be [hex text, repeat count >= 1]")
        try:
            piece = bytes.fromhex(part[0])
        except ValueError as error:
            raise VectorError(f"{where}: invalid hex in \"parts\": {error}") from None
        total += len(piece) * part[1]
        if total > _MAX_VECTOR_BODY:
            raise VectorError(f"{where}: body exceeds {_MAX_VECTOR_BODY} bytes")
        chunks.append(piece * part[1])
    return b"".join(chunks)


def _choice(record: dict[str, Any], key: str, allowed: tuple[str, ...], where: str) -> str:
    value = record.get(key)
    if value not in allowed:
        raise VectorError(f"{where}: \"{key}\" must be one of {', '.join(allowed)}, got {value!r}")
    return str(value)


def _positive(record: dict[str, Any], key: str, default: int, where: str) -> int:
    value = record.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise VectorError(f"{where}: \"{key}\" must be a positive integer, got {value!r}")
    return value
