"""A valid plugin whose hooks currently declare nothing."""

from ember.kernel.hookspecs import hookimpl


@hookimpl
def ember_serializers():
    return None


@hookimpl
def ember_transports():
    return []
