"""Generate the configuration reference, ``docs/configuration.md``, from :data:`SETTINGS`.

The reference is never edited by hand. After changing a setting, regenerate it with::

    python -m ember.kernel.config_reference > docs/configuration.md

A test fails while the committed file differs from :func:`render_markdown`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from ember.kernel.config import ENV_PREFIX, SETTINGS, Setting

__all__ = ["REGENERATE_COMMAND", "format_value", "render_markdown", "type_name"]

#: The shell command that rewrites the committed reference.
REGENERATE_COMMAND = "python -m ember.kernel.config_reference > docs/configuration.md"

_TYPE_NAMES: dict[type, str] = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    tuple: "list of names",
}


def type_name(setting: Setting) -> str:
    """Return the reader-facing name of the setting's type, such as ``"integer"``."""
    return _TYPE_NAMES[setting.kind]


def format_value(setting: Setting, value: object) -> str:
    """Format ``value`` as it would be written in the setting's environment variable.

    A secret setting prints as ``<set>`` or ``<unset>``, never its value. An empty
    string or list prints as ``""``.
    """
    if setting.secret:
        return "<set>" if value not in (None, "", ()) else "<unset>"
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, tuple):
        text = ",".join(str(item) for item in value)
    else:
        text = str(value)
    return text if text else '""'


def render_markdown(settings: Iterable[Setting] = SETTINGS) -> str:
    """Return the configuration reference as Markdown, one section per setting."""
    settings = tuple(settings)
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated from ember/kernel/config.py; do not edit. Regenerate with:",
        f"     {REGENERATE_COMMAND} -->",
        "",
        "ember reads each setting from three sources, and a later source overrides an "
        "earlier one:",
        "",
        "1. the built-in default listed below;",
        f"2. its environment variable, listed below: `{ENV_PREFIX}` followed by the "
        "setting's name in capitals;",
        "3. code, through `Config.replace(...)`.",
        "",
        f"An `{ENV_PREFIX}*` variable that names no setting, or holds a value of the wrong "
        "type or outside the accepted range, is an error that names the variable and the "
        "accepted values. Booleans accept 1, 0, true, false, yes, no, on and off. Lists are "
        "comma-separated names, and an empty variable sets an empty list.",
        "",
        "`ember config` prints the effective value and source of every setting, and "
        "`ember config --defaults` prints the built-in defaults.",
        "",
        "| Setting | Environment variable | Type | Default | Unit |",
        "| --- | --- | --- | --- | --- |",
    ]
    for setting in settings:
        lines.append(
            f"| [`{setting.name}`](#{setting.name}) | `{setting.env_var}` | "
            f"{type_name(setting)} | {_code(format_value(setting, setting.default))} | "
            f"{setting.unit} |"
        )

    for setting in settings:
        lines.extend(_section(setting))
    return "\n".join(lines) + "\n"


def _section(setting: Setting) -> list[str]:
    lines = [
        "",
        f"## `{setting.name}`",
        "",
        setting.doc,
        "",
        f"- Environment variable: `{setting.env_var}`",
        f"- Type: {type_name(setting)}",
        f"- Default: {_code(format_value(setting, setting.default))}",
    ]
    if setting.unit:
        lines.append(f"- Unit: {setting.unit}")
    lines.append(f"- Accepted values: {setting.accepted()}")
    if setting.secret:
        lines.append("- Secret: `ember config` prints only whether it is set")
    return lines


def _code(text: str) -> str:
    """Wrap ``text`` as inline code that is safe inside a Markdown table cell."""
    return "`" + text.replace("|", "\\|") + "`"


if __name__ == "__main__":
    sys.stdout.write(render_markdown())
