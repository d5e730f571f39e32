"""A plugin whose import fails because a dependency is missing."""

import registry_fixtures_missing_dependency  # noqa: F401
