"""The node's witnessing loop: checkpoints, cosigning partners' logs, asking heads.

Every ``audit.checkpoint_interval_seconds`` the node signs a checkpoint of its audit log when it
grew and asks every partner to cosign it (``gateway.audit.witnessing`` formats the messages);
once the broker is there it asks every partner which checkpoint of our log it last cosigned,
so a log rewritten while the node was down shows at once. Witnessing messages from partners
arrive through the inbound pipeline (:meth:`Witnessing.on_delivery`): a checkpoint to cosign, a
question about our head, or an answer to ours. Evidence that our own log was rewritten or
truncated raises an alarm (docs/architecture.md §7).
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta

from gateway.audit import witnessing
from gateway.broker.transport import Delivery
from gateway.core import note
from gateway.core.broker_topology import WITNESS_CONTENT_TYPE, routing_key, split_routing_key
from gateway.core.decisions import Decision, Deliver
from gateway.core.witness import AddCheckpointRequest, Cosigned
from gateway.errors import LocalError, RemoteError, TransientError
from gateway.node.context import NodeContext
from gateway.node.inbound import refuse
from gateway.node.store import Command, KeepWitnessEvidence, SaveWitnessHead
from schemas import ids

__all__ = ["Witnessing"]

log = logging.getLogger("gateway.node")


class Witnessing:
    """The witnessing loop and the handler of witnessing deliveries (module docstring)."""

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        #: Whether the partners were asked which checkpoint of our log they cosigned (once, as
        #: soon as the broker is there: a log rewritten while the node was down shows at once).
        self._heads_asked = False

    async def run(self) -> None:
        """Sign a checkpoint when the log grew and ask every peer to cosign it, periodically."""
        interval = self.ctx.config.audit.checkpoint_interval_seconds
        while not self.ctx.stopping.is_set():
            if not await self.ctx.lead():  # one process signs and asks (decision 0109)
                return
            try:
                await self.request_cosignatures()
            except (TransientError, LocalError) as exc:
                log.warning("checkpoint round failed: %s", exc)
            except Exception:
                log.exception("checkpoint round failed unexpectedly")
            await self.ctx.pause(interval)

    async def request_cosignatures(self) -> int:
        """One witnessing round: returns how many peers were asked."""
        checkpoint = await self.ctx.audit.checkpoint()
        broker = self.ctx.broker
        if broker.connected and not self._heads_asked:
            self._heads_asked = True
            await self.ask_heads()
        if checkpoint is None or not broker.connected:
            return 0
        sizes = await self.ctx.audit.peer_sizes()
        now = self.ctx.now()
        asked = 0
        for member in self.ctx.directory.payload.members:
            peer = member.oin
            old = sizes.get(peer, 0)
            if peer == self.ctx.org or old >= checkpoint.size:
                continue
            proof = self.ctx.audit.consistency_proof(old, checkpoint.size) if old else []
            body = witnessing.format_request(old, proof, checkpoint.note)
            with contextlib.suppress(TransientError, LocalError):
                await broker.publish(
                    routing_key(peer, self.ctx.org),
                    body,
                    message_id=ids.uuid7(int(now.timestamp() * 1000), self.ctx.rand(10)),
                    expiration=now + timedelta(hours=1),
                    content_type=WITNESS_CONTENT_TYPE,
                )
                asked += 1
        return asked

    async def on_delivery(self, delivery: Delivery, now: datetime) -> Decision:
        """A peer's checkpoint to cosign, or a peer's answer to ours."""
        _, peer = split_routing_key(delivery.routing_key)
        try:
            message = witnessing.parse_message(delivery.body)
        except RemoteError as exc:
            return refuse(exc, delivery, None)
        if isinstance(message, witnessing.HeadAnswer):
            await self._on_head(peer, message, now)
            return Deliver()
        if isinstance(message, AddCheckpointRequest | witnessing.HeadRequest):
            answer = await self._answer_witnessing(peer, message, now)
            if self.ctx.broker.connected:
                with contextlib.suppress(TransientError, LocalError):
                    await self.ctx.broker.publish(
                        routing_key(peer, self.ctx.org),
                        answer.encode(),
                        message_id=ids.uuid7(int(now.timestamp() * 1000), self.ctx.rand(10)),
                        expiration=now + timedelta(hours=1),
                        content_type=WITNESS_CONTENT_TYPE,
                    )
            return Deliver()
        await self._on_answer(peer, message, now)
        return Deliver()

    async def _answer_witnessing(
        self, peer: str, request: AddCheckpointRequest | witnessing.HeadRequest, now: datetime
    ) -> witnessing.Answer | witnessing.HeadAnswer:
        if isinstance(request, AddCheckpointRequest):
            return await self._cosign(peer, request, now)
        origin = self.ctx.directory.audit_origin(peer)
        head = await self.ctx.audit.store.run(lambda db: witnessing.load_head(db, origin))
        return witnessing.head_answer(
            request,
            head,
            key=self.ctx.keys.audit,
            witness_name=self.ctx.directory.witness_name(self.ctx.org),
        )

    async def ask_heads(self) -> int:
        """Ask every partner which checkpoint of our log it last cosigned (answers arrive as
        ``head`` messages: :meth:`_on_head`). Returns how many were asked."""
        now = self.ctx.now()
        asked = await witnessing.publish_head_requests(
            self.ctx.broker,
            directory=self.ctx.directory,
            org=self.ctx.org,
            nonce=witnessing.new_nonce(self.ctx.rand),
            now=now,
            expires=now + timedelta(hours=1),
            rand=self.ctx.rand,
        )
        return len(asked)

    async def _on_head(self, peer: str, answer: witnessing.HeadAnswer, now: datetime) -> None:
        """A partner says which checkpoint of our log it cosigned: keep it for ``zvg audit
        verify --witnesses`` and raise the alarm when our records no longer extend it."""
        verified = None
        if answer.checkpoint is not None:
            try:
                verified = witnessing.open_head(
                    answer.checkpoint,
                    directory=self.ctx.directory,
                    log_org=self.ctx.org,
                    witness_org=peer,
                    now=now,
                )
            except RemoteError as exc:
                self.ctx.count("cosignatures_ignored")
                log.warning("ignored a checkpoint from %s that does not verify: %s", peer, exc)
                return
        await self.ctx.audit.save_peer_head(peer, answer.nonce, verified, now)
        if verified is None:
            return
        agreement = self.ctx.audit.compare(verified.checkpoint)
        if agreement != "consistent":
            self._alarm(
                agreement,
                peer,
                f"{peer} cosigned checkpoint {verified.checkpoint.size} of our audit log; the log "
                f"now has {self.ctx.audit.size} records and is {agreement} (run zvg audit verify)",
            )

    def _alarm(self, kind: str, peer: str, detail: str) -> None:
        """A partner holds evidence that our own log was rewritten or truncated: count it and
        say so at ERROR level, at once."""
        self.ctx.telemetry.audit_alarm.add(1, {"kind": kind, "partner": peer})
        log.error("audit log alarm (%s from %s): %s", kind, peer, detail)

    async def _cosign(
        self, peer: str, request: AddCheckpointRequest, now: datetime
    ) -> witnessing.Answer:
        origin = self.ctx.directory.audit_origin(peer)
        head = await self.ctx.audit.store.run(lambda db: witnessing.load_head(db, origin))
        result = witnessing.witness(
            request,
            peer=peer,
            directory=self.ctx.directory,
            head=head,
            key=self.ctx.keys.audit,
            our_org=self.ctx.org,
            now=now,
        )
        if isinstance(result, Cosigned):
            new_head = result.state.head(origin)
            assert new_head is not None  # noqa: S101 - Cosigned always carries the new head
            # Routine cosigning is not an audit record: the cosignature is kept with the
            # checkpoint, and a record would grow the log each round for ever (decision 0055).
            if not (await self.ctx.store.commit(SaveWitnessHead(origin, head, new_head))).applied:
                return witnessing.Answer(head.size if head else 0, code="conflict")
            self.ctx.telemetry.witness.add(1, {"outcome": "cosigned"})
            return witnessing.Answer(new_head.size, cosignature=result.cosignature_line)
        self.ctx.telemetry.witness.add(1, {"outcome": result.code})
        if result.code == "conflict":  # routine: the peer retries from our size
            log.info("asked %s to retry its checkpoint from size %s", peer, result.our_size)
            return witnessing.Answer(result.our_size, code=result.code)
        level = logging.ERROR if result.code in ("inconsistent", "bad_proof") else logging.WARNING
        log.log(
            level, "refused to cosign %s's checkpoint: %s (%s)", peer, result.code, result.detail
        )
        record = self.ctx.record("witness.refuse", "rejected", peer=peer, reason=result.code)
        commands: list[Command] = [self.ctx.audit.append([record], now)]
        if result.evidence is not None:
            evidence = witnessing.evidence_json(result)
            commands.append(KeepWitnessEvidence(origin, result.code, evidence, now))
        await self.ctx.store.commit(*commands)
        return witnessing.Answer(result.our_size, code=result.code)

    async def _on_answer(self, peer: str, answer: witnessing.Answer, now: datetime) -> None:
        if answer.cosignature is not None and answer.size is not None:
            cosigners = witnessing.cosigner_verifiers(self.ctx.directory, [peer], now)
            own = [note.ed25519_verifier(self.ctx.audit.origin, self.ctx.keys.audit.public_key())]
            ok = False
            for cosigner in cosigners:
                ok = await self.ctx.audit.add_cosignature(
                    peer, answer.size, answer.cosignature, cosigner, own[0], now
                )
                if ok:
                    break
            if not ok:
                self.ctx.count("cosignatures_ignored")
                log.warning("ignored a cosignature from %s that does not verify", peer)
            return
        if answer.code == "conflict" and answer.size is not None:
            await self.ctx.audit.set_peer_size(peer, answer.size, now)
            return
        if answer.code in ("inconsistent", "bad_proof"):
            self._alarm(
                answer.code,
                peer,
                f"{peer} refused to cosign our checkpoint: {answer.code} (it keeps the evidence; "
                "run zvg audit verify --witnesses)",
            )
            return
        log.warning("%s refused to cosign our checkpoint: %s", peer, answer.code)
