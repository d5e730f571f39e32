"""The conformance profile of the msgpack serializer, for ``ember conformance``.

The ``ember.conformance`` entry point in ``pyproject.toml`` names :data:`profile`, and
the package's own tests use the same capabilities, so both runs check the same promises.
"""

from __future__ import annotations

from pathlib import Path

from ember.testing import ConformanceProfile, SerializerCapabilities

#: Known answers and must-reject inputs for MessagePack, one JSON object per line.
VECTORS = Path(__file__).with_name("vectors") / "msgpack.jsonl"

CAPABILITIES = SerializerCapabilities(
    types=frozenset({"none", "bool", "int", "float", "float-special", "str", "bytes",
                     "list", "dict", "dict-int-keys"}),
    vector_files=(str(VECTORS),),
)

profile = ConformanceProfile(CAPABILITIES)
