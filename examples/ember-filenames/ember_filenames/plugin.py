"""The module the ``ember`` entry point names: it declares the resolver to ember."""

from __future__ import annotations

from ember.kernel.hookspecs import hookimpl
from ember.kernel.resolver import Resolver
from ember_filenames.resolver import FileNamesResolver


@hookimpl
def ember_resolvers() -> list[Resolver]:
    return [FileNamesResolver()]
