"""Plugin objects whose hooks declare invalid objects, one mistake each.

Entry points name them as ``registry_fixtures.invalid_declarations:<attribute>``.
"""

from ember.kernel.hookspecs import hookimpl
from ember.kernel.serializer import Serializer

from .kit import FixtureResolver, InertTransport, JsonSerializer


class SerializersPlugin:
    """A plugin whose ember_serializers hook returns ``result`` unchanged."""

    def __init__(self, result):
        self._result = result

    @hookimpl
    def ember_serializers(self):
        return self._result


class ResolversPlugin:
    """A plugin whose ember_resolvers hook returns ``result`` unchanged."""

    def __init__(self, result):
        self._result = result

    @hookimpl
    def ember_resolvers(self):
        return self._result


def _serializer(name="valid", wire_id=0x7E40, is_safe=True):
    attributes = {"name": name, "wire_id": wire_id, "is_safe": is_safe}
    return type("CustomSerializer", (JsonSerializer,), attributes)()


def _resolver(schemes):
    return type("CustomResolver", (FixtureResolver,), {"name": "custom", "schemes": schemes})()


class HalfSerializer:
    """Registered as a virtual subclass of Serializer, so isinstance() accepts it,
    although it never implements loads()."""

    name = "half"
    wire_id = 0x7E41
    is_safe = True

    def dumps(self, value):
        return b""


Serializer.register(HalfSerializer)


class NoneLoadsSerializer(JsonSerializer):
    """Overrides the abstract loads() with a placeholder that cannot be called."""

    name = "none-loads"
    wire_id = 0x7E42
    loads = None


non_sequence = SerializersPlugin(JsonSerializer())
generator = SerializersPlugin(serializer for serializer in [JsonSerializer()])
text_result = SerializersPlugin("json")
wrong_contract = SerializersPlugin([InertTransport()])
text_item = SerializersPlugin(["json"])
name_with_space = SerializersPlugin([_serializer(name="Fast JSON")])
name_not_text = SerializersPlugin([_serializer(name=7)])
name_too_long = SerializersPlugin([_serializer(name="a" * 33)])
wire_id_too_large = SerializersPlugin([_serializer(wire_id=70000)])
wire_id_zero = SerializersPlugin([_serializer(wire_id=0)])
wire_id_text = SerializersPlugin([_serializer(wire_id="7")])
wire_id_bool = SerializersPlugin([_serializer(wire_id=True)])
is_safe_text = SerializersPlugin([_serializer(is_safe="no")])
virtual_subclass = SerializersPlugin([HalfSerializer()])
placeholder_method = SerializersPlugin([NoneLoadsSerializer()])
duplicate_names = SerializersPlugin([_serializer(wire_id=0x7E43), _serializer(wire_id=0x7E44)])
duplicate_wire_ids = SerializersPlugin(
    [_serializer(name="first"), _serializer(name="second")]
)
schemes_empty = ResolversPlugin([_resolver(())])
schemes_text = ResolversPlugin([_resolver("ember+custom")])
schemes_uppercase = ResolversPlugin([_resolver(("EMBER+custom",))])
schemes_repeated = ResolversPlugin([_resolver(("ember+custom", "ember+custom"))])
