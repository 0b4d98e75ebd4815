"""The node: local HTTP API for adapters, outbox and inbox, receipts, retention
(docs/architecture.md §9).

``config`` reads and checks ``node.toml``; ``store`` is the durable state (SQLite by default);
``service`` holds the send/receive logic around the pure core; ``api`` is the aiohttp app;
``runner`` wires it all into one process (``zvg node run``).
"""
