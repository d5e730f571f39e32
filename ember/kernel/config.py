"""Typed configuration, validated at the edge.

Each value comes from one of three sources, and later sources override earlier ones:

1. ``default``: the built-in default declared in :data:`SETTINGS`;
2. ``environment``: an ``EMBER_<NAME>`` environment variable;
3. ``code``: an explicit :meth:`Config.replace` call (or a keyword argument of
   ``Daemon``/``Proxy``).

:meth:`Config.defaults` builds a configuration from the built-in defaults only, ignoring
the environment; :meth:`Config.from_environment` applies ``EMBER_*`` variables. An
``EMBER_*`` variable that names no setting, or a value of the wrong type, raises
:class:`~ember.kernel.errors.ConfigError` naming the variable and the accepted values.
A :class:`Config` is immutable and safe to share between threads.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ember.kernel.errors import ConfigError

__all__ = ["Config", "Setting", "SETTINGS", "SETTINGS_BY_NAME", "ENV_PREFIX", "Source"]

ENV_PREFIX = "EMBER_"

Source = Literal["default", "environment", "code"]

_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
_FALSE_WORDS = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True, slots=True)
class Setting:
    """Declaration of one configuration value: its type, default, unit and meaning."""

    name: str
    kind: type  # bool, int, float, str or tuple (a comma-separated list of str)
    default: Any
    doc: str
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    #: Secrets are never printed by ``ember config`` or included in messages.
    secret: bool = False

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.name.upper()

    def accepted(self) -> str:
        """Describe the accepted values, for error messages and the reference."""
        if self.kind is bool:
            return "one of 1, 0, true, false, yes, no, on, off"
        if self.choices is not None:
            return "one of " + ", ".join(self.choices)
        if self.kind is tuple:
            return "a comma-separated list of names (may be empty)"
        kind_name = {int: "an integer", float: "a number", str: "a string"}[self.kind]
        if self.minimum is not None and self.maximum is not None:
            return f"{kind_name} from {_number(self.minimum)} to {_number(self.maximum)}"
        if self.minimum is not None:
            return f"{kind_name} of at least {_number(self.minimum)}"
        return kind_name

    def coerce(self, value: object, origin: str) -> Any:
        """Convert ``value`` (text from the environment, or a Python value from code)
        to this setting's type and check its range. ``origin`` names where it came from
        in the error message."""
        converted = self._convert(value, origin)
        self._check_range(converted, origin)
        return converted

    def _convert(self, value: object, origin: str) -> Any:
        if isinstance(value, str) and self.kind is not str:
            return self._parse_text(value.strip(), origin)
        if self.kind is bool:
            if isinstance(value, bool):
                return value
        elif self.kind is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif self.kind is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        elif self.kind is str:
            if isinstance(value, str):
                return value.strip()
        elif self.kind is tuple:
            if isinstance(value, (list, tuple, frozenset, set)) and all(
                isinstance(item, str) for item in value
            ):
                return tuple(item.strip() for item in value if item.strip())
        raise self._invalid(value, origin)

    def _parse_text(self, text: str, origin: str) -> Any:
        if self.kind is bool:
            lowered = text.lower()
            if lowered in _TRUE_WORDS:
                return True
            if lowered in _FALSE_WORDS:
                return False
            raise self._invalid(text, origin)
        if self.kind is int:
            try:
                return int(text, 10)
            except ValueError:
                raise self._invalid(text, origin) from None
        if self.kind is float:
            try:
                number = float(text)
            except ValueError:
                raise self._invalid(text, origin) from None
            if not math.isfinite(number):
                raise self._invalid(text, origin)
            return number
        if self.kind is tuple:
            return tuple(item.strip() for item in text.split(",") if item.strip())
        raise self._invalid(text, origin)

    def _check_range(self, value: Any, origin: str) -> None:
        if self.choices is not None and value not in self.choices:
            raise self._invalid(value, origin)
        if self.kind in (int, float):
            if self.minimum is not None and value < self.minimum:
                raise self._invalid(value, origin)
            if self.maximum is not None and value > self.maximum:
                raise self._invalid(value, origin)

    def _invalid(self, value: object, origin: str) -> ConfigError:
        shown = "<secret>" if self.secret else repr(value)
        return ConfigError(
            f"invalid value {shown} for {origin}: expected {self.accepted()}"
            + (f" ({self.unit})" if self.unit else ""),
            setting=origin,
        )


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


_MIB = 1024 * 1024

SETTINGS: tuple[Setting, ...] = (
    Setting("host", str, "127.0.0.1",
            "Interface a daemon binds. The loopback default keeps it unreachable from "
            "other machines; set a host name or address to publish beyond this machine."),
    Setting("port", int, 0, "TCP port a daemon binds; 0 picks a free port.",
            minimum=0, maximum=65535),
    Setting("transport", str, "tcp", "Transport a daemon listens on and a proxy uses "
            "when a URI does not name one."),
    Setting("serializer", str, "cbor", "Serializer a proxy encodes its calls with."),
    Setting("accepted_serializers", tuple, ("cbor",),
            "Serializers a daemon accepts; a frame naming any other is rejected before "
            "its body is decoded. serpent is left out by default because decoding it "
            "through Python's parser costs about 1.6 KB per value, up to about 400 MB for "
            "one request at the default max_items; add it where Pyro clients need it. "
            "pickle is accepted only when listed here and its quarantine is lifted."),
    Setting("authenticator", str, "", "Authenticator for the session (empty: none)."),
    Setting("max_message_size", int, 64 * _MIB,
            "Largest frame body accepted or sent.", unit="bytes", minimum=1024,
            maximum=0xFFFFFFFF),
    Setting("max_depth", int, 64, "Deepest container nesting a serializer decodes.",
            minimum=1, maximum=10_000),
    Setting("max_items", int, 250_000,
            "Most values one message body may decode to, counting every container, "
            "dict key, dict value and scalar. It bounds the memory one request can make "
            "a daemon use while decoding, which max_message_size does not. At the "
            "default, one message peaked at about 31 MB for cbor, 22 MB for pickle and "
            "400 MB for serpent, whose parser builds a syntax tree first (CPython 3.11, "
            "tracemalloc). A list of 10,000 dicts with 10 keys each is 210,001 values.",
            minimum=1, maximum=1_000_000_000),
    Setting("connect_timeout", float, 5.0, "Time allowed to open a connection.",
            unit="seconds", minimum=0.001),
    Setting("handshake_timeout", float, 5.0,
            "Time allowed for the hello exchange and authentication on a new connection.",
            unit="seconds", minimum=0.001),
    Setting("call_timeout", float, 30.0, "Time a proxy waits for the result of a call.",
            unit="seconds", minimum=0.001),
    Setting("idle_timeout", float, 60.0,
            "Time a daemon keeps a connection open without a complete request; it also "
            "bounds how long one request may take to arrive.",
            unit="seconds", minimum=0.001),
    Setting("max_connections", int, 128, "Open connections a daemon serves at once; "
            "further clients are refused with an error.", minimum=1, maximum=100_000),
    Setting("max_workers", int, 32, "Calls a daemon executes at once, across all "
            "connections; further calls wait for a free worker.", minimum=1,
            maximum=10_000),
    Setting("send_tracebacks", bool, False,
            "Whether a daemon attaches the remote traceback to exceptions it returns."),
    Setting("plugins_allow", tuple, (),
            "Entry-point names of the plugins that may load (empty: all). Applied "
            "before a plugin is imported."),
    Setting("plugins_block", tuple, (),
            "Entry-point names of plugins that must never load. Applied before import "
            "and wins over plugins_allow."),
    # -- serialization ---------------------------------------------------------------
    Setting("allow_unsafe_serializers", bool, False,
            "Lifts the quarantine of serializers that can run code while decoding "
            "(pickle) for this endpoint. Refused unless the session is authenticated "
            "or encrypted."),
    Setting("pickle_allowed_globals", tuple, (),
            "Extra globals, as 'module.name', that the pickle serializer may load when "
            "unpickling, beyond ember's value types. Read when the plugin loads."),
    # -- security --------------------------------------------------------------------
    Setting("allow_insecure", bool, False,
            "Lets a daemon bind a non-loopback address without an authenticator. Anyone "
            "who can reach the address can then call its objects; a warning is logged at "
            "every start."),
    Setting("hmac_key_file", str, "",
            "File holding the shared HMAC key (hexadecimal, owner-only permissions), for "
            "the hmac authenticator on both sides."),
    Setting("hmac_key", str, "",
            "The shared HMAC key in hexadecimal, at least 32 bytes. Set it in the "
            "environment, never in a URI; prefer hmac_key_file.", secret=True),
    Setting("ed25519_key_file", str, "",
            "File holding this side's Ed25519 private key (owner-only permissions). A "
            "proxy proves its identity with it; a daemon with one also proves its own."),
    Setting("ed25519_key", str, "",
            "This side's Ed25519 private key (32-byte seed in hexadecimal). Set it in the "
            "environment; prefer ed25519_key_file.", secret=True),
    Setting("ed25519_authorized_keys", str, "",
            "File of the client public keys a daemon accepts, one 'NAME HEX' per line. "
            "Changes apply to the next connection without a restart."),
    Setting("ed25519_server_key", str, "",
            "The daemon's Ed25519 public key in hexadecimal that a proxy requires (mutual "
            "authentication); empty: the daemon is not checked."),
    Setting("nacl_server_key_file", str, "",
            "File holding a daemon's long-term X25519 private key for the nacl "
            "transports (owner-only permissions)."),
    Setting("nacl_server_key", str, "",
            "A daemon's X25519 private key for the nacl transports, in hexadecimal. Set "
            "it in the environment; prefer nacl_server_key_file.", secret=True),
    Setting("nacl_server_public_key", str, "",
            "The daemon's X25519 public key in hexadecimal that a proxy pins on the nacl "
            "transports; the connection fails before any call if it does not match."),
    Setting("unix_socket_mode", str, "600",
            "Permissions of a daemon's Unix socket file, in octal. The default lets only "
            "the owner connect."),
    Setting("unix_allowed_uids", tuple, (),
            "User ids or names allowed to connect to a daemon's Unix socket (empty: any "
            "user the file permissions admit)."),
    Setting("unix_allowed_gids", tuple, (),
            "Group ids or names allowed to connect to a daemon's Unix socket (empty: "
            "any). With both lists set, a peer matching either is admitted."),
    Setting("unix_allow_abstract", bool, False,
            "Allows Linux abstract socket addresses (leading '@'), which file "
            "permissions cannot protect."),
)

_BY_NAME: dict[str, Setting] = {setting.name: setting for setting in SETTINGS}
#: Settings by name, for code that validates values from other sources (URI options).
SETTINGS_BY_NAME: Mapping[str, Setting] = _BY_NAME
_BY_ENV: dict[str, Setting] = {setting.env_var: setting for setting in SETTINGS}


class Config(Mapping[str, Any]):
    """An immutable set of validated settings, each remembering its source.

    Read values as attributes (``config.port``) or items (``config["port"]``).
    """

    __slots__ = ("_sources", "_values")

    _values: dict[str, Any]
    _sources: dict[str, Source]

    def __init__(self, _values: Mapping[str, Any], _sources: Mapping[str, Source]) -> None:
        object.__setattr__(self, "_values", dict(_values))
        object.__setattr__(self, "_sources", dict(_sources))

    @classmethod
    def defaults(cls) -> Config:
        """Return the built-in defaults, ignoring every environment variable."""
        return cls({s.name: s.default for s in SETTINGS}, {s.name: "default" for s in SETTINGS})

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Return the defaults overridden by ``EMBER_*`` variables of ``environ``.

        ``environ`` defaults to :data:`os.environ`. Raises
        :class:`~ember.kernel.errors.ConfigError` for an ``EMBER_*`` variable that names
        no setting or holds an invalid value.
        """
        environ = os.environ if environ is None else environ
        config = cls.defaults()
        values = dict(config._values)
        sources = dict(config._sources)

        for variable in sorted(environ):
            if not variable.startswith(ENV_PREFIX):
                continue
            setting = _BY_ENV.get(variable)
            if setting is None:
                known = ", ".join(sorted(_BY_ENV))
                raise ConfigError(
                    f"unknown environment variable {variable}: ember reads only these "
                    f"EMBER_* variables: {known}. Unset it or fix its name.",
                    setting=variable,
                )
            values[setting.name] = setting.coerce(environ[variable], variable)
            sources[setting.name] = "environment"

        return cls(values, sources)

    def replace(self, **overrides: object) -> Config:
        """Return a copy with ``overrides`` applied; their source becomes ``code``.

        Raises :class:`~ember.kernel.errors.ConfigError` for an unknown name or an
        invalid value.
        """
        values = dict(self._values)
        sources = dict(self._sources)
        for name, value in overrides.items():
            setting = _BY_NAME.get(name)
            if setting is None:
                known = ", ".join(sorted(_BY_NAME))
                raise ConfigError(
                    f"unknown setting {name!r}; known settings: {known}", setting=name
                )
            values[name] = setting.coerce(value, f"setting {name!r}")
            sources[name] = "code"
        return type(self)(values, sources)

    def source(self, name: str) -> Source:
        """Return where the value of setting ``name`` came from."""
        try:
            return self._sources[name]
        except KeyError:
            raise ConfigError(f"unknown setting {name!r}", setting=name) from None

    def describe(self) -> Iterator[tuple[Setting, Any, Source]]:
        """Yield each setting with its effective value and source, in declaration order."""
        for setting in SETTINGS:
            yield setting, self._values[setting.name], self._sources[setting.name]

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"Config has no setting {name!r}") from None

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Config is immutable; use Config.replace(...)")

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{s.name}={'<secret>' if s.secret else repr(self._values[s.name])}"
            for s in SETTINGS
            if self._sources[s.name] != "default"
        )
        return f"Config({shown})"
