"""A valid plugin declaring one object of every kind (two transports)."""

from ember.kernel.hookspecs import hookimpl

from .kit import (
    FixtureAuthenticator,
    FixtureResolver,
    InertTransport,
    JsonSerializer,
    SealedTransport,
)


@hookimpl
def ember_serializers():
    return [JsonSerializer()]


@hookimpl
def ember_transports():
    return (InertTransport(), SealedTransport())


@hookimpl
def ember_authenticators():
    return [FixtureAuthenticator()]


@hookimpl
def ember_resolvers():
    return [FixtureResolver()]
