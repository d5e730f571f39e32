"""A plugin that declares a serializer under a name ember's cbor plugin already holds."""

from ember.kernel.hookspecs import hookimpl
from ember_broken.sloppy import SloppySerializer


class CborClone(SloppySerializer):
    name = "cbor"
    wire_id = 0x5108


@hookimpl
def ember_serializers():
    return [CborClone()]
