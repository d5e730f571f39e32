"""A plugin that passes ember's checks but that pluggy rejects on registration.

A decorator supplies an argument named ``config``, so calling the hook without arguments
works, but the signature the decorator exposes names a parameter that the hook
specification does not define. pluggy checks that exposed signature.
"""

import functools

from ember.kernel.hookspecs import hookimpl

from .kit import FixtureResolver, InertTransport


class ArgumentResolver(FixtureResolver):
    name = "argument-names"
    schemes = ("ember+argument",)


class ArgumentTransport(InertTransport):
    name = "argument"


def _supply_config(function):
    @functools.wraps(function)
    def call_with_config():
        return function(config={})

    return call_with_config


# pluggy walks attributes in sorted order, so this valid hook comes first.
@hookimpl
def ember_resolvers():
    return [ArgumentResolver()]


@hookimpl
@_supply_config
def ember_transports(config):
    return [ArgumentTransport()]
