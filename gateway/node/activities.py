"""The processing activity a node's audit records name for a purpose: a URI into this
organisation's register of processing activities (Logboek Dataverwerkingen;
docs/decisions/0098-ldv-lines-one-per-subject-expanded-on-export.md)."""

from __future__ import annotations

from gateway.node.config import NodeConfig

__all__ = ["processing_activity"]


def processing_activity(config: NodeConfig, purpose: str) -> str:
    """``purposes."<CODE>".processing_activity`` of ``config``, else
    ``audit.processing_activities`` + ``/<code in lower case>``, else
    ``urn:zvg:<OIN>:verwerkingsactiviteit:<code in lower case>``."""
    configured = config.purposes.get(purpose)
    if configured is not None:
        return configured.processing_activity
    code = purpose.lower()
    base = config.audit.processing_activities
    if base:
        return f"{base.rstrip('/')}/{code}"
    return f"urn:zvg:{config.node.org}:verwerkingsactiviteit:{code}"
