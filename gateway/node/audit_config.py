"""``[audit]`` of node.toml: checkpoints, witnessing, subject commitments, LDV processing
activities and the optional OTLP sending to the organisation's Logboek (docs/ops.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

__all__ = ["AuditSettings", "LdvOtlpSettings"]


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class LdvOtlpSettings(_Settings):
    endpoint: Annotated[str, StringConstraints(pattern=r"^https?://[^\s]+$")] | None = None
    """The OTLP/HTTP traces endpoint of this organisation's Logboek Dataverwerkingen (e.g.
    ``http://logboek.internal:4318/v1/traces``): every audit record the node writes from its
    start on is also sent there as OTLP spans with the LDV attributes, one per data subject,
    after it was committed (decision 0103). Unset (the default): nothing is sent."""
    queue_size: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000
    """Spans waiting to be sent at most; more are dropped and counted
    (``zvg_ldv_otlp_total{outcome="dropped"}``): a Logboek that is down never holds up the
    audit log or the node's memory. 10,000 spans are some minutes of a busy node's records; the
    audit log keeps every record, and ``zvg audit export --format ldv`` writes them all."""
    timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10
    """Seconds one send may take (the exporter's own retries of 429/502/503/504 included)."""
    retry_seconds: Annotated[float, Field(gt=0, le=3600)] = 5
    """Seconds before a batch that could not be sent is sent again (meanwhile new spans queue)."""


class AuditSettings(_Settings):
    checkpoint_interval_seconds: Annotated[float, Field(ge=0.5, le=86400)] = 60
    """How often a new checkpoint is signed (when the log grew) and sent to the peers."""
    pseudonym_key_file: Path | None = None
    """A 0600 file with the secret that salts subject commitments; default: in the data dir."""
    witness_answer_timeout_seconds: Annotated[float, Field(ge=1, le=600)] = 30
    """How long ``zvg audit verify --witnesses`` waits for the partners to say which checkpoint
    they cosigned. A partner answers in well under a second when it and the broker are up; 30 s
    rides out a busy partner without keeping the officer waiting long for one that is down."""
    processing_activities: str | None = None
    """Base URI of this organisation's register of processing activities: audit records name a
    purpose without ``purposes."<CODE>".processing_activity`` as ``<this>/<code in lower case>``;
    unset, ``urn:zvg:<OIN>:verwerkingsactiviteit:<code in lower case>`` (decision 0098)."""
    refusal_interval_seconds: Annotated[float, Field(ge=1, le=86400)] = 60
    """How often refused inbound envelopes are summarised: one ``refusal.summary`` audit record
    and one log line per sender per interval, with counts per reason. A minute shows a flood
    quickly while it costs at most 1,440 records a day per sender, however many envelopes."""
    ldv_otlp: LdvOtlpSettings = LdvOtlpSettings()
    """Sending the audit records as OTLP spans to the organisation's Logboek (off by default)."""
