"""Hostile bodies against every bundled serializer, alone and over the wire.

Each body must be rejected (or, where the format has no such concept, decoded harmlessly)
within bounded time and memory. Bodies that could crash an interpreter (deep nesting,
huge declared lengths) are decoded in a child process with a 1 GiB address-space limit,
and the child must exit normally. Over the wire, a real daemon must keep serving another
client after each hostile frame.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from conftest import connect_raw, hello_frame

from ember import Config, Daemon, Proxy, expose
from ember.kernel.errors import ProtocolError
from ember.kernel.protocol import FrameDecoder, MessageType, encode_frame
from ember.kernel.serializer import DecodeLimits, Serializer
from ember.plugins.serializers.cbor import CborSerializer
from ember.plugins.serializers.pickle import PickleSerializer
from ember.plugins.serializers.serpent import SerpentSerializer

LIMITS = DecodeLimits()
CHILD_TIMEOUT = 120.0

SERIALIZERS: dict[str, Serializer] = {
    "cbor": CborSerializer(),
    "serpent": SerpentSerializer(),
    "pickle": PickleSerializer(allowed_globals=()),
}

DEEP = 100_000

# (serializer, case, body, expected outcome): "reject" means ProtocolError; "accept"
# means the format has no such concept and the body decodes to plain data.
CRASH_PRONE: list[tuple[str, str, bytes, str]] = [
    ("cbor", "nested-arrays", b"\x81" * DEEP + b"\x00", "reject"),
    ("cbor", "nested-maps", b"\xa1\x00" * DEEP + b"\x00", "reject"),
    ("cbor", "nested-tags", b"\xd9\xba\x55" * DEEP + b"\x80", "reject"),
    ("cbor", "array-2**32", b"\x9b" + (2**32).to_bytes(8, "big"), "reject"),
    ("cbor", "array-2**63", b"\x9b" + (2**63).to_bytes(8, "big"), "reject"),
    ("cbor", "bytes-2**32", b"\x5b" + (2**32).to_bytes(8, "big"), "reject"),
    ("cbor", "bytes-2**63", b"\x5b" + (2**63).to_bytes(8, "big"), "reject"),
    ("cbor", "map-2**63", b"\xbb" + (2**63).to_bytes(8, "big"), "reject"),
    ("serpent", "nested-lists", b"[" * DEEP + b"]" * DEEP, "reject"),
    ("serpent", "nested-tuples", b"(" * DEEP + b")" * DEEP, "reject"),
    ("serpent", "nested-dicts", b"{1:" * DEEP + b"1" + b"}" * DEEP, "reject"),
    ("serpent", "unclosed-2**20", b"[" * 2**20, "reject"),
    ("serpent", "million-digit-int", b"1" * 1_000_000, "reject"),
    ("serpent", "million-digit-float", b"1" * 1_000_000 + b".5", "accept"),
    # pickle builds containers on its own stack, so depth costs no recursion; the
    # plugin's opcode scan rejects it for max_depth before unpickling.
    ("pickle", "nested-lists", b"\x80\x02" + b"(" * DEEP + b"l" * DEEP + b".", "reject"),
    ("pickle", "binbytes8-2**63", b"\x80\x05\x8e" + (2**63).to_bytes(8, "little"), "reject"),
    ("pickle", "binbytes8-2**32", b"\x80\x05\x8e" + (2**32).to_bytes(8, "little"), "reject"),
    ("pickle", "frame-2**63", b"\x80\x05\x95" + (2**63).to_bytes(8, "little"), "reject"),
    ("pickle", "million-digit-long", b"\x80\x02L" + b"1" * 1_000_000 + b"L\n.", "reject"),
]

CHILD_SCRIPT = textwrap.dedent("""
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    from ember.kernel.errors import ProtocolError
    from ember.kernel.serializer import DecodeLimits
    from ember.plugins.serializers.cbor import CborSerializer
    from ember.plugins.serializers.pickle import PickleSerializer
    from ember.plugins.serializers.serpent import SerpentSerializer
    serializers = {"cbor": CborSerializer(), "serpent": SerpentSerializer(),
                   "pickle": PickleSerializer(allowed_globals=())}
    body = sys.stdin.buffer.read()
    try:
        serializers[sys.argv[1]].loads(body, DecodeLimits())
    except ProtocolError:
        print("reject")
    else:
        print("accept")
""")


@pytest.mark.parametrize(("name", "case", "body", "expected"), CRASH_PRONE,
                         ids=[f"{name}-{case}" for name, case, _, _ in CRASH_PRONE])
def test_crash_prone_body_in_child(name: str, case: str, body: bytes, expected: str) -> None:
    child = subprocess.run([sys.executable, "-c", CHILD_SCRIPT, name], input=body,
                           capture_output=True, timeout=CHILD_TIMEOUT, check=False)

    assert child.returncode == 0, child.stderr.decode(errors="replace")[-2000:]
    assert child.stdout.decode().strip() == expected


# Bodies that are safe to decode in this process.
REJECTED: list[tuple[str, str, bytes]] = [
    ("cbor", "duplicate-keys", b"\xa2\x01\x01\x01\x02"),
    ("cbor", "unknown-tag", b"\xd9\x01\x00\x00"),
    ("cbor", "unknown-private-tag", b"\xd9\xba\x5f\x00"),
    # Tag 47710 (converted value) naming a converter no one registered.
    ("cbor", "unregistered-type", b"\xd9\xba\x5e\x82\x69os.system\x00"),
    ("serpent", "duplicate-keys", b"{'a': 1, 'a': 2}"),
    ("serpent", "unregistered-type", b"('__ember_type__', 'os.system', 'rm -rf /')"),
    ("serpent", "call", b"__import__('os').system('true')"),
    ("pickle", "unregistered-class", pickle.dumps(pickle.PickleError("x"))),
    ("pickle", "reduce-global", b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueq\x00\x85R."),
]


@pytest.mark.parametrize(("name", "case", "body"), REJECTED,
                         ids=[f"{name}-{case}" for name, case, _ in REJECTED])
def test_hostile_body_is_rejected(name: str, case: str, body: bytes) -> None:
    with pytest.raises(ProtocolError):
        SERIALIZERS[name].loads(body, LIMITS)


@pytest.mark.parametrize("name", ["cbor", "serpent"])
def test_class_name_in_map_stays_data(name: str) -> None:
    serializer = SERIALIZERS[name]
    claim = {"__class__": "os.system", "args": ["true"], "__exception__": True}

    assert serializer.loads(serializer.dumps(claim), LIMITS) == claim


# -- over the wire -------------------------------------------------------------------------

WIRE_BODIES: list[tuple[str, str, bytes]] = [
    (name, case, body) for name, case, body, _ in CRASH_PRONE if name != "pickle"
] + [(name, case, body) for name, case, body in REJECTED if name != "pickle"]


@expose
class Echo:
    def echo(self, value: Any) -> Any:
        return value


@pytest.fixture(scope="module")
def wire_daemon() -> Any:
    daemon = Daemon(config=Config.defaults(), accepted_serializers=("cbor", "serpent"))
    daemon.register(Echo(), "echo")
    daemon.start()
    yield daemon
    daemon.close(grace=2.0)


def read_reply(sock: Any) -> Any:
    decoder = FrameDecoder(max_body=64 * 1024 * 1024)
    while True:
        frame = decoder.next_frame()
        if not isinstance(frame, str):
            return frame
        if frame == FrameDecoder.EOF:
            return None
        decoder.feed(sock.recv(decoder.bytes_needed))


@pytest.mark.parametrize(("name", "case", "body"), WIRE_BODIES,
                         ids=[f"{name}-{case}" for name, case, _ in WIRE_BODIES])
def test_daemon_survives_hostile_frame(wire_daemon: Daemon, name: str, case: str,
                                       body: bytes) -> None:
    serializer = SERIALIZERS[name]
    sock = connect_raw(wire_daemon.address.port, timeout=30.0)
    with sock:
        sock.sendall(hello_frame(name, serializer.wire_id))
        assert read_reply(sock).type is MessageType.WELCOME
        sock.sendall(encode_frame(MessageType.CALL, body, serializer_id=serializer.wire_id,
                                  request_id=1))
        reply = read_reply(sock)

    assert reply is None or reply.type in (MessageType.ERROR, MessageType.EXCEPTION,
                                           MessageType.RESULT)
    with Proxy(wire_daemon.uri_for("echo"), config=Config.defaults(),
               serializer=name) as proxy:
        assert proxy.echo([1, "two"]) == [1, "two"]

