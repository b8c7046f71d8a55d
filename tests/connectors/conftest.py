"""Fixtures for the connector conformance suite: the importable kit in
`openfdi.connectors.testing` (isolated namespaces per test and dialect, parametrisation by
declared capabilities). An unreachable server skips its tests, except under CI=true."""

from openfdi.connectors.testing.plugin import *  # noqa: F403
