"""A plugin whose serializer hook raises; its valid transport must not register either."""

from ember.kernel.hookspecs import hookimpl

from .kit import InertTransport


class OtherTransport(InertTransport):
    name = "other"


@hookimpl
def ember_transports():
    return [OtherTransport()]


@hookimpl
def ember_serializers():
    raise RuntimeError("fixture hook failure")
