"""The pure core: bytes, keys and an explicit ``now`` in; values out.

Nothing in this package imports asyncio, aio_pika, aiohttp or opentelemetry, reads the clock, the
environment or a random source on its own. Everything security-relevant is decided here and
unit-tested without a broker. A test (tests/unit/core/test_core_purity.py) enforces the import rule.
"""
