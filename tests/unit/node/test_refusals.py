"""The refusal tally (gateway.node.refusals): who is blamed, what one interval writes, and that a
failed write loses nothing. The store is a real fake (a list, or one that fails); the end-to-end
flood over the real broker is tests/e2e/test_flood.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from gateway.broker.transport import Delivery
from gateway.core.audit import Record
from gateway.core.broker_topology import routing_key
from gateway.core.directory import TrustedDirectory
from gateway.errors import TransientError
from gateway.node.refusals import UNKNOWN_SENDER, Refusals
from gateway.telemetry import setup_telemetry
from gateway.testing.federation import FederationFiles
from gateway.testing.veenstad import org_by_key
from schemas.catalogue import default_catalogue

POL, ZVH = org_by_key("politie").oin, org_by_key("gemeente").oin
OUTSIDER = "00000009999999999000"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class Store:
    """Appends records to a list, or fails like a busy store when ``failing``."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.failing = False

    async def write(self, records: Sequence[Record], _now: datetime) -> None:
        if self.failing:
            raise TransientError("store busy")
        self.records += records


@dataclass
class Tally:
    refusals: Refusals
    store: Store
    clock: Clock
    reader: InMemoryMetricReader
    directory: TrustedDirectory

    def user(self, org: str) -> str:
        member = self.directory.member(org)
        assert member is not None
        return member.broker_user


@pytest.fixture
def tally(federation: FederationFiles) -> Tally:
    directory = TrustedDirectory.first(
        federation.directory.read_bytes(), now=datetime.now(UTC), catalogue=default_catalogue()
    )
    reader = InMemoryMetricReader()
    telemetry = setup_telemetry(org=ZVH, node_id="zvh-1", env={}, metric_readers=[reader])
    store, clock = Store(), Clock()
    refusals = Refusals(
        directory=lambda: directory, telemetry=telemetry, write=store.write, clock=clock
    )
    return Tally(refusals, store, clock, reader, directory)


def delivery(user_id: str | None, key: str) -> Delivery:
    return Delivery(b"junk", "m", user_id, key, redelivered=False, delivery_count=0)


def test_the_sender_is_the_member_the_broker_vouches_for(
    tally: Tally,
) -> None:
    refusals = tally.refusals
    pol_user = tally.user(POL)
    # The user_id's member, even when the routing key names another (the broker checked it).
    assert refusals.sender(delivery(pol_user, routing_key(ZVH, POL))) == POL
    assert refusals.sender(delivery(pol_user, "not a routing key")) == POL
    # No user_id: the routing key's sender (the member's topic permission admits only its own).
    assert refusals.sender(delivery(None, routing_key(ZVH, POL))) == POL
    # Nothing the directory knows: one bounded label, never the claimed name.
    assert refusals.sender(delivery("someone-else", routing_key(ZVH, OUTSIDER))) == UNKNOWN_SENDER
    assert refusals.sender(delivery(None, "junk.junk")) == UNKNOWN_SENDER


async def test_one_interval_gives_one_record_per_sender_with_counts_per_reason(
    tally: Tally,
    caplog: pytest.LogCaptureFixture,
) -> None:
    refusals, store, clock, reader = tally.refusals, tally.store, tally.clock, tally.reader
    pol_user = tally.user(POL)
    first = clock.now
    for n in range(1000):
        refusals.note(
            delivery(pol_user, routing_key(ZVH, POL)), "malformed" if n % 10 else "expired"
        )
        clock.now += timedelta(milliseconds=10)
    refusals.note(delivery(None, "junk.junk"), "malformed")
    caplog.set_level("WARNING")
    assert await refusals.flush() == 2
    by_peer = {r.peer: r for r in store.records}
    assert set(by_peer) == {POL, UNKNOWN_SENDER}
    pol = by_peer[POL]
    assert (pol.name, pol.status, pol.start_time, pol.end_time) == (
        "refusal.summary",
        "rejected",
        first,
        clock.now,
    )
    assert dict(pol.detail) == {"total": 1000, "expired": 100, "malformed": 900}
    assert dict(by_peer[UNKNOWN_SENDER].detail) == {"total": 1, "malformed": 1}
    # Logboek Dataverwerkingen: every record has a trace and a span (its own: it joins no
    # message's trace); issue 17.
    assert all(len(r.trace_id or "") == 32 and len(r.span_id or "") == 16 for r in store.records)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert f"1000 envelope(s) from {POL} " in lines[0]
    assert "expired 100, malformed 900" in lines[0]
    data = reader.get_metrics_data()
    assert data is not None
    points = {
        (p.attributes["sender"], p.attributes["reason"]): p.value  # type: ignore[index,union-attr]  # sum points, attributes set
        for m in data.resource_metrics[0].scope_metrics[0].metrics
        if m.name == "zvg.rejections"
        for p in m.data.data_points
    }
    assert points == {
        (POL, "malformed"): 900,
        (POL, "expired"): 100,
        (UNKNOWN_SENDER, "malformed"): 1,
    }
    # An interval without refusals writes nothing.
    assert await refusals.flush() == 0
    assert len(store.records) == 2


async def test_a_failed_write_keeps_the_tally_for_the_next_interval(
    tally: Tally,
) -> None:
    refusals, store, clock = tally.refusals, tally.store, tally.clock
    pol_user = tally.user(POL)
    first = clock.now
    refusals.note(delivery(pol_user, routing_key(ZVH, POL)), "malformed")
    store.failing = True
    with pytest.raises(TransientError):
        await refusals.flush()
    clock.now += timedelta(minutes=1)
    refusals.note(delivery(pol_user, routing_key(ZVH, POL)), "malformed")
    store.failing = False
    assert await refusals.flush() == 1
    (record,) = store.records
    assert dict(record.detail) == {"total": 2, "malformed": 2}
    assert record.start_time == first
