"""zv-gateway: the node.

``gateway.core`` is the pure core (no I/O, no clock, no randomness of its own); everything else in
this package is the asyncio shell around it: broker transport, local HTTP API, store, telemetry and
the ``zvg`` command line.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
