"""Fixtures, not product: the federation "ZVH Veenstad" for tests, benchmarks, the demo and the
compose example (``docs/decisions/0090-demo-outside-the-product-fixtures-in-gateway-testing.md``).

- :mod:`gateway.testing.veenstad` — its five organisations and the policy they agreed;
- :mod:`gateway.testing.federation` — writes the federation to disk (administrator keys, member
  keys, the signed directory), as ``keys_example/`` was made;
- :mod:`gateway.testing.nodes` — writes a ``node.toml`` for one of its organisations.

Nothing a node runs imports this package (an import-linter contract in ``pyproject.toml`` checks
it); only ``gateway.deploy.compose``, which prepares the compose example, does. It lives inside
``gateway`` for that reason: the compose generator ships with the product, and the product
imports nothing from outside its three packages.
"""
