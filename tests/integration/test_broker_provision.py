"""``zvg broker provision`` on the real broker: it works, it is repeatable, it takes nothing over.

Threats: provisioning that clobbers or deletes what ops made by hand; a re-run that rotates
passwords under running nodes; a directory entry that hijacks an existing broker account.
"""

from __future__ import annotations

import json
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import pytest
from click.testing import CliRunner

from gateway.broker.provision import (
    Rabbitmqctl,
    apply_definitions,
    build_definitions,
    password_file,
    read_password_file,
)
from gateway.cli import cli
from gateway.core.broker_topology import (
    ENVELOPE_EXCHANGE,
    MEMBER_TAG,
    BrokerMember,
    inbox_queue,
    permissions_for,
    topic_write_pattern,
    vhost_name,
)
from gateway.errors import LocalError
from tests.directories import write_directory_file
from tests.integration.conftest import OINS
from tests.rabbit import Provisioned, remove

pytestmark = pytest.mark.broker

CTL = Rabbitmqctl()


@pytest.fixture
def names() -> Iterator[tuple[str, dict[str, str]]]:
    """A random federation id and broker user names, removed from the broker afterwards."""
    tag = secrets.token_hex(4)
    federation = f"t-{tag}"
    users = {n: f"zvgtest-{tag}-{n}" for n in ("zvh", "pol")}
    yield federation, users
    remove(CTL, [Provisioned(tag, federation, users, Path("/nonexistent"))], wait=True)


async def _can_log_in(vhost: str, user: str, password: str) -> bool:
    try:
        connection = await aio_pika.connect(
            host="127.0.0.1", login=user, password=password, virtualhost=vhost
        )
    except aio_pika.exceptions.ProbableAuthenticationError:
        return False
    await connection.close()
    return True


async def test_apply_builds_a_working_federation_and_a_rerun_changes_nothing(
    names: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    federation, users = names
    vhost = vhost_name(federation)
    members = [BrokerMember(OINS[n], u) for n, u in users.items()]
    apply_definitions(build_definitions(federation, members, secrets_dir=tmp_path))
    first = {m.org: read_password_file(password_file(tmp_path, m.org)) for m in members}
    for m in members:
        assert await _can_log_in(vhost, m.broker_user, first[m.org])

    # Ops add their own things to the vhost; a re-run must leave them alone.
    CTL.run(
        "set_policy",
        "-p",
        vhost,
        "--apply-to",
        "exchanges",
        "ops-own",
        "^ops\\.",
        '{"alternate-exchange": "ops.unrouted"}',
    )
    apply_definitions(build_definitions(federation, members, secrets_dir=tmp_path))

    again = {m.org: read_password_file(password_file(tmp_path, m.org)) for m in members}
    assert again == first  # passwords are generated once, never rotated by a re-run
    for m in members:
        assert await _can_log_in(vhost, m.broker_user, first[m.org])
    policies = {row["name"] for row in CTL.json("list_policies", "-p", vhost)}
    assert policies == {"ops-own", "zvg-inbox", "zvg-dead"}

    # What the broker now holds is exactly the designed permissions.
    listed = {row["user"]: row for row in CTL.json("list_permissions", "-p", vhost)}
    topics = {row["user"]: row for row in CTL.json("list_topic_permissions", "-p", vhost)}
    for m in members:
        expected = permissions_for(m.org)
        row = listed[m.broker_user]
        assert (row["configure"], row["write"], row["read"]) == (
            expected.configure,
            expected.write,
            expected.read,
        )
        topic = topics[m.broker_user]
        assert (topic["exchange"], topic["write"], topic["read"]) == (
            ENVELOPE_EXCHANGE,
            topic_write_pattern(m.org),
            "^$",
        )
    tags = {row["user"]: row["tags"] for row in CTL.json("list_users")}
    assert all(tags[m.broker_user] == [MEMBER_TAG] for m in members)
    assert "guest" not in listed  # provisioning gives guest nothing in the federation's vhost


async def test_apply_refuses_to_take_over_an_existing_foreign_user(
    names: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    federation, users = names
    CTL.run("add_user", users["pol"], "ops-chosen-password")
    members = [BrokerMember(OINS[n], u) for n, u in users.items()]
    with pytest.raises(LocalError, match="not created by zvg"):
        apply_definitions(build_definitions(federation, members, secrets_dir=tmp_path))
    CTL.run("authenticate_user", users["pol"], "ops-chosen-password")  # untouched
    vhosts = {row["name"] for row in CTL.json("list_vhosts", "name")}
    assert vhost_name(federation) not in vhosts or not CTL.json(
        "list_queues", "-p", vhost_name(federation), "name"
    )


async def test_an_inbox_made_before_single_active_consumer_is_reported_not_silently_kept(
    names: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    """RabbitMQ cannot add a queue argument to an existing queue, and ``import_definitions``
    silently keeps a queue that exists with other arguments: an inbox from before issue 14 would
    stay shareable between two node processes while provisioning reported success."""
    federation, users = names
    vhost = vhost_name(federation)
    members = [BrokerMember(OINS[n], u) for n, u in users.items()]
    apply_definitions(build_definitions(federation, members, secrets_dir=tmp_path))
    legacy = inbox_queue(OINS["zvh"])
    CTL.run("delete_queue", "-p", vhost, legacy)
    CTL.run("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    connection = await aio_pika.connect(host="127.0.0.1", virtualhost=vhost)
    try:
        channel = await connection.channel()
        await channel.declare_queue(legacy, durable=True, arguments={"x-queue-type": "quorum"})
    finally:
        await connection.close()
    CTL.run("clear_permissions", "-p", vhost, "guest")

    with pytest.raises(LocalError) as refused:
        apply_definitions(build_definitions(federation, members, secrets_dir=tmp_path))
    message = str(refused.value)
    assert legacy in message
    assert inbox_queue(OINS["pol"]) not in message
    assert "single-active-consumer" in message
    assert "docs/ops/broker.md" in message
    # Everything else was still applied (policies, permissions): only the queue is behind.
    policies = {row["name"] for row in CTL.json("list_policies", "-p", vhost)}
    assert policies == {"zvg-inbox", "zvg-dead"}


def _directory_file(path: Path, federation: str, users: dict[str, str]) -> Path:
    return write_directory_file(path, {OINS[n]: u for n, u in users.items()}, federation)


async def test_cli_provision_writes_and_applies(
    names: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    federation, users = names
    directory = _directory_file(tmp_path / "directory.json", federation, users)
    out, secrets_dir = tmp_path / "definitions.json", tmp_path / "secrets"
    args = ["broker", "provision", "--directory", str(directory), "--out", str(out)]
    args += ["--apply", "--secrets-dir", str(secrets_dir)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert stat.S_IMODE(secrets_dir.stat().st_mode) == 0o700
    for n, user in users.items():
        path = password_file(secrets_dir, OINS[n])
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert await _can_log_in(vhost_name(federation), user, read_password_file(path))
    assert "password" not in result.output.replace("password files", "")
    written = json.loads(out.read_text(encoding="utf-8"))
    assert {u["name"] for u in written["users"]} == set(users.values())
