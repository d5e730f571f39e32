"""``ember keygen``: key files with owner-only permissions, public halves, overwrites."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from ember.cli import main
from ember.kernel.keys import load_key_file


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("kind", ["hmac", "ed25519", "nacl"])
def test_private_key_owner_only(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "my.key"
    assert main(["keygen", kind, str(path)]) == 0

    assert mode_of(path) == 0o600
    assert len(load_key_file(path, what="key", secret=True)) == 32


def test_ed25519_prints_authorized_line(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "alice.key"
    main(["keygen", "ed25519", str(path)])
    output = capsys.readouterr().out
    public_line = (tmp_path / "alice.key.pub").read_text().strip()

    assert public_line.startswith("alice ")
    assert public_line in output
    assert load_key_file(path, what="key", secret=True).hex() not in output


def test_nacl_public_key_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "server.key"
    main(["keygen", "nacl", str(path), "--name", "ignored"])
    public = (tmp_path / "server.key.pub").read_text().strip()

    assert len(bytes.fromhex(public)) == 32
    assert public in capsys.readouterr().out


def test_existing_file_kept_without_force(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "shared.key"
    path.write_text("keep me")

    assert main(["keygen", "hmac", str(path)]) == 2
    assert path.read_text() == "keep me"
    assert "--force" in capsys.readouterr().err


def test_force_overwrites_with_owner_mode(tmp_path: Path) -> None:
    path = tmp_path / "shared.key"
    path.write_text("old")
    path.chmod(0o644)

    assert main(["keygen", "hmac", str(path), "--force"]) == 0
    assert mode_of(path) == 0o600
    assert path.read_text() != "old"
