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

Before anything is unpickled, a scan of the opcodes enforces ``limits.max_items`` and
``limits.max_depth``, rejects duplicate constant dict keys and set items, reference
cycles, and opcodes that ember never writes (see the pre-scan section below).

Types with a registered converter travel as a call to :func:`_rebuild_converted` with
the converter's name and plain data, so their classes need not be on the allowlist.
"""

from __future__ import annotations

import io
import logging
import pickle
import pickletools
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


# --- The pre-scan ----------------------------------------------------------------------
#
# CPython's unpickler has no nesting or size budget, and its C implementation cannot be
# stopped half-way. So before unpickling, the opcodes are read with pickletools.genops
# and the unpickler's stack is replayed with one small _Cell per value instead of the
# value itself. The replay counts every value pushed (max_items), tracks each
# container's nesting (max_depth) and the constant keys of each dict and set, and
# rejects opcodes that ember never writes.
#
# Depth is exact only if a container is complete before it is put into another one,
# which is how CPython's pickler writes any value without a reference cycle. A pickle
# that adds to a container after nesting it (how a cycle is built) is rejected.

# Opcodes whose only effect is to push one new value that contains no other value.
_SCALAR_OPCODES = frozenset({
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "STRING",
    "BINSTRING", "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8",
    "BYTEARRAY8", "NONE", "NEWTRUE", "NEWFALSE", "UNICODE", "SHORT_BINUNICODE",
    "BINUNICODE", "BINUNICODE8", "FLOAT", "BINFLOAT", "GLOBAL",
})
# Of those, the ones whose value can be a dict key or set item, and what it is.
_CONSTANT_VALUES: dict[str, object] = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}
_CONSTANT_ARG_OPCODES = frozenset({
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "STRING",
    "BINSTRING", "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8",
    "UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "FLOAT", "BINFLOAT",
})
_EMPTY_CONTAINER_OPCODES = frozenset({"EMPTY_LIST", "EMPTY_TUPLE", "EMPTY_DICT", "EMPTY_SET"})
# Opcodes that build a container from the values above the topmost mark.
_MARKED_CONTAINER_OPCODES = frozenset({"LIST", "TUPLE", "DICT", "FROZENSET"})
_SMALL_TUPLE_SIZES = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}
# Opcodes that call a global with arguments: the result sits at the arguments' level.
_CALL_SIZES = {"REDUCE": 2, "NEWOBJ": 2, "NEWOBJ_EX": 3, "STACK_GLOBAL": 2}
# Opcodes that add the values above the topmost mark to the container below it.
_ADD_KINDS = {"APPENDS": "LIST", "SETITEMS": "DICT", "ADDITEMS": "SET"}
_MEMO_PUT_OPCODES = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_MEMO_GET_OPCODES = frozenset({"GET", "BINGET", "LONG_BINGET"})
# Opcodes ember never writes and that reach beyond the allowlist or the data:
# persistent ids, the copyreg extension registry, out-of-band buffers and the
# protocol 0 and 1 forms of instance creation.
_REJECTED_OPCODES = frozenset({
    "PERSID", "BINPERSID", "EXT1", "EXT2", "EXT4", "NEXT_BUFFER", "READONLY_BUFFER",
    "INST", "OBJ",
})

# A key whose value the scan cannot know (a call's result, or a tuple containing one).
_UNKNOWN = object()


class _Cell:
    """Stand-in for one value on the replayed stack or in the memo."""

    __slots__ = ("depth", "is_nested", "key", "members")

    def __init__(self, depth: int, key: object = _UNKNOWN) -> None:
        self.depth = depth
        self.key = key
        #: Known keys of a dict, or known items of a set, for the duplicate check.
        self.members: set[object] | None = None
        #: True once the value is inside another container; it must not grow after.
        self.is_nested = False


class _Mark:
    """The marker that MARK pushes."""


_MARK = _Mark()


class _PickleScan:
    """Replay of the unpickler's stack for one body; see the section comment."""

    def __init__(self, limits: DecodeLimits) -> None:
        self.max_depth = limits.max_depth
        self.max_items = limits.max_items
        self.items = 0
        self.stack: list[_Cell | _Mark] = []
        self.memo: dict[int, _Cell] = {}

    def run(self, data: bytes) -> None:
        try:
            for opcode, argument, _ in pickletools.genops(data):
                self.step(opcode.name, argument)
        except (ValueError, KeyError, IndexError, TypeError):
            # genops found a malformed opcode or argument, or the stack does not hold
            # what an opcode needs; the unpickler would fail on the same bytes.
            raise ProtocolError("invalid pickle body (malformed opcode stream)",
                                code="bad-body") from None

    def step(self, name: str, argument: Any) -> None:
        if name in _SCALAR_OPCODES:
            if name in _CONSTANT_ARG_OPCODES:
                key = argument
            else:
                key = _CONSTANT_VALUES.get(name, _UNKNOWN)
            self.push(_Cell(0, key))
        elif name in _EMPTY_CONTAINER_OPCODES:
            self.push(_Cell(1, () if name == "EMPTY_TUPLE" else _UNKNOWN))
        elif name in _MEMO_GET_OPCODES:
            self.push(self.memo[argument])
        elif name in _MEMO_PUT_OPCODES:
            self.memo[argument] = self.top()
        elif name == "MEMOIZE":
            self.memo[len(self.memo)] = self.top()
        elif name == "MARK":
            self.stack.append(_MARK)
        elif name in _MARKED_CONTAINER_OPCODES:
            self.build(name, self.pop_to_mark())
        elif name in _SMALL_TUPLE_SIZES:
            self.build("TUPLE", self.pop_cells(_SMALL_TUPLE_SIZES[name]))
        elif name in _CALL_SIZES:
            arguments = self.pop_cells(_CALL_SIZES[name])
            for cell in arguments:
                cell.is_nested = True
            self.push(_Cell(max(cell.depth for cell in arguments)))
        elif name == "APPEND":
            self.add(self.pop_cells(1), "LIST")
        elif name == "SETITEM":
            self.add(self.pop_cells(2), "DICT")
        elif name in _ADD_KINDS:
            self.add(self.pop_to_mark(), _ADD_KINDS[name])
        elif name == "BUILD":
            state = self.pop_cells(1)
            target = self.top()
            self.check_growable(target, state)
            target.depth = max(target.depth, self.nest(state))
        elif name == "POP":
            self.stack.pop()
        elif name == "POP_MARK":
            self.pop_to_mark()
        elif name == "DUP":
            self.push(self.top())
        elif name in _REJECTED_OPCODES:
            raise ProtocolError(f"pickle body uses opcode {name}, which ember never writes "
                                f"and does not accept", code="bad-body")
        # PROTO, FRAME and STOP change nothing that the scan tracks.

    def push(self, cell: _Cell) -> None:
        self.items += 1
        if self.items > self.max_items:
            raise ProtocolError(
                f"pickle body contains more than max_items={self.max_items} values (each "
                f"container, dict key, dict value and scalar is one); send less data per "
                f"call, or raise the max_items setting on the receiving side",
                code="bad-body",
            )
        self.stack.append(cell)

    def top(self) -> _Cell:
        cell = self.stack[-1]
        if isinstance(cell, _Mark):
            raise IndexError("a mark is not a value")
        return cell

    def pop_cells(self, count: int) -> list[_Cell]:
        cells = [self.stack.pop() for _ in range(count)]
        cells.reverse()
        if any(isinstance(cell, _Mark) for cell in cells):
            raise IndexError("a mark is not a value")
        return cells  # type: ignore[return-value]

    def pop_to_mark(self) -> list[_Cell]:
        cells: list[_Cell] = []
        while True:
            cell = self.stack.pop()
            if isinstance(cell, _Mark):
                cells.reverse()
                return cells
            cells.append(cell)

    def nest(self, cells: list[_Cell]) -> int:
        """Mark ``cells`` as nested and return the container depth they need."""
        depth = 0
        for cell in cells:
            cell.is_nested = True
            depth = max(depth, cell.depth)
        depth += 1
        if depth > self.max_depth:
            raise ProtocolError(f"pickle value nests deeper than max_depth={self.max_depth}",
                                code="bad-body")
        return depth

    def build(self, kind: str, cells: list[_Cell]) -> None:
        result = _Cell(self.nest(cells))
        if kind == "TUPLE":
            keys = tuple(cell.key for cell in cells)
            if _UNKNOWN not in keys:
                result.key = keys
        elif kind in ("DICT", "FROZENSET"):
            self.check_members(result, cells[::2] if kind == "DICT" else cells, kind)
            if kind == "FROZENSET" and result.members is not None:
                result.key = frozenset(result.members)
        self.push(result)

    def add(self, cells: list[_Cell], kind: str) -> None:
        target = self.top()
        self.check_growable(target, cells)
        target.depth = max(target.depth, self.nest(cells))
        if kind == "DICT":
            self.check_members(target, cells[::2], kind)
        elif kind == "SET":
            self.check_members(target, cells, kind)

    def check_growable(self, target: _Cell, cells: list[_Cell]) -> None:
        if target.is_nested or any(cell is target for cell in cells):
            raise ProtocolError(
                "pickle body adds to a container after nesting it, or puts a container "
                "inside itself; ember does not accept reference cycles",
                code="bad-body",
            )

    def check_members(self, target: _Cell, keys: list[_Cell], kind: str) -> None:
        if target.members is None:
            target.members = set()
        for cell in keys:
            if cell.key is _UNKNOWN:
                continue
            # 1, 1.0 and True are the same key here, as in the dict the unpickler builds.
            if cell.key in target.members:
                what = "dict contains the same key" if kind == "DICT" else "set contains an item"
                raise ProtocolError(f"pickle {what} twice", code="bad-body")
            target.members.add(cell.key)


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

        _PickleScan(limits).run(data)
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
