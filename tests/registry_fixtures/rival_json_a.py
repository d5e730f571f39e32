"""A third-party serializer that claims the name 'json' already used by another plugin."""

from ember.kernel.hookspecs import hookimpl

from .kit import JsonSerializer


class RivalJsonA(JsonSerializer):
    wire_id = 0x7E11


@hookimpl
def ember_serializers():
    return [RivalJsonA()]
