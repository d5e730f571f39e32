"""ember URIs: which object, on which transport, at which address.

A direct URI has the form::

    ember+TRANSPORT://ADDRESS/OBJECT_ID[?NAME=VALUE&...]

- ``TRANSPORT`` is a registered transport name: ``ember+tcp://127.0.0.1:5555/kvstore``,
  ``ember+tcp://[::1]:5555/kvstore``. Transports define their own ``ADDRESS`` syntax
  (a Unix transport percent-encodes its socket path so that ``/`` cannot appear).
- ``OBJECT_ID`` is 1 to 128 characters from ``A-Z a-z 0-9 . _ ~ -``.
- The query contains per-connection options such as ``serializer=cbor``; a name may
  appear once.

Other schemes (for example ``ember+name://kvstore``) are handed to the resolver that
registered the scheme, which turns them into a direct URI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote

from ember.kernel.errors import UsageError

__all__ = ["URI", "OBJECT_ID_PATTERN", "SCHEME_PREFIX", "check_object_id"]

SCHEME_PREFIX = "ember+"
OBJECT_ID_PATTERN = re.compile(r"[A-Za-z0-9._~-]{1,128}")
_SCHEME = re.compile(r"ember\+[a-z][a-z0-9_-]{0,31}(?:\+[a-z][a-z0-9_-]{0,31})*")


def check_object_id(object_id: object) -> str:
    """Return ``object_id`` if it is valid, else raise UsageError naming it."""
    if not isinstance(object_id, str) or OBJECT_ID_PATTERN.fullmatch(object_id) is None:
        raise UsageError(
            f"invalid object id {object_id!r}: use 1 to 128 characters from "
            "A-Z a-z 0-9 . _ ~ -"
        )
    return object_id


@dataclass(frozen=True, slots=True)
class URI:
    """A parsed ember URI. ``address`` is still text: the transport parses it."""

    scheme: str
    address: str
    object_id: str
    params: tuple[tuple[str, str], ...] = field(default=())

    @property
    def transport(self) -> str:
        """Transport name of a direct URI (the scheme without ``ember+``)."""
        return self.scheme[len(SCHEME_PREFIX):]

    def param(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.params:
            if key == name:
                return value
        return default

    @classmethod
    def parse(cls, text: str) -> URI:
        """Parse ``text``; raise UsageError naming the invalid part."""
        if not isinstance(text, str):
            raise UsageError(f"a URI must be a string, got {type(text).__name__}")
        scheme, separator, rest = text.partition("://")
        if not separator:
            raise UsageError(
                f"invalid URI {text!r}: expected ember+TRANSPORT://ADDRESS/OBJECT_ID, "
                "for example ember+tcp://127.0.0.1:5555/kvstore"
            )
        scheme = scheme.lower()
        if _SCHEME.fullmatch(scheme) is None:
            raise UsageError(
                f"invalid URI scheme {scheme!r} in {text!r}: expected 'ember+' followed by a "
                "transport or resolver name, such as ember+tcp"
            )

        rest, _, query = rest.partition("?")
        address, slash, object_id = rest.rpartition("/")
        if not slash:
            raise UsageError(f"missing object id in URI {text!r}: add /OBJECT_ID after the "
                             "address")
        if not address:
            raise UsageError(f"missing address in URI {text!r}")
        if not object_id:
            raise UsageError(f"missing object id in URI {text!r}: add /OBJECT_ID after the "
                             "address")
        check_object_id(object_id)

        params = tuple(parse_qsl(query, keep_blank_values=True, strict_parsing=False))
        names = [name for name, _ in params]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise UsageError(f"URI option {duplicates[0]!r} appears more than once in {text!r}")
        return cls(scheme, address, object_id, params)

    def __str__(self) -> str:
        text = f"{self.scheme}://{self.address}/{self.object_id}"
        if self.params:
            text += "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}"
                                   for k, v in self.params)
        return text
