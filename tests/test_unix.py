"""The unix transport: socket files, stale sockets, peer credentials, allowlists, URIs."""

from __future__ import annotations

import logging
import os
import socket
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ember import Config, Daemon, Proxy, current_call, expose
from ember.kernel.errors import ConfigError, TransportError, UsageError
from ember.plugins.transports.unix import UnixAddress, UnixTransport, parse_socket_mode


@expose
class Caller:
    def describe(self) -> dict[str, object]:
        context = current_call()
        return {"identity": context.identity, **context.peer_details}


@pytest.fixture
def socket_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "sockets with spaces ü"
    folder.mkdir()
    yield folder


def unix_config(**settings: object) -> Config:
    return Config.defaults().replace(transport="unix", **settings)


def serve(path: Path, **settings: object) -> Daemon:
    daemon = Daemon(address=str(path), config=unix_config(**settings))
    daemon.register(Caller, "caller")
    return daemon.start()


# -- addresses -----------------------------------------------------------------------

def test_address_round_trips_through_uri_form() -> None:
    transport = UnixTransport()
    address = transport.parse_address("/tmp/a b/ü%.sock")
    text = transport.format_address(address)

    assert "/" not in text
    assert transport.parse_address(text) == address
    assert str(address) == "/tmp/a b/ü%.sock"


def test_relative_path_rejected() -> None:
    with pytest.raises(UsageError, match="absolute path"):
        UnixTransport().parse_address("relative.sock")


def test_overlong_path_rejected() -> None:
    with pytest.raises(UsageError, match="limit is 107 bytes"):
        UnixTransport().parse_address("/" + "x" * 120)


def test_abstract_address_refused_by_default() -> None:
    transport = UnixTransport()
    address = transport.parse_address("@ember-test")

    assert address.abstract
    with pytest.raises(UsageError, match="unix_allow_abstract"):
        transport.listen(address, Config.defaults())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
def test_abstract_address_allowed_by_setting() -> None:
    name = f"@ember-test-{os.getpid()}"
    with Daemon(address=name, config=unix_config(unix_allow_abstract=True)) as daemon:
        uri = daemon.register(Caller, "caller")
        daemon.start()
        with Proxy(uri, config=unix_config(unix_allow_abstract=True)) as proxy:
            assert proxy.describe()["peer_uid"] == os.getuid()


def test_socket_mode_parsing() -> None:
    assert parse_socket_mode("600") == 0o600
    assert parse_socket_mode("0o660") == 0o660
    with pytest.raises(ConfigError, match="unix_socket_mode"):
        parse_socket_mode("999")


def test_loopback_always() -> None:
    assert UnixTransport().is_loopback(UnixAddress(b"/tmp/x"))


# -- socket files --------------------------------------------------------------------

def test_socket_file_owner_only(socket_dir: Path) -> None:
    path = socket_dir / "d.sock"
    with serve(path):
        mode = stat.S_IMODE(os.lstat(path).st_mode)
    assert mode == 0o600


def test_socket_mode_setting_applies(socket_dir: Path) -> None:
    path = socket_dir / "d.sock"
    with serve(path, unix_socket_mode="660"):
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o660


def test_socket_file_removed_on_close(socket_dir: Path) -> None:
    path = socket_dir / "d.sock"
    with serve(path):
        assert path.exists()
    assert not path.exists()


def test_replaced_socket_file_kept_on_close(socket_dir: Path) -> None:
    path = socket_dir / "d.sock"
    daemon = serve(path)
    path.unlink()
    path.write_text("someone else's file")
    daemon.close()

    assert path.read_text() == "someone else's file"


def test_regular_file_never_replaced(socket_dir: Path) -> None:
    path = socket_dir / "d.sock"
    path.write_text("data")

    with pytest.raises(TransportError, match="not a socket"):
        serve(path)
    assert path.read_text() == "data"


def test_symlink_never_replaced(socket_dir: Path) -> None:
    target = socket_dir / "target"
    target.write_text("data")
    path = socket_dir / "d.sock"
    path.symlink_to(target)

    with pytest.raises(TransportError, match="not a socket"):
        serve(path)
    assert path.is_symlink()


def test_stale_socket_replaced(socket_dir: Path) -> None:
    path = socket_dir / "d.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, and no process accepts on it

    with serve(path) as daemon, Proxy(daemon.uri_for("caller"), config=unix_config()) as proxy:
        assert proxy.describe()["peer_uid"] == os.getuid()


def test_live_socket_not_replaced(socket_dir: Path) -> None:
    path = socket_dir / "d.sock"
    with serve(path):
        with pytest.raises(TransportError, match="another server is accepting"):
            serve(path)
        assert path.exists()


# -- peers ---------------------------------------------------------------------------

def test_call_context_carries_credentials(socket_dir: Path) -> None:
    path = socket_dir / "d.sock"
    with serve(path) as daemon, Proxy(daemon.uri_for("caller"), config=unix_config()) as proxy:
        described = proxy.describe()

    assert described["peer_uid"] == os.getuid()
    assert described["peer_gid"] == os.getgid()
    assert described["peer_pid"] == os.getpid()
    assert described["identity"] == f"uid:{os.getuid()}"


def test_uri_with_spaces_and_non_ascii(socket_dir: Path) -> None:
    path = socket_dir / "dæmon ü.sock"
    with serve(path) as daemon:
        uri = daemon.uri_for("caller")
        assert " " not in uri
        with Proxy(uri, config=unix_config()) as proxy:
            assert proxy.describe()["peer_pid"] == os.getpid()


def test_uid_not_allowed_rejected(socket_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = socket_dir / "d.sock"
    other_uid = str(os.getuid() + 4242)
    config = unix_config(connect_timeout=5.0, handshake_timeout=30.0)

    with caplog.at_level(logging.WARNING, logger="ember"), \
            serve(path, unix_allowed_uids=(other_uid,)) as daemon, \
            pytest.raises(ConnectionError):
        Proxy(daemon.uri_for("caller"), config=config).describe()

    assert f"from uid {os.getuid()}" in caplog.text


def test_allowed_uid_admitted(socket_dir: Path) -> None:
    path = socket_dir / "d.sock"
    with serve(path, unix_allowed_uids=(str(os.getuid()),)) as daemon, \
            Proxy(daemon.uri_for("caller"), config=unix_config()) as proxy:
        assert proxy.describe()["peer_uid"] == os.getuid()


def test_allowed_gid_admits_by_group(socket_dir: Path) -> None:
    path = socket_dir / "d.sock"
    settings = {"unix_allowed_uids": (str(os.getuid() + 4242),),
                "unix_allowed_gids": (str(os.getgid()),)}
    with serve(path, **settings) as daemon, \
            Proxy(daemon.uri_for("caller"), config=unix_config()) as proxy:
        assert proxy.describe()["peer_gid"] == os.getgid()


def test_unknown_user_name_rejected(socket_dir: Path) -> None:
    with pytest.raises(ConfigError, match="unknown user"):
        serve(socket_dir / "d.sock", unix_allowed_uids=("no-such-user-ember",))


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to change uid in a child")
def test_other_uid_rejected_in_forked_child(socket_dir: Path) -> None:
    path = socket_dir / "d.sock"
    with serve(path, unix_allowed_uids=("0",), unix_socket_mode="666"):
        os.chmod(socket_dir, 0o755)
        os.chmod(socket_dir.parent, 0o755)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: switch to uid 65534, try to call, report the outcome
            os.close(read_end)
            outcome = b"?"
            try:
                os.setgid(65534)
                os.setuid(65534)
                config = unix_config(handshake_timeout=10.0, connect_timeout=5.0)
                Proxy(f"ember+unix://{UnixTransport().format_address(UnixAddress(os.fsencode(path)))}/caller",
                      config=config).describe()
                outcome = b"called"
            except ConnectionError:
                outcome = b"rejected"
            except BaseException:  # noqa: BLE001 - any other outcome fails the test
                outcome = b"other"
            finally:
                os.write(write_end, outcome)
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as reader:
            outcome = reader.read()
        os.waitpid(pid, 0)

    assert outcome == b"rejected"
