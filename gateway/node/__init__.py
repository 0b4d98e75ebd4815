"""The node: local HTTP API for adapters, outbox and inbox, receipts, retention
(docs/architecture.md §9).

``config`` reads and checks ``node.toml``; ``store`` is the durable state (SQLite by default,
writes as commands); ``service`` composes the loops (``outbound``, ``inbound``, ``inbox``,
``receipts``, ``receipts_in``, ``retention``, ``gauges``) around the pure core; ``ports`` is the
broker port; ``api`` is the aiohttp app; ``runner`` wires it all into one process
(``zvg node run``).
"""
