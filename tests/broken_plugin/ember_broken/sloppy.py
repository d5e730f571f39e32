"""A serializer that registers cleanly but breaks its contract.

It encodes with the json module and claims more than JSON can do: tuples come back as
lists, and decoding lets json's own errors escape instead of ProtocolError and ignores
the nesting and size limits.
"""

import json

from ember.kernel.errors import SerializationError
from ember.kernel.hookspecs import hookimpl
from ember.kernel.serializer import Serializer
from ember.testing import ConformanceProfile, SerializerCapabilities


class SloppySerializer(Serializer):
    name = "sloppy"
    wire_id = 0x5107

    def dumps(self, value):
        try:
            return json.dumps(value).encode()
        except TypeError as error:
            raise SerializationError(str(error)) from error

    def loads(self, data, limits):
        return json.loads(data)


@hookimpl
def ember_serializers():
    return [SloppySerializer()]


profile = ConformanceProfile(
    SerializerCapabilities(types={"none", "bool", "int", "str", "list", "tuple", "dict"})
)
