"""Unit tests for @expose, @oneway and the member-name check, without sockets."""

from __future__ import annotations

import pytest

from ember import UsageError, expose, oneway
from ember.remote.exposure import check_member, exposed_members, find_member


@expose
class WholeClass:
    def method(self) -> str:
        return "method"

    @staticmethod
    def helper() -> str:
        return "helper"

    @oneway
    def fire(self) -> None:
        pass

    @property
    def value(self) -> int:
        return 1

    @property
    def writable(self) -> int:
        return self._writable

    @writable.setter
    def writable(self, new: int) -> None:
        self._writable = new

    def _private(self) -> str:
        return "private"

    def __dunder__(self) -> str:
        return "dunder"


class MarkedMembers:
    """Deny by default: only the members marked with @expose are reachable."""

    @expose
    def marked(self) -> str:
        return "marked"

    def unmarked(self) -> str:
        return "unmarked"

    @expose
    @property
    def shown(self) -> str:
        return "shown"

    @property
    def hidden(self) -> str:
        return "hidden"


class Nothing:
    def method(self) -> None:
        pass


def test_exposed_class_lists_public_members() -> None:
    members = exposed_members(WholeClass)

    assert members.methods == {"method", "helper", "fire"}
    assert members.oneway == {"fire"}
    assert members.properties == {"value", "writable"}
    assert members.writable_properties == {"writable"}


def test_unmarked_class_exposes_only_marked() -> None:
    members = exposed_members(MarkedMembers)

    assert members.methods == {"marked"}
    assert members.properties == {"shown"}
    assert members.writable_properties == frozenset()


def test_unmarked_class_exposes_nothing() -> None:
    members = exposed_members(Nothing)

    assert members.methods == frozenset()
    assert members.properties == frozenset()


def test_subclass_inherits_exposed_methods() -> None:
    class Child(WholeClass):
        def extra(self) -> str:
            return "extra"

    # The mark on WholeClass covers what WholeClass defines, not what Child adds.
    assert "method" in exposed_members(Child).methods
    assert "extra" not in exposed_members(Child).methods


def test_metadata_lists_sorted_names() -> None:
    metadata = exposed_members(WholeClass).as_metadata()

    assert metadata == {
        "methods": ["fire", "helper", "method"],
        "oneway": ["fire"],
        "properties": ["value", "writable"],
        "writable_properties": ["writable"],
    }


def test_expose_rejects_private_function() -> None:
    def _hidden() -> None:
        pass

    with pytest.raises(UsageError, match="cannot expose '_hidden'"):
        expose(_hidden)


def test_expose_rejects_non_callable() -> None:
    with pytest.raises(UsageError, match="not int"):
        expose(42)


def test_oneway_rejects_class() -> None:
    with pytest.raises(UsageError, match="@oneway applies to methods"):
        oneway(Nothing)


@pytest.mark.parametrize("kind", ["call", "get", "set"])
@pytest.mark.parametrize(
    "name",
    ["__class__", "__init__", "_private", "__dunder__", "method.__globals__", "a.b.c",
     "", "no_such", "method ", "x" * 300, 42, None],
)
def test_unreachable_names_share_one_message(name: object, kind: str) -> None:
    with pytest.raises(AttributeError) as raised:
        find_member(WholeClass(), "obj", name, kind)

    if isinstance(name, str) and len(name) <= 200:
        assert str(raised.value) == f"object 'obj' has no exposed member {name!r}"
    else:
        assert str(raised.value) == "object 'obj' has no exposed member <invalid name>"


def test_kinds_do_not_mix() -> None:
    instance = WholeClass()

    with pytest.raises(AttributeError):
        find_member(instance, "obj", "method", "get")
    with pytest.raises(AttributeError):
        find_member(instance, "obj", "value", "call")
    with pytest.raises(AttributeError):
        find_member(instance, "obj", "value", "set")


def test_find_member_returns_working_callables() -> None:
    instance = WholeClass()

    assert find_member(instance, "obj", "method", "call")() == "method"
    assert find_member(instance, "obj", "value", "get")() == 1
    find_member(instance, "obj", "writable", "set")(7)
    assert instance.writable == 7


def test_check_member_needs_no_instance() -> None:
    check_member(WholeClass, "obj", "method", "call")

    with pytest.raises(AttributeError, match="no exposed member '__init__'"):
        check_member(WholeClass, "obj", "__init__", "call")


def test_check_member_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown member kind 'delete'"):
        check_member(WholeClass, "obj", "method", "delete")
