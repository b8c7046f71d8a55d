"""The connector kit's test support (layer: connectors), importable by any connector's tests.

- `plugin`: the conformance suite's fixtures and its parametrisation by declared capabilities
  (`@pytest.mark.needs("read", "incremental")`); a conftest takes it whole with
  `from openfdi.connectors.testing.plugin import *`.
- `harness`: isolated namespaces on real servers (`Harness`) and `register_dialect` to put
  another connector under the suite; `unavailable` skips, or fails under CI=true.
- `canonical`: the typed table and edge values of the round-trip tests.

Needs pytest (the `test` extra); nothing at run time imports this package.
"""
