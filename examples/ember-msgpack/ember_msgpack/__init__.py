"""ember-msgpack: a MessagePack serializer plugin for ember.

The plugin registers through the ``ember`` entry-point group (see ``pyproject.toml``);
nothing needs to import this package by hand.
"""

from ember_msgpack.serializer import MsgpackSerializer

__all__ = ["MsgpackSerializer"]
