"""A module registered as a plugin that implements no hook at all."""

VERSION = "1.0"
