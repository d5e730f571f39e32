"""``ember keygen``: create key files for the hmac and ed25519 authenticators and the
nacl transports.

Private keys are written with mode 0600 in one ``open`` call, so no other user can read
them even for a moment. Public halves go to ``FILE.pub`` and to standard output; they
are not secret. Existing files are kept unless ``--force`` is given. A secret is never
printed and never accepted on the command line.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import nacl.public
import nacl.signing

from ember.kernel.errors import UsageError
from ember.kernel.keys import write_key_file

__all__ = ["add_parser", "run", "create_keys"]

_KINDS = ("hmac", "ed25519", "nacl")
_HMAC_KEY_SIZE = 32


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "keygen", help="create key files for authenticators and encrypted transports",
        description="Create a key file with owner-only permissions. For ed25519 and nacl "
                    "also write the public key to FILE.pub and print it.")
    parser.add_argument("kind", choices=_KINDS,
                        help="hmac: a shared key for both sides; ed25519: a key pair for "
                             "one client or daemon; nacl: a daemon's key pair for the "
                             "nacl transports")
    parser.add_argument("file", type=Path, help="path of the private key file to create")
    parser.add_argument("--name", default=None,
                        help="name for the authorized-keys line of an ed25519 key "
                             "(default: the file name without its suffix)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite existing files")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    public = create_keys(args.kind, args.file, name=args.name, overwrite=args.force)
    what = "shared key" if args.kind == "hmac" else "private key"
    print(f"wrote the {args.kind} {what} to {args.file} (mode 0600)")
    if public is not None:
        print(f"wrote the public key to {args.file}.pub:")
        print(public)
    return 0


def create_keys(kind: str, path: Path, *, name: str | None = None,
                overwrite: bool = False) -> str | None:
    """Write a fresh key of ``kind`` to ``path``; return the public line, if any.

    For ed25519 the public line reads ``NAME HEX``, ready for an authorized-keys file;
    for nacl it is the hexadecimal public key that clients pin.
    """
    if kind not in _KINDS:
        raise UsageError(f"unknown key kind {kind!r}; use one of {', '.join(_KINDS)}")
    public_path = path.with_name(path.name + ".pub")
    targets = [path] if kind == "hmac" else [path, public_path]
    existing = [str(target) for target in targets if target.exists() or target.is_symlink()]
    if existing and not overwrite:
        verb = "exists" if len(existing) == 1 else "exist"
        raise UsageError(f"{' and '.join(existing)} already {verb}; choose another path or "
                         "pass --force to overwrite")

    if kind == "hmac":
        write_key_file(path, os.urandom(_HMAC_KEY_SIZE), comment="ember hmac shared key",
                       secret=True, overwrite=overwrite)
        return None

    if kind == "ed25519":
        signing_key = nacl.signing.SigningKey.generate()
        private, public = bytes(signing_key), bytes(signing_key.verify_key)
        label = name or path.stem
        public_line = f"{label} {public.hex()}"
    else:
        private_key = nacl.public.PrivateKey.generate()
        private, public = bytes(private_key), bytes(private_key.public_key)
        public_line = public.hex()

    write_key_file(path, private, comment=f"ember {kind} private key", secret=True,
                   overwrite=overwrite)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | (0 if overwrite else os.O_EXCL)
    descriptor = os.open(public_path, flags, 0o644)
    try:
        os.write(descriptor, (public_line + "\n").encode("utf-8"))
    finally:
        os.close(descriptor)
    return public_line
