"""The max_items decode limit: each serializer at the limit and one over, and bombs
against a real daemon process.

A bomb is a body that is small on the wire but decodes to millions of objects. Before
max_items existed, a 4 MB serpent list of zeros made a daemon's resident memory peak at
1.9 GB, and a 4 MB CBOR array of empty maps at 500 MB. The daemon tests send each bomb
over loopback, read the daemon's peak resident set size (VmHWM) before and after, and
then check that another client is still served.
"""

from __future__ import annotations

import pickle
import socket
from collections.abc import Callable
from typing import Any

import pytest
from conftest import DaemonProcess, connect_raw, hello_frame, read_until_closed

from ember import Config, Proxy
from ember.kernel.errors import ProtocolError, RemoteError
from ember.kernel.protocol import FrameDecoder, MessageType, decode_control, encode_frame
from ember.kernel.serializer import DecodeLimits, Serializer
from ember.plugins.serializers.cbor import CborSerializer
from ember.plugins.serializers.pickle import PickleSerializer
from ember.plugins.serializers.serpent import SerpentSerializer

SERIALIZERS: dict[str, Serializer] = {
    "cbor": CborSerializer(),
    "serpent": SerpentSerializer(),
    "pickle": PickleSerializer(),
}

# Elements in each bomb: 4 MB of one-byte CBOR items, or of "0," in serpent text.
BOMB_ELEMENTS = 4_000_000
SERPENT_BOMB_ELEMENTS = 2_000_000
# How much a bomb may raise the daemon's peak memory. Reading the 4 MB body itself
# costs a few copies of it; decoding it in full cost 440 MB and more.
MAX_PEAK_GROWTH_KIB = 100 * 1024


def limits(max_items: int, **other: int) -> DecodeLimits:
    return DecodeLimits(max_items=max_items, **other)


# -- each serializer at the limit and one over ----------------------------------------


@pytest.mark.parametrize("name", sorted(SERIALIZERS))
def test_list_at_item_limit_decodes(name: str) -> None:
    serializer = SERIALIZERS[name]
    value = list(range(1000))
    data = serializer.dumps(value)

    # The list itself and its 1000 ints.
    assert serializer.loads(data, limits(1001)) == value


@pytest.mark.parametrize("name", sorted(SERIALIZERS))
def test_list_over_item_limit_rejected(name: str) -> None:
    serializer = SERIALIZERS[name]
    data = serializer.dumps(list(range(1000)))

    with pytest.raises(ProtocolError, match="max_items=1000") as caught:
        serializer.loads(data, limits(1000))
    assert caught.value.code == "bad-body"


@pytest.mark.parametrize("name", sorted(SERIALIZERS))
def test_dict_counts_keys_and_values(name: str) -> None:
    serializer = SERIALIZERS[name]
    value = {f"key{index}": index for index in range(300)}
    data = serializer.dumps(value)

    assert serializer.loads(data, limits(601)) == value
    with pytest.raises(ProtocolError, match="max_items=600"):
        serializer.loads(data, limits(600))


@pytest.mark.parametrize("name", sorted(SERIALIZERS))
def test_large_string_is_one_item(name: str) -> None:
    serializer = SERIALIZERS[name]
    value = "x" * 1_000_000
    data = serializer.dumps(value)

    assert serializer.loads(data, limits(1)) == value


def test_cbor_large_bytes_is_one_item() -> None:
    value = b"\x00" * (16 * 1024 * 1024)
    data = CborSerializer().dumps(value)

    assert CborSerializer().loads(data, limits(1)) == value


def test_cbor_tag_counts_as_item() -> None:
    serializer = CborSerializer()
    # A tuple is tag 47701 around an array: tag, array and two ints.
    data = serializer.dumps((1, 2))

    assert serializer.loads(data, limits(4)) == (1, 2)
    with pytest.raises(ProtocolError, match="max_items=3"):
        serializer.loads(data, limits(3))


def test_cbor_empty_map_bomb_rejected() -> None:
    body = b"\x9a" + BOMB_ELEMENTS.to_bytes(4, "big") + b"\xa0" * BOMB_ELEMENTS

    with pytest.raises(ProtocolError, match="max_items=250000"):
        CborSerializer().loads(body, DecodeLimits())


def test_cbor_malformed_header_left_to_decoder() -> None:
    # The scan stops at the indefinite-length header; cbor2 then rejects it.
    body = b"\x9f" + b"\x00" * 100

    with pytest.raises(ProtocolError, match="indefinite-length"):
        CborSerializer().loads(body, limits(10))


def test_serpent_bomb_rejected() -> None:
    body = b"[[" + b"0," * SERPENT_BOMB_ELEMENTS + b"0]]"

    with pytest.raises(ProtocolError, match="max_items=250000"):
        SerpentSerializer().loads(body, DecodeLimits())


@pytest.mark.parametrize(
    ("case", "text"),
    [
        ("binary minus chain", "1" + "-1" * 2000),
        ("boolean operators", "0 or " * 1000 + "0"),
        ("attribute chain", "[1.5.real]" + " " * 4000),
        ("name", "[x, y]" + " " * 4000),
        ("underscore attributes", "[_._._]" + " " * 4000),
        ("adjacent strings", "['a' 'b']" + " " * 4000),
        ("triple-quoted string", "['''a'#''', 1]" + " " * 4000),
        ("line continuation", "['a\\\n', 1]" + " " * 4000),
        ("sign after a value", "[True-True]" + " " * 4000),
        ("keyword after a number", "[1if 1else 1]" + " " * 4000),
    ],
)
def test_serpent_non_literal_text_rejected(case: str, text: str) -> None:
    # The text is longer than max_items, so the scan runs before ast.parse.
    with pytest.raises(ProtocolError, match="invalid serpent body") as caught:
        SerpentSerializer().loads(text.encode(), limits(1000))
    assert caught.value.code == "bad-body"


def test_serpent_comment_does_not_count() -> None:
    text = "[1, 2]" + " # [,,,]" * 1000

    assert SerpentSerializer().loads(text.encode(), limits(3)) == [1, 2]


def test_serpent_numbers_in_all_forms_decode() -> None:
    text = "[1e5, -1.5e-07, 0x1F, 0o17, 0b11, 1_000, .5, -3]" + " " * 1000

    decoded = SerpentSerializer().loads(text.encode(), limits(9))

    assert decoded == [1e5, -1.5e-07, 31, 15, 3, 1000, 0.5, -3]


def nested_lists(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_pickle_depth_over_limit_rejected() -> None:
    data = pickle.dumps(nested_lists(40), protocol=5)

    with pytest.raises(ProtocolError, match="max_depth=8"):
        SERIALIZERS["pickle"].loads(data, DecodeLimits(max_depth=8))


def test_pickle_depth_at_limit_decodes() -> None:
    data = pickle.dumps(nested_lists(8), protocol=5)

    assert SERIALIZERS["pickle"].loads(data, DecodeLimits(max_depth=8)) == nested_lists(8)


def test_pickle_shared_reference_counts_each_use() -> None:
    shared = [1, 2]
    data = pickle.dumps([shared, shared], protocol=5)

    # Outer list, the shared list and its two ints, and the second reference.
    assert SERIALIZERS["pickle"].loads(data, limits(5)) == [[1, 2], [1, 2]]
    with pytest.raises(ProtocolError, match="max_items=4"):
        SERIALIZERS["pickle"].loads(data, limits(4))


@pytest.mark.parametrize(
    ("case", "data"),
    [
        # EMPTY_DICT MEMOIZE MARK 1 2 1 3 SETITEMS STOP: {1: 2, 1: 3}
        ("same int key", b"\x80\x05}\x94(K\x01K\x02K\x01K\x03u."),
        # {1: 2, True: 3}: equal keys of different types
        ("int and bool key", b"\x80\x05}\x94(K\x01K\x02\x88K\x03u."),
        # {(1,): 2, (1,): 3}
        ("tuple key", b"\x80\x05}\x94(K\x01\x85K\x02K\x01\x85K\x03u."),
    ],
)
def test_pickle_duplicate_dict_key_rejected(case: str, data: bytes) -> None:
    with pytest.raises(ProtocolError, match="same key twice"):
        SERIALIZERS["pickle"].loads(data, DecodeLimits())


def test_pickle_duplicate_set_item_rejected() -> None:
    # EMPTY_SET MEMOIZE MARK 1 1 ADDITEMS STOP
    data = b"\x80\x05\x8f\x94(K\x01K\x01\x90."

    with pytest.raises(ProtocolError, match="item twice"):
        SERIALIZERS["pickle"].loads(data, DecodeLimits())


def test_pickle_reference_cycle_rejected() -> None:
    outer: list[Any] = []
    outer.append([outer])
    data = pickle.dumps(outer, protocol=5)

    with pytest.raises(ProtocolError, match="reference cycles"):
        SERIALIZERS["pickle"].loads(data, DecodeLimits())


def test_pickle_extension_opcode_rejected() -> None:
    # EXT1 code 1: a global looked up in the copyreg extension registry.
    data = b"\x80\x05\x82\x01."

    with pytest.raises(ProtocolError, match="opcode EXT1"):
        SERIALIZERS["pickle"].loads(data, DecodeLimits())


def test_pickle_bomb_rejected() -> None:
    # EMPTY_LIST MARK, then BININT1 0 for every element, APPENDS STOP.
    data = b"\x80\x05](" + b"K\x00" * (BOMB_ELEMENTS // 2) + b"e."

    with pytest.raises(ProtocolError, match="max_items=250000"):
        SERIALIZERS["pickle"].loads(data, DecodeLimits())


def test_decode_limits_reject_zero_items() -> None:
    with pytest.raises(ValueError, match="max_items must be at least 1, got 0"):
        DecodeLimits(max_items=0)


def test_max_items_setting_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBER_MAX_ITEMS", "1234")

    config = Config.from_environment()

    assert config.max_items == 1234
    assert config.source("max_items") == "environment"


# -- bombs against a daemon process ---------------------------------------------------


def cbor_call_body(element: bytes) -> bytes:
    """Encode the CALL ["probe", "echo", [[element] * BOMB_ELEMENTS], {}] in CBOR."""
    header = b"\x84" + b"\x65probe" + b"\x64echo" + b"\x81"
    array = b"\x9a" + BOMB_ELEMENTS.to_bytes(4, "big") + element * BOMB_ELEMENTS
    return header + array + b"\xa0"


def serpent_call_body() -> bytes:
    return b"['probe','echo',[[" + b"0," * SERPENT_BOMB_ELEMENTS + b"0]],{}]"


BOMBS: list[tuple[str, str, Callable[[], bytes]]] = [
    ("cbor", "empty maps", lambda: cbor_call_body(b"\xa0")),
    ("cbor", "empty arrays", lambda: cbor_call_body(b"\x80")),
    ("serpent", "list of zeros", serpent_call_body),
]


def read_error_code(sock: socket.socket) -> str:
    decoder = FrameDecoder(max_body=1024 * 1024)
    while True:
        frame = decoder.next_frame()
        if frame == FrameDecoder.EOF:
            raise AssertionError("the daemon closed the connection without a reply")
        if isinstance(frame, str):
            decoder.feed(sock.recv(decoder.bytes_needed))
            continue
        if frame.type is MessageType.WELCOME:
            continue
        assert frame.type is MessageType.ERROR, f"expected ERROR, got {frame.type.name}"
        return str(decode_control(frame.body)["code"])


@pytest.mark.parametrize(("name", "case", "make_body"), BOMBS,
                         ids=[f"{name}-{case}" for name, case, _ in BOMBS])
def test_daemon_rejects_bomb_without_memory_peak(
    spawn_daemon: Callable[..., DaemonProcess], name: str, case: str,
    make_body: Callable[[], bytes],
) -> None:
    daemon = spawn_daemon(accepted_serializers="cbor,serpent")
    serializer = SERIALIZERS[name]
    body = make_body()
    assert len(body) >= 4_000_000
    peak_before = daemon.peak_memory_kib()

    with connect_raw(daemon.port, timeout=30.0) as sock:
        sock.sendall(hello_frame(name, serializer.wire_id))
        sock.sendall(encode_frame(MessageType.CALL, body, serializer_id=serializer.wire_id,
                                  request_id=1))
        code = read_error_code(sock)
        sock.shutdown(socket.SHUT_WR)
        read_until_closed(sock, 10.0)

    growth = daemon.peak_memory_kib() - peak_before
    assert code == "bad-body"
    assert growth < MAX_PEAK_GROWTH_KIB, f"peak memory grew by {growth} KiB"
    with Proxy(daemon.uri, config=Config.defaults(), serializer=name) as proxy:
        assert proxy.echo([1, "two"]) == [1, "two"]


def test_daemon_applies_max_items_setting(
    spawn_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon = spawn_daemon(max_items=100)

    with Proxy(daemon.uri, config=Config.defaults()) as proxy:
        assert proxy.echo(list(range(50))) == list(range(50))
        with pytest.raises((ProtocolError, RemoteError), match="max_items=100"):
            proxy.echo(list(range(200)))


def test_proxy_applies_max_items_to_replies(
    spawn_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon = spawn_daemon()

    with Proxy(daemon.uri, config=Config.defaults(), max_items=10_000) as proxy:
        with pytest.raises(ProtocolError, match="max_items=10000"):
            proxy.echo(list(range(20_000)))
