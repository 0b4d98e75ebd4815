"""Broker shell code that needs no broker: directory reading, password files, CLI, argument checks.

Threats: a password file readable by others or swapped for a symlink; a malformed directory
silently yielding a partial member list; a publish that would pose as another sender leaving
the node at all.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import stat
import time
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.broker import provision as prov
from gateway.broker.transport import BrokerEndpoint, Consumer, Publisher, connect, tls_context
from gateway.cli import cli
from gateway.core.broker_topology import BrokerLimits, BrokerMember
from gateway.core.decisions import Deliver
from gateway.errors import LocalError, RemoteError, TransientError
from gateway.federation import now_utc
from schemas.catalogue import default_catalogue
from tests.directories import write_directory_file

ZVH, POL = "00000001823288444000", "00000001003214345000"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


GOOD_USERS = {ZVH: "zvh-node", POL: "pol-node"}


# ------------------------------------------------------------------------------ directory


def _members(path: Path) -> tuple[str, list[BrokerMember]]:
    return prov.members_from_directory(path, now=now_utc(), catalogue=default_catalogue())


def test_members_come_from_the_verified_directory(tmp_path: Path) -> None:
    path = write_directory_file(tmp_path / "d.json", {ZVH: "zvh-node", POL: "pol-node"})
    federation, members = _members(path)
    assert federation == "veenstad"
    assert members == [BrokerMember(ZVH, "zvh-node"), BrokerMember(POL, "pol-node")]


def test_an_unsigned_or_tampered_directory_is_refused(tmp_path: Path) -> None:
    path = write_directory_file(tmp_path / "d.json", {ZVH: "zvh-node"})
    doc = json.loads(path.read_bytes())
    doc["signatures"] = doc["signatures"][:1]  # below the threshold
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(RemoteError) as caught:
        _members(path)
    assert caught.value.reason == "bad_signature"
    payload = json.loads(base64.urlsafe_b64decode(doc["payload"] + "=="))
    payload["members"][0]["broker_user"] = "attacker"
    doc["payload"] = _b64url(json.dumps(payload).encode())
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(RemoteError):
        _members(path)


def test_directory_must_be_readable_and_bounded(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_bytes(b" " * (prov.MAX_DIRECTORY_BYTES + 1))
    with pytest.raises(RemoteError) as caught:
        _members(path)
    assert caught.value.reason == "too_large"
    with pytest.raises(LocalError, match="cannot read"):
        _members(tmp_path / "missing.json")


# ------------------------------------------------------------------------------ passwords


def test_password_is_generated_once_into_a_0600_file(tmp_path: Path) -> None:
    secrets_dir = tmp_path / "secrets"
    first = prov.ensure_password(secrets_dir, POL)
    path = prov.password_file(secrets_dir, POL)
    assert path.name == f"{POL}.broker-password"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(secrets_dir.stat().st_mode) == 0o700
    assert len(first) >= 43
    assert prov.ensure_password(secrets_dir, POL) == first
    assert prov.ensure_password(secrets_dir, ZVH) != first


def test_a_password_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    prov.ensure_password(tmp_path, POL)
    path = prov.password_file(tmp_path, POL)
    path.chmod(0o640)
    with pytest.raises(LocalError, match="chmod 600"):
        prov.ensure_password(tmp_path, POL)


def test_a_symlinked_password_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("a-password-somebody-else-controls\n", encoding="ascii")
    target.chmod(0o600)
    prov.password_file(tmp_path, POL).symlink_to(target)
    with pytest.raises(LocalError):
        prov.ensure_password(tmp_path, POL)


@pytest.mark.parametrize("content", [b"", b"short\n", b"two words here, really\n", b"x" * 2000])
def test_an_implausible_password_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = prov.password_file(tmp_path, POL)
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(LocalError, match="plausible"):
        prov.read_password_file(path)


def test_definitions_file_is_written_0600_even_over_a_wider_file(tmp_path: Path) -> None:
    out = tmp_path / "defs.json"
    out.write_text("old", encoding="utf-8")
    out.chmod(0o644)
    defs = prov.build_definitions(
        "veenstad", [BrokerMember(POL, "pol-node")], secrets_dir=tmp_path / "s"
    )
    prov.write_definitions(defs, out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written["users"][0]["password_hash"]
    assert prov.read_password_file(prov.password_file(tmp_path / "s", POL)) not in out.read_text()


def test_an_invalid_member_list_creates_no_password_files(tmp_path: Path) -> None:
    members = [BrokerMember(POL, "same"), BrokerMember(ZVH, "same")]
    with pytest.raises(LocalError):
        prov.build_definitions("veenstad", members, secrets_dir=tmp_path / "s")
    assert not (tmp_path / "s").exists()


# ------------------------------------------------------------------------------ limits, rabbitmqctl


def test_limits_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "limits.toml"
    path.write_text("delivery_limit = 5\nmax_length = 1000\n", encoding="utf-8")
    assert prov.limits_from_toml(path) == BrokerLimits(delivery_limit=5, max_length=1000)
    path.write_text("delivery_limitt = 5\n", encoding="utf-8")
    with pytest.raises(LocalError, match="unknown"):
        prov.limits_from_toml(path)
    path.write_text('delivery_limit = "5"\n', encoding="utf-8")
    with pytest.raises(LocalError):
        prov.limits_from_toml(path)


def _fake_ctl(tmp_path: Path, script: str) -> prov.Rabbitmqctl:
    path = tmp_path / "fake-rabbitmqctl"
    path.write_text("#!/bin/sh\n" + script, encoding="utf-8")
    path.chmod(0o755)
    return prov.Rabbitmqctl(str(path))


def test_rabbitmqctl_failures_are_split_into_transient_and_local(tmp_path: Path) -> None:
    unreachable = _fake_ctl(
        tmp_path, "echo 'Error: unable to perform an operation on node rabbit@x' >&2; exit 69\n"
    )
    with pytest.raises(TransientError):
        unreachable.run("list_users")
    invalid = _fake_ctl(tmp_path, "echo 'Error:' >&2; echo 'Validation failed' >&2; exit 69\n")
    with pytest.raises(LocalError, match="Validation failed"):
        invalid.run("set_policy")
    with pytest.raises(LocalError, match="not found"):
        prov.Rabbitmqctl(str(tmp_path / "no-such-program")).run("list_users")


def test_rabbitmqctl_never_reads_our_stdin(tmp_path: Path) -> None:
    ctl = _fake_ctl(tmp_path, "cat\n")  # echoes whatever stdin it gets
    assert ctl.run("list_users") == ""
    assert ctl.run("import_definitions", stdin="{}") == "{}"


def test_a_timed_out_rabbitmqctl_leaves_no_erlang_vm_behind(tmp_path: Path) -> None:
    """The bug: rabbitmqctl is a script that starts an Erlang VM; on a timeout only the script
    was killed, so the VM stayed, holding one of the ten ports the CLI tools may use for
    distribution. Ten such leftovers made every later rabbitmqctl fail with "Distribution
    failed". Now the whole process group goes."""
    pid_file = tmp_path / "vm.pid"
    script = f"sleep 600 &\necho $! > {pid_file}\nwait\n"  # the "VM" is the script's child
    ctl = dataclasses.replace(_fake_ctl(tmp_path, script), timeout=0.5)
    with pytest.raises(TransientError, match="timed out"):
        ctl.run("import_definitions", stdin="{}")
    vm = int(pid_file.read_text(encoding="utf-8"))
    assert _ends(vm), "the Erlang VM stand-in outlived its rabbitmqctl"


def _ends(pid: int) -> bool:
    """Whether ``pid`` dies (or is a zombie) — SIGKILL lands when the kernel next schedules it;
    a process that was not signalled sleeps on for 600 s, far past the 10 s looked at here."""
    for _ in range(1000):
        try:
            state = (
                Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()[0]
            )
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.01)
    return False


# ------------------------------------------------------------------------------ CLI


def test_cli_needs_out_or_apply(tmp_path: Path) -> None:
    directory = write_directory_file(tmp_path / "d.json", GOOD_USERS)
    result = CliRunner().invoke(cli, ["broker", "provision", "--directory", str(directory)])
    assert result.exit_code == 2


def test_cli_writes_definitions_without_a_broker(tmp_path: Path) -> None:
    directory = write_directory_file(tmp_path / "d.json", GOOD_USERS)
    out, secrets_dir = tmp_path / "defs.json", tmp_path / "s"
    args = ["broker", "provision", "--directory", str(directory), "--out", str(out)]
    result = CliRunner().invoke(cli, [*args, "--secrets-dir", str(secrets_dir)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in secrets_dir.iterdir()) == [
        f"{POL}.broker-password",
        f"{ZVH}.broker-password",
    ]
    assert json.loads(out.read_text(encoding="utf-8"))["vhosts"] == [{"name": "zvg-veenstad"}]


def test_cli_unverified_directory_is_one_line_and_exit_1(tmp_path: Path) -> None:
    directory = tmp_path / "d.json"
    directory.write_text(json.dumps({"payload": _b64url(b"{}"), "signatures": []}))
    args = ["broker", "provision", "--directory", str(directory), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert result.output.startswith("zvg: error: refused (invalid_claims): directory")
    assert result.output.count("\n") == 1
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------ transport arguments


async def test_publish_refuses_bad_arguments_before_touching_the_broker() -> None:
    publisher = Publisher(object(), org=POL, broker_user="pol-node")  # type: ignore[arg-type]
    exp = datetime.fromisoformat("2030-01-01T00:00:00+00:00")
    cases = [
        (f"{ZVH}.{ZVH}", "m", exp, "another organisation"),
        ("garbage", "m", exp, "routing key"),
        (f"{ZVH}.{POL}", "", exp, "message_id"),
        (f"{ZVH}.{POL}", "m", datetime(2030, 1, 1), "timezone"),  # noqa: DTZ001 - naive on purpose
        (f"{ZVH}.{POL}", "m", exp, "start"),
    ]
    for routing, message_id, expiration, message in cases:
        with pytest.raises(LocalError, match=message):
            await publisher.publish(routing, b"x", message_id=message_id, expiration=expiration)


async def test_transport_configuration_errors_are_local() -> None:
    with pytest.raises(LocalError):
        Publisher(object(), org=POL, broker_user="u", max_in_flight=0)  # type: ignore[arg-type]
    with pytest.raises(LocalError):
        Publisher(object(), org="pol", broker_user="u")  # type: ignore[arg-type]

    async def handler(_: object) -> Deliver:
        return Deliver()

    with pytest.raises(LocalError):
        Consumer(
            object(),  # type: ignore[arg-type]
            queue="q",
            handler=handler,
            sender_of=str,
            broker_user_of=lambda _: None,
            prefetch=0,
        )
    with pytest.raises(LocalError, match="client certificate"):
        await connect(BrokerEndpoint("127.0.0.1", 5671, "v", "u", None, None))
    with pytest.raises(LocalError, match="TLS files"):
        tls_context("/nonexistent/ca.pem")


async def test_a_cancelled_connect_leaves_no_reconnecting_task_behind() -> None:
    # A SIGTERM that lands while the node is still connecting cancels connect(). aio-pika's
    # robust connection runs the attempt in a task of its own that survives the cancellation and
    # swallows later ones while the connection is not closed: the node process never exited.
    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)  # accepts the TCP connection, never speaks AMQP
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    before = asyncio.all_tasks()
    try:
        attempt = asyncio.create_task(
            connect(BrokerEndpoint("127.0.0.1", port, "v", "u", "p"), timeout_s=20)
        )
        await asyncio.sleep(0.5)  # the handshake is under way
        attempt.cancel()
        with pytest.raises(asyncio.CancelledError):
            await attempt
        await asyncio.sleep(0.2)
        leftover = [t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()]
        for task in leftover:
            task.cancel()
        _, pending = await asyncio.wait(leftover, timeout=2) if leftover else (set(), set())
        assert not pending, f"tasks that ignore cancellation: {pending}"
    finally:
        server.close()


def test_endpoint_repr_hides_the_password() -> None:
    assert "s3cret" not in repr(BrokerEndpoint("h", 1, "v", "u", "s3cret"))


async def test_the_first_connection_tries_every_member_in_order_before_it_gives_up() -> None:
    """Issue 19 point 3 (decision 0093): members that close at once are tried in list order,
    each once, and the error names the last one."""
    contacted: list[int] = []

    def closing(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        contacted.append(writer.get_extra_info("sockname")[1])
        writer.close()

    servers = [await asyncio.start_server(closing, "127.0.0.1", 0) for _ in range(3)]
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    endpoint = BrokerEndpoint(
        "127.0.0.1", ports[0], "v", "u", "p", others=tuple(("127.0.0.1", p) for p in ports[1:])
    )
    try:
        with pytest.raises(TransientError, match=f"127.0.0.1:{ports[2]}"):
            await connect(endpoint, timeout_s=10)
    finally:
        for server in servers:
            server.close()
    assert contacted == ports
