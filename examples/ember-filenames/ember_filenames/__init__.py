"""ember-filenames: resolve ``ember+file://NAME`` URIs through a text file of names.

The plugin registers through the ``ember`` entry-point group (see ``pyproject.toml``).
"""

from ember_filenames.resolver import ENVIRONMENT_VARIABLE, SCHEME, FileNamesResolver

__all__ = ["ENVIRONMENT_VARIABLE", "FileNamesResolver", "SCHEME"]
