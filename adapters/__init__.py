"""Partner-side connectors. They depend on ``schemas`` and the node's HTTP API only, never on
``gateway`` internals (a test enforces this)."""
