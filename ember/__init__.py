"""ember: remote Python objects over a small, secure plugin kernel.

A :class:`Daemon` publishes objects; a :class:`Proxy` calls their exposed methods from
another process or machine. Serializers, transports, authenticators and name resolvers
are plugins chosen by name through a validated registry.
"""

from ember.kernel.config import Config
from ember.kernel.converters import register_type
from ember.kernel.errors import (
    AuthenticationFailed,
    ConfigError,
    ConnectionClosed,
    EmberError,
    EmberTimeout,
    PluginError,
    ProtocolError,
    RemoteError,
    SecurityError,
    SerializationError,
    TransportError,
    UsageError,
)

__version__ = "0.1.0"

from ember.remote.context import CallContext, current_call
from ember.remote.daemon import Daemon
from ember.remote.exceptions import register_exception
from ember.remote.exposure import expose, oneway
from ember.remote.proxy import Proxy
from ember.remote.uri import URI

__all__ = [
    "AuthenticationFailed",
    "CallContext",
    "Config",
    "ConfigError",
    "ConnectionClosed",
    "Daemon",
    "EmberError",
    "EmberTimeout",
    "PluginError",
    "ProtocolError",
    "Proxy",
    "RemoteError",
    "SecurityError",
    "SerializationError",
    "TransportError",
    "URI",
    "UsageError",
    "__version__",
    "current_call",
    "expose",
    "oneway",
    "register_exception",
    "register_type",
]
