"""The officer console: a web view of the node's audit log for the security officer, the privacy
officer, the auditor and the contactpunt (docs/console.md).

Off by default; enabled by the ``[console]`` section of node.toml. It runs in the node process on
its own listener, reads the node's store and audit log, and writes only ``console.access`` audit
records about its own use. It sits in the shell layer beside ``gateway.node``.
"""
