"""Kept demo federations (``--keep``) survive other demos on the same broker.

Each run provisions a vhost and (with fresh keys) users of its own, named with a random run id;
the next run removes only the objects of runs that no working folder keeps any more. Shown
with the demo's own set-up code (:func:`_set_up` is what ``demo.run`` does before it starts the
processes) against :class:`FakeBroker`, an in-memory ``rabbitmqctl`` that keeps users global
to the broker and lets ``import_definitions`` overwrite what it names, as RabbitMQ does — which
is how a second demo used to reset the first one's passwords. No broker, no processes: about a
second for the module.

Threats: a second demo (or the test suite's) invalidating the passwords of a federation a
developer kept to explore; a demo deleting broker objects that are not its own; kept objects
piling up for ever.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from demo import workspace
from gateway.broker.provision import password_file, read_password_file
from gateway.core.broker_topology import MEMBER_TAG
from gateway.errors import LocalError
from gateway.testing.veenstad import ORGS
from schemas.catalogue import default_catalogue


class FakeBroker:
    """The ``rabbitmqctl`` commands the demo uses, on an in-memory broker."""

    executable = "rabbitmqctl"
    node = None

    def __init__(self) -> None:
        self.vhosts: dict[str, dict[str, Any]] = {"/": {"description": "", "tags": []}}
        self.users: dict[str, dict[str, Any]] = {
            "guest": {"tags": ["administrator"], "password_hash": "not-a-demo-user"}
        }
        self.queues: dict[str, dict[str, Any]] = {}

    def json(self, *args: str) -> list[dict[str, Any]]:
        if args[0] == "list_vhosts":
            return [{"name": name, **meta} for name, meta in self.vhosts.items()]
        if args[0] == "list_users":
            return [{"user": name, "tags": u["tags"]} for name, u in self.users.items()]
        if args[0] == "list_queues":
            vhost = args[args.index("-p") + 1]
            return [{"name": q, "arguments": a} for q, a in self.queues.get(vhost, {}).items()]
        raise AssertionError(f"unexpected rabbitmqctl {args}")

    def run(self, *args: str, stdin: str | None = None) -> str:
        command, rest = args[0], args[1:]
        if command == "add_vhost":
            self.vhosts.setdefault(rest[0], {"description": "", "tags": []})
        elif command == "import_definitions":
            assert stdin is not None
            self._import(json.loads(stdin))
        elif command == "delete_vhost":
            if self.vhosts.pop(rest[0], None) is None:
                raise LocalError(
                    f"rabbitmqctl delete_vhost failed (2): Virtual host '{rest[0]}' not found"
                )
            self.queues.pop(rest[0], None)
        elif command == "delete_user":
            if self.users.pop(rest[0], None) is None:
                raise LocalError(f"rabbitmqctl delete_user failed (2): User '{rest[0]}' not found")
        else:
            raise AssertionError(f"unexpected rabbitmqctl {args}")
        return ""

    def _import(self, definitions: dict[str, Any]) -> None:
        for vhost in definitions["vhosts"]:
            meta = vhost.get("metadata", {})
            self.vhosts[vhost["name"]] = {
                "description": meta.get("description", ""),
                "tags": list(meta.get("tags", [])),
            }
        for user in definitions["users"]:  # global: a same-named user is overwritten
            self.users[user["name"]] = {
                "tags": list(user["tags"]),
                "password_hash": user["password_hash"],
            }
        for queue in definitions["queues"]:
            self.queues.setdefault(queue["vhost"], {})[queue["name"]] = queue["arguments"]

    def logs_in(self, user: str, password: str) -> bool:
        """Whether ``password`` matches the user's hash (rabbit_password_hashing_sha256)."""
        stored = self.users.get(user)
        if stored is None:
            return False
        raw = base64.b64decode(stored["password_hash"])
        salt, digest = raw[:4], raw[4:]
        return hashlib.sha256(salt + password.encode()).digest() == digest


@dataclass(frozen=True)
class Run:
    work: Path
    broker: workspace.DemoBroker
    removed: list[str]

    def logins(self) -> dict[str, str]:
        """Broker user -> the password its node reads (the run's password files)."""
        secrets_dir = self.work / "broker-secrets"
        members = zip(ORGS, self.broker.users, strict=True)
        return {
            user: read_password_file(password_file(secrets_dir, org.oin)) for org, user in members
        }


def _set_up(broker: FakeBroker, work: Path, *, example_keys: bool = False) -> Run:
    """What ``demo.run`` does before it starts any process: folder, federation, broker."""
    now = datetime.now(UTC).replace(microsecond=0)
    catalogue = default_catalogue()
    run = workspace.new_run_id()
    folder = workspace.prepare_work_dir(work, run)
    fed = workspace.make_federation(
        folder / "federation", example_keys=example_keys, now=now, catalogue=catalogue, run=run
    )
    demo, members = workspace.demo_broker(
        fed,
        ctl=broker,  # type: ignore[arg-type]  # the fake answers the commands the demo uses
        now=now,
        catalogue=catalogue,
        run=run,
        work=folder,
    )
    removed = demo.sweep()
    demo.provision(members, folder / "broker-secrets")
    return Run(folder, demo, removed)


def _demo_objects(broker: FakeBroker) -> set[str]:
    return {n for n, m in broker.vhosts.items() if workspace.DEMO_TAG in m["tags"]} | {
        n for n, u in broker.users.items() if workspace.DEMO_TAG in u["tags"]
    }


def test_two_kept_demos_coexist_on_one_broker(tmp_path: Path) -> None:
    broker = FakeBroker()
    first = _set_up(broker, tmp_path / "first")
    first_logins = first.logins()
    assert all(broker.logs_in(u, p) for u, p in first_logins.items())

    second = _set_up(broker, tmp_path / "second")

    assert second.removed == [], "the kept first run is not an earlier run's leftover"
    assert first.broker.vhost != second.broker.vhost
    assert not set(first.broker.users) & set(second.broker.users)
    assert first.broker.vhost in broker.vhosts
    assert first.broker.vhost in broker.queues, "its queues (and the messages in them) stay"
    for user, password in (first_logins | second.logins()).items():
        assert broker.logs_in(user, password), f"{user} can no longer log in"


def test_names_carry_the_run(tmp_path: Path) -> None:
    broker = FakeBroker()
    run = _set_up(broker, tmp_path / "work")
    tags = broker.vhosts[run.broker.vhost]["tags"]
    (run_id,) = [t.removeprefix(workspace.RUN_TAG) for t in tags if t.startswith(workspace.RUN_TAG)]
    assert run.broker.vhost == f"zvg-veenstad-{run_id}"
    assert run.broker.users == tuple(f"zvg-{run_id}-{o.key}" for o in ORGS)
    for user in run.broker.users:
        assert broker.users[user]["tags"] == [
            MEMBER_TAG,
            workspace.DEMO_TAG,
            workspace.RUN_TAG + run_id,
        ]
    assert workspace.work_run(run.work) == run_id


def test_a_kept_federation_goes_when_its_working_folder_goes(tmp_path: Path) -> None:
    broker = FakeBroker()
    first = _set_up(broker, tmp_path / "first")
    second = _set_up(broker, tmp_path / "second")
    shutil.rmtree(first.work)

    third = _set_up(broker, tmp_path / "third")

    assert sorted(third.removed) == sorted([first.broker.vhost, *first.broker.users])
    left = {second.broker.vhost, *second.broker.users, third.broker.vhost, *third.broker.users}
    assert _demo_objects(broker) == left


def test_a_new_run_in_the_same_folder_replaces_that_folders_federation(tmp_path: Path) -> None:
    broker = FakeBroker()
    first = _set_up(broker, tmp_path / "demo-work")
    again = _set_up(broker, tmp_path / "demo-work")
    assert sorted(again.removed) == sorted([first.broker.vhost, *first.broker.users])
    assert _demo_objects(broker) == {again.broker.vhost, *again.broker.users}


def test_the_end_of_a_run_removes_only_its_own_objects(tmp_path: Path) -> None:
    broker = FakeBroker()
    kept = _set_up(broker, tmp_path / "kept")
    other = _set_up(broker, tmp_path / "other")
    other.broker.remove()
    assert _demo_objects(broker) == {kept.broker.vhost, *kept.broker.users}
    assert "guest" in broker.users


def test_objects_of_a_demo_from_before_run_names_are_removed(tmp_path: Path) -> None:
    broker = FakeBroker()
    broker.vhosts["zvg-veenstad"] = {"description": "", "tags": [workspace.DEMO_TAG]}
    broker.users["zvg-ggz"] = {"tags": [MEMBER_TAG, workspace.DEMO_TAG], "password_hash": ""}
    run = _set_up(broker, tmp_path / "work")
    assert sorted(run.removed) == ["zvg-ggz", "zvg-veenstad"]


def test_example_keys_refuse_to_take_a_kept_runs_users(tmp_path: Path) -> None:
    """--example-keys fixes the user names (the shipped directory lists them): a second such run
    would change the kept one's passwords, so it stops with one line instead."""
    broker = FakeBroker()
    kept = _set_up(broker, tmp_path / "kept", example_keys=True)
    logins = kept.logins()
    with pytest.raises(LocalError, match=r"belongs to the demo federation kept with .*kept"):
        _set_up(broker, tmp_path / "other", example_keys=True)
    assert all(broker.logs_in(u, p) for u, p in logins.items())
    shutil.rmtree(kept.work)
    _set_up(broker, tmp_path / "other", example_keys=True)  # no longer kept: replaced


def test_somebody_elses_same_named_user_is_never_touched(tmp_path: Path) -> None:
    broker = FakeBroker()
    broker.users["zvg-ggz"] = {"tags": [MEMBER_TAG], "password_hash": "theirs"}
    with pytest.raises(LocalError, match="user zvg-ggz exists but was not made by the demo"):
        _set_up(broker, tmp_path / "work", example_keys=True)
    assert broker.users["zvg-ggz"]["password_hash"] == "theirs"
