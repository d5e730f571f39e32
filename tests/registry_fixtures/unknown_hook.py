"""A plugin with a misspelt hook name (singular instead of plural)."""

from ember.kernel.hookspecs import hookimpl

from .kit import JsonSerializer


class TypoSerializer(JsonSerializer):
    name = "typo"
    wire_id = 0x7E20


@hookimpl
def ember_serializer():
    return [TypoSerializer()]
