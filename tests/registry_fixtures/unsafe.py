"""A valid plugin declaring a serializer that is not safe to decode untrusted data."""

from ember.kernel.hookspecs import hookimpl

from .kit import UnsafePickleSerializer


@hookimpl
def ember_serializers():
    return [UnsafePickleSerializer()]
