"""A second third-party serializer named 'json', with a wire id of its own."""

from ember.kernel.hookspecs import hookimpl

from .kit import JsonSerializer


class RivalJsonB(JsonSerializer):
    wire_id = 0x7E12


@hookimpl
def ember_serializers():
    return [RivalJsonB()]
