"""A plugin whose hook looks up the process-wide registry while it is being loaded."""

from ember.kernel.hookspecs import hookimpl
from ember.kernel.registry import get_registry


@hookimpl
def ember_serializers():
    get_registry()
    return []
