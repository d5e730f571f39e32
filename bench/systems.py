"""The table of systems the benchmark runs side by side.

To add a stack (ember with HMAC or Ed25519 authentication, the NaCl transport, the
serpent serializer, Pyro5 over TLS), write its ``start_server`` and client class next
to the others in ``stacks.py`` and add one ``System`` row here. Its column then appears
in the table and in the JSON output. A name in ``GROUPS`` selects several rows with one
``--only`` word.
"""

from __future__ import annotations

import floors
import secure_stacks
import stacks
from contract import System

__all__ = ["GROUPS", "SYSTEMS", "select_systems"]


def _always_available() -> None:
    return None


SYSTEMS: dict[str, System] = {
    system.name: system
    for system in (
        System(
            name="raw",
            role="floor",
            description="plain TCP socket, length-prefixed frames echoed unchanged",
            check_available=_always_available,
            start_server=floors.start_raw_server,
            make_client=floors.RawClient,
        ),
        System(
            name="cbor-loop",
            role="floor",
            description="minimal CBOR RPC: decode [obj, method, args, kwargs], call, encode",
            check_available=_always_available,
            start_server=floors.start_cbor_loop_server,
            make_client=floors.CborLoopClient,
        ),
        System(
            name="pyro5",
            role="peer",
            description="Pyro5 defaults: serpent serializer, threaded server",
            check_available=stacks.check_pyro5,
            start_server=stacks.start_pyro5_server,
            make_client=stacks.Pyro5Client,
        ),
        System(
            name="ember",
            role="subject",
            description="ember defaults: CBOR over TCP",
            check_available=stacks.check_ember,
            start_server=stacks.start_ember_server,
            make_client=stacks.EmberClient,
        ),
    )
}
SYSTEMS.update((system.name, system) for system in secure_stacks.SECURE_SYSTEMS)

GROUPS: dict[str, tuple[str, ...]] = {
    "floors": ("raw", "cbor-loop"),
    "core": ("raw", "cbor-loop", "pyro5", "ember"),
    "secure": secure_stacks.SECURE_GROUP,
    "all": tuple(SYSTEMS),
}


def select_systems(selection: str) -> list[System]:
    """Resolve a comma-separated list of system and group names, keeping table order.

    Raises ValueError naming the unknown word and the valid ones.
    """
    selected: set[str] = set()
    for word in (part.strip() for part in selection.split(",")):
        if not word:
            continue
        if word in GROUPS:
            selected.update(GROUPS[word])
        elif word in SYSTEMS:
            selected.add(word)
        else:
            valid = ", ".join([*SYSTEMS, *GROUPS])
            raise ValueError(f"unknown system or group {word!r} in --only; valid: {valid}")
    if not selected:
        raise ValueError(f"--only {selection!r} names no system")
    return [system for name, system in SYSTEMS.items() if name in selected]
