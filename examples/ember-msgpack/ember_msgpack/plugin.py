"""The module the ``ember`` entry point names: it declares the serializer to ember."""

from __future__ import annotations

from ember.kernel.hookspecs import hookimpl
from ember.kernel.serializer import Serializer
from ember_msgpack.serializer import MsgpackSerializer


@hookimpl
def ember_serializers() -> list[Serializer]:
    return [MsgpackSerializer()]
