"""Attacks on the exposure rules: members a subclass adds to an exposed class.

A mark on a class covers what that class defines and inherits. A subclass that is not
marked itself must not make its new or overriding methods reachable, because its author
never marked them.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ember import Daemon, Proxy, expose
from ember.remote.exposure import check_member, exposed_members


@expose
class PublicApi:
    def status(self) -> str:
        return "ok"

    def version(self) -> int:
        return 1


class AdminApi(PublicApi):
    """Not marked: only what PublicApi exposes stays reachable."""

    def delete_everything(self) -> str:
        return "deleted"

    def version(self) -> int:
        return 2

    @expose
    def marked_here(self) -> str:
        return "marked"


@expose
class MarkedAdminApi(AdminApi):
    pass


def test_unmarked_subclass_method_hidden() -> None:
    members = exposed_members(AdminApi)

    assert "delete_everything" not in members.methods
    assert "status" in members.methods
    assert "marked_here" in members.methods


def test_unmarked_override_hidden() -> None:
    assert "version" not in exposed_members(AdminApi).methods


def test_unmarked_subclass_method_rejected() -> None:
    with pytest.raises(AttributeError, match="no exposed member 'delete_everything'"):
        check_member(AdminApi, "admin", "delete_everything", "call")


def test_marked_subclass_exposes_all() -> None:
    members = exposed_members(MarkedAdminApi)

    assert members.methods == {"status", "version", "delete_everything", "marked_here"}


def test_subclass_method_unreachable_remotely(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon()
    uri = daemon.register(AdminApi(), object_id="admin")

    with Proxy(uri) as proxy:
        assert proxy.status() == "ok"
        with pytest.raises(AttributeError, match="delete_everything"):
            proxy._ember_invoke("delete_everything", (), {})
