"""The plugin registry: loads entry points, validates plugins and composes stacks.

Invariants:

- A plugin joins the shared pluggy ``PluginManager`` only after every check has passed,
  and either all of its declared objects are registered or none are. pluggy's own
  ``register`` is not atomic in every supported version, so a failure inside it is
  rolled back here.
- Names are unique per kind, and serializer wire ids, resolver URI schemes and
  entry-point names are unique. Entry-point names must be unique because the allow and
  block lists select plugins by them.
- Entry points load in a fixed order: distribution ``ember`` first, then by distribution
  name, then by entry-point name. The plugin loaded first keeps a contested name and the
  later one is rejected, so a clash resolves the same way whatever the install order.
- An entry point that fails, is blocked or is rejected never stops the others. Every
  outcome is kept as a :class:`PluginRecord`.
- One lock guards registration and lookups, so a registry may be shared between threads.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
import re
import reprlib
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, NoReturn, cast

import pluggy

from ember.kernel import hookspecs
from ember.kernel.authenticator import Authenticator
from ember.kernel.config import Config
from ember.kernel.converters import Converter, converters
from ember.kernel.errors import PluginError, SecurityError
from ember.kernel.resolver import Resolver
from ember.kernel.serializer import MAX_WIRE_ID, PLUGIN_NAME_PATTERN, Serializer
from ember.kernel.transport import Transport

__all__ = [
    "BUNDLED_DISTRIBUTION",
    "CODE_DISTRIBUTION",
    "KINDS",
    "Kind",
    "PluginRecord",
    "Registry",
    "Stack",
    "Status",
    "get_registry",
    "reset_registry",
]

logger = logging.getLogger("ember.registry")

Kind = Literal["serializer", "transport", "authenticator", "resolver", "converter"]
Status = Literal["loaded", "failed", "blocked", "rejected"]

#: Every kind of object a plugin can declare, in display order.
KINDS: tuple[Kind, ...] = ("serializer", "transport", "authenticator", "resolver", "converter")

#: Distribution of the plugins shipped with ember; it loads before every other one.
BUNDLED_DISTRIBUTION = "ember"
#: Distribution recorded for a plugin passed to :meth:`Registry.register` by a program.
CODE_DISTRIBUTION = "<code>"

# The declaration hook for each kind and the contract class its objects must implement.
_HOOKS: Mapping[str, tuple[Kind, type]] = MappingProxyType({
    "ember_serializers": ("serializer", Serializer),
    "ember_transports": ("transport", Transport),
    "ember_authenticators": ("authenticator", Authenticator),
    "ember_resolvers": ("resolver", Resolver),
    "ember_converters": ("converter", Converter),
})

# Keyword arguments for a direct call of a declaration hook. The specifications in
# ember.kernel.hookspecs define no arguments today; a new one must be supplied here.
_HOOK_ARGUMENTS: Mapping[str, object] = MappingProxyType({})

_HOOK_PREFIX = "ember_"

# URI scheme syntax from RFC 3986, section 3.1, restricted to lowercase. Schemes are
# case-insensitive, so lookups lowercase the requested scheme before comparing.
_SCHEME_PATTERN = re.compile(r"[a-z][a-z0-9+.-]*")

_NAME_RULE = (
    "1 to 32 lowercase ASCII letters, digits, '_' or '-', starting with a letter"
)

_short_repr = reprlib.Repr()
_short_repr.maxstring = 60
_short_repr.maxother = 60


@dataclass(frozen=True, slots=True)
class PluginRecord:
    """The outcome for one entry point or one object a plugin declared.

    ``kind`` is one of :data:`KINDS`, or ``"plugin"`` for an entry point that was
    blocked, failed or was rejected before it declared any valid object, or that
    declared nothing. ``entry_point`` reads ``"name = module:attr"`` and is empty for a
    plugin registered by a program. ``reason`` explains every status except a plain
    ``"loaded"``.
    """

    kind: str
    name: str
    wire_id: int | None
    distribution: str
    entry_point: str
    status: Status
    reason: str = ""
    #: URI schemes of a resolver, empty for every other kind.
    schemes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Stack:
    """A validated combination of serializer, transport and authenticator.

    ``accepted`` maps each wire id a receiver decodes to its serializer and always
    contains ``serializer``. Build one with :meth:`Registry.compose`, which also
    enforces the unsafe-serializer rules; a stack built from objects directly must call
    :meth:`check_safety` itself.
    """

    serializer: Serializer
    transport: Transport
    authenticator: Authenticator | None
    accepted: Mapping[int, Serializer]

    def __post_init__(self) -> None:
        accepted = dict(self.accepted)
        accepted.setdefault(self.serializer.wire_id, self.serializer)
        for wire_id, serializer in accepted.items():
            if serializer.wire_id != wire_id:
                raise PluginError(
                    f"accepted serializer {serializer.name!r} is listed under wire id "
                    f"{wire_id}, but its wire_id is {serializer.wire_id}; key each "
                    f"accepted serializer by its own wire_id",
                    plugin=serializer.name,
                )
        if accepted[self.serializer.wire_id] is not self.serializer:
            other = accepted[self.serializer.wire_id]
            raise PluginError(
                f"serializer {self.serializer.name!r} and accepted serializer "
                f"{other.name!r} share wire id {self.serializer.wire_id}; a stack can "
                f"decode only one serializer per wire id",
                plugin=self.serializer.name,
            )
        # Frozen dataclass: the read-only copy replaces the caller's mapping once, here.
        object.__setattr__(self, "accepted", MappingProxyType(accepted))

    def describe(self) -> str:
        """Summarize the stack, for example ``"cbor over tcp, no authenticator"``."""
        parts = [f"{self.serializer.name} over {self.transport.name}"]
        if self.authenticator is None:
            parts.append("no authenticator")
        else:
            parts.append(f"authenticator {self.authenticator.name}")
        others = sorted(s.name for s in self.accepted.values() if s is not self.serializer)
        if others:
            parts.append("also accepting " + ", ".join(others))
        return ", ".join(parts)

    def check_safety(self, *, allow_unsafe_serializers: bool) -> None:
        """Raise :class:`~ember.kernel.errors.SecurityError` for an unsafe combination.

        A serializer with ``is_safe`` false can run code chosen by the peer while it
        decodes. It is allowed only with ``allow_unsafe_serializers=True``, and even
        then only when an authenticator or an encrypted transport proves the peer.
        """
        unsafe = sorted(s.name for s in self.accepted.values() if not s.is_safe)
        if not unsafe:
            return

        listed = ", ".join(repr(name) for name in unsafe)
        subject = f"serializer {listed} is" if len(unsafe) == 1 else f"serializers {listed} are"
        if not allow_unsafe_serializers:
            raise SecurityError(
                f"{subject} unsafe: decoding its data can run code chosen by the peer, "
                f"so it is quarantined. To lift the quarantine for this endpoint, pass "
                f"allow_unsafe_serializers=True together with an authenticator or an "
                f"encrypted transport"
            )
        if self.authenticator is None and not self.transport.is_encrypted:
            raise SecurityError(
                f"{subject} unsafe and needs an authenticated session, but "
                f"the stack '{self.describe()}' has neither an authenticator nor an "
                f"encrypted transport, so any peer that can connect could run code. "
                f"Choose an authenticator or an encrypted transport"
            )
        logger.warning(
            "quarantine lifted for unsafe %s on '%s': a peer that passes authentication "
            "can run code in this process by sending crafted data",
            subject.removesuffix(" is").removesuffix(" are"), self.describe(),
        )


@dataclass(frozen=True, slots=True)
class _Origin:
    """Provenance of a plugin, for records and clash messages."""

    plugin_name: str
    distribution: str
    entry_point: str

    def describe(self) -> str:
        """Name the plugin for a message, such as ``entry point 'a = m' of distribution 'd'``."""
        if self.entry_point:
            return f"entry point {self.entry_point!r} of distribution {self.distribution!r}"
        if self.distribution == CODE_DISTRIBUTION:
            return f"plugin {self.plugin_name!r} registered by code"
        return f"plugin {self.plugin_name!r} of distribution {self.distribution!r}"


@dataclass(frozen=True, slots=True)
class _Declaration:
    """One object a plugin declared, already checked against its contract."""

    kind: Kind
    name: str
    value: Any
    wire_id: int | None = None
    schemes: tuple[str, ...] = ()


@dataclass(slots=True)
class _Inspection:
    """Result of validating one plugin: its valid declarations and its problems."""

    declarations: list[_Declaration]
    problems: list[str]
    #: True when plugin code raised, which makes the status "failed", not "rejected".
    raised: bool = False



class Registry:
    """The validated set of plugins and the objects they declare.

    ``Registry()`` is empty; :meth:`load` fills one from the ``ember`` entry points.
    All methods are safe to call from several threads.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._plugin_manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._plugin_manager.add_hookspecs(hookspecs)
        self._plugins: dict[str, _Origin] = {}
        self._objects: dict[Kind, dict[str, tuple[Any, _Origin]]] = {kind: {} for kind in KINDS}
        self._wire_ids: dict[int, tuple[Serializer, _Origin]] = {}
        self._schemes: dict[str, tuple[Resolver, _Origin]] = {}
        self._records: list[PluginRecord] = []

    # -- loading --------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        config: Config | None = None,
        entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
    ) -> Registry:
        """Load, validate and register every plugin of the ``ember`` entry-point group.

        ``config`` defaults to :meth:`Config.from_environment`. Its ``plugins_allow`` and
        ``plugins_block`` lists select entry points by name before anything is imported.
        A blocked name wins over an allowed one. ``entry_points`` replaces the
        installed entry points; those of any other group are ignored. A plugin that
        fails or is rejected is recorded and logged as a WARNING, and loading goes on.
        Raises :class:`~ember.kernel.errors.ConfigError` for an invalid environment.
        """
        if config is None:
            config = Config.from_environment()
        if entry_points is None:
            entry_points = importlib.metadata.entry_points(group=hookspecs.PROJECT_NAME)

        allowed = frozenset(config.plugins_allow)
        blocked = frozenset(config.plugins_block)
        selected = [ep for ep in entry_points if ep.group == hookspecs.PROJECT_NAME]

        registry = cls()
        for entry_point in sorted(selected, key=_load_order):
            registry._load_entry_point(entry_point, allowed, blocked)

        unmatched = sorted(allowed - {ep.name for ep in selected})
        if unmatched:
            logger.warning(
                "plugins_allow names entry points that are not installed: %s; "
                "no plugin loads under these names",
                ", ".join(unmatched),
            )
        return registry

    def _load_entry_point(
        self,
        entry_point: importlib.metadata.EntryPoint,
        allowed: frozenset[str],
        blocked: frozenset[str],
    ) -> None:
        origin = _Origin(
            plugin_name=entry_point.name,
            distribution=_distribution_name(entry_point),
            entry_point=f"{entry_point.name} = {entry_point.value}",
        )

        block_reason = ""
        if entry_point.name in blocked:
            block_reason = f"entry point {entry_point.name!r} is listed in plugins_block"
        elif allowed and entry_point.name not in allowed:
            block_reason = f"entry point {entry_point.name!r} is not listed in plugins_allow"
        if block_reason:
            logger.debug("not importing %s: %s", origin.describe(), block_reason)
            self._add_plugin_record(origin, "blocked", block_reason)
            return

        try:
            plugin = entry_point.load()
        # A plugin's import runs foreign code; whatever it raises, including SystemExit,
        # must not stop the host program or the other plugins.
        except (Exception, SystemExit) as exc:
            reason = f"import failed: {_describe_exception(exc)}"
            self._add_plugin_record(origin, "failed", reason)
            logger.warning("plugin skipped: %s: %s", origin.describe(), reason)
            logger.debug("import traceback of %s", origin.describe(), exc_info=True)
            return

        try:
            self._register(plugin, origin)
        except PluginError as exc:
            logger.warning("plugin skipped: %s", exc)

    # -- registration ---------------------------------------------------------------

    def register(self, plugin: object, *, name: str, distribution: str = CODE_DISTRIBUTION) -> None:
        """Validate ``plugin`` completely, then register it and every object it declares.

        Registration is atomic: on any failure nothing of the plugin stays registered,
        the outcome is added to :attr:`records` and
        :class:`~ember.kernel.errors.PluginError` is raised naming each problem. The
        allow and block lists apply to entry points only, not to this call.
        """
        if not isinstance(name, str) or not name:
            raise PluginError(
                f"invalid plugin name {name!r}: expected a non-empty string", plugin=str(name)
            )
        if not isinstance(distribution, str) or not distribution:
            raise PluginError(
                f"invalid distribution {distribution!r} for plugin {name!r}: expected a "
                f"non-empty string",
                plugin=name,
            )
        self._register(plugin, _Origin(name, distribution, entry_point=""))

    def _register(self, plugin: object, origin: _Origin) -> None:
        with self._lock:
            inspection = _inspect_plugin(self._plugin_manager, plugin)
            if not inspection.problems:
                inspection.problems.extend(self._find_clashes(plugin, origin, inspection))
            if inspection.problems:
                status: Status = "failed" if inspection.raised else "rejected"
                self._reject(origin, inspection.declarations, status, inspection.problems)

            try:
                registered_name = self._plugin_manager.register(plugin, name=origin.plugin_name)
                if registered_name is None:
                    raise PluginError(f"pluggy blocks the name {origin.plugin_name!r}")
            # pluggy raises ValueError or PluginValidationError today; anything else it
            # raises must be rolled back the same way.
            except Exception as exc:  # noqa: BLE001 - recorded and re-raised as PluginError
                rollback_problem = self._roll_back(plugin, origin.plugin_name)
                problems = [f"pluggy rejected the registration: {_describe_exception(exc)}"]
                if rollback_problem:
                    problems.append(rollback_problem)
                self._reject(origin, inspection.declarations, "rejected", problems, cause=exc)

            self._commit(origin, inspection.declarations)

    def _find_clashes(self, plugin: object, origin: _Origin, inspection: _Inspection) -> list[str]:
        """Describe every conflict between the plugin and what is already registered."""
        clashes: list[str] = []
        if origin.entry_point:
            fix = (
                "uninstall one of the two distributions, or block one of the entry points "
                "with plugins_block"
            )
        else:
            fix = "change this plugin, or block the other one's entry point with plugins_block"

        existing = self._plugins.get(origin.plugin_name)
        if existing is not None and origin.entry_point:
            clashes.append(
                f"entry point name {origin.plugin_name!r} is already used by "
                f"{existing.describe()}; entry-point names must be unique because "
                f"plugins_allow and plugins_block select plugins by them, so {fix}"
            )
        elif existing is not None:
            clashes.append(
                f"plugin name {origin.plugin_name!r} is already taken by "
                f"{existing.describe()}; register this plugin under another name"
            )
        if self._plugin_manager.is_registered(plugin):
            owner = self._plugins.get(self._plugin_manager.get_name(plugin) or "")
            owner_text = owner.describe() if owner else "another plugin"
            clashes.append(f"the same plugin object is already registered as {owner_text}")

        for declaration in inspection.declarations:
            registered = self._objects[declaration.kind].get(declaration.name)
            if registered is not None:
                clashes.append(
                    f"{declaration.kind} name {declaration.name!r} is already registered "
                    f"by {registered[1].describe()}; {fix}"
                )
            if declaration.wire_id is not None and declaration.wire_id in self._wire_ids:
                holder, holder_origin = self._wire_ids[declaration.wire_id]
                clashes.append(
                    f"serializer {declaration.name!r} uses wire id {declaration.wire_id}, "
                    f"already used by serializer {holder.name!r} of "
                    f"{holder_origin.describe()}; {fix}"
                )
            if declaration.kind == "converter":
                clashes.extend(_converter_clashes(declaration.value, fix))
            for scheme in declaration.schemes:
                if scheme in self._schemes:
                    holder_resolver, holder_origin = self._schemes[scheme]
                    clashes.append(
                        f"resolver {declaration.name!r} claims URI scheme {scheme!r}, "
                        f"already handled by resolver {holder_resolver.name!r} of "
                        f"{holder_origin.describe()}; {fix}"
                    )
        return clashes

    def _reject(
        self,
        origin: _Origin,
        declarations: Sequence[_Declaration],
        status: Status,
        problems: Sequence[str],
        cause: BaseException | None = None,
    ) -> NoReturn:
        """Record the failed plugin and raise PluginError; nothing was registered."""
        reason = "; ".join(problems)
        if declarations:
            for declaration in declarations:
                self._records.append(_declaration_record(declaration, origin, status, reason))
        else:
            self._add_plugin_record(origin, status, reason)
        message = f"{origin.describe()} was {status}: {reason}"
        raise PluginError(message, plugin=origin.plugin_name) from cause

    def _roll_back(self, plugin: object, plugin_name: str) -> str:
        """Remove whatever part of ``plugin`` pluggy registered before it failed.

        Returns an empty string on success, or a description of what could not be
        removed.
        """
        manager = self._plugin_manager
        try:
            if manager.get_plugin(plugin_name) is plugin:
                manager.unregister(name=plugin_name)
            elif manager.is_registered(plugin):
                manager.unregister(name=manager.get_name(plugin))
        except Exception as exc:  # noqa: BLE001 - returned to the caller, which raises
            return f"removing its partial registration failed: {_describe_exception(exc)}"

        leftover = sorted(
            hook_name
            for hook_name, caller in vars(manager.hook).items()
            if isinstance(caller, pluggy.HookCaller)
            and any(impl.plugin is plugin for impl in caller.get_hookimpls())
        )
        if leftover:
            return "hook implementations remain registered for " + ", ".join(leftover)
        return ""

    def _commit(self, origin: _Origin, declarations: Sequence[_Declaration]) -> None:
        """Store the declarations of a plugin that pluggy has accepted."""
        self._plugins[origin.plugin_name] = origin
        for declaration in declarations:
            self._objects[declaration.kind][declaration.name] = (declaration.value, origin)
            if declaration.wire_id is not None:
                self._wire_ids[declaration.wire_id] = (declaration.value, origin)
            for scheme in declaration.schemes:
                self._schemes[scheme] = (declaration.value, origin)
            if declaration.kind == "converter":
                # Serializers read the process-wide table; _find_clashes checked it.
                converters.add(declaration.value)
            self._records.append(_declaration_record(declaration, origin, "loaded", ""))

        if not declarations:
            reason = (
                "its hooks declare no serializer, transport, authenticator, resolver or "
                "converter"
            )
            self._add_plugin_record(origin, "loaded", reason)
        logger.debug(
            "registered %s: %s",
            origin.describe(),
            ", ".join(f"{d.kind} {d.name}" for d in declarations) or "no objects",
        )

    def _add_plugin_record(self, origin: _Origin, status: Status, reason: str) -> None:
        self._records.append(PluginRecord(
            kind="plugin",
            name=origin.plugin_name,
            wire_id=None,
            distribution=origin.distribution,
            entry_point=origin.entry_point,
            status=status,
            reason=reason,
        ))

    # -- lookups --------------------------------------------------------------------

    @property
    def records(self) -> list[PluginRecord]:
        """Every entry point and every declared object seen, in loading order."""
        with self._lock:
            return list(self._records)

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        """The pluggy manager holding every registered plugin. Register through
        :meth:`register` only: this manager's own ``register`` skips validation."""
        return self._plugin_manager

    def names(self, kind: str) -> list[str]:
        """Return the sorted names of the registered objects of ``kind``."""
        with self._lock:
            return sorted(self._objects[_check_kind(kind)])

    def serializer(self, name: str) -> Serializer:
        """Return the serializer registered as ``name``, or raise PluginError listing
        the registered ones."""
        return cast(Serializer, self._lookup("serializer", name))

    def serializer_by_id(self, wire_id: int) -> Serializer | None:
        """Return the serializer with ``wire_id``, or ``None`` if none is registered."""
        with self._lock:
            entry = self._wire_ids.get(wire_id)
        return None if entry is None else entry[0]

    def transport(self, name: str) -> Transport:
        """Return the transport registered as ``name``, or raise PluginError."""
        return cast(Transport, self._lookup("transport", name))

    def authenticator(self, name: str) -> Authenticator:
        """Return the authenticator registered as ``name``, or raise PluginError."""
        return cast(Authenticator, self._lookup("authenticator", name))

    def resolver_for_scheme(self, scheme: str) -> Resolver:
        """Return the resolver handling URI ``scheme`` (compared case-insensitively).

        Raises :class:`~ember.kernel.errors.PluginError` listing the known schemes.
        """
        with self._lock:
            entry = self._schemes.get(scheme.lower()) if isinstance(scheme, str) else None
            if entry is not None:
                return entry[0]
            known = ", ".join(sorted(self._schemes)) or "none"
        raise PluginError(
            f"no resolver handles URI scheme {scheme!r}; known schemes: {known}. "
            f"Fix the URI or install the plugin that provides a resolver for it",
            plugin=str(scheme),
        )

    def compose(
        self,
        *,
        serializer: str,
        transport: str,
        authenticator: str | None = None,
        accepted_serializers: Iterable[str] = (),
        allow_unsafe_serializers: bool = False,
    ) -> Stack:
        """Build a :class:`Stack` from registered names and validate it as a whole.

        ``serializer`` is what this side encodes with and is always accepted;
        ``accepted_serializers`` names further serializers a receiver decodes.
        ``authenticator`` ``None`` or ``""`` means none, as in configuration. Raises
        :class:`~ember.kernel.errors.PluginError` for an unknown name, listing the
        registered names of its kind, and :class:`~ember.kernel.errors.SecurityError`
        for an unsafe serializer (see :meth:`Stack.check_safety`).
        """
        if isinstance(accepted_serializers, str):
            raise PluginError(
                f"accepted_serializers must be an iterable of names, not the string "
                f"{accepted_serializers!r}; pass a tuple such as ({accepted_serializers!r},)",
                plugin=accepted_serializers,
            )

        with self._lock:
            local_serializer = self.serializer(serializer)
            chosen_transport = self.transport(transport)
            chosen_authenticator = self.authenticator(authenticator) if authenticator else None
            accepted = {local_serializer.wire_id: local_serializer}
            for accepted_name in accepted_serializers:
                accepted_serializer = self.serializer(accepted_name)
                accepted[accepted_serializer.wire_id] = accepted_serializer

        stack = Stack(
            serializer=local_serializer,
            transport=chosen_transport,
            authenticator=chosen_authenticator,
            accepted=accepted,
        )
        stack.check_safety(allow_unsafe_serializers=allow_unsafe_serializers)
        return stack

    def _lookup(self, kind: Kind, name: str) -> object:
        """Return the object of ``kind`` named ``name``; validation admitted only
        instances of that kind's contract class."""
        with self._lock:
            entry = self._objects[kind].get(name) if isinstance(name, str) else None
            if entry is not None:
                return entry[0]
            registered = ", ".join(sorted(self._objects[kind])) or "none"
            explanation = self._explain_missing(kind, name)
        raise PluginError(
            f"{kind} {name!r} is not registered; registered {kind}s: {registered}. "
            + (explanation or "Fix the name or install the plugin that provides it"),
            plugin=str(name),
        )

    def _explain_missing(self, kind: Kind, name: object) -> str:
        """Say why ``name`` is missing when a record shows it was seen but not loaded."""
        for record in self._records:
            if record.status == "loaded":
                continue
            if record.name == name and record.kind in (kind, "plugin"):
                where = f"distribution {record.distribution!r}"
                if record.entry_point:
                    where += f", entry point {record.entry_point!r}"
                return f"A plugin of that name ({where}) was {record.status}: {record.reason}"
        return ""

    def __repr__(self) -> str:
        with self._lock:
            counts = ", ".join(f"{len(self._objects[kind])} {kind}s" for kind in KINDS)
        return f"<Registry {counts}>"


# -- validation of one plugin ---------------------------------------------------------


def _inspect_plugin(manager: pluggy.PluginManager, plugin: object) -> _Inspection:
    """Find the plugin's hooks, call each one directly and check what it declares.

    Touches no registry state, so a plugin with problems leaves nothing behind.
    """
    inspection = _Inspection(declarations=[], problems=[])
    if plugin is None:
        inspection.problems.append("the plugin object is None")
        return inspection

    hooks = _find_hooks(manager, plugin, inspection)
    if not hooks and not inspection.problems:
        inspection.problems.append(
            "implements none of the hooks "
            + ", ".join(hookspecs.HOOK_NAMES)
            + "; mark each hook function with @hookimpl from ember.kernel.hookspecs"
        )
    for hook_name in hookspecs.HOOK_NAMES:
        function = hooks.get(hook_name)
        if function is None:
            continue
        result = _call_hook(hook_name, function, inspection)
        if result is not None:
            _check_declarations(hook_name, result, inspection)

    _check_unique_within(inspection)
    return inspection


def _find_hooks(
    manager: pluggy.PluginManager, plugin: object, inspection: _Inspection
) -> dict[str, Callable[..., object]]:
    """Map each hook name to the plugin's implementation, as pluggy will find them.

    Every ``ember_`` attribute must be a known hook marked with ``@hookimpl``: pluggy
    silently ignores a misspelt or unmarked one, which would hide a plugin's mistake.
    """
    hooks: dict[str, Callable[..., object]] = {}
    known = ", ".join(hookspecs.HOOK_NAMES)
    try:
        attributes = sorted(dir(plugin))
    except Exception as exc:  # noqa: BLE001 - reported as the plugin's problem
        inspection.raised = True
        inspection.problems.append(f"listing its attributes failed: {_describe_exception(exc)}")
        return hooks

    for attribute in attributes:
        options = manager.parse_hookimpl_opts(plugin, attribute)
        if options is None:
            if attribute.startswith(_HOOK_PREFIX) and attribute in hookspecs.HOOK_NAMES:
                inspection.problems.append(
                    f"{attribute} is not marked with @hookimpl from ember.kernel.hookspecs, "
                    f"so it would never be called; add the marker"
                )
            elif attribute.startswith(_HOOK_PREFIX):
                inspection.problems.append(
                    f"{attribute} is not an ember hook; known hooks: {known}. Fix the "
                    f"name, or rename the attribute: the {_HOOK_PREFIX} prefix is "
                    f"reserved for hooks"
                )
            continue

        hook_name = options.get("specname") or attribute
        if hook_name not in hookspecs.HOOK_NAMES:
            inspection.problems.append(
                f"{attribute} implements unknown hook {hook_name!r}; known hooks: {known}"
            )
        elif options.get("wrapper") or options.get("hookwrapper"):
            inspection.problems.append(
                f"{attribute} is marked as a hook wrapper; ember hooks only declare "
                f"objects, so remove wrapper=True or hookwrapper=True"
            )
        elif hook_name in hooks:
            inspection.problems.append(f"{hook_name} is implemented more than once")
        else:
            hooks[hook_name] = getattr(plugin, attribute)
    return hooks


def _call_hook(
    hook_name: str, function: Callable[..., object], inspection: _Inspection
) -> object | None:
    """Call one hook implementation with the specification's keyword arguments."""
    # The call below succeeds or fails by the signature of the function itself, not of
    # what a decorator wraps. pluggy checks the wrapped signature later, at registration.
    try:
        signature: inspect.Signature | None = inspect.signature(function, follow_wrapped=False)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        try:
            signature.bind(**_HOOK_ARGUMENTS)
        except TypeError:
            inspection.problems.append(
                f"{hook_name}{signature} cannot be called with the arguments of its "
                f"specification ({', '.join(_HOOK_ARGUMENTS) or 'none'}); remove the "
                f"extra parameters"
            )
            return None

    try:
        return function(**_HOOK_ARGUMENTS)
    # Hooks run foreign code; any failure rejects this plugin and only this plugin.
    except (Exception, SystemExit) as exc:
        inspection.raised = True
        inspection.problems.append(f"{hook_name} raised {_describe_exception(exc)}")
        logger.debug("traceback of hook %s", hook_name, exc_info=True)
        return None


def _check_declarations(hook_name: str, result: object, inspection: _Inspection) -> None:
    """Check each object a hook returned against its contract and keep the valid ones."""
    kind, contract = _HOOKS[hook_name]
    expected = f"a list or tuple of {contract.__name__} instances, or None"
    if isinstance(result, (str, bytes, bytearray)) or not isinstance(result, Sequence):
        inspection.problems.append(
            f"{hook_name} returned {_describe_value(result)}; expected {expected}"
        )
        return

    for index, value in enumerate(result):
        where = f"{hook_name} item {index}"
        if not isinstance(value, contract):
            inspection.problems.append(
                f"{where} is {_describe_value(value)}; expected a {contract.__name__} instance"
            )
            continue
        problems_before = len(inspection.problems)

        name = _read_attribute(value, "name", where, inspection)
        # A Converter checks its dotted name in its constructor; other kinds use plugin names.
        if not isinstance(name, str) or not (
            kind == "converter" or PLUGIN_NAME_PATTERN.fullmatch(name)
        ):
            inspection.problems.append(
                f"{where} ({type(value).__qualname__}) has name {_short_repr.repr(name)}; "
                f"expected {_NAME_RULE}"
            )
            name = f"<{type(value).__qualname__}>"
        label = f"{kind} {name!r}"

        missing = _missing_methods(value, contract)
        if missing:
            inspection.problems.append(
                f"{label} ({type(value).__qualname__}) does not implement "
                + ", ".join(f"{contract.__name__}.{method}" for method in missing)
                + "; implement every abstract method of the contract"
            )

        wire_id: int | None = None
        schemes: tuple[str, ...] = ()
        if kind == "serializer":
            wire_id = _check_wire_id(value, label, inspection)
            _check_flag(value, "is_safe", label, inspection)
        elif kind == "transport":
            _check_flag(value, "is_encrypted", label, inspection)
        elif kind == "resolver":
            schemes = _check_schemes(value, label, inspection)

        if len(inspection.problems) == problems_before:
            inspection.declarations.append(
                _Declaration(kind=kind, name=name, value=value, wire_id=wire_id, schemes=schemes)
            )


def _read_attribute(value: object, attribute: str, where: str, inspection: _Inspection) -> object:
    """Read a declared attribute; a property that raises is the plugin's problem."""
    try:
        return getattr(value, attribute)
    except AttributeError:
        return None
    except Exception as exc:  # noqa: BLE001 - reported as the plugin's problem
        inspection.raised = True
        inspection.problems.append(
            f"{where}: reading {attribute} raised {_describe_exception(exc)}"
        )
        return None


def _missing_methods(value: object, contract: type) -> list[str]:
    """Name the contract's abstract methods that the value's class leaves abstract.

    A class registered with ``Contract.register`` passes ``isinstance`` without
    inheriting anything, so each method is looked up on the class itself.
    """
    missing = []
    for method_name in sorted(getattr(contract, "__abstractmethods__", ())):
        method = getattr(type(value), method_name, None)
        if not callable(method) or getattr(method, "__isabstractmethod__", False):
            missing.append(method_name)
    return missing


def _check_wire_id(value: object, label: str, inspection: _Inspection) -> int | None:
    wire_id = _read_attribute(value, "wire_id", label, inspection)
    # bool is an int subclass, but True as a wire id is a mistake, not the id 1.
    if type(wire_id) is not int or not 1 <= wire_id <= MAX_WIRE_ID:
        inspection.problems.append(
            f"{label} has wire_id {_short_repr.repr(wire_id)}; expected an int from 1 to "
            f"{MAX_WIRE_ID} (0 is reserved for protocol control messages)"
        )
        return None
    return wire_id


def _check_flag(value: object, attribute: str, label: str, inspection: _Inspection) -> None:
    flag = _read_attribute(value, attribute, label, inspection)
    if not isinstance(flag, bool):
        inspection.problems.append(
            f"{label} has {attribute} {_short_repr.repr(flag)}; expected True or False"
        )


def _check_schemes(value: object, label: str, inspection: _Inspection) -> tuple[str, ...]:
    schemes = _read_attribute(value, "schemes", label, inspection)
    if isinstance(schemes, str) or not isinstance(schemes, (tuple, list)) or not schemes:
        inspection.problems.append(
            f"{label} has schemes {_short_repr.repr(schemes)}; expected a non-empty tuple of "
            f"lowercase URI schemes such as ('ember+name',)"
        )
        return ()

    bad = [s for s in schemes if not isinstance(s, str) or not _SCHEME_PATTERN.fullmatch(s)]
    if bad:
        inspection.problems.append(
            f"{label} has invalid URI schemes {', '.join(_short_repr.repr(s) for s in bad)}; "
            f"expected a lowercase letter followed by lowercase letters, digits, '+', '-' "
            f"or '.'"
        )
        return ()
    if len(set(schemes)) != len(schemes):
        inspection.problems.append(f"{label} lists a URI scheme more than once: {schemes!r}")
        return ()
    return tuple(schemes)


def _check_unique_within(inspection: _Inspection) -> None:
    """Reject a plugin that declares the same name, wire id or scheme twice."""
    names: set[tuple[Kind, str]] = set()
    wire_ids: set[int] = set()
    schemes: set[str] = set()
    for declaration in inspection.declarations:
        if (declaration.kind, declaration.name) in names:
            inspection.problems.append(
                f"declares {declaration.kind} name {declaration.name!r} more than once"
            )
        names.add((declaration.kind, declaration.name))

        if declaration.wire_id is not None:
            if declaration.wire_id in wire_ids:
                inspection.problems.append(
                    f"declares wire id {declaration.wire_id} more than once"
                )
            wire_ids.add(declaration.wire_id)

        for scheme in declaration.schemes:
            if scheme in schemes:
                inspection.problems.append(
                    f"declares URI scheme {scheme!r} in more than one resolver"
                )
            schemes.add(scheme)


# -- helpers ---------------------------------------------------------------------------


def _converter_clashes(converter: Converter, fix: str) -> list[str]:
    """Describe a conflict between ``converter`` and the process-wide converter table."""
    conflict = converters.find_conflict(converter)
    return [] if conflict is None else [f"{conflict}; {fix}"]


def _check_kind(kind: str) -> Kind:
    for known in KINDS:
        if kind == known:
            return known
    raise PluginError(
        f"unknown plugin kind {kind!r}; expected one of {', '.join(KINDS)}", plugin=str(kind)
    )


def _normalize_distribution(name: str) -> str:
    """Normalize a distribution name as packaging tools compare them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _distribution_name(entry_point: importlib.metadata.EntryPoint) -> str:
    distribution = getattr(entry_point, "dist", None)
    name = distribution.name if distribution is not None else None
    return name if isinstance(name, str) and name else "<unknown>"


def _load_order(entry_point: importlib.metadata.EntryPoint) -> tuple[int, str, str, str]:
    """Sort key: the bundled distribution, then the others by name, then unknown ones."""
    distribution = _distribution_name(entry_point)
    normalized = _normalize_distribution(distribution)
    if normalized == BUNDLED_DISTRIBUTION:
        rank = 0
    elif distribution == "<unknown>":
        rank = 2
    else:
        rank = 1
    return (rank, normalized, entry_point.name, entry_point.value)


def _declaration_record(
    declaration: _Declaration, origin: _Origin, status: Status, reason: str
) -> PluginRecord:
    return PluginRecord(
        kind=declaration.kind,
        name=declaration.name,
        wire_id=declaration.wire_id,
        distribution=origin.distribution,
        entry_point=origin.entry_point,
        status=status,
        reason=reason,
        schemes=declaration.schemes,
    )


def _describe_exception(exc: BaseException) -> str:
    """Format an exception on one line as ``Type: message``."""
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _describe_value(value: object) -> str:
    try:
        shown = _short_repr.repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the real problem
        shown = "<unprintable>"
    return f"{type(value).__name__} {shown}"


# -- the process-wide registry -------------------------------------------------------

_shared_registries: dict[tuple[tuple[str, ...], tuple[str, ...]], Registry] = {}
_shared_lock = threading.Lock()
_loading_state = threading.local()


def get_registry(config: Config | None = None) -> Registry:
    """Return the process-wide registry for the plugin lists of ``config``.

    ``config`` defaults to :meth:`Config.from_environment`. The registry loads on the
    first call and is cached per (``plugins_allow``, ``plugins_block``), so a later call
    with the same lists returns the same object. Safe to call from several threads,
    and only one of them loads. Raises :class:`~ember.kernel.errors.PluginError` when
    called from a plugin's import or hook during such a load.
    """
    if config is None:
        config = Config.from_environment()
    key = (tuple(sorted(config.plugins_allow)), tuple(sorted(config.plugins_block)))

    # A plugin calling get_registry() from its import or a hook would otherwise wait
    # forever on the lock its own loader holds.
    if getattr(_loading_state, "active", False):
        raise PluginError(
            "get_registry() was called while the plugin registry is loading, from a "
            "plugin's import or hook; a plugin must not look up other plugins while it "
            "loads. Look them up when they are used instead"
        )

    with _shared_lock:
        registry = _shared_registries.get(key)
        if registry is None:
            _loading_state.active = True
            try:
                registry = Registry.load(config)
            finally:
                _loading_state.active = False
            _shared_registries[key] = registry
    return registry


def reset_registry() -> None:
    """Forget the process-wide registries, so the next :func:`get_registry` loads the
    entry points again, including plugins installed since the first load. Registries
    already handed out stay usable."""
    with _shared_lock:
        _shared_registries.clear()
