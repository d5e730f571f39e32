"""Every plugin shipped with ember passes the conformance suite.

The cases are generated from the registry at collection time, one per (plugin, check),
so a new bundled plugin or a new check is picked up without an edit here. Each bundled
plugin must also publish a conformance profile, exactly as a third-party one would.
"""

from __future__ import annotations

import pytest

from ember.kernel.config import Config
from ember.kernel.registry import BUNDLED_DISTRIBUTION, Registry
from ember.testing.profiles import CATALOGS, find_profile, lookup_plugin, run_profile

REGISTRY = Registry.load(Config.defaults())


def bundled_names(kind: str) -> list[str]:
    return sorted(
        record.name
        for record in REGISTRY.records
        if record.kind == kind and record.status == "loaded"
        and record.distribution == BUNDLED_DISTRIBUTION
    )


CASES = [
    pytest.param(kind, name, check.name, id=f"{kind}-{name}-{check.name}")
    for kind, catalog in CATALOGS.items()
    for name in bundled_names(kind)
    for check in catalog
]


def test_every_bundled_entry_point_loads():
    problems = [
        f"{record.entry_point}: {record.status}: {record.reason}"
        for record in REGISTRY.records
        if record.distribution == BUNDLED_DISTRIBUTION and record.status != "loaded"
    ]
    assert problems == []


@pytest.mark.parametrize("kind", list(CATALOGS))
def test_every_bundled_plugin_publishes_a_profile(kind):
    missing = [name for name in bundled_names(kind) if find_profile(name, kind) is None]
    assert missing == [], f"bundled {kind}s without a conformance profile: {missing}"


@pytest.mark.parametrize(("kind", "name", "check"), CASES)
def test_bundled_plugin_check(kind, name, check):
    profile = find_profile(name, kind)
    if profile is None:
        pytest.skip(f"bundled {kind} {name!r} publishes no conformance profile; "
                    f"test_every_bundled_plugin_publishes_a_profile fails for it")
    plugin = lookup_plugin(REGISTRY, kind, name)

    [result] = run_profile(plugin, kind, profile, name=name, selected=[check]).results

    if result.outcome == "skipped":
        pytest.skip(result.message)
    assert result.outcome == "passed", result.message
