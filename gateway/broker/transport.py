"""Broker transport on aio-pika 10: a confirming :class:`Publisher`, a settling :class:`Consumer`.

Design: docs/architecture.md §8 and docs/ops/broker.md. Guarantees:

- **Publishing** returns only once the broker has *confirmed* the message (publisher confirms),
  with at most ``max_in_flight`` publishes awaiting a confirm at a time (pipelined, bounded).
  Every publish is ``mandatory``: a message no queue is bound for raises :class:`UnroutableError`
  instead of vanishing. A nack (the recipient's queue is full: ``overflow reject-publish``) raises
  :class:`PublishNackedError`. If the connection drops before the confirm, the publish is retried on
  the restored channel until ``republish_deadline_s``; after that, or when a confirm does not
  come within ``confirm_timeout_s``, :class:`PublishUnconfirmedError` says the outcome is *unknown*
  (the outbox retries, the receiver dedupes by sender and message id). Properties are exactly
  ``user_id`` (our broker user), ``message_id``, ``content_type`` ``application/jose+json``,
  persistent ``delivery_mode`` and ``expiration`` from the envelope's ``exp`` — no headers, so
  no purpose, case or trace travels in clear.
- **Consuming** uses manual acks with a prefetch bound. Every message becomes a frozen
  :class:`Delivery`; the consumer itself rejects (dead-letters) a message whose AMQP ``user_id``
  is missing or is not the broker user of the envelope's sender (RabbitMQ refuses a *wrong*
  ``user_id`` but accepts none at all), and otherwise asks the node's handler for a
  :data:`~gateway.core.decisions.Decision`. :meth:`Consumer._settle` is the single place where a
  decision becomes ack (Deliver), nack without requeue (Reject → dead-letter) or requeue (Retry).
  It logs a dead-letter at DEBUG only; ``on_settled`` is how its owner counts them.
- **One consumer per queue**: an inbox is a single-active-consumer queue, and for such a queue
  the ``consumer_count`` of a passive declare counts only the *active* consumer (RabbitMQ 3.x:
  waiting consumers are not counted; checked on 3.10). The consumer therefore registers only
  when that count is 0; otherwise it is ``standby``: it logs so once, registers nothing and
  checks every ``standby_check_s`` seconds, taking over (and saying so) when the count drops to
  0. After a reconnect the robust channel re-registers it by itself; if the passive declare that
  precedes the re-registration counted another active consumer, it cancels again and stands by.
  So a second node process of one organisation takes nothing, even from an inbox made before
  single-active-consumer; two processes registering within the same moment both think they are
  active, and the broker's single-active-consumer still delivers to one only.
- **Reconnects**: connections are aio-pika *robust* connections; channels, the consumer and
  the prefetch setting are restored after a broker restart or a dropped connection. Given
  several members of a cluster, a connection reconnects to the next member after losing one
  (``gateway/broker/cluster.py``); publishes interrupted by the switch are sent again on the new
  member like after any reconnect, and the receiver dedupes the ones whose confirm was lost.
  aio-pika does not replay failed publishes (we do, above), holds channels weakly (we keep
  references) and raises on acks across a reconnect (we log it and rely on the broker's
  redelivery, which the next :class:`Delivery` shows as ``redelivered`` with a higher
  ``delivery_count``).

Nothing here logs message bodies; logs carry message ids and coarse reasons only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import aiormq
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustQueue,
)
from aio_pika.connection import make_url
from aiormq.exceptions import (
    AMQPConnectionError,
    AuthenticationError,
    ChannelAccessRefused,
    ChannelClosed,
    ChannelInvalidStateError,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
    DeliveryError,
    ProbableAuthenticationError,
    PublishError,
)

from gateway.broker.cluster import ClusterConnection
from gateway.core import broker_topology as topology
from gateway.core.decisions import Decision, Deliver, Reject, Retry
from gateway.errors import LocalError, RemoteError, TransientError

__all__ = [
    "CONFIRM_TIMEOUT_S",
    "CONNECT_TIMEOUT_S",
    "DEFAULT_PREFETCH",
    "MAX_IN_FLIGHT",
    "MAX_RETRY_DELAY_S",
    "RECONNECT_INTERVAL_S",
    "REPUBLISH_DEADLINE_S",
    "STANDBY_CHECK_S",
    "BrokerEndpoint",
    "Consumer",
    "ConsumerRole",
    "ConsumerStats",
    "Delivery",
    "Handler",
    "MessageExpiredError",
    "PublishNackedError",
    "PublishRefusedError",
    "PublishUnconfirmedError",
    "Publisher",
    "PublisherStats",
    "UnroutableError",
    "connect",
    "tls_context",
]

log = logging.getLogger("gateway.broker")

# ------------------------------------------------------------------------------ named limits

MAX_IN_FLIGHT = 256
"""Publishes awaiting a broker confirm at once. Pipelining is what makes confirms fast (measured
on 2 cores: ≈ 5,000-11,000 msg/s pipelined vs ≈ 1,100-2,100 awaiting each one); the bound keeps
memory and the amount of possibly-duplicated work after a dropped connection small."""

CONFIRM_TIMEOUT_S = 30.0
"""Seconds to wait for one confirm on a live connection before calling the outcome unknown.
A healthy broker confirms in milliseconds; 30 s rides out a disk stall or a quorum election."""

REPUBLISH_DEADLINE_S = 60.0
"""Seconds :meth:`Publisher.publish` keeps retrying across dropped connections before it gives
up with :class:`PublishUnconfirmedError` (the outbox retries later). Covers a broker restart."""

DEFAULT_PREFETCH = 64
"""Unacked messages the broker hands one consumer at once: bounds the node's memory and the
concurrency of inbound handling while keeping the pipe full."""

MAX_RETRY_DELAY_S = 30.0
"""Longest a :class:`~gateway.core.decisions.Retry` holds a message before requeueing it. The
message occupies a prefetch slot meanwhile, so a long wait would starve the consumer."""

STANDBY_CHECK_S = 5.0
"""Seconds between a standby consumer's checks whether the active consumer of its queue is gone.
This is how long an organisation's messages wait in the queue (durably) after its active node
process stopped before the standby takes them; one check is one passive queue declare."""

RECONNECT_INTERVAL_S = 1.0
"""Pause between reconnection attempts of a robust connection (aio-pika's default is 5 s)."""

CONNECT_TIMEOUT_S = 10.0
"""Seconds the first connection attempt may take before it counts as failed."""

HEARTBEAT_S = 30
"""AMQP heartbeat: a silently dead TCP connection is noticed within about two intervals."""

_MAX_EXPIRATION_MS = 2**32 - 1
"""RabbitMQ refuses (channel error) a per-message TTL above 2^32-1 ms (≈ 49 days)."""

_CLOSE_GRACE_S = 10.0
"""Seconds :meth:`Consumer.close` lets in-flight handlers finish before cancelling them."""

_DECLARE_TIMEOUT_S = 10.0
"""Seconds a passive declare (depth gauge, standby check) may take; a healthy broker answers in
milliseconds, and a check that gets no answer is simply made again later."""

_RETRY_AFTER_FAILURE_S = 1.0
"""Delay before requeueing a message whose handler raised instead of returning a decision."""

_PERSISTENT = 2


# ------------------------------------------------------------------------------ errors


class PublishNackedError(TransientError):
    """The broker refused to take the message (the recipient's queue is full); retry later."""


class PublishUnconfirmedError(TransientError):
    """No confirm arrived (timeout, or connection lost past the deadline): outcome *unknown*.

    The message may or may not have been routed; publishing it again is safe because the
    receiver dedupes by ``(sender, message id)``.
    """


class UnroutableError(LocalError):
    """No queue is bound for the routing key (recipient not provisioned on this broker)."""


class PublishRefusedError(LocalError):
    """The broker refused the publish itself (permissions, ``user_id``, missing exchange)."""


class MessageExpiredError(LocalError):
    """The envelope's ``exp`` passed before it could be published; it must not be sent."""


# ------------------------------------------------------------------------------ connection


@dataclass(frozen=True, slots=True)
class BrokerEndpoint:
    """Where and as whom a node connects.

    ``password=None`` logs in with the TLS client certificate (SASL ``EXTERNAL``; the broker maps
    the certificate's CN to ``user``), which needs ``tls`` with a client certificate loaded.
    """

    host: str
    port: int
    vhost: str
    user: str
    password: str | None = field(default=None, repr=False)
    tls: ssl.SSLContext | None = None
    others: tuple[tuple[str, int], ...] = ()
    """Further members of the same cluster (host, port): same vhost, login and TLS."""

    @property
    def members(self) -> tuple[tuple[str, int], ...]:
        """Every member address, ``(host, port)`` first."""
        return ((self.host, self.port), *self.others)


def tls_context(
    ca_file: str, cert_file: str | None = None, key_file: str | None = None
) -> ssl.SSLContext:
    """A client TLS context: verifies the broker's certificate and host name against ``ca_file``,
    TLS 1.2 or newer, and presents ``cert_file``/``key_file`` when given (client-certificate
    login). Raises :class:`LocalError` when a file cannot be loaded."""
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if cert_file is not None:
            context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise LocalError(f"cannot load TLS files: {exc.strerror or exc}") from None
    return context


async def connect(
    endpoint: BrokerEndpoint,
    *,
    name: str = "zvg-node",
    reconnect_interval_s: float = RECONNECT_INTERVAL_S,
    timeout_s: float = CONNECT_TIMEOUT_S,
) -> AbstractRobustConnection:
    """Open a robust connection (reconnects by itself after the first success).

    With several cluster members (``endpoint.others``) the first connection tries each once, in
    order, and the connection then reconnects round the members: after losing one it tries the
    next (:class:`~gateway.broker.cluster.ClusterConnection`).

    Raises :class:`LocalError` when the broker refuses the login, when no password is given
    without a client certificate, or when the TLS handshake fails with a TLS alert (wrong CA,
    missing certificate). :class:`TransientError` when it cannot be reached — which is also what
    a broker that drops the connection mid-handshake without an alert looks like (TLS 1.3 checks
    the client certificate after the client considers the handshake done, so which of the two a
    refused certificate produces is a race).
    """
    options: dict[str, Any] = {"heartbeat": HEARTBEAT_S, "reconnect_interval": reconnect_interval_s}
    if endpoint.password is None:
        if endpoint.tls is None:
            raise LocalError("a broker login without password needs TLS with a client certificate")
        options["auth"] = "external"
    urls = [
        make_url(
            host=host,
            port=port,
            login=endpoint.user,
            password=endpoint.password or "",
            virtualhost=endpoint.vhost,
            ssl=endpoint.tls is not None,
            **options,
        )
        for host, port in endpoint.members
    ]
    # The first connection tries each member once, in order; the connection it makes then
    # moves round the members by itself on every reconnection (ClusterConnection).
    last = len(urls) - 1
    for start in range(last):
        with contextlib.suppress(TransientError):
            return await _connect_member(urls, start, endpoint, name, options, timeout_s)
    return await _connect_member(urls, last, endpoint, name, options, timeout_s)


async def _connect_member(
    urls: list[Any],
    start: int,
    endpoint: BrokerEndpoint,
    name: str,
    options: dict[str, Any],
    timeout_s: float,
) -> AbstractRobustConnection:
    host, port = endpoint.members[start]
    # What aio_pika.connect_robust does, keeping hold of the connection: its first attempt runs
    # in a task of aio-pika's own that outlives a cancelled connect() and swallows further
    # cancellation until the connection is closed (a SIGTERM during the first connect left the
    # node process running for ever), so whatever ends the attempt early closes it.
    connection = ClusterConnection(
        urls,
        start=start,
        ssl_context=endpoint.tls,
        client_properties={"connection_name": name},
        **options,
    )
    try:
        try:
            await connection.connect(timeout=timeout_s)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(connection.close())
            raise
        return connection
    except (AuthenticationError, ProbableAuthenticationError) as exc:
        raise LocalError(f"broker refused the login of {endpoint.user!r}: {exc}") from None
    except (AMQPConnectionError, OSError, TimeoutError) as exc:
        # aiormq wraps socket errors; a TLS error underneath is a trust/config problem.
        tls_error = exc if isinstance(exc, ssl.SSLError) else exc.__cause__
        if isinstance(tls_error, ssl.SSLError):
            raise LocalError(f"TLS handshake with the broker failed: {tls_error.reason}") from None
        where = f" ({host}:{port})" if endpoint.others else ""
        raise TransientError(f"broker unreachable{where}: {type(exc).__name__}") from None


# ------------------------------------------------------------------------------ publisher


@dataclass(slots=True)
class PublisherStats:
    """Counters for metrics and tests (monotonic, never reset)."""

    confirmed: int = 0
    republished: int = 0
    nacked: int = 0
    returned: int = 0
    unconfirmed: int = 0


def _utc_now() -> datetime:
    return datetime.now(UTC)


# A publish that failed because the connection or channel went away: retried after reconnect.
_CONNECTION_LOST: tuple[type[BaseException], ...] = (
    AMQPConnectionError,
    ConnectionError,
    ChannelInvalidStateError,
    ChannelClosed,
)
# A passive declare or a cancel that did not get its answer (the robust channel is coming back).
_CHECK_FAILED: tuple[type[BaseException], ...] = (*_CONNECTION_LOST, TimeoutError)
_STANDBY_CHECK_FAILED: tuple[type[BaseException], ...] = (TransientError, *_CHECK_FAILED)
# A publish the broker refused by closing the channel: our configuration, not the network.
_REFUSED: tuple[type[BaseException], ...] = (
    ChannelAccessRefused,
    ChannelPreconditionFailed,
    ChannelNotFoundEntity,
)


class Publisher:
    """Publishes envelopes for one organisation with confirms (see the module docstring).

    Use as ``async with Publisher(conn, org=..., broker_user=...) as publisher:`` or call
    :meth:`start` / :meth:`close`. Safe to call :meth:`publish` from many tasks at once.
    """

    def __init__(
        self,
        connection: AbstractRobustConnection,
        *,
        org: str,
        broker_user: str,
        exchange: str = topology.ENVELOPE_EXCHANGE,
        max_in_flight: int = MAX_IN_FLIGHT,
        confirm_timeout_s: float = CONFIRM_TIMEOUT_S,
        republish_deadline_s: float = REPUBLISH_DEADLINE_S,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if max_in_flight < 1:
            raise LocalError("max_in_flight must be at least 1")
        self._connection = connection
        self._org = topology.check_org(org)
        self._broker_user = broker_user
        self._exchange = exchange
        self._window = asyncio.Semaphore(max_in_flight)
        self._confirm_timeout_s = confirm_timeout_s
        self._republish_deadline_s = republish_deadline_s
        self._clock = clock
        # aio-pika keeps channels in a WeakSet: this reference keeps ours (and its restoration)
        # alive for as long as the publisher lives.
        self._channel: AbstractRobustChannel | None = None
        # Message ids with a publish awaiting its confirm. aiormq matches a basic.return to its
        # publish *by message id*, so two concurrent publishes of one id (one per recipient)
        # could swap a "returned" for a "confirmed"; one id is in flight at a time.
        self._busy_ids: dict[str, asyncio.Event] = {}
        self.stats = PublisherStats()

    async def __aenter__(self) -> Publisher:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the confirming channel. Raises :class:`TransientError` if the broker is gone."""
        if self._channel is not None:
            return
        try:
            self._channel = await self._connection.channel(
                publisher_confirms=True, on_return_raises=True
            )
        except _CONNECTION_LOST as exc:
            raise TransientError(f"cannot open a channel: {type(exc).__name__}") from None

    @property
    def connected(self) -> bool:
        """Whether the confirming channel is open (``gateway.node.ports.BrokerPort``)."""
        return self._channel is not None and not self._channel.is_closed

    async def close(self) -> None:
        """Close the channel. Publishes still waiting for a confirm fail as unconfirmed."""
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(*_CONNECTION_LOST):
                await channel.close()

    async def publish(
        self,
        routing: str,
        body: bytes,
        *,
        message_id: str,
        expiration: datetime,
        content_type: str = topology.CONTENT_TYPE,
    ) -> None:
        """Publish ``body`` with routing key ``routing`` and return once the broker confirmed it.

        ``routing`` is ``<recipient-oin>.<our-oin>``; ``expiration`` is the envelope's ``exp``
        (timezone-aware) and becomes the per-message TTL. Raises :class:`LocalError` for a
        routing key that does not name us as sender, an empty message id or a naive datetime
        (before anything is sent); :class:`MessageExpiredError`, :class:`UnroutableError`,
        :class:`PublishRefusedError` (do not retry); :class:`PublishNackedError`,
        :class:`PublishUnconfirmedError` (retry later; the latter may have been delivered).
        """
        try:
            _, sender = topology.split_routing_key(routing)
        except RemoteError:
            raise LocalError("routing key must be <recipient-oin>.<sender-oin>") from None
        if sender != self._org:
            raise LocalError("routing key names another organisation as sender")
        if not message_id:
            raise LocalError("message_id must not be empty")
        if content_type not in topology.CONTENT_TYPES:
            raise LocalError(f"content type {content_type!r} is not one the federation uses")
        if expiration.tzinfo is None:
            raise LocalError("expiration must be a timezone-aware datetime")
        channel = self._channel
        if channel is None:
            raise LocalError("Publisher.start() was not called")

        while (busy := self._busy_ids.get(message_id)) is not None:
            await busy.wait()
        done = self._busy_ids[message_id] = asyncio.Event()
        try:
            async with self._window:
                await self._publish_until_confirmed(
                    channel, routing, body, message_id, expiration, content_type
                )
        finally:
            del self._busy_ids[message_id]
            done.set()

    async def _publish_until_confirmed(
        self,
        channel: AbstractRobustChannel,
        routing: str,
        body: bytes,
        message_id: str,
        expiration: datetime,
        content_type: str,
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._republish_deadline_s
        while True:
            properties = aiormq.spec.Basic.Properties(
                content_type=content_type,
                delivery_mode=_PERSISTENT,
                message_id=message_id,
                user_id=self._broker_user,
                expiration=self._ttl_ms(expiration, message_id),
            )
            try:
                underlay = await channel.get_underlay_channel()
                await underlay.basic_publish(
                    body,
                    exchange=self._exchange,
                    routing_key=routing,
                    properties=properties,
                    mandatory=True,
                    timeout=self._confirm_timeout_s,
                )
            except PublishError:
                self.stats.returned += 1
                raise UnroutableError(
                    f"message {message_id}: no queue bound for {routing}"
                ) from None
            except DeliveryError:
                self.stats.nacked += 1
                raise PublishNackedError(
                    f"message {message_id}: broker nacked (queue full?)"
                ) from None
            except TimeoutError:
                self.stats.unconfirmed += 1
                raise PublishUnconfirmedError(
                    f"message {message_id}: no confirm within {self._confirm_timeout_s} s"
                ) from None
            except _REFUSED as exc:
                raise PublishRefusedError(f"message {message_id}: broker refused: {exc}") from None
            except _CONNECTION_LOST as exc:
                if self._channel is not channel:  # closed by us: nothing will reopen it
                    self.stats.unconfirmed += 1
                    raise PublishUnconfirmedError(
                        f"message {message_id}: publisher closed before the confirm"
                    ) from None
                remaining = deadline - loop.time()
                log.debug(
                    "publish of %s interrupted (%s); retrying after reconnect",
                    message_id,
                    type(exc).__name__,
                )
                if remaining <= 0 or not await _wait_ready(channel, remaining):
                    self.stats.unconfirmed += 1
                    raise PublishUnconfirmedError(
                        f"message {message_id}: connection lost, not confirmed within "
                        f"{self._republish_deadline_s} s"
                    ) from None
                self.stats.republished += 1
                continue
            self.stats.confirmed += 1
            return

    def _ttl_ms(self, expiration: datetime, message_id: str) -> str:
        remaining_ms = math.floor((expiration - self._clock()).total_seconds() * 1000)
        if remaining_ms <= 0:
            raise MessageExpiredError(f"message {message_id} expired before it was confirmed")
        return str(min(remaining_ms, _MAX_EXPIRATION_MS))


async def _wait_ready(channel: AbstractRobustChannel, timeout_s: float) -> bool:
    """Wait until the robust channel is open again; False on timeout or when it was closed."""
    try:
        await asyncio.wait_for(channel.ready(), timeout_s)
    except TimeoutError:
        return False
    return not channel.is_closed


# ------------------------------------------------------------------------------ consumer


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message as the broker delivered it. ``body`` is the envelope bytes, untouched.

    ``user_id`` is the AMQP ``user_id`` (the broker checked it against the publisher's login, if
    present); ``delivery_count`` is the quorum queue's ``x-delivery-count`` (0 on the first
    delivery); ``redelivered`` is set when the broker handed it out before. The node must expect
    duplicates: a settlement can be lost across a reconnect, and the redelivery may even arrive
    while the handling of the first delivery is still running.
    """

    body: bytes = field(repr=False)
    message_id: str | None
    user_id: str | None
    routing_key: str
    redelivered: bool
    delivery_count: int
    content_type: str = topology.CONTENT_TYPE


ConsumerRole = Literal["stopped", "active", "standby"]
"""``active``: registered on the queue and (as far as the broker shows) its one active consumer;
``standby``: another consumer is active, this one waits without registering; ``stopped``: not
started, or closed."""

Handler = Callable[[Delivery], Awaitable[Decision]]
"""The node's inbound pipeline: returns a decision; should not raise (see :class:`Consumer`)."""


@dataclass(slots=True)
class ConsumerStats:
    """Counters for metrics and tests (monotonic, never reset)."""

    delivered: int = 0
    rejected: int = 0
    retried: int = 0
    redeliveries: int = 0
    settle_lost: int = 0


class Consumer:
    """Consumes one queue and settles the node's decisions (see the module docstring).

    Before the handler runs, a message is rejected (dead-lettered, reason ``unknown_sender``
    or the :class:`RemoteError` reason of ``sender_of``) when its AMQP ``user_id`` is missing,
    when ``sender_of(body)`` fails, when ``broker_user_of(sender)`` is ``None`` or differs from the
    ``user_id``, or when the routing key names another sender. If the handler raises instead of
    returning a decision, a :class:`RemoteError` becomes ``Reject(reason, detail)`` and anything
    else ``Retry`` (logged); the queue's delivery limit stops endless retries.

    ``on_settled(delivery, decision)`` (optional) is called after the broker was told; it is
    not called when the settlement was lost (the broker redelivers instead).

    :attr:`role` says whether it consumes or stands by while another consumer is active (see
    the module docstring); ``standby_check_s`` is the pause between a standby's checks.
    """

    def __init__(
        self,
        connection: AbstractRobustConnection,
        *,
        queue: str,
        handler: Handler,
        sender_of: Callable[[bytes], str],
        broker_user_of: Callable[[str], str | None],
        prefetch: int = DEFAULT_PREFETCH,
        on_settled: Callable[[Delivery, Decision], None] | None = None,
        max_retry_delay_s: float = MAX_RETRY_DELAY_S,
        standby_check_s: float = STANDBY_CHECK_S,
    ) -> None:
        if prefetch < 1:
            raise LocalError("prefetch must be at least 1")
        if standby_check_s <= 0:
            raise LocalError("standby_check_s must be positive")
        self._connection = connection
        self._queue_name = queue
        self._handler = handler
        self._sender_of = sender_of
        self._broker_user_of = broker_user_of
        self._prefetch = prefetch
        self._on_settled = on_settled
        self._max_retry_delay_s = max_retry_delay_s
        self._channel: AbstractRobustChannel | None = None  # strong reference, see Publisher
        self._queue: AbstractRobustQueue | None = None
        self._consumer_tag: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._standby_check_s = standby_check_s
        self._role: ConsumerRole = "stopped"
        self._role_lock = asyncio.Lock()
        self._watch: asyncio.Task[None] | None = None
        self.stats = ConsumerStats()

    @property
    def role(self) -> ConsumerRole:
        """``active``, ``standby`` or ``stopped`` (see :data:`ConsumerRole`)."""
        return self._role

    async def __aenter__(self) -> Consumer:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Start consuming. Raises :class:`LocalError` when the queue does not exist or we may not
        read it, :class:`TransientError` when the broker is gone."""
        if self._channel is not None:
            return
        try:
            channel = await self._connection.channel(publisher_confirms=False)
            self._channel = channel
            await channel.set_qos(prefetch_count=self._prefetch)
            # Passive: nodes may not declare (configure ^$); robust: re-checked after reconnects.
            self._queue = queue = await channel.declare_queue(self._queue_name, passive=True)
            channel.reopen_callbacks.add(self._on_reopen)
            async with self._role_lock:
                await self._take_role(queue, _active_consumers(queue.declaration_result))
        except ChannelNotFoundEntity:
            await self._abandon()
            raise LocalError(f"queue {self._queue_name} does not exist: provision it") from None
        except ChannelAccessRefused:
            await self._abandon()
            raise LocalError(f"the broker user may not read {self._queue_name}") from None
        except _CONNECTION_LOST as exc:
            await self._abandon()
            raise TransientError(f"cannot start consuming: {type(exc).__name__}") from None
        self._watch = asyncio.get_running_loop().create_task(
            self._watch_standby(), name=f"standby {self._queue_name}"
        )

    async def message_count(self) -> int:
        """Messages ready in the consumed queue (a passive re-declare; for the depth gauge).
        Raises :class:`TransientError` when not started or the broker is gone."""
        declared = await self._declare()
        return int(declared.message_count or 0)

    async def _declare(self) -> aiormq.spec.Queue.DeclareOk:
        """A passive declare of our queue, sent to the broker. (``channel.declare_queue`` on a
        robust channel answers a passive declare of a queue it knows from memory.)"""
        channel, queue = self._channel, self._queue
        if channel is None or channel.is_closed or queue is None:
            raise TransientError("not consuming")
        try:
            return await queue.declare(timeout=_DECLARE_TIMEOUT_S)
        except _CHECK_FAILED as exc:
            raise TransientError(f"cannot declare the queue: {type(exc).__name__}") from None

    async def _take_role(self, queue: AbstractRobustQueue, others: int) -> None:
        """Register when no other consumer is active (``others`` from a passive declare made
        before registering), else stand by. Call with the role lock held."""
        if others:
            self._stand_by("another consumer is active")
            return
        self._consumer_tag = await queue.consume(self._on_message, no_ack=False)
        if self._role == "standby":
            log.warning(
                "took over %s as its active consumer (the one before it is gone)",
                self._queue_name,
            )
        self._role = "active"

    def _stand_by(self, why: str) -> None:
        if self._role != "standby":
            log.warning(
                "%s on %s (a second node process for this organisation?): this process waits "
                "as standby and takes over when it is gone",
                why,
                self._queue_name,
            )
        self._role = "standby"

    async def _watch_standby(self) -> None:
        """While standby, check every ``standby_check_s`` whether the active consumer is gone."""
        while True:
            await asyncio.sleep(self._standby_check_s)
            if self._role != "standby":
                continue
            try:
                async with self._role_lock:
                    queue = self._queue
                    if self._role == "standby" and queue is not None:
                        await self._take_role(queue, _active_consumers(await self._declare()))
            except _STANDBY_CHECK_FAILED as exc:
                # The robust connection is coming back; the next check will tell.
                log.debug("standby check of %s failed (%s)", self._queue_name, exc)
            except Exception as exc:  # noqa: BLE001 - the watch must outlive a broker refusal
                log.warning("standby check of %s failed: %s", self._queue_name, exc)

    def _on_reopen(self, _channel: object) -> None:
        """After the robust channel came back: it has re-registered our consumer, right after a
        passive declare. If that declare counted another active consumer, the queue moved on
        without us: step back (in a task: the channel's restoration is still running)."""
        queue = self._queue
        if self._role != "active" or queue is None:
            return
        if _active_consumers(queue.declaration_result):
            task = asyncio.get_running_loop().create_task(self._step_back())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _step_back(self) -> None:
        async with self._role_lock:
            queue, tag = self._queue, self._consumer_tag
            if self._role != "active" or queue is None or tag is None:
                return
            self._consumer_tag = None
            self._stand_by("another consumer became active while this one was disconnected")
            with contextlib.suppress(*_CHECK_FAILED):
                await queue.cancel(tag)

    async def _abandon(self) -> None:
        self._role = "stopped"
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
        channel, self._channel, self._queue = self._channel, None, None
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(*_CONNECTION_LOST):
                await channel.close()

    async def close(self, grace_s: float = _CLOSE_GRACE_S) -> None:
        """Stop taking messages, let in-flight handlers settle for up to ``grace_s`` seconds,
        then cancel the rest (the broker redelivers whatever was not settled)."""
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
        queue, tag = self._queue, self._consumer_tag
        if queue is not None and tag is not None:
            with contextlib.suppress(*_CONNECTION_LOST, TimeoutError):
                await queue.cancel(tag, timeout=grace_s)
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._consumer_tag = None
        await self._abandon()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # aiormq cancels running consumer callbacks when the channel closes; the node's handling
        # (an inbox write, say) must not be torn in half by that, so it runs in a task of its
        # own that this callback does not await (prefetch already bounds how many run).
        task = asyncio.get_running_loop().create_task(self._process(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _process(self, message: AbstractIncomingMessage) -> None:
        delivery = _delivery(message)
        if delivery.redelivered or delivery.delivery_count:
            self.stats.redeliveries += 1
        try:
            decision: Decision | None = self._check_sender(delivery)
        except Exception:
            # A bug in sender_of/broker_user_of must not leave the message unsettled (it would
            # hold a prefetch slot until the connection drops): retry, bounded by delivery-limit.
            log.exception("sender check failed on message %s; requeueing", delivery.message_id)
            decision = Retry(_RETRY_AFTER_FAILURE_S)
        if decision is None:
            decision = await self._decide(delivery)
        await self._settle(message, delivery, decision)

    def _check_sender(self, delivery: Delivery) -> Reject | None:
        if not delivery.user_id:
            return Reject("unknown_sender", "message has no AMQP user_id")
        try:
            _, routed_sender = topology.split_routing_key(delivery.routing_key)
            if delivery.content_type == topology.WITNESS_CONTENT_TYPE:
                # Witnessing notes name no sender of their own: the routing key's sender (which
                # the broker's topic permission ties to the publisher) must match the user_id.
                sender = routed_sender
            elif delivery.content_type == topology.CONTENT_TYPE:
                sender = self._sender_of(delivery.body)
            else:
                return Reject("malformed", "unexpected content type")
        except RemoteError as exc:
            return Reject(exc.reason, exc.detail)
        expected = self._broker_user_of(sender)
        if expected is None:
            return Reject("unknown_sender", "sender has no broker user in the directory")
        if delivery.user_id != expected:
            return Reject("unknown_sender", "AMQP user_id is not the sender's broker user")
        if routed_sender != sender:
            return Reject("invalid_claims", "routing key names another sender than the envelope")
        return None

    async def _decide(self, delivery: Delivery) -> Decision:
        try:
            return await self._handler(delivery)
        except RemoteError as exc:
            return Reject(exc.reason, exc.detail)
        except Exception:
            log.exception("handler failed on message %s; requeueing", delivery.message_id)
            return Retry(_RETRY_AFTER_FAILURE_S)

    async def _settle(
        self, message: AbstractIncomingMessage, delivery: Delivery, decision: Decision
    ) -> None:
        """The one place where a decision reaches the broker."""
        try:
            match decision:
                case Deliver():
                    await message.ack()
                    self.stats.delivered += 1
                case Reject(reason=reason, detail=detail):
                    # Per message at DEBUG only: a flood would write a line per junk envelope.
                    # The node counts and summarises refusals through on_settled.
                    log.debug(
                        "dead-lettering message %s: %s (%s)", delivery.message_id, reason, detail
                    )
                    await message.reject(requeue=False)
                    self.stats.rejected += 1
                case Retry(after_seconds=after):
                    await asyncio.sleep(min(after, self._max_retry_delay_s))
                    await message.reject(requeue=True)
                    self.stats.retried += 1
        except _CONNECTION_LOST as exc:
            self.stats.settle_lost += 1
            log.debug(
                "settlement of %s lost (%s); the broker will redeliver it",
                delivery.message_id,
                type(exc).__name__,
            )
            return
        if self._on_settled is not None:
            try:
                self._on_settled(delivery, decision)
            except Exception:
                log.exception("on_settled observer failed")


def _active_consumers(declared: aiormq.spec.Queue.DeclareOk) -> int:
    """The active consumers a passive declare counted (for a single-active-consumer queue the
    waiting ones are not counted, so this is 0 or 1)."""
    return int(declared.consumer_count or 0)


def _delivery(message: AbstractIncomingMessage) -> Delivery:
    count = (message.headers or {}).get("x-delivery-count", 0)
    return Delivery(
        body=message.body,
        message_id=message.message_id,
        user_id=message.user_id,
        routing_key=message.routing_key or "",
        redelivered=bool(message.redelivered),
        delivery_count=count if isinstance(count, int) and not isinstance(count, bool) else 0,
        content_type=message.content_type or "",
    )
