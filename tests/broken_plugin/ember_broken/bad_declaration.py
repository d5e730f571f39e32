"""A plugin that declares a serializer with the reserved wire id 0."""

from ember.kernel.hookspecs import hookimpl
from ember_broken.sloppy import SloppySerializer


class ZeroIdSerializer(SloppySerializer):
    name = "zero-id"
    wire_id = 0


@hookimpl
def ember_serializers():
    return [ZeroIdSerializer()]
