"""The demo: five partners of ZVH Veenstad handle case Veenstad-2026-031, from referral to warm
handover (``docs/demo.md``). Run it with ``./scripts/demo`` (``python -m demo``).

Not part of the product: it sits on top of ``gateway``, ``adapters`` and ``schemas`` and nothing
imports it (import-linter contracts in ``pyproject.toml``). Its federation — organisations,
policy, keys, node configs — is the shared fixture :mod:`gateway.testing`, so the demo, the tests
and ``keys_example/`` tell the same story.
"""
