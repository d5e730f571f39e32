"""The decoding choke point, over real loopback sockets.

A daemon checks the serializer id of every frame against its accepted set before it
decodes a byte of the body, and a proxy decodes replies only with its own serializer.
The hostile bodies here are pickles whose ``__reduce__`` would create a marker file, so
a test can prove that nothing was unpickled: the file must never appear.
"""

from __future__ import annotations

import builtins
import pickle
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import connect_raw, hello_frame

from ember import Config, Daemon, Proxy, SecurityError, expose
from ember.kernel.protocol import (
    CONTROL_SERIALIZER_ID,
    FrameDecoder,
    MessageType,
    decode_control,
    encode_control,
    encode_frame,
)
from ember.plugins.serializers.cbor import CborSerializer
from ember.plugins.serializers.serpent import SerpentSerializer

PICKLE_ID = 3
READ_TIMEOUT = 5.0


class Touch:
    """Unpickling this opens ``path`` for writing, which creates the file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, ...]:
        return (builtins.open, (str(self.path), "w"))


@expose
class Echo:
    def echo(self, value: Any) -> Any:
        return value


@pytest.fixture
def echo_daemon(make_daemon: Callable[..., Daemon]) -> Daemon:
    daemon = make_daemon()
    daemon.register(Echo(), "echo")
    return daemon


@pytest.fixture
def polyglot_daemon(make_daemon: Callable[..., Daemon]) -> Daemon:
    daemon = make_daemon(accepted_serializers=("cbor", "serpent"))
    daemon.register(Echo(), "echo")
    return daemon


def read_frame(sock: socket.socket) -> Any:
    decoder = FrameDecoder(max_body=64 * 1024 * 1024)
    deadline = time.monotonic() + READ_TIMEOUT
    while True:
        frame = decoder.next_frame()
        if not isinstance(frame, str):
            return frame
        if frame == FrameDecoder.EOF:
            return None
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        decoder.feed(sock.recv(decoder.bytes_needed))


def call_body(value: object) -> bytes:
    return CborSerializer().dumps(["echo", "echo", [value], {}])


def assert_still_serving(daemon: Daemon) -> None:
    with Proxy(daemon.uri_for("echo"), config=Config.defaults()) as proxy:
        assert proxy.echo("still here") == "still here"


def test_default_daemon_listens_on_loopback(echo_daemon: Daemon) -> None:
    assert echo_daemon.location.startswith("127.0.0.1:")


def test_default_daemon_accepts_only_safe_serializers(echo_daemon: Daemon) -> None:
    accepted = {serializer.name for serializer in echo_daemon.stack.accepted.values()}

    # serpent is safe from code execution but costs far more memory per value, so a
    # daemon accepts it only when configured to.
    assert accepted == {"cbor"}


def test_pickle_hello_is_rejected(echo_daemon: Daemon, tmp_path: Path) -> None:
    sock = connect_raw(echo_daemon.address.port)
    with sock:
        sock.sendall(hello_frame("pickle", PICKLE_ID))
        reply = read_frame(sock)

    assert reply.type is MessageType.ERROR
    fields = decode_control(reply.body)
    assert fields["code"] == "serializer-rejected"
    assert "it accepts: cbor." in fields["message"]
    assert_still_serving(echo_daemon)


def test_pickle_call_is_rejected_before_decoding(echo_daemon: Daemon, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    body = pickle.dumps(["echo", "echo", [Touch(marker)], {}])
    sock = connect_raw(echo_daemon.address.port)
    with sock:
        sock.sendall(hello_frame())
        assert read_frame(sock).type is MessageType.WELCOME
        sock.sendall(encode_frame(MessageType.CALL, body, serializer_id=PICKLE_ID,
                                  request_id=7))
        reply = read_frame(sock)

        assert reply.type is MessageType.ERROR
        assert reply.request_id == 7
        fields = decode_control(reply.body)
        assert fields["code"] == "serializer-rejected"
        assert "was not decoded" in fields["message"]

        # The same connection still serves a request in an accepted serializer.
        sock.sendall(encode_frame(MessageType.CALL, call_body("next"),
                                  serializer_id=CborSerializer.wire_id, request_id=8))
        result = read_frame(sock)
        assert result.type is MessageType.RESULT
        assert CborSerializer().loads(result.body, echo_daemon._limits) == "next"

    assert not marker.exists()
    assert_still_serving(echo_daemon)


@pytest.mark.parametrize("message_type", [MessageType.CALL, MessageType.METADATA])
@pytest.mark.parametrize("serializer_id", [PICKLE_ID, 999, 0xFFFF])
def test_unaccepted_id_is_rejected(echo_daemon: Daemon, tmp_path: Path,
                                   message_type: MessageType, serializer_id: int) -> None:
    marker = tmp_path / "marker"
    sock = connect_raw(echo_daemon.address.port)
    with sock:
        sock.sendall(hello_frame())
        read_frame(sock)
        sock.sendall(encode_frame(message_type, pickle.dumps(Touch(marker)),
                                  serializer_id=serializer_id, request_id=3))
        reply = read_frame(sock)

    assert reply.type is MessageType.ERROR
    assert decode_control(reply.body)["code"] == "serializer-rejected"
    assert not marker.exists()


def test_daemon_replies_in_caller_serializer(polyglot_daemon: Daemon) -> None:
    serpent = SerpentSerializer()
    sock = connect_raw(polyglot_daemon.address.port)
    with sock:
        sock.sendall(hello_frame("serpent", serpent.wire_id))
        read_frame(sock)
        sock.sendall(encode_frame(MessageType.CALL, serpent.dumps(["echo", "echo", [(1,)], {}]),
                                  serializer_id=serpent.wire_id, request_id=1))
        reply = read_frame(sock)

    assert reply.serializer_id == serpent.wire_id
    assert serpent.loads(reply.body, polyglot_daemon._limits) == (1,)


@pytest.mark.parametrize("how", ["uri", "keyword", "config"])
def test_proxy_chooses_serializer(polyglot_daemon: Daemon, how: str) -> None:
    uri = polyglot_daemon.uri_for("echo")
    config = Config.defaults()
    settings: dict[str, object] = {}
    if how == "uri":
        uri += "?serializer=serpent"
    elif how == "keyword":
        settings["serializer"] = "serpent"
    else:
        config = config.replace(serializer="serpent")

    with Proxy(uri, config=config, **settings) as proxy:
        assert proxy.echo({"set": {1, 2}}) == {"set": {1, 2}}
        assert proxy._ember_stack.serializer.name == "serpent"


def test_proxy_with_unaccepted_serializer_fails_clearly(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon(accepted_serializers=("cbor",))
    daemon.register(Echo(), "echo")

    with Proxy(daemon.uri_for("echo"), config=Config.defaults(), serializer="serpent") as proxy:
        with pytest.raises(SecurityError, match="does not accept serializer 'serpent'"):
            proxy.echo(1)


# -- the proxy side ----------------------------------------------------------------------


@pytest.fixture
def hostile_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A raw server on loopback that answers a proxy's first request with a pickle."""
    marker = tmp_path / "marker"
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(READ_TIMEOUT)

    def serve() -> None:
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        with connection:
            hello = read_frame(connection)
            connection.sendall(encode_frame(
                MessageType.WELCOME, encode_control({"protocol": 1, "authenticator": None}),
                serializer_id=CONTROL_SERIALIZER_ID))
            request = read_frame(connection)
            if hello is None or request is None:
                return
            connection.sendall(encode_frame(MessageType.RESULT, pickle.dumps(Touch(marker)),
                                            serializer_id=PICKLE_ID,
                                            request_id=request.request_id))
            read_frame(connection)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], marker
    listener.close()
    thread.join(READ_TIMEOUT)


def test_proxy_never_decodes_other_serializer(hostile_server: tuple[int, Path]) -> None:
    port, marker = hostile_server

    with Proxy(f"ember+tcp://127.0.0.1:{port}/echo", config=Config.defaults()) as proxy:
        with pytest.raises(SecurityError, match="the reply was not decoded"):
            proxy.echo(1)

    assert not marker.exists()
