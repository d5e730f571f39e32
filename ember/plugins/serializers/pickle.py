"""The ``pickle`` serializer: Python's pickle, quarantined.

Unpickling can call any importable function the data names, so a peer that can send a
pickle can run code in the receiving process. This serializer is therefore installed but
dormant (``is_safe`` is false): the registry composes it only for an endpoint configured
with ``allow_unsafe_serializers=True`` and an authenticator or an encrypted transport,
and a daemon decodes it only when ``accepted_serializers`` names it.

Even then, unpickling resolves globals through an allowlist (:data:`DEFAULT_ALLOWED_GLOBALS`
plus the ``pickle_allowed_globals`` setting), so a pickle that names ``os.system`` or any
other global outside the list is rejected with that name before anything is called.
The allowlist limits what a pickle can call; it does not make pickle safe against an
unauthenticated peer, which is why the quarantine stays.

Types with a registered converter travel as a call to :func:`_rebuild_converted` with
the converter's name and plain data, so their classes need not be on the allowlist.
"""

from __future__ import annotations

import io
import logging
import pickle
from collections.abc import Iterable
from typing import Any

from ember.kernel.config import Config
from ember.kernel.converters import converters
from ember.kernel.errors import ProtocolError, SerializationError
from ember.kernel.hookspecs import hookimpl
from ember.kernel.serializer import DecodeLimits, Serializer

__all__ = ["DEFAULT_ALLOWED_GLOBALS", "PickleSerializer", "ember_serializers"]

log = logging.getLogger("ember.serializers.pickle")

#: Globals every pickle may load: the classes behind ember's supported value types (as
#: pickle protocol 5 names them in Python 3.11) and the converter hook below.
DEFAULT_ALLOWED_GLOBALS = frozenset({
    "builtins.set",
    "builtins.frozenset",
    "builtins.bytearray",
    "builtins.complex",
    "datetime.datetime",
    "datetime.date",
    "datetime.time",
    "datetime.timedelta",
    "datetime.timezone",
    "decimal.Decimal",
    "uuid.UUID",
    "uuid.SafeUUID",
    "ember.plugins.serializers.pickle._rebuild_converted",
})

# The protocol ember writes. Python 3.8 and later read it.
_PROTOCOL = 5


def _rebuild_converted(name: str, data: object) -> object:
    """Rebuild a value that the sender turned into plain data with a converter."""
    return converters.from_wire(name, data)


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        tagged = converters.to_wire(obj)
        if tagged is None:
            return NotImplemented
        return _rebuild_converted, tagged


class _Unpickler(pickle.Unpickler):
    """An unpickler that loads only allowlisted globals and no persistent ids."""

    def __init__(self, data: bytes, allowed: frozenset[str]) -> None:
        self.stream = io.BytesIO(data)
        super().__init__(self.stream)
        self._allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        qualified = f"{module}.{name}"
        if qualified not in self._allowed:
            raise ProtocolError(
                f"pickle body tries to load global {qualified[:200]!r}, which is not on the "
                f"allowlist; add it to the pickle_allowed_globals setting if this peer may "
                f"send it",
                code="bad-body",
            )
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise ProtocolError("pickle body uses a persistent id; ember never writes one",
                            code="bad-body")


class PickleSerializer(Serializer):
    """pickle protocol 5 behind an allowlist of globals. Never safe with untrusted peers.

    ``allowed_globals`` adds ``"module.name"`` entries to :data:`DEFAULT_ALLOWED_GLOBALS`;
    the registered instance reads them from the ``pickle_allowed_globals`` setting.
    """

    name = "pickle"
    wire_id = 3
    is_safe = False

    def __init__(self, allowed_globals: Iterable[str] | None = None) -> None:
        if allowed_globals is None:
            allowed_globals = Config.from_environment().pickle_allowed_globals
        self.allowed_globals = DEFAULT_ALLOWED_GLOBALS | frozenset(allowed_globals)
        self._warned = False

    def dumps(self, value: object) -> bytes:
        buffer = io.BytesIO()
        try:
            _Pickler(buffer, protocol=_PROTOCOL).dump(value)
        except RecursionError as error:
            raise SerializationError("cannot encode value: it nests too deeply") from error
        except (pickle.PicklingError, TypeError, AttributeError) as error:
            raise SerializationError(
                f"cannot encode value with pickle: {type(error).__name__}: "
                f"{str(error)[:200]}"
            ) from error
        return buffer.getvalue()

    def loads(self, data: bytes, limits: DecodeLimits) -> object:
        if not self._warned:
            # Once per process: reaching this line means a quarantine was lifted.
            self._warned = True
            log.warning(
                "decoding a pickle body: pickle can run code chosen by its sender, and "
                "only the allowlist of %d globals limits what it may call. Use pickle only "
                "with authenticated peers you trust.", len(self.allowed_globals))
        size = len(data)
        if size > limits.max_size:
            raise ProtocolError(
                f"pickle body of {size} bytes exceeds the limit of {limits.max_size} bytes",
                code="bad-body",
            )

        # NOTE: pickle has no nesting limit of its own; limits.max_depth is not enforced,
        # and a deeply nested pickle ends in RecursionError or MemoryError, caught below.
        unpickler = _Unpickler(data, self.allowed_globals)
        try:
            value = unpickler.load()
        except ProtocolError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError,
                IndexError, AttributeError, ImportError, OverflowError, MemoryError,
                RecursionError) as error:
            raise ProtocolError(
                f"invalid pickle body ({type(error).__name__})", code="bad-body"
            ) from None
        if unpickler.stream.tell() != size:
            raise ProtocolError("pickle body continues after its value", code="bad-body")
        return value


@hookimpl
def ember_serializers() -> list[Serializer]:
    return [PickleSerializer()]
