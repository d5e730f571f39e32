"""The ``direct`` resolver: a direct URI names its own endpoint.

A direct URI has the form ``ember+TRANSPORT://ADDRESS/OBJECT_ID[?QUERY]``, for example
``ember+tcp://127.0.0.1:5555/kvstore`` or ``ember+tcp://[::1]:5555/kvstore``. Resolving it
looks nothing up: the resolver checks that the URI has that shape and returns it
unchanged. The transport parses the address later, and ``ember.remote.uri`` parses the
query, so this check stays small.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ember.kernel.errors import UsageError
from ember.kernel.hookspecs import hookimpl
from ember.kernel.resolver import Resolver

__all__ = ["MAX_URI_LENGTH", "DirectResolver", "ember_resolvers"]

#: Maximum length of a URI, in characters. A direct URI is an address, an object id of at
#: most 128 characters and a few options, far below this bound.
MAX_URI_LENGTH = 4096

# The object id alphabet of the wire protocol: unreserved URI characters (RFC 3986).
_OBJECT_ID = re.compile(r"[A-Za-z0-9._~-]{1,128}")
# Control characters, spaces and DEL never belong in a URI.
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")
_EXAMPLE = "expected ember+TRANSPORT://ADDRESS/OBJECT_ID, such as ember+tcp://127.0.0.1:5555/kvstore"


def _shorten(text: str) -> str:
    # A URI can come from configuration or a peer's reply, so messages quote at most
    # 100 characters of it.
    return repr(text) if len(text) <= 100 else repr(text[:97] + "...")


class DirectResolver(Resolver):
    """Accepts direct URIs of the bundled transports and returns them unchanged."""

    name = "direct"
    schemes = ("ember+tcp", "ember+unix", "ember+nacl")

    def resolve(self, uri: str, options: Mapping[str, object]) -> str:
        """Return ``uri`` if it is a well-formed direct URI; raise UsageError otherwise."""
        if not isinstance(uri, str):
            raise UsageError(f"invalid URI {uri!r}: expected a str; {_EXAMPLE}")
        if len(uri) > MAX_URI_LENGTH:
            raise UsageError(
                f"invalid URI {_shorten(uri)}: it has {len(uri)} characters, more than the "
                f"limit of {MAX_URI_LENGTH}"
            )
        quoted_uri = _shorten(uri)

        forbidden = _FORBIDDEN.search(uri)
        if forbidden is not None:
            raise UsageError(
                f"invalid URI {quoted_uri}: it contains {forbidden.group()!r} at position "
                f"{forbidden.start()}; percent-encode it or remove it"
            )

        scheme, separator, rest = uri.partition("://")
        if not separator:
            raise UsageError(f"invalid URI {quoted_uri}: '://' is missing; {_EXAMPLE}")
        if scheme.lower() not in self.schemes:
            raise UsageError(
                f"invalid URI {quoted_uri}: the scheme {scheme!r} is not a direct scheme; "
                f"direct schemes: {', '.join(self.schemes)}"
            )

        path = rest.partition("?")[0]
        address, slash, object_id = path.rpartition("/")
        if not slash or not object_id:
            raise UsageError(
                f"invalid URI {quoted_uri}: the object id is missing; add /OBJECT_ID after the "
                f"address"
            )
        if not address:
            raise UsageError(
                f"invalid URI {quoted_uri}: the address is missing; {_EXAMPLE}"
            )
        if not _OBJECT_ID.fullmatch(object_id):
            raise UsageError(
                f"invalid URI {quoted_uri}: the object id {_shorten(object_id)} must be 1 to "
                f"128 characters from A-Z a-z 0-9 . _ ~ -"
            )
        return uri


@hookimpl
def ember_resolvers() -> list[Resolver]:
    return [DirectResolver()]
