"""Deployment helpers: broker TLS certificates and the compose federation (``deploy/``)."""
