"""The demo (``python -m demo``): five partners handle case Veenstad-2026-031, start to finish.

One run, in order:

1. **Set up** — a fresh working folder (the previous run's is wiped), a federation (fresh keys
   and a directory signed by two of three administrators, or ``keys_example/``), the broker
   (a vhost and users of this run's own, provisioned as ``zvg broker provision`` does; earlier
   runs' objects are removed unless a working folder still keeps them), and the configuration of
   five nodes and three adapters.
2. **Start** five node processes (``zvg node run``) and the police's and OM's folder adapters and
   Veilig Thuis' webhook adapter (``zvg adapter …``), and wait until each answers ``/readyz`` or
   ``/healthz``. The partners' own systems are stand-ins (:mod:`demo.partners`).
3. **Play** the case (:mod:`demo.story`): each message is handed to the sender's
   adapter, and the demo waits until every recipient's node answered ``delivered`` and
   ``accepted`` (its adapter took it) — and checks the recipient's system holds it.
4. **Witness** — wait until every node's whole log is witnessed: covered by checkpoints the
   directory's witness threshold of partners cosigned (they cosign over the broker every
   :data:`~demo.workspace.CHECKPOINT_INTERVAL_S`), so ``zvg audit verify`` says OK.
5. **Stop** every process it started, run ``zvg audit verify`` on every node, and print the
   summary (:mod:`demo.report`).
6. **Clean up** — on every exit path (success, failure, Ctrl-C, SIGTERM) every started process
   is stopped (SIGTERM, then SIGKILL after a grace period); the run's broker vhost and users
   are removed unless ``--keep`` (then they stay while the working folder is this run's).
   The working folder stays, for ``zvg audit query``.

Failures raise :class:`~demo.partners.DemoFailed` (or ``LocalError`` for set-up
problems) with one line saying what and where to look; :class:`DemoInterrupted` on a signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp

from demo import story
from demo.console import (
    CONSOLE_ORG,
    DemoLogin,
    enable_console,
    open_console_line,
    serve_console,
)
from demo.partners import (
    DemoFailed,
    FolderSystem,
    PartnerSystem,
    SdkSystem,
    WebhookSystem,
)
from demo.processes import ProcessGroup
from demo.report import Console, NodeAudit, display_path, read_audit, read_witnessing
from demo.workspace import (
    BROKER_HOST,
    BROKER_PORT,
    CHECKPOINT_INTERVAL_S,
    Workspace,
    build_workspace,
    check_work_dir,
    demo_broker,
    make_federation,
    new_run_id,
    prepare_work_dir,
)
from gateway.audit.inspect import VerificationFailed
from gateway.broker.provision import Rabbitmqctl
from gateway.errors import GatewayError, LocalError
from gateway.node.config import Retention
from gateway.testing.veenstad import FEDERATION_NAME, ORGS, org_by_key
from schemas.catalogue import default_catalogue
from zvg_client.client import NodeClient, RetryPolicy
from zvg_client.errors import NodeError

__all__ = ["DemoInterrupted", "DemoOptions", "run_demo"]

#: Seconds the nodes and adapters get to start (five Python processes on two cores: ~5 s).
READY_WAIT_S = 90.0

#: Seconds one message may take from the sender's adapter to every recipient's ``accepted``.
MESSAGE_WAIT_S = 60.0

#: Seconds the partners get to cosign every node's latest checkpoint.
WITNESS_WAIT_S = 60.0

#: Seconds a demo waits for another demo on the same machine (and broker) to finish.
LOCK_WAIT_S = 600.0

#: Column headers of the summary's tables.
COLUMN = {
    "gemeente": "Gemeente/ZVH",
    "politie": "Politie",
    "om": "OM",
    "ggz": "GGZ",
    "veiligthuis": "Veilig Thuis",
}

#: Short names for the progress lines (the directory holds the full ones).
SHORT = {
    "gemeente": "Gemeente Veenstad / ZVH",
    "politie": "Politie Veenstad",
    "om": "OM Veenstad",
    "ggz": "GGZ Veenland",
    "veiligthuis": "Veilig Thuis Veenland",
}


class DemoInterrupted(GatewayError):  # noqa: N818 - named for what happened
    """The demo was stopped by a signal (Ctrl-C, SIGTERM); everything it started was stopped."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


@dataclass(frozen=True)
class DemoOptions:
    work: Path = Path("demo-work")
    example_keys: bool = False
    keep: bool = False
    console: bool = False
    """Afterwards keep the federation and Gemeente's officer console running (demo.console)."""
    rabbitmqctl: Rabbitmqctl = field(default_factory=Rabbitmqctl)


def _zvg() -> str:
    """How to call ``zvg`` from the current folder (for the 'where to look next' commands)."""
    beside = Path(sys.executable).with_name("zvg")
    if beside.exists():
        return display_path(beside.absolute()) if beside.is_absolute() else str(beside)
    return shutil.which("zvg") or "zvg"


@contextlib.contextmanager
def _signals(handler: Callable[[int, FrameType | None], Any]) -> Iterator[None]:
    """``handler`` for SIGINT and SIGTERM inside the block; the previous handlers after it."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise DemoInterrupted(signum)


def run_demo(options: DemoOptions, console: Console | None = None) -> None:
    """Run the whole demo (module docstring). Raises ``DemoFailed``, ``LocalError`` or
    ``DemoInterrupted``; returns normally when the case ran and every log verified."""
    out = console or Console()
    started = time.monotonic()
    check_work_dir(options.work)  # before anything else: a wrong --work fails at once
    out.line(
        out.bold(
            f"zv-gateway demo {out.dash} five partners of {FEDERATION_NAME} handle case "
            f"{story.CASE_REF}, from referral to warm handover"
        )
    )
    with _signals(_raise_interrupted):
        lock = _one_demo_at_a_time(out)
    try:
        _run_locked(options, out, started)
    finally:
        os.close(lock)
    if not options.console:  # the demo ends by saying how to open the console
        out.line()
        out.line(open_console_line(SHORT[CONSOLE_ORG]))


def _lock_path() -> Path:
    return Path(tempfile.gettempdir()) / f"zvg-demo-{BROKER_HOST}-{BROKER_PORT}.lock"


def _one_demo_at_a_time(out: Console) -> int:
    """Take the machine-wide demo lock (one demo's clean-up of earlier runs' broker objects
    must not race another's set-up, and with ``--example-keys`` two runs share user names);
    wait for a running demo to finish. Returns the locked file descriptor."""
    try:
        # Read-only is enough for flock, so another user can share the lock file.
        fd = os.open(_lock_path(), os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError as exc:
        raise LocalError(f"cannot open the demo lock {_lock_path()}: {exc.strerror}") from None
    try:
        deadline = time.monotonic() + LOCK_WAIT_S
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise DemoFailed(
                        f"another demo has been running on this machine for over "
                        f"{LOCK_WAIT_S:.0f} s (lock {_lock_path()})"
                    ) from None
                if not told:
                    out.line(
                        "  waiting for another demo on this machine to finish (they share "
                        "the broker)..."
                    )
                    told = True
                time.sleep(0.5)
    except BaseException:
        os.close(fd)
        raise


def _run_locked(options: DemoOptions, out: Console, started: float) -> None:
    now = datetime.now(UTC).replace(microsecond=0)  # directories carry whole seconds
    catalogue = default_catalogue()
    procs: ProcessGroup | None = None
    ws: Workspace | None = None
    broker = None
    try:
        with _signals(_raise_interrupted):
            run = new_run_id()
            work = prepare_work_dir(options.work, run)
            out.heading("Setting up")
            fed = make_federation(
                work / "federation",
                example_keys=options.example_keys,
                now=now,
                catalogue=catalogue,
                run=run,
            )
            broker, members = demo_broker(
                fed, ctl=options.rabbitmqctl, now=now, catalogue=catalogue, run=run, work=work
            )
            removed = broker.sweep()
            broker.provision(members, work / "broker-secrets")
            ws = build_workspace(
                work,
                fed=fed,
                broker=broker,
                example_keys=options.example_keys,
                now=now,
                catalogue=catalogue,
            )
            login = enable_console(ws.nodes[CONSOLE_ORG], work) if options.console else None
            _describe_setup(out, ws, removed)
            procs = ProcessGroup(ws.logs, cwd=ws.work)
            _spawn(procs, ws)
            asyncio.run(_play(ws, procs, out, started, login))
    finally:
        stopped = 0

        def hurry(_signum: int, _frame: FrameType | None) -> None:
            if procs is not None:
                procs.hurry()

        with _signals(hurry):
            if procs is not None:
                stopped = len(procs.children)
                procs.stop_all()
            if ws is not None:
                ws.receiver_socket.close()
            cleaned = ""
            if broker is not None and broker.provisioned:
                if options.keep:
                    cleaned = (
                        f"; broker vhost {broker.vhost} and its users kept (--keep) as long as "
                        f"{display_path(broker.work)}/ is this run's working folder"
                    )
                else:
                    try:
                        broker.remove()
                        cleaned = f"; broker vhost {broker.vhost} and its users removed"
                    except GatewayError as exc:
                        cleaned = f"; could not remove broker vhost {broker.vhost}: {exc}"
            if stopped:
                out.line()
                out.line(
                    f"Stopped all {stopped} processes the demo started{cleaned}. "
                    f"Total {time.monotonic() - started:.1f} s."
                )


def _spawn(procs: ProcessGroup, ws: Workspace) -> None:
    """Start every node and adapter (before the event loop: see demo.processes)."""
    # -P: never import from the working folder (it has an adapters/ folder of its own).
    python = [sys.executable, "-P", "-m", "gateway.cli"]
    for org in ORGS:
        procs.spawn(org.key, [*python, "node", "run", "--config", str(ws.nodes[org.key].config)])
    for adapter in ws.adapters.values():
        procs.spawn(
            adapter.name,
            [*python, "adapter", adapter.kind, "--config", str(adapter.config)],
            stop_first=True,  # before its node (see demo.processes.Child.stop_first)
        )


def _respawn(procs: ProcessGroup, ws: Workspace) -> None:
    """Start every node and adapter again (``--console``, after the summary stopped them)."""
    procs.children = [c for c in procs.children if c.process.poll() is None]
    _spawn(procs, ws)


def _describe_setup(out: Console, ws: Workspace, removed: list[str]) -> None:
    keys = (
        "the public example keys of keys_example/"
        if ws.example_keys
        else "fresh keys for every organisation"
    )
    signers = " and ".join(ws.signers)
    out.wrapped(
        f"{keys}; directory v{ws.directory.version} lists five members and the policy, signed by "
        f"{signers} (2 of 3 administrators)",
        15,
        first="  federation   ",
    )
    again = f" (removed earlier demos' {', '.join(removed)})" if removed else ""
    out.wrapped(
        f"RabbitMQ on {BROKER_HOST}:{BROKER_PORT}, vhost {ws.broker.vhost}, one user per "
        f"organisation that may only publish as itself (as zvg broker provision does){again}",
        15,
        first="  broker       ",
    )
    out.line(f"  working dir  {display_path(ws.work)}/ (configs, keys, stores; logs in logs/)")


def _systems(ws: Workspace) -> dict[str, PartnerSystem]:
    a = ws.adapters
    return {
        "gemeente": SdkSystem(
            org_by_key("gemeente"), node=ws.nodes["gemeente"], production_adapter="ZGW"
        ),
        "politie": FolderSystem(
            org_by_key("politie"), adapter=a["politie"], manual_ack=a["politie"].manual_ack
        ),
        "om": FolderSystem(org_by_key("om"), adapter=a["om"], manual_ack=a["om"].manual_ack),
        "ggz": SdkSystem(org_by_key("ggz"), node=ws.nodes["ggz"], production_adapter="FHIR"),
        "veiligthuis": WebhookSystem(
            org_by_key("veiligthuis"),
            adapter=a["veiligthuis"],
            listen=ws.receiver_socket,
            tls=ws.receiver_tls,
        ),
    }


async def _play(
    ws: Workspace, procs: ProcessGroup, out: Console, started: float, login: DemoLogin | None
) -> None:
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    caught: list[int] = []
    serving = False

    def on_signal(signum: int) -> None:
        caught.append(signum)
        if main is not None:
            main.cancel()

    for s in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(s, on_signal, s)
    try:
        denial = await _run_case(ws, procs, out)
        procs.stop_all()
        await _summary(ws, out, started, denial)
        if login is not None:
            serving = True
            await serve_console(login, SHORT[CONSOLE_ORG], lambda: _respawn(procs, ws), out)
    except asyncio.CancelledError:
        if caught and serving:  # --console: Ctrl-C is how it ends
            out.end_line()
            return
        if caught:
            out.end_line()
            raise DemoInterrupted(caught[0]) from None
        raise
    except BaseException:
        out.end_line()
        raise
    finally:
        for s in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(s)  # resets to the default: put ours back
            signal.signal(s, _raise_interrupted)


async def _run_case(ws: Workspace, procs: ProcessGroup, out: Console) -> dict[str, Any]:
    """Start the partners' systems, play every step, wait for the witnesses; the denial seen."""
    systems = _systems(ws)
    observers = {
        key: NodeClient(n.url, n.token, retry=RetryPolicy(attempts=3, base_seconds=0.2))
        for key, n in ws.nodes.items()
    }
    denial: dict[str, Any] = {}
    try:
        await _wait_ready(ws, procs, out)
        for system in systems.values():
            await system.start()
        _describe_partners(out, ws, systems)
        ctx = story.Context(now=datetime.now(UTC))
        out.heading("The case")
        out.wrapped(
            f"delivered {out.check}: every recipient's node verified, stored and logged the "
            f"message and sent a signed receipt; accepted {out.check}: the recipient's own system "
            "took it (its adapter acked), with a second receipt.",
            2,
        )
        for step in story.STEPS:
            await _play_step(step, ctx, systems, observers, procs, out, denial)
        await _witness(ws, procs, out)
        vt = systems["veiligthuis"]
        if isinstance(vt, WebhookSystem) and vt.bad_signatures:
            raise DemoFailed(
                f"{vt.bad_signatures} webhook push(es) to Veilig Thuis failed the signature check"
            )
    finally:
        for system in systems.values():
            with contextlib.suppress(Exception):
                await system.stop()
        for client in observers.values():
            await client.close()
    return denial


async def _wait_ready(ws: Workspace, procs: ProcessGroup, out: Console) -> None:
    """Every node answers /readyz with ready (API, store, directory, broker) and every adapter
    /healthz; a process that exits meanwhile fails the demo with its last log line."""
    t0 = time.monotonic()
    targets = {key: f"{n.url}/readyz" for key, n in ws.nodes.items()}
    targets |= {
        a.name: f"http://{BROKER_HOST}:{a.health_port}/healthz" for a in ws.adapters.values()
    }
    pending = dict(targets)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while pending:
            for child in procs.exited():
                raise DemoFailed(
                    f"{child.name} exited while starting (code {child.process.returncode}): "
                    f"{child.tail()} (see {display_path(child.log)})"
                )
            for name, url in list(pending.items()):
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(url) as resp:
                        if resp.status == 200:
                            del pending[name]
            if time.monotonic() - t0 > READY_WAIT_S:
                names = ", ".join(sorted(pending))
                raise DemoFailed(
                    f"not ready after {READY_WAIT_S:.0f} s: {names} (see {display_path(ws.logs)}/)"
                )
            if pending:
                await asyncio.sleep(0.2)
    out.line(
        f"  processes    5 nodes (zvg node run) and 3 adapters (zvg adapter) ready in "
        f"{time.monotonic() - t0:.1f} s"
    )


def _describe_partners(out: Console, ws: Workspace, systems: dict[str, PartnerSystem]) -> None:
    out.line()
    out.line(f"  {'organisation':<25}{'roles':<9}{'node API':<17}its system talks to the node via")
    for org in ORGS:
        roles = " ".join(org.roles)
        listen = ws.nodes[org.key].listen
        out.line(f"  {SHORT[org.key]:<25}{roles:<9}{listen:<17}{systems[org.key].describe()}")
    out.wrapped(
        "In production GGZ uses the FHIR adapter and the municipality the ZGW adapter. Those need "
        "a FHIR server and a Zaken API, which the demo does not start (their tests run Medplum "
        "and Prism); here both systems use the client SDK those adapters are built on. The "
        "police's, the OM's and Veilig Thuis' own systems are played by the demo, but reach their "
        "nodes through the real folder and webhook adapter processes.",
        2,
    )


def _parties(send: story.Send, arrow: str) -> str:
    return f"{send.role} {arrow} {', '.join(role for _key, role in send.to)}"


async def _play_step(
    step: story.Step,
    ctx: story.Context,
    systems: dict[str, PartnerSystem],
    observers: dict[str, NodeClient],
    procs: ProcessGroup,
    out: Console,
    denial: dict[str, Any],
) -> None:
    out.line()
    out.line(out.bold(f"[{step.number}/{len(story.STEPS)}] {step.name}") + f"  {step.title}")
    for send in step.sends:
        ctx.now = datetime.now(UTC)
        parties = _parties(send, out.arrow)
        out.write(f"    {parties:<29}{send.message_type:<20}{send.purpose:<18}{send.what:<24}")
        submitted = await systems[send.sender].submit(send, ctx)
        who = SHORT[send.sender]
        if submitted.problem is not None:
            problem = submitted.problem
            if not send.denied:
                raise DemoFailed(
                    f"step {step.number}: {who}'s node refused {send.message_type}: "
                    f"{problem.detail}"
                )
            out.line(out.bad(f"refused {out.cross} (403 {problem.type.rsplit('/', 1)[-1]})"))
            _show_denial(out, send, problem.detail, problem.decision or {})
            denial.update(
                label=send.label,
                sender=send.sender,
                detail=problem.detail,
                decision=problem.decision or {},
            )
            continue
        if send.denied:
            raise DemoFailed(
                f"step {step.number}: {who}'s node accepted {send.label}, which the policy "
                "should have refused"
            )
        if len(submitted.message_ids) != 1:
            raise DemoFailed(f"step {step.number}: expected one message, got {submitted}")
        message_id = submitted.message_ids[0]
        await _await_receipts(step, send, message_id, observers[send.sender], procs, out)
        out.line()
        if send.note:
            out.wrapped(send.note, 8)
        ctx.ids[send.label] = message_id
        ctx.claims[send.label] = await _held_by_recipients(step, send, message_id, systems)
    if step.name == "afsluiting":
        _show_retention(out, systems, ctx.ids["closure"])


async def _await_receipts(
    step: story.Step,
    send: story.Send,
    message_id: str,
    observer: NodeClient,
    procs: ProcessGroup,
    out: Console,
) -> None:
    """Follow the sender node's status of ``message_id`` until every recipient accepted."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + MESSAGE_WAIT_S
    shown: set[str] = set()
    while True:
        try:
            status = await observer.status(message_id)
        except NodeError as exc:
            raise DemoFailed(
                f"step {step.number}: {SHORT[send.sender]}'s node lost {message_id}: {exc}"
            ) from None
        states = {(r.org, r.role): (r.status, r.reason) for r in status.recipients}
        bad = [(k, v) for k, v in states.items() if v[0] in ("rejected", "expired")]
        if bad:
            (org, role), (state, reason) = bad[0]
            raise DemoFailed(
                f"step {step.number}: {role} ({_name(org)}) answered {state}"
                f"{f' ({reason})' if reason else ''} for {send.message_type}"
            )
        values = {v[0] for v in states.values()}
        if "delivered" not in shown and values <= {"delivered", "accepted"}:
            out.write(f"delivered {out.good(out.check)} ")
            shown.add("delivered")
        if values == {"accepted"}:
            out.write(f"accepted {out.good(out.check)}")
            return
        for child in procs.exited():
            raise DemoFailed(
                f"{child.name} exited during step {step.number} (code "
                f"{child.process.returncode}): {child.tail()} (see {display_path(child.log)})"
            )
        if loop.time() > deadline:
            waiting = ", ".join(
                f"{role} {state}"
                for (_o, role), (state, _r) in states.items()
                if state != "accepted"
            )
            raise DemoFailed(
                f"step {step.number}: {send.message_type} not accepted within "
                f"{MESSAGE_WAIT_S:.0f} s ({waiting}); see the logs"
            )
        await asyncio.sleep(0.05)


async def _held_by_recipients(
    step: story.Step,
    send: story.Send,
    message_id: str,
    systems: dict[str, PartnerSystem],
) -> dict[str, Any]:
    """The claims as the recipients' systems hold them (each must hold the message)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    keys = list(dict.fromkeys(key for key, _role in send.to))
    while True:
        missing = [k for k in keys if message_id not in systems[k].received]
        if not missing:
            return systems[keys[0]].received[message_id]
        if loop.time() > deadline:
            raise DemoFailed(
                f"step {step.number}: the node of {SHORT[missing[0]]} accepted "
                f"{send.message_type}, but its system does not have it"
            )
        await asyncio.sleep(0.05)


def _name(org: str) -> str:
    for o in ORGS:
        if o.oin == org:
            return SHORT[o.key]
    return org


def _show_denial(out: Console, send: story.Send, detail: str, decision: dict[str, Any]) -> None:
    who = SHORT[send.sender]
    out.wrapped(f"{send.note}. {who}'s own node refuses it before sealing anything:", 8)
    out.wrapped(f'"{detail}"', 10)
    category = decision.get("category") or "GEZONDHEID"
    out.wrapped(
        f"Why: under {send.purpose} a partner answers hit/no-hit {out.dash} involvement and a "
        f"contact. {category} (art. 9) reaches the ZVH only under ZVH.INFORMATIE, after a "
        "positive screening (step 4). Nothing left GGZ; the refusal is in its audit log. GGZ "
        "answers again, without it:",
        8,
    )


def _show_retention(out: Console, systems: dict[str, PartnerSystem], closure_id: str) -> None:
    holders = [SHORT[k] for k, s in systems.items() if closure_id in s.received]
    claims = next(s.received[closure_id] for s in systems.values() if closure_id in s.received)
    rules = ", ".join(
        f"{r['category']} {r['retain_days']} d then {r['then']}"
        for r in claims["body"]["retention"]
    )
    defaults = Retention()
    out.wrapped(
        f"Retention timers: {len(holders)} systems took the closure with its instructions "
        f"({rules}). Every node purges a delivered payload {defaults.inbox_after_ack_days:g} "
        f"days after its adapter took it, and keeps the audit record (its personal fields "
        f"{defaults.audit_personal_days / 365:g} years).",
        8,
    )


async def _witness(ws: Workspace, procs: ProcessGroup, out: Console) -> None:
    """Wait until each node's whole log is witnessed (the directory's witness threshold of
    partners cosigned a checkpoint covering it)."""
    needed = ws.directory.witness_threshold()
    out.heading("Witnessing")
    out.wrapped(
        f"Every node signs a checkpoint of its audit log (every {CHECKPOINT_INTERVAL_S:g} s in "
        "the demo) and sends it over the broker to its partners, who check it is consistent "
        "with what they saw before and cosign it. Waiting until each node's whole log is "
        f"covered by checkpoints {needed} partners cosigned (the federation's witness "
        "threshold)...",
        2,
    )
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    waiting = dict.fromkeys(ws.nodes, "")
    while waiting:
        now = datetime.now(UTC)
        for key in list(waiting):
            try:
                report = await asyncio.to_thread(read_witnessing, ws.nodes[key], ws.directory, now)
            except VerificationFailed as exc:
                raise DemoFailed(f"the audit log of {SHORT[key]} does not verify: {exc}") from None
            if report.witnessed == report.records:
                del waiting[key]
            else:
                waiting[key] = f"{report.witnessed} of {report.records} records"
        for child in procs.exited():
            raise DemoFailed(f"{child.name} exited while witnessing: {child.tail()}")
        if waiting and loop.time() - t0 > WITNESS_WAIT_S:
            key, state = next(iter(waiting.items()))
            raise DemoFailed(
                f"{SHORT[key]}'s log is not witnessed by {needed} partners after "
                f"{WITNESS_WAIT_S:.0f} s ({state} witnessed)"
            )
        if waiting:
            await asyncio.sleep(0.3)
    out.line(f"  done in {loop.time() - t0:.1f} s")


async def _verify(config: Path) -> tuple[int, str]:
    """Run the real ``zvg audit verify`` on one node; (exit code, output)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-P",
        "-m",
        "gateway.cli",
        "audit",
        "verify",
        "--config",
        str(config),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode("utf-8", "replace")


def _field(output: str, prefix: str) -> str:
    for line in output.splitlines():
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    return ""


async def _summary(ws: Workspace, out: Console, started: float, denial: dict[str, Any]) -> None:
    results = await asyncio.gather(*(_verify(ws.nodes[o.key].config) for o in ORGS))
    audits = {o.key: read_audit(ws.nodes[o.key]) for o in ORGS}
    out.heading(f"Summary {out.dash} case {story.CASE_REF}, {FEDERATION_NAME}")
    _summary_messages(out, audits)
    _summary_receipts(out, audits)
    _summary_denial(out, audits, denial)
    failed = _summary_verify(out, dict(zip((o.key for o in ORGS), results, strict=True)))
    _summary_next(out, ws)
    if failed:
        raise DemoFailed(f"zvg audit verify failed on {', '.join(failed)}")
    out.line()
    out.line(
        out.good(
            "The case ran from referral to closure; every exchange is logged at both ends, "
            f"verified and cosigned ({time.monotonic() - started:.1f} s)."
        )
    )


def _summary_messages(out: Console, audits: dict[str, NodeAudit]) -> None:
    out.line()
    out.line(
        "  Messages per purpose, sent/received by each partner (from each node's own audit log)"
    )
    keys = list(audits)
    out.line(f"    {'purpose':<19}" + "".join(f"{COLUMN[k]:<14}" for k in keys).rstrip())
    order = [p.code for p in default_catalogue().purposes]
    used = {p for a in audits.values() for p in (*a.sent, *a.received)}
    for purpose in sorted(used, key=lambda p: order.index(p) if p in order else len(order)):
        cells = []
        for key in keys:
            sent, received = audits[key].sent[purpose], audits[key].received[purpose]
            cells.append(f"{sent}/{received}" if sent or received else "-")
        out.line(f"    {purpose:<19}" + "".join(f"{c:<14}" for c in cells).rstrip())
    totals = [f"{sum(audits[k].sent.values())}/{sum(audits[k].received.values())}" for k in keys]
    out.line(f"    {'all purposes':<19}" + "".join(f"{c:<14}" for c in totals).rstrip())
    sent = sum(sum(a.sent.values()) for a in audits.values())
    received = sum(sum(a.received.values()) for a in audits.values())
    published = sum(a.deliveries for a in audits.values())
    out.wrapped(
        f"{sent} messages sent, {published} deliveries published to the broker (one per "
        f"recipient organisation), {received} received: every exchange is in the sender's log "
        "and in each recipient's.",
        4,
    )


def _summary_receipts(out: Console, audits: dict[str, NodeAudit]) -> None:
    counts: dict[str, int] = {}
    for audit in audits.values():
        for status, n in audit.receipts.items():
            counts[status] = counts.get(status, 0) + n
    published = sum(a.deliveries for a in audits.values())
    out.line()
    out.line("  Receipts (signed by the recipient's node, with an inclusion proof of its record)")
    out.line(
        f"    {published} deliveries: {counts.get('delivered', 0)} delivered, "
        f"{counts.get('accepted', 0)} accepted by the recipient's system, "
        f"{counts.get('rejected', 0)} rejected"
    )


def _summary_denial(out: Console, audits: dict[str, NodeAudit], denial: dict[str, Any]) -> None:
    out.line()
    out.line("  Policy denial")
    found = [(key, view) for key, audit in audits.items() for view in audit.denials]
    if len(found) != 1:
        raise DemoFailed(f"expected one policy denial in the audit logs, found {len(found)}")
    key, view = found[0]
    detail = view.get("detail") or {}
    to = _name(str(detail.get("recipient", "")))
    out.wrapped(
        f"{SHORT[key]}'s audit log, record {view['index']}: policy.decision deny "
        f"{view.get('message_type')} under {view.get('purpose')} to {to}"
        f", rule {view.get('policy_rule')}, directory v{view.get('policy_version')}, "
        f"reason {view.get('reason')}, category {detail.get('category')}",
        4,
    )
    if denial.get("detail"):
        out.wrapped(f'the node\'s explanation: "{denial["detail"]}"', 6)


def _summary_verify(out: Console, results: dict[str, tuple[int, str]]) -> list[str]:
    out.line()
    out.line("  zvg audit verify on every node, and who cosigned each log's latest checkpoint")
    failed = []
    for key, (code, output) in results.items():
        ok = code == 0 and output.rstrip().endswith("OK")
        if not ok:
            failed.append(SHORT[key])
        records = _field(output, "records:").split(" ")[0]
        checkpoints = _field(output, "checkpoints:").split(" ")[0]
        size, _, names = _field(output, "latest checkpoint").partition(": cosigned by ")
        cosigners = [COLUMN[o.key] for o in ORGS if o.name in names]
        verdict = out.good("OK") if ok else out.bad("FAILED")
        out.line(
            f"    {COLUMN[key]:<14}{verdict}  {records:>4} records, {checkpoints:>3} checkpoints; "
            f"latest ({size.strip()} records) cosigned by {', '.join(cosigners) or 'nobody'}"
        )
        if not ok:
            last = [ln for ln in output.splitlines() if ln.strip()][-1:] or ["no output"]
            out.wrapped(last[0], 6)
    return failed


def _summary_next(out: Console, ws: Workspace) -> None:
    zvg = _zvg()
    work = display_path(ws.work)
    out.line()
    out.line("  Where to look next")
    out.line("    who sent what about whom, to whom, for which purpose, and did it arrive:")
    out.line(
        f"      {zvg} audit query --config {work}/nodes/gemeente/node.toml --case {story.CASE_REF}"
    )
    out.line("    the evidence for the case, checked offline with only the public directory:")
    out.line(
        f"      {zvg} audit export --config {work}/nodes/ggz/node.toml --case {story.CASE_REF} "
        "--out ggz-evidence.json"
    )
    out.line(
        f"      {zvg} audit verify-bundle ggz-evidence.json --directory "
        f"{work}/federation/directory.json"
    )
    out.line(
        "    the node API (each node also serves /v1/openapi.json): docs/api.md; "
        "integrators: docs/integrators.md, docs/adapters/"
    )
    out.line(
        f"    every node's and adapter's configuration: {work}/nodes/, {work}/adapters/; logs: "
        f"{work}/logs/"
    )
    out.line(
        "    the officer console (the audit log in a browser: search, messages, evidence): "
        "./scripts/demo --console runs the case again and keeps the federation and "
        f"{SHORT[CONSOLE_ORG]}'s console running, with its URL and a login; docs/console.md"
    )
