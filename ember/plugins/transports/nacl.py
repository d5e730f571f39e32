"""Encrypted transports built on libsodium (PyNaCl): ``nacl`` over TCP and ``nacl-unix``.

URIs: ``ember+nacl://HOST:PORT/OBJECT?nacl_server_public_key=HEX`` and
``ember+nacl-unix://PERCENT-ENCODED-PATH/OBJECT?nacl_server_public_key=HEX``. The
daemon has a long-term X25519 key pair; the client pins its public key, which is not
secret, so the URI may carry it. The daemon adds it to the URIs it returns.

Handshake, before any ember frame (``|`` is concatenation, ``DH`` is X25519)::

    client -> server   b"ENC1" | client_ephemeral (32)
    server -> client   b"ENC1" | server_ephemeral (32) | confirmation (32)

    transcript   = b"ENC1" | client_ephemeral | b"ENC1" | server_ephemeral | server_static
    input key    = DH(ephemeral, ephemeral) | DH(client ephemeral, server static)
    prk          = HKDF-Extract(salt=SHA-256(transcript), input key)
    c2s, s2c     = HKDF-Expand(prk, b"ember-nacl-v1 client to server" / b"... server to client")
    confirmation = HMAC-SHA256(HKDF-Expand(prk, b"ember-nacl-v1 confirm"), transcript)

Only the holder of the server's private key can compute the confirmation, so a client
with a wrong pinned key fails inside ``connect``, before it sends any call data. Fresh
ephemeral keys on both sides give every connection new keys and forward secrecy: a
leaked long-term key does not decrypt recorded traffic. The server does not learn who
the client is; combine the transport with an authenticator for that.

Records, in each direction::

    length (4, big-endian, of the ciphertext) | ChaCha20-Poly1305-IETF ciphertext

The associated data is the 4 length bytes. The 12-byte nonce is 4 zero bytes followed
by the 8-byte big-endian count of records sent before in that direction. Direction keys
differ, so a nonce never repeats under one key, and the counters are never sent. A
record holds 1 to 1 MiB of plaintext. A record that fails decryption (altered, replayed,
reordered, reflected) or ends early (truncated) raises SecurityError and ends the
connection. An end of stream between records is a normal close, exactly as on TCP.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
from collections.abc import Mapping
from typing import Final

import nacl.bindings
import nacl.public
from nacl._sodium import ffi as _ffi
from nacl._sodium import lib as _sodium

from ember.kernel.errors import (
    ConfigError,
    ConnectionClosed,
    EmberError,
    SecurityError,
    TransportError,
    UsageError,
)
from ember.kernel.hookspecs import hookimpl
from ember.kernel.keys import decode_hex_key, load_secret
from ember.kernel.protocol import MessageType, encode_control, encode_frame
from ember.kernel.transport import (
    PEER_ADDRESS,
    PEER_PUBLIC_KEY,
    Address,
    Listener,
    Stream,
    Transport,
)
from ember.plugins.auth.session import hkdf_expand, hkdf_extract, x25519
from ember.plugins.transports.tcp import TcpTransport
from ember.plugins.transports.unix import UnixTransport

__all__ = ["NaclTransport", "NaclUnixTransport", "NaclStream", "MAX_RECORD_PLAINTEXT",
           "PUBLIC_KEY_SETTING", "public_key_of", "ember_transports"]

log = logging.getLogger("ember.transport.nacl")

MAGIC: Final = b"ENC1"
KEY_SIZE: Final = 32
#: Largest plaintext in one record: large enough that per-record costs vanish for big
#: payloads, small enough that a receiver buffers little before it can authenticate.
MAX_RECORD_PLAINTEXT: Final = 1024 * 1024
TAG_SIZE: Final = nacl.bindings.crypto_aead_chacha20poly1305_ietf_ABYTES
PUBLIC_KEY_SETTING: Final = "nacl_server_public_key"
_CLIENT_HELLO_SIZE: Final = len(MAGIC) + KEY_SIZE
_SERVER_HELLO_SIZE: Final = len(MAGIC) + 2 * KEY_SIZE
_LENGTH_SIZE: Final = 4
_MAX_COUNTER: Final = 2**64 - 1
_READ_CHUNK: Final = 64 * 1024
_NONCE_PREFIX: Final = bytes(4)
# NOTE: records call libsodium through PyNaCl's cffi module (nacl._sodium), which is not
# PyNaCl's public API. Its public wrappers format two error messages on every call,
# which cost about a quarter of the per-message overhead on small calls. The lengths
# and types the wrappers check are fixed by construction here.
_ENCRYPT = _sodium.crypto_aead_chacha20poly1305_ietf_encrypt
_DECRYPT = _sodium.crypto_aead_chacha20poly1305_ietf_decrypt
# The first bytes of a plain ember frame: magic "EM" and protocol version 1.
_PLAIN_FRAME_PREFIX: Final = b"EM\x01"


def public_key_of(private_key: bytes) -> bytes:
    """Return the X25519 public key of ``private_key``."""
    return bytes(nacl.public.PrivateKey(private_key).public_key)


def load_server_key(options: Mapping[str, object]) -> bytes:
    key = load_secret(options, file_setting="nacl_server_key_file",
                      value_setting="nacl_server_key", what="NaCl server private key",
                      size=KEY_SIZE)
    if key is None:
        raise ConfigError(
            "a daemon on a nacl transport needs its private key: set nacl_server_key_file "
            "(EMBER_NACL_SERVER_KEY_FILE) to a file made by 'ember keygen nacl'",
            setting="nacl_server_key_file")
    return key


def _pinned_key(options: Mapping[str, object], address: object) -> bytes:
    text = str(options.get(PUBLIC_KEY_SETTING) or "")
    if not text:
        raise ConfigError(
            f"connecting to {address} over nacl needs the daemon's public key: add "
            f"?{PUBLIC_KEY_SETTING}=HEX to the URI (the daemon's URIs carry it) or set "
            f"EMBER_{PUBLIC_KEY_SETTING.upper()}", setting=PUBLIC_KEY_SETTING)
    return decode_hex_key(text, what=PUBLIC_KEY_SETTING, size=KEY_SIZE)


def _derive(client_hello: bytes, server_ephemeral: bytes, server_static: bytes,
            input_key: bytes) -> tuple[bytes, bytes, bytes]:
    """Return the (client-to-server key, server-to-client key, confirmation)."""
    transcript = client_hello + MAGIC + server_ephemeral + server_static
    prk = hkdf_extract(hashlib.sha256(transcript).digest(), input_key)
    to_server = hkdf_expand(prk, b"ember-nacl-v1 client to server")
    to_client = hkdf_expand(prk, b"ember-nacl-v1 server to client")
    confirm_key = hkdf_expand(prk, b"ember-nacl-v1 confirm")
    return to_server, to_client, hmac.digest(confirm_key, transcript, "sha256")


class NaclStream(Stream):
    """Encrypts every byte written and authenticates every byte read.

    The client runs the handshake in :meth:`client`. A server stream runs it on its
    first read or write, in the connection's own thread and within that call's timeout,
    so a slow client never stalls the accepting thread.
    """

    def __init__(self, inner: Stream, *, server_key: bytes | None = None,
                 send_key: bytes = b"", receive_key: bytes = b"",
                 peer_public_key: bytes | None = None) -> None:
        self._inner = inner
        # The server's private key, kept only until the server handshake has run.
        self._server_key: bytes | None = server_key
        self._send_key = send_key
        self._receive_key = receive_key
        self._sent = 0
        self._received = 0
        self._raw = bytearray()
        self._plain = b""
        self._offset = 0
        self._failure: EmberError | None = None
        self._ended = False
        self._write_lock = threading.Lock()
        self._handshake_lock = threading.Lock()
        self._details: dict[str, object] = {}
        if peer_public_key is not None:
            self._details[PEER_PUBLIC_KEY] = peer_public_key.hex()

    # -- handshake -------------------------------------------------------------------

    @classmethod
    def client(cls, inner: Stream, pinned_key: bytes, timeout: float) -> NaclStream:
        """Run the client handshake on ``inner`` within ``timeout`` seconds."""
        peer = inner.get_peer_detail(PEER_ADDRESS)
        inner.set_timeout(timeout)
        ephemeral = nacl.public.PrivateKey.generate()
        hello = MAGIC + bytes(ephemeral.public_key)
        inner.write(hello)

        reply = _read_exact(inner, len(MAGIC), peer, "client")
        if reply.startswith(_PLAIN_FRAME_PREFIX[:2]):
            raise SecurityError(
                f"the daemon at {peer} is not a nacl endpoint: it responded with a plain "
                "ember frame. Use the URI the daemon printed (for example ember+tcp://...)")
        if reply != MAGIC:
            raise SecurityError(f"the daemon at {peer} sent bytes that are not a nacl "
                                "handshake; check the URI's transport")
        reply = _read_exact(inner, _SERVER_HELLO_SIZE - len(MAGIC), peer, "client")
        server_ephemeral, confirmation = reply[:KEY_SIZE], reply[KEY_SIZE:]

        ephemeral_secret = x25519(bytes(ephemeral), server_ephemeral)
        static_secret = x25519(bytes(ephemeral), pinned_key)
        if ephemeral_secret is None or static_secret is None:
            raise SecurityError(f"the nacl handshake with {peer} failed: a public key is "
                                "of small order")
        to_server, to_client, expected = _derive(hello, server_ephemeral, pinned_key,
                                                 ephemeral_secret + static_secret)
        if not hmac.compare_digest(confirmation, expected):
            raise SecurityError(
                f"the daemon at {peer} does not hold the private key of the pinned "
                f"{PUBLIC_KEY_SETTING}; check the key, or someone is intercepting the "
                "connection. No call data was sent")
        inner.set_timeout(None)
        return cls(inner, send_key=to_server, receive_key=to_client,
                   peer_public_key=pinned_key)

    def _ensure_handshake(self) -> None:
        if self._server_key is None:
            return
        with self._handshake_lock:
            server_key, self._server_key = self._server_key, None
            if not server_key:
                return  # another thread ran the handshake while this one waited
            try:
                self._server_handshake(server_key)
            except EmberError as error:
                self._failure = error
                self._inner.close()
                raise

    def _server_handshake(self, server_key: bytes) -> None:
        peer = self._inner.get_peer_detail(PEER_ADDRESS)
        prefix = _read_exact(self._inner, len(MAGIC), peer, "server")
        if prefix.startswith(_PLAIN_FRAME_PREFIX[:2]):
            self._tell_plain_client()
            raise SecurityError(f"the client {peer} sent a plain ember frame to a nacl "
                                "endpoint; it was told to use the nacl transport")
        if prefix != MAGIC:
            raise SecurityError(f"the client {peer} sent bytes that are not a nacl "
                                "handshake")
        client_ephemeral = _read_exact(self._inner, KEY_SIZE, peer, "server")

        ephemeral = nacl.public.PrivateKey.generate()
        ephemeral_secret = x25519(bytes(ephemeral), client_ephemeral)
        static_secret = x25519(server_key, client_ephemeral)
        if ephemeral_secret is None or static_secret is None:
            raise SecurityError(f"the nacl handshake with {peer} failed: the client's key is "
                                "of small order")
        server_ephemeral = bytes(ephemeral.public_key)
        to_server, to_client, confirmation = _derive(
            MAGIC + client_ephemeral, server_ephemeral, public_key_of(server_key),
            ephemeral_secret + static_secret)
        self._inner.write(MAGIC + server_ephemeral + confirmation)
        self._send_key = to_client
        self._receive_key = to_server

    def _tell_plain_client(self) -> None:
        """Send a plain ember ERROR frame, so a plain client fails with a clear message."""
        message = ("this daemon uses an encrypted nacl transport; connect with its "
                   "ember+nacl URI, which carries the nacl_server_public_key option")
        frame = encode_frame(MessageType.ERROR,
                             encode_control({"code": "transport-mismatch",
                                             "message": message}))
        try:
            self._inner.write(frame)
        except TransportError:
            pass  # the client is gone; the SecurityError raised next still ends this side

    # -- Stream ----------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._failure is not None or self._server_key is not None:
            self._check_failure()
            self._ensure_handshake()
        if not data:
            return  # a record carries at least one byte, so nothing is sent
        with self._write_lock:
            if len(data) <= MAX_RECORD_PLAINTEXT:
                self._inner.write(self._seal(data))
                return
            for start in range(0, len(data), MAX_RECORD_PLAINTEXT):
                self._inner.write(self._seal(data[start:start + MAX_RECORD_PLAINTEXT]))

    def _seal(self, plaintext: bytes) -> bytes:
        """Return one record: the length, then the ciphertext, in one buffer."""
        if self._sent >= _MAX_COUNTER:
            raise SecurityError("the nacl stream sent 2**64 - 1 records; open a new "
                                "connection")
        size = len(plaintext) + TAG_SIZE
        length = size.to_bytes(_LENGTH_SIZE, "big")
        nonce = _NONCE_PREFIX + self._sent.to_bytes(8, "big")
        record = _ffi.new("unsigned char[]", _LENGTH_SIZE + size)
        record[0:_LENGTH_SIZE] = length
        result = _ENCRYPT(record + _LENGTH_SIZE, _ffi.NULL, plaintext, len(plaintext),
                          length, _LENGTH_SIZE, _ffi.NULL, nonce, self._send_key)
        if result != 0:
            raise SecurityError("libsodium failed to encrypt a record")
        self._sent += 1
        return _ffi.buffer(record)[:]  # type: ignore[no-any-return]

    def read(self, max_bytes: int) -> bytes:
        if self._failure is not None or self._server_key is not None:
            self._check_failure()
            self._ensure_handshake()
        plain, offset = self._plain, self._offset
        if offset >= len(plain):
            if self._ended:
                return b""
            try:
                record = self._read_record()
            except SecurityError as error:
                self._failure = error
                raise
            if record is None:
                self._ended = True
                return b""
            plain, offset = record, 0

        # Whole records go up without a copy; a partial read slices, which copies only
        # what it returns, so reading a record in pieces stays linear.
        if offset == 0 and len(plain) <= max_bytes:
            self._plain, self._offset = b"", 0
            return plain
        end = min(offset + max_bytes, len(plain))
        self._plain, self._offset = plain, end
        return plain[offset:end]

    def _read_record(self) -> bytes | None:
        """Return the next record's plaintext, or ``None`` at a clean end of stream."""
        if not self._fill(_LENGTH_SIZE):
            if not self._raw:
                return None
            raise SecurityError(f"the stream from {self._peer()} ended inside a record "
                                "header (truncated); the connection is closed")
        length_bytes = bytes(self._raw[:_LENGTH_SIZE])
        length = int.from_bytes(length_bytes, "big")
        if not TAG_SIZE < length <= MAX_RECORD_PLAINTEXT + TAG_SIZE:
            raise SecurityError(
                f"record {self._received} from {self._peer()} declares {length} bytes, "
                f"outside {TAG_SIZE + 1} to {MAX_RECORD_PLAINTEXT + TAG_SIZE}; the "
                "connection is closed")
        end = _LENGTH_SIZE + length
        if not self._fill(end):
            raise SecurityError(f"the stream from {self._peer()} ended inside record "
                                f"{self._received} (truncated); the connection is closed")
        if self._received >= _MAX_COUNTER:
            raise SecurityError("the nacl stream received 2**64 - 1 records; open a new "
                                "connection")
        nonce = _NONCE_PREFIX + self._received.to_bytes(8, "big")
        plaintext = _ffi.new("unsigned char[]", length - TAG_SIZE)
        # Decrypt straight from the receive buffer; the view is released before the
        # buffer shrinks, because a bytearray with a live export cannot be resized.
        source = _ffi.from_buffer(self._raw)
        try:
            result = _DECRYPT(plaintext, _ffi.NULL, _ffi.NULL, source + _LENGTH_SIZE, length,
                              length_bytes, _LENGTH_SIZE, nonce, self._receive_key)
        finally:
            _ffi.release(source)
        del self._raw[:end]
        if result != 0:
            raise SecurityError(
                f"record {self._received} from {self._peer()} failed authentication "
                "(altered, replayed, reordered or reflected); the connection is closed")
        self._received += 1
        return _ffi.buffer(plaintext)[:]  # type: ignore[no-any-return]

    def _fill(self, size: int) -> bool:
        """Read until ``size`` raw bytes are buffered; ``False`` if the stream ended first."""
        while len(self._raw) < size:
            chunk = self._inner.read(max(size - len(self._raw), _READ_CHUNK))
            if not chunk:
                return False
            self._raw += chunk
        return True

    def _check_failure(self) -> None:
        if self._failure is not None:
            raise SecurityError(f"the nacl stream from {self._peer()} failed earlier: "
                                f"{self._failure}")

    def _peer(self) -> object:
        return self._inner.get_peer_detail(PEER_ADDRESS)

    def set_timeout(self, seconds: float | None) -> None:
        self._inner.set_timeout(seconds)

    def shutdown_write(self) -> None:
        self._inner.shutdown_write()

    def close(self) -> None:
        self._inner.close()

    def get_peer_detail(self, key: str, default: object = None) -> object:
        if key in self._details:
            return self._details[key]
        return self._inner.get_peer_detail(key, default)


def _read_exact(stream: Stream, size: int, peer: object, role: str) -> bytes:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            if role == "client":
                raise SecurityError(
                    f"the daemon at {peer} closed the connection during the nacl handshake; "
                    "it may not use a nacl transport, or it rejected this client")
            raise ConnectionClosed(f"the client {peer} closed the connection during the "
                                   "nacl handshake")
        data += chunk
    return data


class NaclListener(Listener):
    """Wraps an inner listener; every accepted stream is encrypted."""

    def __init__(self, inner: Listener, server_key: bytes) -> None:
        self._inner = inner
        self._server_key = server_key
        self.address = inner.address
        #: URI options a daemon adds to the URIs it returns for this listener.
        self.uri_params = ((PUBLIC_KEY_SETTING, public_key_of(server_key).hex()),)

    def accept(self, timeout: float | None) -> Stream | None:
        stream = self._inner.accept(timeout)
        if stream is None:
            return None
        return NaclStream(stream, server_key=self._server_key)

    def close(self) -> None:
        self._inner.close()


class _NaclOver(Transport):
    """The nacl layer over an unencrypted inner transport."""

    is_encrypted = True

    def __init__(self, inner: Transport) -> None:
        if inner.is_encrypted:
            raise UsageError(
                f"the nacl transport cannot run over transport {inner.name!r}, which is "
                "already encrypted; layer it over tcp or unix")
        self.inner = inner

    def parse_address(self, text: str, *, listening: bool = False) -> Address:
        return self.inner.parse_address(text, listening=listening)

    def format_address(self, address: Address) -> str:
        return self.inner.format_address(address)

    def is_loopback(self, address: Address) -> bool:
        return self.inner.is_loopback(address)

    def listen(self, address: Address, options: Mapping[str, object]) -> NaclListener:
        server_key = load_server_key(options)
        return NaclListener(self.inner.listen(address, options), server_key)

    def connect(self, address: Address, timeout: float,
                options: Mapping[str, object]) -> NaclStream:
        pinned = _pinned_key(options, address)
        inner = self.inner.connect(address, timeout, options)
        try:
            return NaclStream.client(inner, pinned, timeout)
        except BaseException:
            inner.close()
            raise


class NaclTransport(_NaclOver):
    """nacl over TCP."""

    name = "nacl"

    def __init__(self) -> None:
        super().__init__(TcpTransport())


class NaclUnixTransport(_NaclOver):
    """nacl over a Unix socket."""

    name = "nacl-unix"

    def __init__(self) -> None:
        super().__init__(UnixTransport())


def generate_server_key() -> bytes:
    """Return a fresh X25519 private key for a daemon."""
    return os.urandom(KEY_SIZE)


@hookimpl
def ember_transports() -> list[Transport]:
    return [NaclTransport(), NaclUnixTransport()]
