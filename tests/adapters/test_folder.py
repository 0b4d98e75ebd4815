"""Folder adapter: complete files only, no duplicates, restarts lose and repeat nothing, refusals
explained beside the file; received messages and delivery statuses written atomically.

The CSV tests use the police example configuration from ``docs/adapters/examples/politie``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters._runtime import EventLog, NodeSettings, load_config
from adapters.folder import FolderAdapter, FolderConfig, FolderSettings
from tests.adapters.conftest import ORG
from tests.adapters.nodefake import FakeNode, fresh_copy, load_example
from zvg_client.client import NodeClient, RetryPolicy

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "adapters" / "examples"
ZVH = {"org": ORG["gemeente"].oin, "role": "ZVH"}


def referral_request() -> dict[str, Any]:
    """The police referral of the demo case as the node API's send request."""
    ex = load_example("case.referral")
    keep = (
        *("message_type", "purpose", "programme", "recipients", "case_ref", "legal_basis"),
        *("processing_activity", "data_categories", "flags", "subjects", "body"),
    )
    return {k: ex[k] for k in keep}


def make_adapter(node: FakeNode, root: Path, **folder: Any) -> FolderAdapter:
    config = FolderConfig(
        node=NodeSettings(url=node.url, token_file=root / "token"),
        folder=FolderSettings(root_dir=root, settle_seconds=1.0, **folder),
    )
    client = NodeClient(
        node.url, node.token, retry=RetryPolicy(attempts=1), sleep=_no_sleep, rand=lambda: 0
    )
    return FolderAdapter(config, client, EventLog("folder-test"))


async def _no_sleep(_seconds: float) -> None:
    return None


def drop(adapter: FolderAdapter, name: str, data: bytes) -> Path:
    """Write-then-rename, as the convention asks."""
    tmp = adapter.dirs.inbox / (name + ".tmp")
    tmp.write_bytes(data)
    return tmp.replace(adapter.dirs.inbox / name)


async def settle(adapter: FolderAdapter) -> int:
    """Two scans ``settle_seconds`` apart (the clock is passed in, nothing sleeps)."""
    await adapter.scan_once(now=1000.0)
    return await adapter.scan_once(now=1001.0)


def as_json(path: Path) -> Any:
    return json.loads(path.read_text())


@pytest.fixture
async def adapter(politie_node: FakeNode, tmp_path: Path) -> AsyncIterator[FolderAdapter]:
    a = make_adapter(politie_node, tmp_path)
    yield a
    await a.node.close()


# ---------------------------------------------------------------- sending JSON


async def test_json_file_is_sent_and_moved_with_its_result(
    adapter: FolderAdapter, politie_node: FakeNode
) -> None:
    drop(adapter, "referral.json", json.dumps(referral_request()).encode())
    assert await settle(adapter) == 1
    [sent] = politie_node.sent
    assert sent.claims.message_type == "case.referral"
    result = as_json(adapter.dirs.processed / "referral.json.result.json")
    assert result["messages"][0]["message_id"] == sent.claims.message_id
    assert list(adapter.dirs.inbox.iterdir()) == []


async def test_temporary_and_hidden_files_are_ignored(
    adapter: FolderAdapter, politie_node: FakeNode
) -> None:
    (adapter.dirs.inbox / "referral.json.tmp").write_text("{")
    (adapter.dirs.inbox / ".referral.json").write_text("{")
    (adapter.dirs.inbox / "referral.json.part").write_text("{")
    assert await settle(adapter) == 0
    assert politie_node.sent == []
    assert len(list(adapter.dirs.inbox.iterdir())) == 3


async def test_a_file_still_being_written_waits(
    adapter: FolderAdapter, politie_node: FakeNode
) -> None:
    data = json.dumps(referral_request()).encode()
    path = adapter.dirs.inbox / "referral.json"
    path.write_bytes(data[:100])  # a writer that does not use the rename convention
    assert await adapter.scan_once(now=1000.0) == 0
    path.write_bytes(data)  # it grew: the settle period starts again
    assert await adapter.scan_once(now=1001.0) == 0
    assert politie_node.sent == []
    assert await adapter.scan_once(now=1002.0) == 1
    assert len(politie_node.sent) == 1


async def test_the_same_file_twice_is_one_message(
    adapter: FolderAdapter, politie_node: FakeNode
) -> None:
    data = json.dumps(referral_request()).encode()
    drop(adapter, "a.json", data)
    drop(adapter, "b.json", data)
    await settle(adapter)
    assert len(politie_node.sent) == 1
    ids = {
        as_json(p)["messages"][0]["message_id"]
        for p in adapter.dirs.processed.glob("*.result.json")
    }
    assert len(ids) == 1


async def test_restart_after_sending_does_not_send_again(
    politie_node: FakeNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = make_adapter(politie_node, tmp_path)
    drop(first, "referral.json", json.dumps(referral_request()).encode())

    def crash(*_args: object) -> None:
        raise SystemExit("killed between the send and the move")

    monkeypatch.setattr(first, "_done", crash)
    with pytest.raises(SystemExit):
        await settle(first)
    await first.node.close()
    assert (first.dirs.inbox / "referral.json").exists(), "the file stays until it is settled"

    second = make_adapter(politie_node, tmp_path)
    await settle(second)
    await second.node.close()
    assert len(politie_node.sent) == 1
    result = as_json(second.dirs.processed / "referral.json.result.json")
    assert result["messages"][0]["message_id"] == politie_node.sent[0].claims.message_id


async def test_node_unavailable_leaves_the_file_for_later(
    adapter: FolderAdapter, politie_node: FakeNode
) -> None:
    drop(adapter, "referral.json", json.dumps(referral_request()).encode())
    politie_node.fail_next(1, 503)
    await settle(adapter)
    assert (adapter.dirs.inbox / "referral.json").exists()
    assert list(adapter.dirs.failed.iterdir()) == []
    await adapter.scan_once(now=1002.0)
    assert len(politie_node.sent) == 1


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b'{"message_type": "case.referral", "message_type": "receipt"}', "unreadable"),
        (b"not json", "unreadable"),
        (b'{"message_type": "case.referral"}', "invalid_message"),
    ],
    ids=["duplicate-keys", "not-json", "missing-fields"],
)
async def test_unreadable_or_invalid_files_fail_with_an_explanation(
    adapter: FolderAdapter, politie_node: FakeNode, content: bytes, error: str
) -> None:
    drop(adapter, "bad.json", content)
    await settle(adapter)
    assert politie_node.sent == []
    assert (adapter.dirs.failed / "bad.json").read_bytes() == content
    explanation = as_json(adapter.dirs.failed / "bad.json.error.json")
    assert explanation["error"] == error
    assert explanation["file"] == "bad.json"


async def test_contract_refusal_names_the_field(
    adapter: FolderAdapter, politie_node: FakeNode
) -> None:
    request = referral_request()
    request["body"]["betrokkene_informed"] = False  # then the reason is required
    drop(adapter, "referral.json", json.dumps(request).encode())
    await settle(adapter)
    explanation = as_json(adapter.dirs.failed / "referral.json.error.json")
    assert explanation["error"].endswith("/invalid-message")
    assert explanation["errors"][0]["field"] == "body.not_informed_reason"
    assert "Vermeer" not in json.dumps(explanation), "no content in the explanation"


async def test_policy_refusal_carries_the_decision(
    adapter: FolderAdapter, politie_node: FakeNode
) -> None:
    request = referral_request()
    request["recipients"] = [{"org": ORG["om"].oin, "role": "OM"}]  # no rule: POL → OM referral
    drop(adapter, "referral.json", json.dumps(request).encode())
    await settle(adapter)
    explanation = as_json(adapter.dirs.failed / "referral.json.error.json")
    assert explanation["error"].endswith("/policy-denied")
    assert explanation["decision"]["reason"] == "no_rule"


async def test_a_second_failure_of_the_same_name_does_not_overwrite(
    adapter: FolderAdapter,
) -> None:
    drop(adapter, "bad.json", b"1")
    await settle(adapter)
    drop(adapter, "bad.json", b"2")
    await adapter.scan_once(now=2000.0)
    await adapter.scan_once(now=2001.0)
    assert (adapter.dirs.failed / "bad.json").read_bytes() == b"1"
    assert (adapter.dirs.failed / "bad.1.json").read_bytes() == b"2"
    assert (adapter.dirs.failed / "bad.1.json.error.json").exists()


# ---------------------------------------------------------------- CSV with a mapping (police)


@pytest.fixture
def police(politie_node: FakeNode, tmp_path: Path) -> FolderAdapter:
    example = EXAMPLES / "politie"
    for name in ("aanmelding.mapping.toml", "folder.toml"):
        shutil.copy(example / name, tmp_path / name)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "node-token").write_text(politie_node.token + "\n")
    (secrets / "pseudonym-key").write_bytes(b"k" * 32)
    for f in secrets.iterdir():
        f.chmod(0o600)
    text = (tmp_path / "folder.toml").read_text()
    text = text.replace("http://127.0.0.1:8470", politie_node.url)
    text = text.replace("/var/lib/zvg/politie", str(tmp_path / "folders"))
    text = text.replace("settle_seconds = 5", "settle_seconds = 1")
    (tmp_path / "folder.toml").write_text(text)
    config = load_config(tmp_path / "folder.toml", FolderConfig)
    client = NodeClient(politie_node.url, politie_node.token, retry=RetryPolicy(attempts=1))
    return FolderAdapter(config, client, EventLog("folder-test"))


async def test_police_csv_export_becomes_the_demo_referral(
    police: FolderAdapter, politie_node: FakeNode
) -> None:
    drop(
        police, "aanmeldingen.csv", (EXAMPLES / "politie" / "aanmelding-voorbeeld.csv").read_bytes()
    )
    await settle(police)
    await police.node.close()
    assert list(police.dirs.failed.iterdir()) == []
    [sent] = politie_node.sent
    claims = sent.claims
    example = load_example("case.referral")["body"]
    body = claims.body.model_dump(mode="json", exclude_none=True)
    assert claims.case_ref == "Veenstad-2026-031"
    for name in ("criteria", "urgency", "betrokkene_informed", "identification"):
        assert body[name] == example[name], name
    assert body["leefgebieden"] == [
        {"domain": g["domain"], "severity": g["severity"]} for g in example["leefgebieden"]
    ]
    assert body["police_incidents"] == [
        {"occurred_on": i["occurred_on"], "kind": i["kind"]} for i in example["police_incidents"]
    ]
    assert body["risk"] == {"level": "high", "kinds": example["risk"]["kinds"]}
    assert body["referrer"] == example["referrer"]
    refs = [s.subject_ref for s in claims.subjects]
    assert [s.role for s in claims.subjects] == [
        "betrokkene",
        "household_member",
        "household_member",
    ]
    assert claims.flags.minors
    assert [m["subject_ref"] for m in body["household"]] == refs[1:]
    flat = json.dumps([s.model_dump() for s in claims.subjects])
    assert "999990019" not in flat, "the BSN only travels in body.identification"


async def test_re_exported_rows_are_not_sent_again(
    police: FolderAdapter, politie_node: FakeNode
) -> None:
    csv_bytes = (EXAMPLES / "politie" / "aanmelding-voorbeeld.csv").read_bytes()
    drop(police, "monday.csv", csv_bytes)
    await settle(police)
    drop(police, "tuesday.csv", csv_bytes)  # the nightly export repeats open referrals
    await police.scan_once(now=3000.0)
    await police.scan_once(now=3001.0)
    await police.node.close()
    assert len(politie_node.sent) == 1
    assert len(list(police.dirs.processed.glob("*.result.json"))) == 2


async def test_a_bad_row_fails_the_file_with_the_row_and_field(
    police: FolderAdapter, politie_node: FakeNode
) -> None:
    lines = (EXAMPLES / "politie" / "aanmelding-voorbeeld.csv").read_text().splitlines()
    bad = lines[1].replace(";spoed;", ";morgen;")
    drop(police, "export.csv", "\n".join([lines[0], lines[1], bad]).encode())
    await settle(police)
    await police.node.close()
    explanation = as_json(police.dirs.failed / "export.csv.error.json")
    assert explanation["error"] == "some_rows_refused"
    ok, refused = explanation["rows"]
    assert ok["line"] == 2
    assert "message_id" in ok
    assert refused == {
        "line": 3,
        "error": "mapping",
        "errors": [{"field": "body.urgency", "message": "value of 'urgentie' is not in the map"}],
    }


# ---------------------------------------------------------------- receiving and receipts


async def test_received_messages_are_written_then_acked(
    adapter: FolderAdapter, politie_node: FakeNode
) -> None:
    status = fresh_copy(load_example("case.status"))
    await politie_node.deliver(status)
    assert await adapter.receive_once() == 1
    written = as_json(adapter.dirs.outbox / f"{status['message_id']}.message.json")
    assert written["claims"]["body"] == status["body"]
    assert politie_node.acked == [status["message_id"]]
    assert not list(adapter.dirs.outbox.glob("*.tmp"))


async def test_manual_mode_waits_for_the_partners_decision(
    politie_node: FakeNode, tmp_path: Path
) -> None:
    adapter = make_adapter(politie_node, tmp_path, ack="manual")
    status = fresh_copy(load_example("case.status"))
    await politie_node.deliver(status)
    await adapter.receive_once()
    await adapter.receive_once()  # the item is still there: not written twice, not acked
    assert politie_node.acked == []
    decision = {"message_id": status["message_id"], "reason": "not_responsible"}
    drop(adapter, "decision.reject.json", json.dumps(decision).encode())
    await settle(adapter)
    await adapter.node.close()
    assert [m for m, _ in politie_node.rejected] == [status["message_id"]]
    assert (adapter.dirs.processed / "decision.reject.json").exists()


async def test_status_files_follow_the_receipts(
    adapter: FolderAdapter, politie_node: FakeNode
) -> None:
    drop(adapter, "referral.json", json.dumps(referral_request()).encode())
    await settle(adapter)
    mid = politie_node.sent[0].claims.message_id
    assert await adapter.poll_statuses() == 1
    status_file = adapter.dirs.outbox / f"{mid}.status.json"
    assert as_json(status_file)["recipients"][0]["status"] == "queued"
    assert await adapter.poll_statuses() == 0, "unchanged status: no new file"
    politie_node.set_status(mid, "accepted")
    assert await adapter.poll_statuses() == 1
    assert as_json(status_file)["recipients"][0]["status"] == "accepted"
    assert adapter.state.data["tracked"] == {}, "final: no longer followed"


async def test_followed_messages_survive_a_restart(politie_node: FakeNode, tmp_path: Path) -> None:
    first = make_adapter(politie_node, tmp_path)
    drop(first, "referral.json", json.dumps(referral_request()).encode())
    await settle(first)
    await first.node.close()
    second = make_adapter(politie_node, tmp_path)
    mid = politie_node.sent[0].claims.message_id
    assert mid in second.state.data["tracked"]
    politie_node.set_status(mid, "rejected", "adapter_rejected")
    await second.poll_statuses()
    await second.node.close()
    written = as_json(second.dirs.outbox / f"{mid}.status.json")
    assert written["recipients"][0]["reason"] == "adapter_rejected"


async def test_om_answer_export_becomes_an_info_response(tmp_path: Path) -> None:
    om = FakeNode(ORG["om"])
    await om.start()
    example = EXAMPLES / "om"
    config = FolderConfig(
        node=NodeSettings(url=om.url, token_file=tmp_path / "token"),
        folder=FolderSettings(
            root_dir=tmp_path, settle_seconds=1.0, csv_mapping=example / "antwoord.mapping.toml"
        ),
    )
    adapter = FolderAdapter(config, NodeClient(om.url, om.token), EventLog("folder-test"))
    try:
        drop(adapter, "antwoorden.csv", (example / "antwoord-voorbeeld.csv").read_bytes())
        await settle(adapter)
    finally:
        await adapter.node.close()
        await om.stop()
    assert list(adapter.dirs.failed.iterdir()) == []
    [sent] = om.sent
    body = sent.claims.body.model_dump(mode="json", exclude_none=True)
    assert sent.claims.in_reply_to == "019cc5a1-8c00-7b3e-9a41-3f2c1d0e5b77"
    assert body["disposition"] == "provided"
    assert body["justice"][0]["conditions"] == [
        "contact ban with the neighbour",
        "report weekly to the reclassering",
    ]
    assert sent.claims.flags.art10


@pytest.mark.parametrize(
    ("path", "model"),
    [
        ("politie/folder.toml", FolderConfig),
        ("om/folder.toml", FolderConfig),
    ],
)
def test_example_configurations_load(path: str, model: type[FolderConfig]) -> None:
    config = load_config(EXAMPLES / path, model)
    assert config.node.token_file.is_absolute()


# ---------------------------------------------------------------- rights.notice (AVG art. 19)


async def test_a_rights_notice_reaches_the_partner_and_its_ack_is_the_accepted_receipt(
    adapter: FolderAdapter, politie_node: FakeNode
) -> None:
    notice = fresh_copy(load_example("rights.notice"))
    await politie_node.deliver(notice, recipient_roles=("POL",))
    assert await adapter.receive_once() == 1
    written = as_json(adapter.dirs.outbox / f"{notice['message_id']}.message.json")
    claims = written["claims"]
    assert claims["message_type"] == "rights.notice"
    assert claims["body"]["kind"] == "erase"
    assert claims["body"]["concerns"] == notice["body"]["concerns"]
    assert claims["subjects"][0]["subject_ref"] == notice["subjects"][0]["subject_ref"]
    assert politie_node.acked == [notice["message_id"]], "acked: the sender sees 'accepted'"


async def test_the_partner_system_sends_a_notice_as_a_json_file(
    adapter: FolderAdapter, politie_node: FakeNode
) -> None:
    ex = load_example("rights.notice")
    request = {
        k: ex[k] for k in ("message_type", "purpose", "case_ref", "data_categories", "subjects")
    }
    request["recipients"] = [ZVH]
    request["legal_basis"] = ["AVG_6_1_C"]
    request["body"] = ex["body"]
    drop(adapter, "erasure.json", json.dumps(request).encode())
    assert await settle(adapter) == 1
    [sent] = politie_node.sent_of_type("rights.notice")
    assert sent.purpose == "ZVH.VERANTWOORDING"
