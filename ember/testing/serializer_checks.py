"""Conformance checks for serializers, callable without pytest.

Every check takes a :class:`SerializerSubject`: the serializer and its declared
:class:`~ember.testing.capabilities.SerializerCapabilities`. Decoding runs on untrusted
bytes, so every call to ``loads`` here is bounded in time (and, for hostile vectors, in
traced memory), and anything but a value or
:class:`~ember.kernel.errors.ProtocolError` is a failure.
"""

from __future__ import annotations

import contextlib
import functools
import random
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ember.kernel.errors import ProtocolError, SerializationError
from ember.kernel.serializer import MAX_WIRE_ID, PLUGIN_NAME_PATTERN, DecodeLimits, Serializer
from ember.testing.capabilities import SerializerCapabilities
from ember.testing.suite import (
    CheckCatalog,
    CheckFailed,
    CheckSkipped,
    ConformanceReport,
    call_with_deadline,
    describe_call_error,
    run_checks,
)
from ember.testing.values import (
    CONTAINER_TYPES,
    TYPE_NAMES,
    find_difference,
    find_undeclared_type,
    nested_sample,
    sample_values,
)
from ember.testing.vectors import SerializerVector, read_serializer_vectors, shipped_vector_file

__all__ = ["SERIALIZER_CHECKS", "SerializerSubject", "check_serializer", "load_vectors"]

SERIALIZER_CHECKS: CheckCatalog[SerializerSubject] = CheckCatalog("serializer")

_DEFAULT_LIMITS = DecodeLimits()

# Traced memory that decoding one hostile vector may add on top of a few copies of its
# own body. A decoder that believes a declared length of 2**32 exceeds this at once.
_HOSTILE_MEMORY_ALLOWANCE = 16 * 1024 * 1024

# Random inputs per run of the garbage check; the seed is fixed so a failure repeats.
_GARBAGE_SAMPLES = 400
_GARBAGE_SEED = 0x454D


@dataclass(frozen=True, slots=True)
class SerializerSubject:
    """A serializer under test with its declared capabilities."""

    serializer: Serializer
    capabilities: SerializerCapabilities


@contextlib.contextmanager
def _open_subject(
    factory: Callable[[], Serializer], capabilities: SerializerCapabilities
) -> Iterator[SerializerSubject]:
    yield SerializerSubject(factory(), capabilities)


def check_serializer(
    factory: Callable[[], Serializer],
    capabilities: SerializerCapabilities,
    *,
    selected: list[str] | None = None,
) -> ConformanceReport:
    """Run the serializer checks without pytest and return the report.

    ``factory`` returns the serializer to test; it is called once per check.
    ``selected`` restricts the run to the named checks.
    """
    return run_checks(
        SERIALIZER_CHECKS,
        lambda: _open_subject(factory, capabilities),
        plugin=_plugin_name(factory),
        selected=selected,
    )


def _plugin_name(factory: Callable[[], Serializer]) -> str:
    return str(getattr(factory(), "name", "serializer"))


def load_vectors(capabilities: SerializerCapabilities) -> list[SerializerVector]:
    """Read the shipped vector files of the declared formats and the plugin's own files.

    Raises :class:`CheckFailed` for a declared format that ember ships no file for, so a
    typo in ``formats`` is not mistaken for a serializer without vectors.
    """
    paths: list[Path] = []
    for format_name in capabilities.formats:
        path = shipped_vector_file(f"serializer-{format_name}.jsonl")
        if path is None:
            raise CheckFailed(
                f"the capabilities declare format {format_name!r}, but ember ships no "
                f"vector file serializer-{format_name}.jsonl",
                "a format with shipped vectors, or the plugin's own files in vector_files",
            )
        paths.append(path)
    paths.extend(Path(path) for path in capabilities.vector_files)

    vectors: list[SerializerVector] = []
    for path in paths:
        vectors.extend(read_serializer_vectors(path))
    return vectors


# -- helpers -------------------------------------------------------------------------


def _dumps(serializer: Serializer, value: object) -> bytes:
    data = call_with_deadline(lambda: serializer.dumps(value), "dumps")
    if type(data) is not bytes:
        raise CheckFailed(
            f"dumps returned {type(data).__name__}, not bytes",
            "dumps to return bytes",
        )
    return data


def _loads(serializer: Serializer, data: bytes, limits: DecodeLimits = _DEFAULT_LIMITS) -> object:
    return call_with_deadline(lambda: serializer.loads(data, limits), "loads")


def _expect_protocol_error(
    serializer: Serializer, data: bytes, limits: DecodeLimits, what: str, required: str
) -> None:
    """Fail unless ``loads(data)`` raises ProtocolError in bounded time."""
    try:
        value = _loads(serializer, data, limits)
    except ProtocolError:
        return
    except CheckFailed as failure:
        raise CheckFailed(f"{what}: {failure.observed}", required) from None
    except Exception as error:  # noqa: BLE001 - any other exception is the finding
        raise CheckFailed(f"{what}: loads raised {describe_call_error(error)}",
                          required) from None
    raise CheckFailed(f"{what}: loads returned {_short(value)} ({type(value).__name__})",
                      required)


def _expect_value_or_protocol_error(subject: SerializerSubject, data: bytes, what: str) -> None:
    """Fail unless ``loads(data)`` raises ProtocolError or returns only declared types."""
    try:
        value = _loads(subject.serializer, data)
    except ProtocolError:
        return
    except CheckFailed:
        raise
    except Exception as error:  # noqa: BLE001 - any other exception is the finding
        raise CheckFailed(
            f"{what}: loads raised {describe_call_error(error)}",
            "that loads raises only ProtocolError for malformed input",
        ) from None
    undeclared = find_undeclared_type(value, subject.capabilities.types)
    if undeclared is not None:
        raise CheckFailed(
            f"{what}: loads returned {_short(value)}, where {undeclared}",
            "that loads returns only values of the declared types, or raises ProtocolError",
        )


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _require_type(subject: SerializerSubject, type_name: str) -> None:
    if type_name not in subject.capabilities.types:
        raise CheckSkipped(f"the serializer does not declare type {type_name!r}")


def _round_trip(serializer: Serializer, value: object, what: str) -> None:
    try:
        data = _dumps(serializer, value)
    except CheckFailed:
        raise
    except Exception as error:  # noqa: BLE001 - any exception is the finding
        raise CheckFailed(
            f"dumps({_short(value)}) raised {describe_call_error(error)}",
            f"that every value of a declared type ({what}) encodes",
        ) from None
    try:
        decoded = _loads(serializer, data)
    except CheckFailed:
        raise
    except Exception as error:  # noqa: BLE001 - any exception is the finding
        raise CheckFailed(
            f"loads of the encoding of {_short(value)} raised {describe_call_error(error)}",
            "that loads decodes whatever dumps produced",
        ) from None
    difference = find_difference(value, decoded)
    if difference is not None:
        raise CheckFailed(
            f"round trip of {_short(value)} changed it: {difference}",
            f"that a value of a declared type ({what}) decodes to its own type and value",
        )


# -- checks --------------------------------------------------------------------------


@SERIALIZER_CHECKS.add("declaration")
def check_declaration(subject: SerializerSubject) -> None:
    """The serializer is a Serializer with a valid name, wire id and is_safe flag."""
    serializer = subject.serializer
    if not isinstance(serializer, Serializer):
        raise CheckFailed(f"the plugin object is a {type(serializer).__name__}",
                          "a subclass instance of ember.kernel.serializer.Serializer")
    name = getattr(serializer, "name", None)
    if not isinstance(name, str) or not PLUGIN_NAME_PATTERN.fullmatch(name):
        raise CheckFailed(f"name is {name!r}",
                          "a name of 1 to 32 lowercase letters, digits, '_' or '-'")
    wire_id = getattr(serializer, "wire_id", None)
    if type(wire_id) is not int or not 1 <= wire_id <= MAX_WIRE_ID:
        raise CheckFailed(f"wire_id is {wire_id!r}", f"an int from 1 to {MAX_WIRE_ID}")
    if not isinstance(getattr(serializer, "is_safe", None), bool):
        raise CheckFailed(f"is_safe is {getattr(serializer, 'is_safe', None)!r}",
                          "is_safe to be True or False")


def _add_round_trip_check(type_name: str) -> None:
    def check(subject: SerializerSubject) -> None:
        _require_type(subject, type_name)
        for value in sample_values(type_name):
            _round_trip(subject.serializer, value, type_name)
            if type_name in CONTAINER_TYPES:
                continue
            # Inside a container, where most encoders take another code path.
            for container in ("list", "dict"):
                if container in subject.capabilities.types:
                    wrapped = [value] if container == "list" else {"item": value}
                    _round_trip(subject.serializer, wrapped, f"{type_name} in a {container}")

    check.__doc__ = f"Values of type {type_name!r} decode to the same type and value."
    SERIALIZER_CHECKS.add(f"round-trip-{type_name}")(check)


for _type_name in TYPE_NAMES:
    _add_round_trip_check(_type_name)


@SERIALIZER_CHECKS.add("round-trip-nested")
def check_round_trip_nested(subject: SerializerSubject) -> None:
    """A value combining every declared type inside the declared containers round-trips."""
    value = nested_sample(subject.capabilities.types)
    if value is None:
        raise CheckSkipped("the serializer declares neither 'list' nor 'dict'")
    _round_trip(subject.serializer, value, "nested declared types")


@SERIALIZER_CHECKS.add("unknown-type-rejected")
def check_unknown_type_rejected(subject: SerializerSubject) -> None:
    """dumps raises SerializationError naming the type of a value it cannot encode."""
    if not subject.capabilities.rejects_unknown_types:
        raise CheckSkipped("the serializer declares that it encodes arbitrary objects")

    class UnknownConformanceType:
        __slots__ = ()

    for value in (UnknownConformanceType(), [1, UnknownConformanceType()]):
        try:
            data = _dumps(subject.serializer, value)
        except SerializationError as error:
            if "UnknownConformanceType" not in str(error):
                raise CheckFailed(
                    f"dumps raised SerializationError without naming the type: {error}",
                    "the error message to name the type it cannot encode",
                ) from None
            continue
        except CheckFailed:
            raise
        except Exception as error:  # noqa: BLE001 - any other exception is the finding
            raise CheckFailed(
                f"dumps({_short(value)}) raised {describe_call_error(error)}",
                "SerializationError for a value the serializer cannot encode",
            ) from None
        raise CheckFailed(
            f"dumps({_short(value)}) returned {len(data)} bytes",
            "SerializationError for a value outside the declared types",
        )


@SERIALIZER_CHECKS.add("empty-body-rejected")
def check_empty_body(subject: SerializerSubject) -> None:
    """loads(b"") raises ProtocolError: an empty body contains no value."""
    _expect_protocol_error(subject.serializer, b"", _DEFAULT_LIMITS, "loads(b'')",
                           "ProtocolError for a body that contains no value")


@SERIALIZER_CHECKS.add("trailing-bytes-rejected")
def check_trailing_bytes(subject: SerializerSubject) -> None:
    """A complete value followed by more bytes is rejected with ProtocolError."""
    value = next((sample_values(name)[-1] for name in ("int", "str", "list", "dict")
                  if name in subject.capabilities.types), None)
    if value is None:
        raise CheckSkipped("the serializer declares none of 'int', 'str', 'list', 'dict'")
    data = _dumps(subject.serializer, value)
    # Trailing whitespace is not tried: text formats commonly allow it, and it cannot
    # carry a second value.
    for suffix_name, suffix in (("a second copy of the value", data), ("a zero byte", b"\x00")):
        _expect_protocol_error(
            subject.serializer, data + suffix, _DEFAULT_LIMITS,
            f"the encoding of {_short(value)} followed by {suffix_name}",
            "ProtocolError for bytes after the value",
        )


@SERIALIZER_CHECKS.add("truncated-encodings")
def check_truncated_encodings(subject: SerializerSubject) -> None:
    """Every prefix of a valid encoding gives ProtocolError or a value, nothing else."""
    values = [sample_values(name)[-1] for name in TYPE_NAMES
              if name in subject.capabilities.types]
    nested = nested_sample(subject.capabilities.types)
    if nested is not None:
        values.append(nested)
    if not values:
        raise CheckSkipped("the serializer declares no types")
    for value in values:
        data = _dumps(subject.serializer, value)
        # Long encodings are cut at 512 points spread over the body.
        step = max(1, len(data) // 512)
        for end in range(0, len(data), step):
            _expect_value_or_protocol_error(
                subject, data[:end],
                f"the first {end} of {len(data)} bytes of the encoding of {_short(value)}",
            )


@SERIALIZER_CHECKS.add("garbage-bytes")
def check_garbage_bytes(subject: SerializerSubject) -> None:
    """Random bytes and every single byte give ProtocolError or a value, nothing else."""
    generator = random.Random(_GARBAGE_SEED)
    inputs = [bytes([byte]) for byte in range(256)]
    inputs += [generator.randbytes(generator.randrange(2, 96)) for _ in range(_GARBAGE_SAMPLES)]
    for data in inputs:
        _expect_value_or_protocol_error(subject, data, f"bytes {data.hex()}")


@SERIALIZER_CHECKS.add("nesting-limit")
def check_nesting_limit(subject: SerializerSubject) -> None:
    """Nesting within limits.max_depth decodes; far deeper nesting raises ProtocolError."""
    types = subject.capabilities.types
    if "list" in types:
        def nest(depth: int) -> object:
            value: object = []
            for _ in range(depth - 1):
                value = [value]
            return value
        container = "lists"
    elif "dict" in types:
        def nest(depth: int) -> object:
            value: object = {}
            for _ in range(depth - 1):
                value = {"a": value}
            return value
        container = "dicts"
    else:
        raise CheckSkipped("the serializer declares neither 'list' nor 'dict'")

    limits = DecodeLimits(max_depth=8)
    shallow = _dumps(subject.serializer, nest(4))
    try:
        _loads(subject.serializer, shallow, limits)
    except CheckFailed:
        raise
    except Exception as error:  # noqa: BLE001 - any exception is the finding
        raise CheckFailed(
            f"4 levels of nested {container} with max_depth=8 raised "
            f"{describe_call_error(error)}",
            "that nesting within max_depth decodes",
        ) from None

    deep = _dumps(subject.serializer, nest(40))
    _expect_protocol_error(
        subject.serializer, deep, limits, f"40 levels of nested {container} with max_depth=8",
        "ProtocolError for nesting deeper than limits.max_depth",
    )


@SERIALIZER_CHECKS.add("size-limit")
def check_size_limit(subject: SerializerSubject) -> None:
    """A body of exactly limits.max_size decodes; one byte less allowed is rejected."""
    types = subject.capabilities.types
    size = subject.capabilities.large_value_size
    if "bytes" in types:
        value: object = b"\x5a" * size
    elif "str" in types:
        value = "z" * size
    else:
        raise CheckSkipped("the serializer declares neither 'bytes' nor 'str'")
    data = _dumps(subject.serializer, value)

    try:
        decoded = _loads(subject.serializer, data, DecodeLimits(max_size=len(data)))
    except CheckFailed:
        raise
    except Exception as error:  # noqa: BLE001 - any exception is the finding
        raise CheckFailed(
            f"a body of {len(data)} bytes with max_size={len(data)} raised "
            f"{describe_call_error(error)}",
            "that a body at the size limit decodes",
        ) from None
    if decoded != value:
        raise CheckFailed(f"a {len(data)}-byte body decoded to a different value",
                          "that a body at the size limit decodes to its value")

    _expect_protocol_error(
        subject.serializer, data, DecodeLimits(max_size=len(data) - 1),
        f"a body of {len(data)} bytes with max_size={len(data) - 1}",
        "ProtocolError for a body or declared length over limits.max_size",
    )


@SERIALIZER_CHECKS.add("item-limit")
def check_item_limit(subject: SerializerSubject) -> None:
    """A list or dict of exactly limits.max_items values decodes; one more is rejected."""
    types = subject.capabilities.types
    if not subject.capabilities.limits_items:
        raise CheckSkipped("the serializer does not declare limits_items")
    if "int" not in types or not types & {"list", "dict"}:
        raise CheckSkipped("the serializer declares no 'int' with 'list' or 'dict'")
    # 1000 ints in a list, or 500 int keys with int values in a dict: 1001 values with
    # the container itself, and no value that a serializer may count twice.
    value: object = (list(range(1000)) if "list" in types
                     else {index: index for index in range(500)})
    count = 1001
    data = _dumps(subject.serializer, value)

    try:
        decoded = _loads(subject.serializer, data, DecodeLimits(max_items=count))
    except CheckFailed:
        raise
    except Exception as error:  # noqa: BLE001 - any exception is the finding
        raise CheckFailed(
            f"{count} values with max_items={count} raised {describe_call_error(error)}",
            "that a body of exactly max_items values decodes",
        ) from None
    if decoded != value:
        raise CheckFailed(f"{count} values with max_items={count} decoded to a different "
                          f"value", "that a body at the item limit decodes to its value")

    _expect_protocol_error(
        subject.serializer, data, DecodeLimits(max_items=count - 1),
        f"{count} values with max_items={count - 1}",
        "ProtocolError for a body of more than limits.max_items values",
    )


@SERIALIZER_CHECKS.add("thread-safety")
def check_thread_safety(subject: SerializerSubject) -> None:
    """dumps and loads give correct results when called from 8 threads at once."""
    types = subject.capabilities.types
    if "int" not in types or not types & {"list", "dict"}:
        raise CheckSkipped("the serializer declares no 'int' with 'list' or 'dict'")
    serializer = subject.serializer
    failures: list[str] = []
    start = threading.Barrier(8)

    def work(worker: int) -> None:
        start.wait()
        for iteration in range(200):
            value: object = (
                [worker, iteration, list(range(worker))] if "list" in types
                else {"worker": worker, "iteration": iteration}
            )
            try:
                decoded = serializer.loads(serializer.dumps(value), _DEFAULT_LIMITS)
            except Exception as error:  # noqa: BLE001 - collected for the report
                failures.append(f"thread {worker} raised {describe_call_error(error)}")
                return
            if decoded != value:
                failures.append(f"thread {worker} got {_short(decoded)} for {_short(value)}")
                return

    threads = [threading.Thread(target=work, args=(index,), daemon=True) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    if any(thread.is_alive() for thread in threads):
        raise CheckFailed("dumps/loads from 8 threads did not finish within 30 s",
                          "that dumps and loads are safe to call from many threads")
    if failures:
        raise CheckFailed("; ".join(failures[:3]),
                          "that dumps and loads are safe to call from many threads at once")


@SERIALIZER_CHECKS.add("known-answers")
def check_known_answers(subject: SerializerSubject) -> None:
    """Each valid vector of the declared formats decodes to its documented value."""
    vectors = [vector for vector in load_vectors(subject.capabilities)
               if vector.expect == "value"]
    if not vectors:
        raise CheckSkipped("no vector file with known answers is declared (formats or "
                           "vector_files)")
    problems = []
    checked = 0
    for vector in vectors:
        if not vector.requires <= subject.capabilities.types:
            continue
        checked += 1
        limits = DecodeLimits(max_depth=vector.max_depth, max_size=vector.max_size,
                              max_items=vector.max_items)
        try:
            decoded = _loads(subject.serializer, vector.data, limits)
        except CheckFailed:
            raise
        except Exception as error:  # noqa: BLE001 - collected for the report
            problems.append(f"{vector.where} {vector.id}: loads raised "
                            f"{describe_call_error(error)}")
            continue
        difference = find_difference(vector.value, decoded)
        if difference is not None:
            problems.append(f"{vector.where} {vector.id}: {difference}")
    if not checked:
        raise CheckSkipped("every known-answer vector requires an undeclared type")
    if problems:
        raise CheckFailed("; ".join(problems[:5]) + _more(problems, 5),
                          "that each valid vector decodes to its documented value")


@SERIALIZER_CHECKS.add("hostile-vectors")
def check_hostile_vectors(subject: SerializerSubject) -> None:
    """Each must-reject vector raises ProtocolError in bounded time and memory."""
    vectors = [vector for vector in load_vectors(subject.capabilities)
               if vector.expect == "reject"]
    if not vectors:
        raise CheckSkipped("no vector file with must-reject inputs is declared (formats or "
                           "vector_files)")
    problems = []
    for vector in vectors:
        if not vector.requires <= subject.capabilities.types:
            continue
        limits = DecodeLimits(max_depth=vector.max_depth, max_size=vector.max_size,
                              max_items=vector.max_items)
        allowance = _HOSTILE_MEMORY_ALLOWANCE + 4 * len(vector.data)
        try:
            peak = _traced_peak(functools.partial(
                _expect_protocol_error, subject.serializer, vector.data, limits,
                f"{vector.where} {vector.id}", "ProtocolError for every must-reject vector",
            ))
        except CheckFailed as failure:
            problems.append(failure.observed)
            continue
        if peak > allowance:
            problems.append(
                f"{vector.where} {vector.id}: decoding it allocated {peak // 1024} KiB "
                f"(allowed: {allowance // 1024} KiB)"
            )
    if problems:
        raise CheckFailed(
            "; ".join(problems[:5]) + _more(problems, 5),
            "ProtocolError within bounded time for every must-reject vector, without "
            "allocating memory in proportion to a length the data declares",
        )


def _traced_peak(action: Callable[[], None]) -> int:
    """Run ``action`` and return the peak of memory traced meanwhile, in bytes."""
    started_here = not tracemalloc.is_tracing()
    if started_here:
        tracemalloc.start()
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        action()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        if started_here:
            tracemalloc.stop()
    return max(0, peak - baseline)


def _more(items: list[str], shown: int) -> str:
    return f" (and {len(items) - shown} more)" if len(items) > shown else ""
