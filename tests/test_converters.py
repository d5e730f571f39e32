"""Converters: the table, ember.register_type, the plugin hook and every serializer."""

from __future__ import annotations

import dataclasses
import enum
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

import ember
from ember.kernel.converters import Converter, ConverterTable, converters
from ember.kernel.errors import PluginError, ProtocolError, SerializationError, UsageError
from ember.kernel.hookspecs import hookimpl
from ember.kernel.registry import Registry
from ember.kernel.serializer import DecodeLimits, Serializer
from ember.plugins.serializers.cbor import CborSerializer
from ember.plugins.serializers.pickle import PickleSerializer
from ember.plugins.serializers.serpent import SerpentSerializer

LIMITS = DecodeLimits()
SERIALIZERS: list[Serializer] = [CborSerializer(), SerpentSerializer(),
                                 PickleSerializer(allowed_globals=())]


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


class SubPoint(Point):
    pass


class Odd:
    pass


def point_from_data(data: object) -> Point:
    if not isinstance(data, list) or len(data) != 2:
        raise ValueError("expected [x, y]")
    return Point(*data)


@pytest.fixture
def registered() -> Iterator[None]:
    """Register the test types in the process-wide table and remove them afterwards."""
    names = [
        ember.register_type(Color).name,
        ember.register_type(Priority, name="tests.Priority").name,
        ember.register_type(Point, name="tests.Point", to_data=lambda p: [p.x, p.y],
                            from_data=point_from_data).name,
        ember.register_type(pathlib.PurePosixPath, name="tests.Path", to_data=str,
                            from_data=pathlib.PurePosixPath).name,
    ]
    yield
    for name in names:
        converters.remove(name)


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=lambda s: s.name)
def test_registered_types_round_trip(registered: None, serializer: Serializer) -> None:
    value = {"color": Color.BLUE, "priority": Priority.HIGH, "point": Point(1, 2),
             "path": pathlib.PurePosixPath("/srv/data"), "nested": [(Color.RED,)]}

    result = serializer.loads(serializer.dumps(value), LIMITS)

    assert result == value
    assert type(result["priority"]) is Priority
    assert type(result["nested"][0][0]) is Color


@pytest.mark.parametrize("serializer", SERIALIZERS[:2], ids=lambda s: s.name)
def test_subclass_is_not_converted(registered: None, serializer: Serializer) -> None:
    with pytest.raises(SerializationError, match="SubPoint"):
        serializer.dumps(SubPoint(1, 2))


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=lambda s: s.name)
def test_unknown_name_on_receiver_is_rejected(serializer: Serializer) -> None:
    ember.register_type(Point, name="tests.Point", to_data=lambda p: [p.x, p.y],
                        from_data=point_from_data)
    try:
        body = serializer.dumps(Point(3, 4))
    finally:
        converters.remove("tests.Point")

    with pytest.raises(ProtocolError, match=r"'tests\.Point'.*register the same type") as caught:
        serializer.loads(body, LIMITS)
    assert caught.value.code == "unknown-type"


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=lambda s: s.name)
def test_bad_data_for_converter_is_rejected(registered: None, serializer: Serializer) -> None:
    ember.register_type(Odd, name="tests.Odd", to_data=lambda value: "x",
                        from_data=point_from_data)
    try:
        body = serializer.dumps(Odd())
        with pytest.raises(ProtocolError, match=r"invalid data for type 'tests\.Odd'"):
            serializer.loads(body, LIMITS)
    finally:
        converters.remove("tests.Odd")


def test_table_rejects_taken_name() -> None:
    table = ConverterTable()
    table.add(Converter(Point, "shape", list, point_from_data))

    with pytest.raises(UsageError, match="'shape' is already registered for"):
        table.add(Converter(Color, "shape", str, Color))


def test_table_rejects_second_converter_for_class() -> None:
    table = ConverterTable()
    table.add(Converter(Point, "shape", list, point_from_data))

    with pytest.raises(UsageError, match="already has a converter named 'shape'"):
        table.add(Converter(Point, "other", list, point_from_data))


def test_same_converter_twice_is_a_no_op() -> None:
    table = ConverterTable()
    converter = Converter(Point, "shape", list, point_from_data)
    table.add(converter)
    version = table.version

    table.add(converter)

    assert table.version == version
    assert table.names() == ["shape"]


@pytest.mark.parametrize("name", ["", "has space", "1digit", "a..b", "os/path", "x" * 129])
def test_invalid_converter_name_is_rejected(name: str) -> None:
    with pytest.raises(UsageError, match="invalid converter name"):
        Converter(Point, name, list, point_from_data)


@pytest.mark.parametrize("cls", [int, bytes, dict, tuple])
def test_converter_for_native_type_is_rejected(cls: type) -> None:
    with pytest.raises(UsageError, match="carries it natively"):
        Converter(cls, "tests.native", str, cls)


def test_register_type_needs_functions_for_plain_class() -> None:
    with pytest.raises(UsageError, match="needs to_data and from_data"):
        ember.register_type(Point)


def test_register_type_default_name() -> None:
    converter = ember.register_type(Color)
    try:
        assert converter.name == f"{__name__}.Color"
    finally:
        converters.remove(converter.name)


def test_receiver_never_imports_a_name() -> None:
    with pytest.raises(ProtocolError):
        converters.from_wire("os.system", "true")


# -- over the wire ----------------------------------------------------------------------


@ember.expose
class Service:
    def echo(self, value: object) -> object:
        return value

    def fail(self, limit: int) -> None:
        raise QuotaExceeded(f"over {limit}", limit)

    def fail_unregistered(self) -> None:
        raise UnregisteredError("nope")


class QuotaExceeded(Exception):
    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message, limit)
        self.limit = limit
        self.tenant = "acme"


class UnregisteredError(Exception):
    pass


@pytest.mark.parametrize("serializer", ["cbor", "serpent"])
def test_types_and_exceptions_cross_daemon(registered: None, make_daemon: Any,
                                           serializer: str) -> None:
    ember.register_exception(QuotaExceeded, name="tests.QuotaExceeded")
    daemon = make_daemon(accepted_serializers=("cbor", "serpent"))
    uri = daemon.register(Service(), "service")

    with ember.Proxy(uri, config=ember.Config.defaults(), serializer=serializer) as proxy:
        value = [Color.RED, Point(1, 2), pathlib.PurePosixPath("/x")]
        assert proxy.echo(value) == value

        with pytest.raises(QuotaExceeded) as caught:
            proxy.fail(5)
        assert caught.value.args == ("over 5", 5)
        assert caught.value.limit == 5
        assert caught.value.tenant == "acme"

        with pytest.raises(ember.RemoteError, match="UnregisteredError: nope") as remote:
            proxy.fail_unregistered()
        assert remote.value.remote_type.endswith("UnregisteredError")


# -- the ember_converters hook -----------------------------------------------------------


class ConverterPlugin:
    @hookimpl
    def ember_converters(self) -> list[Converter]:
        return [Converter(Point, "plugin.Point", lambda p: [p.x, p.y], point_from_data)]


class BrokenConverterPlugin:
    @hookimpl
    def ember_converters(self) -> list[object]:
        return ["not a converter"]


def test_plugin_converter_is_registered() -> None:
    registry = Registry()
    registry.register(ConverterPlugin(), name="converter-plugin")
    try:
        assert registry.names("converter") == ["plugin.Point"]
        body = CborSerializer().dumps(Point(5, 6))
        assert CborSerializer().loads(body, LIMITS) == Point(5, 6)
    finally:
        converters.remove("plugin.Point")


def test_plugin_with_invalid_converter_is_rejected() -> None:
    registry = Registry()

    with pytest.raises(PluginError, match="expected a Converter instance"):
        registry.register(BrokenConverterPlugin(), name="broken")
    assert registry.names("converter") == []


def test_plugin_converter_clashing_with_application_is_rejected() -> None:
    ember.register_type(Point, name="plugin.Point", to_data=list, from_data=point_from_data)
    registry = Registry()
    try:
        with pytest.raises(PluginError, match="already registered for"):
            registry.register(ConverterPlugin(), name="converter-plugin")
    finally:
        converters.remove("plugin.Point")
