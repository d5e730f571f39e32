"""Loading and writing key material: key files and ``EMBER_*`` secrets.

A key file is UTF-8 text. Lines starting with ``#`` are comments, and the first other
line contains the key in hexadecimal. Only the owner may access a file that contains a
secret. A secret key file whose mode grants any permission to the group or to other
users is rejected with the ``chmod`` command that fixes it. Public keys are not secret
and may be shared, printed and put in URIs.

Nothing here logs or formats key bytes into a message, so a mistake cannot leak a key.
"""

from __future__ import annotations

import binascii
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from ember.kernel.errors import ConfigError, SecurityError

__all__ = [
    "decode_hex_key",
    "load_key_file",
    "load_secret",
    "write_key_file",
    "check_owner_only",
]

#: Permission bits that must be clear on a file holding a secret.
_GROUP_OTHER_BITS = stat.S_IRWXG | stat.S_IRWXO


def check_owner_only(path: Path, *, what: str) -> os.stat_result:
    """Raise SecurityError unless ``path`` is a regular file only its owner can access.

    Symbolic links are followed, because the target is the file that contains the secret.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{what} file {str(path)!r} does not exist; create it with "
                          "'ember keygen' or fix the path", setting=what) from None
    except OSError as error:
        raise ConfigError(f"cannot read {what} file {str(path)!r}: {error.strerror}",
                          setting=what) from error
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{what} file {str(path)!r} is not a regular file", setting=what)
    if info.st_mode & _GROUP_OTHER_BITS:
        raise SecurityError(
            f"{what} file {str(path)!r} is accessible to other users (mode "
            f"{stat.S_IMODE(info.st_mode):04o}); run 'chmod 600 {path}' and retry")
    return info


def decode_hex_key(text: str, *, what: str, size: int | None = None,
                   min_size: int | None = None) -> bytes:
    """Decode a hexadecimal key, checking its length in bytes.

    The message of the raised ConfigError names ``what`` and the expected length but
    never includes the text, which may be a secret.
    """
    cleaned = "".join(text.split())
    try:
        key = binascii.unhexlify(cleaned)
    except (binascii.Error, ValueError):
        raise ConfigError(f"invalid {what}: expected hexadecimal digits (as written by "
                          "'ember keygen')", setting=what) from None
    if size is not None and len(key) != size:
        raise ConfigError(f"invalid {what}: expected {size} bytes ({2 * size} hexadecimal "
                          f"digits), got {len(key)} bytes", setting=what)
    if min_size is not None and len(key) < min_size:
        raise ConfigError(f"{what} is too short: {len(key)} bytes, at least {min_size} bytes "
                          f"({2 * min_size} hexadecimal digits) are required; create one "
                          "with 'ember keygen'", setting=what)
    return key


def load_key_file(path: str | os.PathLike[str], *, what: str, secret: bool,
                  size: int | None = None, min_size: int | None = None) -> bytes:
    """Read the key stored in ``path``; a ``secret`` file must be owner-only."""
    file_path = Path(path).expanduser()
    if secret:
        check_owner_only(file_path, what=what)
    try:
        text = file_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} file {str(file_path)!r} does not exist; create it with "
                          "'ember keygen' or fix the path", setting=what) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read {what} file {str(file_path)!r}: {error}",
                          setting=what) from None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return decode_hex_key(stripped, what=f"{what} in {str(file_path)!r}", size=size,
                                  min_size=min_size)
    raise ConfigError(f"{what} file {str(file_path)!r} contains no key line; add the key "
                      "in hexadecimal or create the file with 'ember keygen'", setting=what)


def load_secret(options: Mapping[str, object], *, file_setting: str, value_setting: str,
                what: str, size: int | None = None,
                min_size: int | None = None) -> bytes | None:
    """Return the secret named by ``options``, or ``None`` when neither setting is set.

    ``file_setting`` names a key file and ``value_setting`` a secret setting that only
    the environment or code can fill (a URI option may not carry it). Setting both is an
    error, because silently preferring one would hide a misconfiguration.
    """
    file_name = str(options.get(file_setting) or "")
    value = str(options.get(value_setting) or "")
    if file_name and value:
        raise ConfigError(f"both {file_setting} and {value_setting} are set; set only one",
                          setting=value_setting)
    if file_name:
        return load_key_file(file_name, what=what, secret=True, size=size, min_size=min_size)
    if value:
        return decode_hex_key(value, what=f"{what} from setting {value_setting!r}", size=size,
                              min_size=min_size)
    return None


def write_key_file(path: Path, key: bytes, *, comment: str, secret: bool,
                   overwrite: bool = False) -> None:
    """Write ``key`` in hexadecimal to ``path``, mode 0600 for a secret, else 0644.

    The file is created with its final mode in one ``open`` call, so a secret is never
    readable by others, even for a moment. Raises FileExistsError unless ``overwrite``.
    """
    mode = 0o600 if secret else 0o644
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    if not overwrite:
        flags |= os.O_EXCL
    descriptor = os.open(path, flags, mode)
    try:
        # An existing file keeps its old mode through O_TRUNC, so set it explicitly.
        os.fchmod(descriptor, mode)
        text = f"# {comment}\n{binascii.hexlify(key).decode('ascii')}\n"
        os.write(descriptor, text.encode("utf-8"))
    finally:
        os.close(descriptor)
