"""A serializer with a name of its own but the wire id of the 'json' fixture."""

from ember.kernel.hookspecs import hookimpl

from .kit import JsonSerializer


class JsonCopy(JsonSerializer):
    name = "json-copy"


@hookimpl
def ember_serializers():
    return [JsonCopy()]
