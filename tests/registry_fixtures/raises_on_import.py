"""A plugin that must never be imported: the block-list tests prove it is not."""

raise RuntimeError("registry_fixtures.raises_on_import was imported although it is blocked")
