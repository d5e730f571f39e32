"""The hook specifications every ember plugin implements.

A plugin is a module (or any object) registered under the ``ember`` entry-point group.
It implements one or more of these hooks, marked with :data:`hookimpl`::

    from ember.kernel.hookspecs import hookimpl

    @hookimpl
    def ember_serializers():
        return [MsgpackSerializer()]

All hooks here are *declaration* hooks. The registry calls each hook of one plugin once,
with keyword arguments, while it validates that plugin, before the plugin joins the
shared plugin manager. Every result is collected (no hook is ``firstresult``), and the
registry then checks each returned object against its contract. A hook returning
``None`` or an empty sequence declares nothing of that kind, which is valid.
"""

from __future__ import annotations

from collections.abc import Sequence

import pluggy

from ember.kernel.authenticator import Authenticator
from ember.kernel.converters import Converter
from ember.kernel.resolver import Resolver
from ember.kernel.serializer import Serializer
from ember.kernel.transport import Transport

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec", "HOOK_NAMES"]

#: The pluggy project name, also the entry-point group plugins register under.
PROJECT_NAME = "ember"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def ember_serializers() -> Sequence[Serializer] | None:
    """Declare the serializers this plugin provides.

    Called once when the plugin is registered. Return instances of
    :class:`~ember.kernel.serializer.Serializer` subclasses; each needs a unique name and
    a unique permanent wire id. ``None`` means the plugin provides no serializer.
    All plugins' results are collected; none takes precedence.
    """


@hookspec
def ember_transports() -> Sequence[Transport] | None:
    """Declare the transports this plugin provides.

    Called once when the plugin is registered. Return instances of
    :class:`~ember.kernel.transport.Transport` subclasses with unique names; a name is
    also the transport part of URIs (``ember+NAME://``). ``None`` means none.
    All plugins' results are collected; none takes precedence.
    """


@hookspec
def ember_authenticators() -> Sequence[Authenticator] | None:
    """Declare the authenticators this plugin provides.

    Called once when the plugin is registered. Return instances of
    :class:`~ember.kernel.authenticator.Authenticator` subclasses with unique names.
    ``None`` means none. All plugins' results are collected; none takes precedence.
    """


@hookspec
def ember_resolvers() -> Sequence[Resolver] | None:
    """Declare the name resolvers this plugin provides.

    Called once when the plugin is registered. Return instances of
    :class:`~ember.kernel.resolver.Resolver` subclasses with unique names and URI
    schemes that no other resolver claims. ``None`` means none.
    All plugins' results are collected; none takes precedence.
    """


@hookspec
def ember_converters() -> Sequence[Converter] | None:
    """Declare the converters this plugin provides for types of its own.

    Called once when the plugin is registered. Return
    :class:`~ember.kernel.converters.Converter` instances with unique names and classes;
    each one lets every serializer carry instances of its class. ``None`` means none.
    All plugins' results are collected; none takes precedence.
    """


#: Every hook name defined here; a plugin implementing any other ``ember_`` name is
#: rejected, so a typo in a hook name is reported instead of silently ignored.
HOOK_NAMES = (
    "ember_serializers",
    "ember_transports",
    "ember_authenticators",
    "ember_resolvers",
    "ember_converters",
)
