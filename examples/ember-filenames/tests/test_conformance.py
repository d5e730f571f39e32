"""The filenames resolver against ember's conformance suite, plus its own file rules.

Run with ``pytest`` from this folder after ``pip install -e .``.
"""

import pytest
from ember_filenames.conformance import CAPABILITIES, make_harness
from ember_filenames.resolver import ENVIRONMENT_VARIABLE, FileNamesResolver

from ember.kernel.errors import UsageError
from ember.testing import ResolverConformance


class TestFileNames(ResolverConformance):
    capabilities = CAPABILITIES

    @pytest.fixture
    def resolver_harness(self, tmp_path):
        return make_harness(FileNamesResolver(), tmp_path)


def test_localhost_form_and_options(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("kv ember+tcp://127.0.0.1:5555/kv\n", encoding="utf-8")

    resolved = FileNamesResolver().resolve(
        f"ember+file://localhost/kv?names={names}&serializer=serpent", {})

    assert resolved == "ember+tcp://127.0.0.1:5555/kv?serializer=serpent"


def test_environment_variable_names_file(tmp_path, monkeypatch):
    names = tmp_path / "names.txt"
    names.write_text("kv ember+tcp://127.0.0.1:5555/kv\n", encoding="utf-8")
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, str(names))

    assert FileNamesResolver().resolve("ember+file://kv", {}) == "ember+tcp://127.0.0.1:5555/kv"


def test_edit_applies_to_next_lookup(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("kv ember+tcp://127.0.0.1:5555/kv\n", encoding="utf-8")
    resolver = FileNamesResolver()
    uri = f"ember+file://kv?names={names}"
    resolver.resolve(uri, {})

    names.write_text("kv ember+tcp://127.0.0.1:6666/kv-moved\n", encoding="utf-8")

    assert resolver.resolve(uri, {}) == "ember+tcp://127.0.0.1:6666/kv-moved"


@pytest.mark.parametrize(("line", "problem"), [
    ("kv", "expected 'NAME DIRECT-URI'"),
    ("kv ember+file://localhost/other", r"points to another ember\+file URI"),
    ("kv not-a-uri", "line 1"),
    ("k/v ember+tcp://127.0.0.1:1/kv", "invalid name"),
])
def test_invalid_names_file_line(tmp_path, line, problem):
    names = tmp_path / "names.txt"
    names.write_text(line + "\n", encoding="utf-8")

    with pytest.raises(UsageError, match=problem):
        FileNamesResolver().resolve(f"ember+file://kv?names={names}", {})
