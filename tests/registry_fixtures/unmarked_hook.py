"""A plugin that forgot the @hookimpl marker, which pluggy would ignore silently."""

from .kit import JsonSerializer


class UnmarkedSerializer(JsonSerializer):
    name = "unmarked"
    wire_id = 0x7E21


def ember_serializers():
    return [UnmarkedSerializer()]
