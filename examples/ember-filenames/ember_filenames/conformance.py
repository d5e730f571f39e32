"""The conformance profile of the filenames resolver, for ``ember conformance``.

:func:`make_harness` publishes a name by appending a line to a names file in the
folder it is given, and spells URIs with ``?names=`` so no environment is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from ember.testing import ConformanceProfile, ResolverCapabilities, ResolverHarness

CAPABILITIES = ResolverCapabilities()


def make_harness(resolver: Any, folder: Path) -> ResolverHarness:
    """Return a harness whose names file lives in ``folder``."""
    names = folder / "names.txt"
    names.write_text("# written by the conformance harness\n", encoding="utf-8")

    def uri_for(name: str) -> str:
        return f"ember+file://{name}?names={quote(str(names), safe='')}"

    def publish(name: str, target: str) -> str:
        with names.open("a", encoding="utf-8") as file:
            file.write(f"{name} {target}\n")
        return uri_for(name)

    return ResolverHarness(resolver, publish=publish, unpublished_uri=uri_for)


profile = ConformanceProfile(CAPABILITIES, make_harness)
