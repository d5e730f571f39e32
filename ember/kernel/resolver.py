"""The resolver contract: turning a name or URI into a direct URI.

A direct URI names a transport, an address and an object id
(``ember+tcp://127.0.0.1:5555/kvstore``). Resolvers translate other forms, such as
``ember+name://kvstore``, into a direct URI. Each resolver declares the URI schemes it
handles, and the registry rejects two resolvers that claim the same scheme.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import ClassVar

__all__ = ["Resolver"]


class Resolver(ABC):
    """Resolves URIs of the schemes it declares into direct URIs."""

    #: Registry name (for example ``"direct"``).
    name: ClassVar[str]
    #: Lowercase URI schemes this resolver handles (for example ``("ember+name",)``).
    schemes: ClassVar[tuple[str, ...]]

    @abstractmethod
    def resolve(self, uri: str, options: Mapping[str, object]) -> str:
        """Return the direct URI that ``uri`` stands for.

        Called only with URIs whose scheme is in :attr:`schemes`. Must raise
        :class:`~ember.kernel.errors.UsageError` naming the URI when it cannot be
        resolved, or :class:`~ember.kernel.errors.TransportError` when a lookup service
        cannot be reached. A direct URI passed in is returned unchanged.
        """

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} schemes={self.schemes!r}>"
