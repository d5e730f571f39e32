"""Tests of the plugin registry, loading fixture plugins through real entry points.

Every test writes real ``*.dist-info`` folders, so entry points carry their distribution
exactly as installed packages do, and imports real fixture modules.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import itertools
import logging
import os
import sys
import threading
from pathlib import Path

import pytest

from ember.kernel import hookspecs
from ember.kernel.config import Config
from ember.kernel.errors import PluginError, SecurityError
from ember.kernel.registry import PluginRecord, Registry, Stack, get_registry
from ember.kernel.resolver import Resolver
from ember.kernel.serializer import DecodeLimits

# The fixtures' import name depends on whether pytest imports this file inside a package.
PACKAGE = f"{__package__}.registry_fixtures" if __package__ else "registry_fixtures"
_fixtures = importlib.import_module(PACKAGE)
install_distribution = _fixtures.install_distribution

KNOWN_HOOKS = ", ".join(hookspecs.HOOK_NAMES)

EntryPoints = list[importlib.metadata.EntryPoint]


def install(folder: Path, distribution: str, **entry_points: str) -> EntryPoints:
    """Install ``distribution`` with entry points into the fixture package."""
    return install_distribution(folder, distribution, PACKAGE, entry_points)


def entry(name: str, target: str) -> str:
    """Format an entry point as records show it."""
    return f"{name} = {PACKAGE}.{target}"


def load(*entry_point_lists: EntryPoints, **settings: object) -> Registry:
    config = Config.defaults().replace(**settings)
    return Registry.load(config, entry_points=itertools.chain(*entry_point_lists))


def records_of(registry: Registry, distribution: str) -> list[PluginRecord]:
    return [record for record in registry.records if record.distribution == distribution]


def assert_good_plugin_works(registry: Registry) -> None:
    """The valid fixture plugin stays usable next to a broken one."""
    json_serializer = registry.serializer("json")
    encoded = json_serializer.dumps({"a": [1, 2]})
    assert json_serializer.loads(encoded, DecodeLimits()) == {"a": [1, 2]}
    assert registry.names("transport") == ["plain", "sealed"]
    assert registry.names("authenticator") == ["fixture-auth"]
    assert registry.names("resolver") == ["fixture-names"]


@pytest.fixture
def good(tmp_path: Path) -> EntryPoints:
    return install(tmp_path / "good", "good-plugins", good="good")


# -- loading valid plugins ------------------------------------------------------------


def test_load_registers_every_kind(good):
    registry = load(good)

    assert_good_plugin_works(registry)
    assert registry.serializer_by_id(0x7E01) is registry.serializer("json")
    assert registry.serializer_by_id(0x7E02) is None
    assert registry.transport("sealed").is_encrypted is True
    assert registry.authenticator("fixture-auth").name == "fixture-auth"
    assert registry.resolver_for_scheme("ember+fixture").name == "fixture-names"
    assert registry.resolver_for_scheme("EMBER+Fixture").name == "fixture-names"


def test_load_records_each_declared_object(good):
    registry = load(good)

    source = entry("good", "good")
    assert registry.records == [
        PluginRecord("serializer", "json", 0x7E01, "good-plugins", source, "loaded"),
        PluginRecord("transport", "plain", None, "good-plugins", source, "loaded"),
        PluginRecord("transport", "sealed", None, "good-plugins", source, "loaded"),
        PluginRecord("authenticator", "fixture-auth", None, "good-plugins", source, "loaded"),
        PluginRecord("resolver", "fixture-names", None, "good-plugins", source, "loaded",
                     schemes=("ember+fixture",)),
    ]


def test_load_registers_plugins_with_pluggy(good):
    registry = load(good)

    manager = registry.plugin_manager
    assert manager.get_plugin("good") is sys.modules[f"{PACKAGE}.good"]
    declared = manager.hook.ember_transports()
    assert [[item.name for item in result] for result in declared] == [["plain", "sealed"]]


def test_load_ignores_other_groups(tmp_path, good):
    dist_info = tmp_path / "scripts-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: scripts\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        f"[console_scripts]\nboom = {PACKAGE}.raises_on_import\n"
    )
    others = list(importlib.metadata.Distribution.at(dist_info).entry_points)

    registry = load(good, others)

    assert records_of(registry, "scripts") == []
    assert f"{PACKAGE}.raises_on_import" not in sys.modules


def test_plugin_declaring_nothing_is_loaded(tmp_path, good):
    empty = install(tmp_path / "empty", "empty-plugin", empty="declares_nothing")

    registry = load(good, empty)

    assert records_of(registry, "empty-plugin") == [
        PluginRecord("plugin", "empty", None, "empty-plugin", entry("empty", "declares_nothing"),
                     "loaded",
                     "its hooks declare no serializer, transport, authenticator, resolver or "
                     "converter"),
    ]
    assert registry.plugin_manager.get_plugin("empty") is not None


def test_hook_specs_take_no_arguments():
    # The registry calls every declaration hook without arguments; a new argument in a
    # specification must also be passed by the registry.
    registry = Registry()
    for hook_name in hookspecs.HOOK_NAMES:
        spec = getattr(registry.plugin_manager.hook, hook_name).spec
        assert spec.argnames == (), hook_name
        assert spec.kwargnames == (), hook_name


# -- isolation of failures --------------------------------------------------------------


def test_import_failure_is_recorded(tmp_path, good, caplog):
    broken = install(tmp_path / "broken", "broken-plugin", broken="broken_import")

    with caplog.at_level(logging.DEBUG, logger="ember.registry"):
        registry = load(broken, good)

    reason = (
        "import failed: ModuleNotFoundError: "
        "No module named 'registry_fixtures_missing_dependency'"
    )
    assert records_of(registry, "broken-plugin") == [
        PluginRecord("plugin", "broken", None, "broken-plugin",
                     entry("broken", "broken_import"), "failed", reason),
    ]
    assert_good_plugin_works(registry)

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.name for r in warnings] == ["ember.registry"]
    assert warnings[0].getMessage() == (
        f"plugin skipped: entry point {entry('broken', 'broken_import')!r} of distribution "
        f"'broken-plugin': {reason}"
    )
    assert warnings[0].exc_info is None
    tracebacks = [r for r in caplog.records if r.levelno == logging.DEBUG and r.exc_info]
    assert len(tracebacks) == 1


def test_hook_that_raises_registers_nothing(tmp_path, good, caplog):
    raising = install(tmp_path / "raising", "raising-plugin", raising="hook_raises")

    with caplog.at_level(logging.WARNING, logger="ember.registry"):
        registry = load(raising, good)

    assert records_of(registry, "raising-plugin") == [
        PluginRecord("transport", "other", None, "raising-plugin",
                     entry("raising", "hook_raises"), "failed",
                     "ember_serializers raised RuntimeError: fixture hook failure"),
    ]
    assert "other" not in registry.names("transport")
    assert registry.plugin_manager.get_plugin("raising") is None
    assert_good_plugin_works(registry)
    assert len(caplog.records) == 1
    assert caplog.records[0].exc_info is None


# Each case: the fixture attribute and the reason its rejected record carries.
INVALID_DECLARATIONS = [
    ("non_sequence", "ember_serializers returned JsonSerializer <JsonSerializer 'json' "
     "wire_id=32257>; expected a list or tuple of Serializer instances, or None"),
    ("text_result", "ember_serializers returned str 'json'; expected a list or tuple of "
     "Serializer instances, or None"),
    ("wrong_contract", "ember_serializers item 0 is InertTransport <InertTransport 'plain'>; "
     "expected a Serializer instance"),
    ("text_item", "ember_serializers item 0 is str 'json'; expected a Serializer instance"),
    ("name_with_space", "ember_serializers item 0 (CustomSerializer) has name 'Fast JSON'; "
     "expected 1 to 32 lowercase ASCII letters, digits, '_' or '-', starting with a letter"),
    ("name_not_text", "ember_serializers item 0 (CustomSerializer) has name 7; "
     "expected 1 to 32 lowercase ASCII letters, digits, '_' or '-', starting with a letter"),
    ("name_too_long", "ember_serializers item 0 (CustomSerializer) has name "
     f"'{'a' * 33}'; expected 1 to 32 lowercase ASCII letters, digits, '_' or '-', "
     "starting with a letter"),
    ("wire_id_too_large", "serializer 'valid' has wire_id 70000; expected an int from 1 to "
     "65535 (0 is reserved for protocol control messages)"),
    ("wire_id_zero", "serializer 'valid' has wire_id 0; expected an int from 1 to 65535 "
     "(0 is reserved for protocol control messages)"),
    ("wire_id_text", "serializer 'valid' has wire_id '7'; expected an int from 1 to 65535 "
     "(0 is reserved for protocol control messages)"),
    ("wire_id_bool", "serializer 'valid' has wire_id True; expected an int from 1 to 65535 "
     "(0 is reserved for protocol control messages)"),
    ("is_safe_text", "serializer 'valid' has is_safe 'no'; expected True or False"),
    ("virtual_subclass", "serializer 'half' (HalfSerializer) does not implement "
     "Serializer.loads; implement every abstract method of the contract"),
    ("placeholder_method", "serializer 'none-loads' (NoneLoadsSerializer) does not implement "
     "Serializer.loads; implement every abstract method of the contract"),
    ("schemes_empty", "resolver 'custom' has schemes (); expected a non-empty tuple of "
     "lowercase URI schemes such as ('ember+name',)"),
    ("schemes_text", "resolver 'custom' has schemes 'ember+custom'; expected a non-empty "
     "tuple of lowercase URI schemes such as ('ember+name',)"),
    ("schemes_uppercase", "resolver 'custom' has invalid URI schemes 'EMBER+custom'; expected "
     "a lowercase letter followed by lowercase letters, digits, '+', '-' or '.'"),
    ("schemes_repeated", "resolver 'custom' lists a URI scheme more than once: "
     "('ember+custom', 'ember+custom')"),
]


@pytest.mark.parametrize(("attribute", "reason"), INVALID_DECLARATIONS,
                         ids=[case[0] for case in INVALID_DECLARATIONS])
def test_invalid_declaration_is_rejected(tmp_path, good, attribute, reason):
    target = f"invalid_declarations:{attribute}"
    invalid = install(tmp_path / "invalid", "invalid-plugin", invalid=target)

    registry = load(invalid, good)

    assert records_of(registry, "invalid-plugin") == [
        PluginRecord("plugin", "invalid", None, "invalid-plugin", entry("invalid", target),
                     "rejected", reason),
    ]
    assert registry.plugin_manager.get_plugin("invalid") is None
    assert_good_plugin_works(registry)


def test_generator_result_is_rejected(tmp_path, good):
    target = "invalid_declarations:generator"
    invalid = install(tmp_path / "invalid", "invalid-plugin", invalid=target)

    registry = load(invalid, good)

    [record] = records_of(registry, "invalid-plugin")
    assert record.status == "rejected"
    assert record.reason.startswith("ember_serializers returned generator <generator object")
    assert record.reason.endswith("expected a list or tuple of Serializer instances, or None")


@pytest.mark.parametrize(
    ("attribute", "reason", "names"),
    [
        ("duplicate_names", "declares serializer name 'valid' more than once",
         ["valid", "valid"]),
        ("duplicate_wire_ids", "declares wire id 32320 more than once", ["first", "second"]),
    ],
)
def test_duplicate_within_plugin_is_rejected(tmp_path, good, attribute, reason, names):
    target = f"invalid_declarations:{attribute}"
    invalid = install(tmp_path / "invalid", "invalid-plugin", invalid=target)

    registry = load(invalid, good)

    records = records_of(registry, "invalid-plugin")
    assert [record.name for record in records] == names
    assert {record.status for record in records} == {"rejected"}
    assert {record.reason for record in records} == {reason}
    assert registry.names("serializer") == ["json"]


def test_unknown_hook_name_is_rejected(tmp_path, good):
    typo = install(tmp_path / "typo", "typo-plugin", typo="unknown_hook")

    registry = load(typo, good)

    assert records_of(registry, "typo-plugin") == [
        PluginRecord("plugin", "typo", None, "typo-plugin", entry("typo", "unknown_hook"),
                     "rejected",
                     f"ember_serializer implements unknown hook 'ember_serializer'; "
                     f"known hooks: {KNOWN_HOOKS}"),
    ]
    assert "typo" not in registry.names("serializer")
    assert_good_plugin_works(registry)


def test_unmarked_hook_is_rejected(tmp_path, good):
    unmarked = install(tmp_path / "unmarked", "unmarked-plugin", unmarked="unmarked_hook")

    registry = load(unmarked, good)

    [record] = records_of(registry, "unmarked-plugin")
    assert record.status == "rejected"
    assert record.reason == (
        "ember_serializers is not marked with @hookimpl from ember.kernel.hookspecs, so it "
        "would never be called; add the marker"
    )
    assert_good_plugin_works(registry)


def test_plugin_without_hooks_is_rejected(tmp_path, good):
    hookless = install(tmp_path / "hookless", "hookless-plugin", hookless="no_hooks")

    registry = load(hookless, good)

    [record] = records_of(registry, "hookless-plugin")
    assert record.status == "rejected"
    assert record.reason == (
        f"implements none of the hooks {KNOWN_HOOKS}; mark each hook function with "
        f"@hookimpl from ember.kernel.hookspecs"
    )


def test_reserved_prefix_attribute_is_rejected():
    registry = Registry()

    class Plugin:
        ember_version = "1.0"

        @hookspecs.hookimpl
        def ember_serializers(self):
            return []

    with pytest.raises(PluginError) as raised:
        registry.register(Plugin(), name="prefixed")

    assert str(raised.value) == (
        "plugin 'prefixed' registered by code was rejected: ember_version is not an ember hook; "
        f"known hooks: {KNOWN_HOOKS}. Fix the name, or rename the attribute: the ember_ "
        "prefix is reserved for hooks"
    )


def test_hook_wrapper_is_rejected():
    registry = Registry()

    class Plugin:
        @hookspecs.hookimpl(wrapper=True)
        def ember_serializers(self):
            return (yield)

    with pytest.raises(PluginError, match="is marked as a hook wrapper; ember hooks only "
                       "declare objects, so remove wrapper=True or hookwrapper=True"):
        registry.register(Plugin(), name="wrapper")
    assert registry.plugin_manager.get_plugin("wrapper") is None


def test_hook_with_required_parameter_is_rejected():
    registry = Registry()

    class Plugin:
        @hookspecs.hookimpl
        def ember_serializers(self, config):
            return []

    with pytest.raises(PluginError) as raised:
        registry.register(Plugin(), name="parameter")

    assert str(raised.value) == (
        "plugin 'parameter' registered by code was rejected: ember_serializers(config) cannot be "
        "called with the arguments of its specification (none); remove the extra parameters"
    )


# -- clashes -------------------------------------------------------------------------


def test_name_clash_names_both_distributions(tmp_path, caplog):
    zeta = install(tmp_path / "zeta", "zeta-json", zjson="rival_json_a")
    alpha = install(tmp_path / "alpha", "alpha-json", ajson="rival_json_b")

    with caplog.at_level(logging.WARNING, logger="ember.registry"):
        registry = load(zeta, alpha)

    reason = (
        f"serializer name 'json' is already registered by entry point "
        f"{entry('ajson', 'rival_json_b')!r} of distribution 'alpha-json'; uninstall one of "
        f"the two distributions, or block one of the entry points with plugins_block"
    )
    assert records_of(registry, "zeta-json") == [
        PluginRecord("serializer", "json", 0x7E11, "zeta-json", entry("zjson", "rival_json_a"),
                     "rejected", reason),
    ]
    assert type(registry.serializer("json")).__name__ == "RivalJsonB"
    assert registry.serializer_by_id(0x7E11) is None
    assert [r.getMessage() for r in caplog.records] == [
        f"plugin skipped: entry point {entry('zjson', 'rival_json_a')!r} of distribution "
        f"'zeta-json' was rejected: {reason}"
    ]


def test_clash_winner_ignores_iteration_order(tmp_path):
    bundled = install(tmp_path / "bundled", "ember", json="good")
    early = install(tmp_path / "early", "aaa-json", aaajson="rival_json_a")
    late = install(tmp_path / "late", "zzz-json", zzzjson="rival_json_b")

    outcomes = set()
    for order in itertools.permutations([bundled, early, late]):
        registry = load(*order)
        winner = registry.serializer("json")
        outcomes.add((type(winner).__name__, tuple(registry.records)))

    # The bundled distribution wins although "aaa-json" sorts before "ember".
    [(winner_class, records)] = outcomes
    assert winner_class == "JsonSerializer"
    assert [(r.distribution, r.name, r.status) for r in records if r.kind == "serializer"] == [
        ("ember", "json", "loaded"),
        ("aaa-json", "json", "rejected"),
        ("zzz-json", "json", "rejected"),
    ]


def test_third_party_clash_prefers_first_distribution(tmp_path):
    first = install(tmp_path / "first", "alpha-json", ajson="rival_json_b")
    second = install(tmp_path / "second", "zeta-json", zjson="rival_json_a")

    winners = {type(load(*order).serializer("json")).__name__
               for order in ([first, second], [second, first])}

    assert winners == {"RivalJsonB"}


def test_duplicate_wire_id_is_rejected(tmp_path, good):
    copy = install(tmp_path / "copy", "wire-copy", copy="same_wire_id")

    registry = load(copy, good)

    assert records_of(registry, "wire-copy") == [
        PluginRecord("serializer", "json-copy", 0x7E01, "wire-copy",
                     entry("copy", "same_wire_id"), "rejected",
                     f"serializer 'json-copy' uses wire id 32257, already used by serializer "
                     f"'json' of entry point {entry('good', 'good')!r} of distribution "
                     f"'good-plugins'; uninstall one of the two distributions, or block one of "
                     f"the entry points with plugins_block"),
    ]
    assert registry.serializer_by_id(0x7E01) is registry.serializer("json")
    assert_good_plugin_works(registry)


def test_duplicate_scheme_is_rejected(good):
    registry = load(good)

    class ClaimingResolver(Resolver):
        name = "claimer"
        schemes = ("ember+other", "ember+fixture")

        def resolve(self, uri, options):
            return uri

    class Claiming:
        @hookspecs.hookimpl
        def ember_resolvers(self):
            return [ClaimingResolver()]

    with pytest.raises(PluginError) as raised:
        registry.register(Claiming(), name="claiming", distribution="claims")

    assert str(raised.value) == (
        "plugin 'claiming' of distribution 'claims' was rejected: resolver 'claimer' claims URI "
        f"scheme 'ember+fixture', already handled by resolver 'fixture-names' of entry point "
        f"{entry('good', 'good')!r} of distribution 'good-plugins'; change this plugin, or "
        f"block the other one's entry point with plugins_block"
    )
    assert registry.names("resolver") == ["fixture-names"]
    with pytest.raises(PluginError, match="no resolver handles URI scheme 'ember\\+other'"):
        registry.resolver_for_scheme("ember+other")


def test_entry_point_name_clash_is_rejected(tmp_path, good):
    same_name = install(tmp_path / "same", "other-good", good="declares_nothing")

    registry = load(good, same_name)

    [record] = records_of(registry, "other-good")
    assert record.status == "rejected"
    assert record.reason == (
        f"entry point name 'good' is already used by entry point {entry('good', 'good')!r} of "
        f"distribution 'good-plugins'; entry-point names must be unique because "
        f"plugins_allow and plugins_block select plugins by them, so uninstall one of the two "
        f"distributions, or block one of the entry points with plugins_block"
    )


# -- atomic registration ------------------------------------------------------------------


def _impls_of(registry: Registry, plugin: object) -> list[str]:
    return [
        hook_name
        for hook_name in hookspecs.HOOK_NAMES
        for impl in getattr(registry.plugin_manager.hook, hook_name).get_hookimpls()
        if impl.plugin is plugin
    ]


def test_pluggy_rejection_leaves_nothing(tmp_path, good):
    wrong = install(tmp_path / "wrong", "wrong-plugin", wrong="wrong_argument")

    registry = load(good, wrong)

    records = records_of(registry, "wrong-plugin")
    assert [(r.kind, r.name, r.status) for r in records] == [
        ("transport", "argument", "rejected"),
        ("resolver", "argument-names", "rejected"),
    ]
    assert records[0].reason == (
        "pluggy rejected the registration: PluginValidationError: Plugin 'wrong' for hook "
        "'ember_transports' hookimpl definition: ember_transports(config) Argument(s) "
        "{'config'} are declared in the hookimpl but can not be found in the hookspec"
    )
    plugin = sys.modules[f"{PACKAGE}.wrong_argument"]
    assert registry.plugin_manager.get_plugin("wrong") is None
    assert _impls_of(registry, plugin) == []
    assert "argument-names" not in registry.names("resolver")
    assert "argument" not in registry.names("transport")
    assert_good_plugin_works(registry)


def test_partial_pluggy_registration_is_rolled_back(good, monkeypatch):
    # The installed pluggy validates before it changes state, but older supported
    # versions can fail halfway; this injects such a failure after a full registration.
    registry = Registry()
    plugin = good[0].load()
    manager = registry.plugin_manager
    real_register = manager.register

    def register_then_fail(plugin, name=None):
        real_register(plugin, name=name)
        raise ValueError("injected failure after registration")

    monkeypatch.setattr(manager, "register", register_then_fail)
    with pytest.raises(PluginError) as raised:
        registry.register(plugin, name="partial")

    assert str(raised.value) == (
        "plugin 'partial' registered by code was rejected: pluggy rejected the registration: "
        "ValueError: injected failure after registration"
    )
    assert isinstance(raised.value.__cause__, ValueError)
    assert manager.get_plugin("partial") is None
    assert _impls_of(registry, plugin) == []
    assert registry.names("serializer") == []

    monkeypatch.setattr(manager, "register", real_register)
    registry.register(plugin, name="partial")
    assert_good_plugin_works(registry)


def test_register_from_code_raises_precise_error():
    registry = Registry()
    invalid = importlib.import_module(f"{PACKAGE}.invalid_declarations")

    with pytest.raises(PluginError) as raised:
        registry.register(invalid.wire_id_zero, name="zero", distribution="zero-dist")

    assert raised.value.plugin == "zero"
    assert str(raised.value) == (
        "plugin 'zero' of distribution 'zero-dist' was rejected: serializer 'valid' has wire_id "
        "0; expected an int from 1 to 65535 (0 is reserved for protocol control messages)"
    )
    assert registry.records == [
        PluginRecord("plugin", "zero", None, "zero-dist", "", "rejected",
                     "serializer 'valid' has wire_id 0; expected an int from 1 to 65535 (0 is "
                     "reserved for protocol control messages)"),
    ]


def test_same_object_twice_is_rejected(good):
    registry = load(good)
    plugin = registry.plugin_manager.get_plugin("good")

    with pytest.raises(PluginError) as raised:
        registry.register(plugin, name="again")

    message = str(raised.value)
    assert message.startswith("plugin 'again' registered by code was rejected: ")
    assert (
        f"the same plugin object is already registered as entry point "
        f"{entry('good', 'good')!r} of distribution 'good-plugins'"
    ) in message
    assert registry.plugin_manager.get_plugin("again") is None


def test_register_rejects_empty_name():
    with pytest.raises(PluginError, match="invalid plugin name '': expected a non-empty string"):
        Registry().register(object(), name="")


def test_register_rejects_none_plugin():
    with pytest.raises(PluginError, match="was rejected: the plugin object is None"):
        Registry().register(None, name="nothing")


def test_concurrent_registration_keeps_every_plugin():
    registry = Registry()
    invalid = importlib.import_module(f"{PACKAGE}.invalid_declarations")
    plugins = [
        invalid.SerializersPlugin([invalid._serializer(name=f"s{i}", wire_id=0x6000 + i)])
        for i in range(32)
    ]
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def register_slice(start: int) -> None:
        barrier.wait(timeout=10)
        try:
            for index in range(start, len(plugins), 8):
                registry.register(plugins[index], name=f"p{index}")
                registry.serializer(f"s{index}")
        except PluginError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=register_slice, args=(start,)) for start in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert registry.names("serializer") == sorted(f"s{i}" for i in range(32))


# -- allow and block lists ------------------------------------------------------------------


def test_blocked_entry_point_is_never_imported(tmp_path, good):
    module = f"{PACKAGE}.raises_on_import"
    blocked = install(tmp_path / "blocked", "blocked-plugin", boom="raises_on_import")

    registry = load(blocked, good, plugins_block=("boom",))

    assert records_of(registry, "blocked-plugin") == [
        PluginRecord("plugin", "boom", None, "blocked-plugin", entry("boom", "raises_on_import"),
                     "blocked", "entry point 'boom' is listed in plugins_block"),
    ]
    assert module not in sys.modules
    assert_good_plugin_works(registry)


def test_allow_list_skips_others_before_import(tmp_path, good):
    module = f"{PACKAGE}.raises_on_import"
    other = install(tmp_path / "other", "blocked-plugin", boom="raises_on_import")

    registry = load(other, good, plugins_allow=("good",))

    [record] = records_of(registry, "blocked-plugin")
    assert record.status == "blocked"
    assert record.reason == "entry point 'boom' is not listed in plugins_allow"
    assert module not in sys.modules
    assert_good_plugin_works(registry)


def test_block_wins_over_allow(good):
    registry = load(good, plugins_allow=("good",), plugins_block=("good",))

    assert [(r.name, r.status, r.reason) for r in registry.records] == [
        ("good", "blocked", "entry point 'good' is listed in plugins_block"),
    ]
    assert registry.names("serializer") == []


def test_allow_list_warns_about_missing_names(good, caplog):
    with caplog.at_level(logging.WARNING, logger="ember.registry"):
        load(good, plugins_allow=("good", "absent"))

    assert [r.getMessage() for r in caplog.records] == [
        "plugins_allow names entry points that are not installed: absent; no plugin loads "
        "under these names"
    ]


def test_lookup_explains_blocked_plugin(good):
    registry = load(good, plugins_block=("good",))

    with pytest.raises(PluginError) as raised:
        registry.compose(serializer="json", transport="plain")

    assert str(raised.value) == (
        "serializer 'json' is not registered; registered serializers: none. Fix the name or "
        "install the plugin that provides it"
    )

    with pytest.raises(PluginError) as raised:
        registry.transport("good")
    assert str(raised.value) == (
        "transport 'good' is not registered; registered transports: none. A plugin of that "
        f"name (distribution 'good-plugins', entry point {entry('good', 'good')!r}) was "
        "blocked: entry point 'good' is listed in plugins_block"
    )


# -- lookups and compose -----------------------------------------------------------------------


def test_unknown_names_list_registered_ones(good):
    registry = load(good)

    cases = [
        (lambda: registry.serializer("jsn"),
         "serializer 'jsn' is not registered; registered serializers: json. Fix the name or "
         "install the plugin that provides it"),
        (lambda: registry.compose(serializer="jsn", transport="plain"),
         "serializer 'jsn' is not registered; registered serializers: json."),
        (lambda: registry.compose(serializer="json", transport="tcp"),
         "transport 'tcp' is not registered; registered transports: plain, sealed."),
        (lambda: registry.compose(serializer="json", transport="plain", authenticator="hmac"),
         "authenticator 'hmac' is not registered; registered authenticators: fixture-auth."),
        (lambda: registry.compose(serializer="json", transport="plain",
                                  accepted_serializers=("json", "serpent")),
         "serializer 'serpent' is not registered; registered serializers: json."),
        (lambda: registry.resolver_for_scheme("ember+name"),
         "no resolver handles URI scheme 'ember+name'; known schemes: ember+fixture. Fix the "
         "URI or install the plugin that provides a resolver for it"),
        (lambda: registry.names("codec"),
         "unknown plugin kind 'codec'; expected one of serializer, transport, authenticator, "
         "resolver"),
    ]
    for call, message in cases:
        with pytest.raises(PluginError) as raised:
            call()
        assert str(raised.value).startswith(message), str(raised.value)


def test_compose_builds_stack(good):
    registry = load(good)

    stack = registry.compose(serializer="json", transport="plain")

    assert stack.serializer is registry.serializer("json")
    assert stack.transport is registry.transport("plain")
    assert stack.authenticator is None
    assert dict(stack.accepted) == {0x7E01: stack.serializer}
    assert stack.describe() == "json over plain, no authenticator"


def test_compose_with_authenticator_and_accepted(tmp_path, good):
    unsafe = install(tmp_path / "unsafe", "unsafe-plugin", unsafe="unsafe")
    registry = load(good, unsafe)

    stack = registry.compose(
        serializer="json",
        transport="plain",
        authenticator="fixture-auth",
        accepted_serializers=["unsafe-pickle"],
        allow_unsafe_serializers=True,
    )

    assert stack.authenticator is registry.authenticator("fixture-auth")
    assert set(stack.accepted) == {0x7E01, 0x7E02}
    assert stack.describe() == (
        "json over plain, authenticator fixture-auth, also accepting unsafe-pickle"
    )


def test_compose_treats_empty_authenticator_as_none(good):
    stack = load(good).compose(serializer="json", transport="plain", authenticator="")

    assert stack.authenticator is None


def test_compose_rejects_string_of_accepted_names(good):
    registry = load(good)

    with pytest.raises(PluginError, match=r"accepted_serializers must be an iterable of names, "
                       r"not the string 'json'; pass a tuple such as \('json',\)"):
        registry.compose(serializer="json", transport="plain", accepted_serializers="json")


@pytest.fixture
def unsafe_registry(tmp_path, good) -> Registry:
    unsafe = install(tmp_path / "unsafe", "unsafe-plugin", unsafe="unsafe")
    return load(good, unsafe)


QUARANTINED = (
    "serializer 'unsafe-pickle' is unsafe: decoding its data can run code chosen by the "
    "peer, so it is quarantined. To lift the quarantine for this endpoint, pass "
    "allow_unsafe_serializers=True together with an authenticator or an encrypted transport"
)


def test_unsafe_serializer_needs_opt_in(unsafe_registry):
    with pytest.raises(SecurityError) as raised:
        unsafe_registry.compose(serializer="unsafe-pickle", transport="plain",
                                authenticator="fixture-auth")

    assert str(raised.value) == QUARANTINED


def test_unsafe_accepted_serializer_needs_opt_in(unsafe_registry):
    with pytest.raises(SecurityError) as raised:
        unsafe_registry.compose(serializer="json", transport="sealed",
                                accepted_serializers=("unsafe-pickle",))

    assert str(raised.value) == QUARANTINED


def test_unsafe_serializer_needs_authenticated_session(unsafe_registry):
    with pytest.raises(SecurityError) as raised:
        unsafe_registry.compose(serializer="unsafe-pickle", transport="plain",
                                allow_unsafe_serializers=True)

    assert str(raised.value) == (
        "serializer 'unsafe-pickle' is unsafe and needs an authenticated session, but the "
        "stack 'unsafe-pickle over plain, no authenticator' has neither an authenticator nor "
        "an encrypted transport, so any peer that can connect could run code. Choose an "
        "authenticator or an encrypted transport"
    )


@pytest.mark.parametrize(("transport", "authenticator"),
                         [("plain", "fixture-auth"), ("sealed", None)])
def test_unsafe_serializer_allowed_with_opt_in(unsafe_registry, transport, authenticator):
    stack = unsafe_registry.compose(serializer="unsafe-pickle", transport=transport,
                                    authenticator=authenticator,
                                    allow_unsafe_serializers=True)

    assert stack.serializer.is_safe is False


def test_stack_rejects_mismatched_wire_id(good):
    registry = load(good)
    json_serializer = registry.serializer("json")

    with pytest.raises(PluginError) as raised:
        Stack(json_serializer, registry.transport("plain"), None, {7: json_serializer})

    assert str(raised.value) == (
        "accepted serializer 'json' is listed under wire id 7, but its wire_id is 32257; key "
        "each accepted serializer by its own wire_id"
    )


def test_stack_accepted_is_read_only(good):
    stack = load(good).compose(serializer="json", transport="plain")

    with pytest.raises(TypeError):
        stack.accepted[1] = stack.serializer  # type: ignore[index]


# -- the process-wide registry -------------------------------------------------------------------


def test_get_registry_is_cached_per_lists():
    config = Config.defaults().replace(plugins_block=("registry-test-cache",))

    first = get_registry(config)

    assert get_registry(config) is first
    assert get_registry(config.replace(port=1234)) is first
    assert get_registry(config.replace(plugins_block=("registry-test-other",))) is not first


def test_get_registry_loads_once_across_threads():
    config = Config.defaults().replace(plugins_block=("registry-test-threads",))
    barrier = threading.Barrier(8)
    results: list[Registry] = []

    def fetch() -> None:
        barrier.wait(timeout=10)
        results.append(get_registry(config))

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(results) == 8
    assert len({id(registry) for registry in results}) == 1


def test_get_registry_from_loading_plugin_fails(tmp_path, monkeypatch):
    for variable in [name for name in os.environ if name.startswith("EMBER_")]:
        monkeypatch.delenv(variable)
    install(tmp_path, "reentrant-plugin", reentrant="calls_get_registry")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = Config.defaults().replace(plugins_allow=("reentrant",))

    registry = get_registry(config)

    [record] = records_of(registry, "reentrant-plugin")
    assert record.status == "failed"
    assert record.reason == (
        "ember_serializers raised PluginError: get_registry() was called while the plugin "
        "registry is loading, from a plugin's import or hook; a plugin must not look up "
        "other plugins while it loads. Look them up when they are used instead"
    )
