"""Plugins with one deliberate fault each; see pyproject.toml for the list."""
