"""Retention deadlines (gateway/core/retention.py): each deadline says exactly what the store's
retention predicates said, so the store can purge ``WHERE deadline <= now``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.retention import IDEMPOTENCY_KEEP, RetentionPolicy
from gateway.errors import LocalError

T0 = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)
POLICY = RetentionPolicy.of(
    max_age_seconds=7 * 86400,
    max_clock_skew_seconds=300,
    inbox_after_ack_days=30,
    outbox_after_final_days=7,
)

offsets = st.integers(min_value=0, max_value=60 * 86400).map(lambda s: T0 + timedelta(seconds=s))


def test_the_policy_of_the_default_settings() -> None:
    assert POLICY.dedup_window == timedelta(days=7, minutes=5)
    assert POLICY.forget_after(T0) == T0 + timedelta(days=7, minutes=5)
    assert POLICY.inbox_purge_after(T0) == T0 + timedelta(days=30)
    assert POLICY.idempotency_forget_after(T0) == T0 + IDEMPOTENCY_KEEP == T0 + timedelta(days=7)


def test_fractional_days_are_kept_exactly() -> None:
    policy = RetentionPolicy.of(
        max_age_seconds=60,
        max_clock_skew_seconds=0,
        inbox_after_ack_days=0.5,
        outbox_after_final_days=0,
    )
    assert policy.inbox_purge_after(T0) == T0 + timedelta(hours=12)
    assert policy.outbox_purge_after(T0) == T0


@given(expires=offsets, final=st.none() | offsets, now=offsets)
def test_outbox_deadline_is_the_old_purge_predicate(
    expires: datetime, final: datetime | None, now: datetime
) -> None:
    keep = timedelta(days=7)
    old = (final is not None and final + keep <= now) or expires + keep <= now
    assert (POLICY.outbox_purge_after(expires, final) <= now) is old


@given(received=offsets, now=offsets)
def test_dedup_memory_outlives_every_acceptable_replay(received: datetime, now: datetime) -> None:
    # An envelope arriving at `now` can be accepted when iat >= now - max_age and
    # iat <= received + skew (it was accepted at `received`): forget only after that window.
    if POLICY.forget_after(received) > now:
        return
    latest_iat = received + timedelta(seconds=300)
    assert latest_iat <= now - timedelta(days=7)


def test_negative_periods_are_refused() -> None:
    with pytest.raises(LocalError, match="outbox_after_final"):
        RetentionPolicy(timedelta(0), timedelta(0), timedelta(seconds=-1))
