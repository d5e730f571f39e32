"""The plugin-author guide documents every hook and every check, generated from the code."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from ember.kernel import hookspecs
from ember.testing.docgen import main, render_hooks, update_document
from ember.testing.profiles import CATALOGS

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"


def test_guide_matches_generated_text():
    committed = GUIDE.read_text(encoding="utf-8")

    assert update_document(committed) == committed, (
        "docs/plugins.md is out of date; run python -m ember.testing.docgen docs/plugins.md")


def test_every_hook_specification_documented():
    committed = GUIDE.read_text(encoding="utf-8")
    specifications = sorted(
        name for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
        if name.startswith("ember_")
    )

    assert specifications == sorted(hookspecs.HOOK_NAMES)
    for name in specifications:
        assert inspect.getdoc(getattr(hookspecs, name)), f"{name} has no docstring"
        assert f"### `{name}(" in committed, f"{name} is missing from docs/plugins.md"


@pytest.mark.parametrize("kind", list(CATALOGS))
def test_every_check_documented(kind):
    committed = GUIDE.read_text(encoding="utf-8")

    for check in CATALOGS[kind]:
        assert check.summary, f"{kind} check {check.name} has no summary"
        assert f"| `{check.name}` | {check.summary} |" in committed


def test_markup_converted_to_markdown():
    text = render_hooks()

    assert ":class:" not in text
    assert "``" not in text
    assert "`Serializer`" in text


def test_check_option_reports_stale_guide(tmp_path, capsys):
    stale = tmp_path / "plugins.md"
    stale.write_text(GUIDE.read_text(encoding="utf-8").replace(
        "Declare the serializers this plugin provides.", "Outdated text."), encoding="utf-8")

    assert main([str(stale), "--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    assert main([str(stale)]) == 0
    assert main([str(stale), "--check"]) == 0
