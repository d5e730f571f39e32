"""Plugins for the registry tests, loaded through real entry points.

Each module here (or object, for entry points of the form ``module:attr``) acts as one
plugin. :func:`install_distribution` writes the ``*.dist-info`` folder whose
``entry_points.txt`` points at them, as an installed package would.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path


def install_distribution(
    folder: Path, distribution: str, package: str, entry_points: dict[str, str]
) -> list[importlib.metadata.EntryPoint]:
    """Write ``folder/<distribution>-1.0.dist-info`` and return its ``ember`` entry points.

    ``entry_points`` maps each entry-point name to a target inside ``package``, such as
    ``"good"`` or ``"invalid_declarations:wire_id_zero"``. With ``folder`` on
    ``sys.path``, ``importlib.metadata`` finds the distribution like an installed one.
    """
    dist_info = folder / f"{distribution.replace('-', '_')}-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n", encoding="utf-8"
    )
    lines = "".join(f"{name} = {package}.{target}\n" for name, target in entry_points.items())
    (dist_info / "entry_points.txt").write_text("[ember]\n" + lines, encoding="utf-8")
    return [
        entry_point
        for entry_point in importlib.metadata.Distribution.at(dist_info).entry_points
        if entry_point.group == "ember"
    ]
