"""The demo's shell without a broker: the working folder is never someone else's, the broker
objects it makes carry its tag, the adapter configurations are the documented ones, every
process it starts can be stopped (even one that ignores SIGTERM, even when the demo itself is
killed), and output stays readable without a UTF-8 terminal."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from adapters import folder as folder_adapter
from adapters import webhook as webhook_adapter
from demo import workspace
from demo.__main__ import main as demo_command
from demo.processes import ProcessGroup
from demo.report import Console
from demo.story import EXAMPLES_DIR
from gateway.core.broker_topology import MEMBER_TAG, BrokerMember, definitions
from gateway.errors import LocalError
from gateway.testing.nodes import NodeFiles, write_node_config
from gateway.testing.veenstad import org_by_key
from schemas.catalogue import default_catalogue

WAIT_S = 30.0


def _eventually(check: object, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_S} s: {what}")
        time.sleep(0.05)


# ------------------------------------------------------------------ the working folder


def test_a_folder_the_demo_did_not_make_is_never_wiped(tmp_path: Path) -> None:
    (tmp_path / "thesis.tex").write_text("years of work")
    with pytest.raises(LocalError, match="not a demo working folder"):
        workspace.prepare_work_dir(tmp_path, "0a1b2c3d")
    assert (tmp_path / "thesis.tex").read_text() == "years of work"


def test_a_file_or_a_symlink_is_not_a_working_folder(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "target")
    for name in ("file", "link"):
        with pytest.raises(LocalError, match="not a folder"):
            workspace.prepare_work_dir(tmp_path / name, "0a1b2c3d")


def test_the_previous_runs_folder_is_wiped(tmp_path: Path) -> None:
    work = workspace.prepare_work_dir(tmp_path / "demo-work", "0a1b2c3d")
    (work / "nodes").mkdir()
    (work / "nodes" / "old.db").write_text("previous run")
    again = workspace.prepare_work_dir(tmp_path / "demo-work", "0a1b2c3d")
    assert again == work
    assert sorted(p.name for p in work.iterdir()) == [workspace.WORK_MARKER]


def test_an_empty_folder_may_be_used(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert (
        workspace.prepare_work_dir(tmp_path / "empty", "0a1b2c3d") / workspace.WORK_MARKER
    ).is_file()


def test_a_wrong_work_folder_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "keep-me").write_text("x")
    result = CliRunner().invoke(demo_command, ["--work", str(tmp_path)])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1
    assert lines[0].startswith("zvg: error: ")
    assert "not a demo working folder" in lines[0]
    assert (tmp_path / "keep-me").exists()


def test_example_keys_are_copied_private(tmp_path: Path) -> None:
    fed = workspace.copy_example_federation(tmp_path / "federation")
    keys = list(fed.root.rglob("*.key.pem"))
    assert len(keys) == 3 * 5 + 3  # three per organisation, three administrators
    assert all(k.stat().st_mode & 0o077 == 0 for k in keys)
    assert fed.directory.is_file()


# ------------------------------------------------------------------ broker objects


def test_the_demos_broker_objects_carry_its_tag_and_the_runs(tmp_path: Path) -> None:
    definitions: dict[str, list[dict[str, object]]] = {
        "vhosts": [{"name": "zvg-veenstad"}],
        "users": [{"name": "zvg-ggz", "tags": [MEMBER_TAG]}],
        "queues": [],
    }
    marked = workspace.mark_as_demo(definitions, run="0a1b2c3d", work=tmp_path)
    tags = [workspace.DEMO_TAG, workspace.RUN_TAG + "0a1b2c3d"]
    assert marked["vhosts"][0]["metadata"]["tags"] == tags
    assert marked["vhosts"][0]["metadata"]["description"].endswith(str(tmp_path))
    assert marked["users"][0]["tags"] == [MEMBER_TAG, *tags]
    assert definitions["users"][0]["tags"] == [MEMBER_TAG], "the input is not changed"


def test_definitions_move_whole_into_the_runs_vhost() -> None:
    built = definitions(
        "veenstad",
        [BrokerMember(org="00000001999000002000", broker_user="zvg-politie")],
        password_hashes={"zvg-politie": ""},
    )
    moved = workspace.in_vhost(built, "zvg-veenstad-0a1b2c3d")
    text = json.dumps(moved)
    assert '"zvg-veenstad"' not in text
    assert moved["vhosts"] == [{"name": "zvg-veenstad-0a1b2c3d"}]
    for section in ("permissions", "topic_permissions", "exchanges", "queues", "bindings"):
        assert moved[section], section
        assert {item["vhost"] for item in moved[section]} == {"zvg-veenstad-0a1b2c3d"}


# ------------------------------------------------------------------ adapter configurations


@pytest.fixture
def node(tmp_path: Path) -> NodeFiles:
    return write_node_config(
        tmp_path / "node.toml",
        org=org_by_key("politie"),
        keys_dir=tmp_path,
        directory=tmp_path / "directory.json",
        data_dir=tmp_path / "data",
        broker_url="amqp://127.0.0.1:5672/zvg-veenstad",
        password_file=None,
        listen="127.0.0.1:8470",
        token="t" * 43,
        catalogue=default_catalogue(),
    )


def test_folder_configs_are_the_documented_ones_with_demo_paths(
    tmp_path: Path, node: NodeFiles
) -> None:
    token = workspace.write_secret(tmp_path / "politie" / "node-token", "t" * 43)
    police = workspace.folder_adapter(
        tmp_path / "politie",
        org_by_key("politie"),
        "folder.toml",
        node,
        token,
    )
    config = folder_adapter.load(police.config)  # the adapter's own loader accepts it
    documented = tomllib.loads((EXAMPLES_DIR / "politie" / "folder.toml").read_text("utf-8"))
    assert config.node.actor == documented["node"]["actor"]
    assert config.folder.csv_mapping == (
        EXAMPLES_DIR / "politie" / documented["folder"]["csv_mapping"]
    )
    assert config.folder.root_dir == tmp_path / "politie" / "files"
    assert config.folder.pseudonym_key_file is not None
    assert config.folder.pseudonym_key_file.stat().st_mode & 0o077 == 0
    assert not police.manual_ack
    om = workspace.folder_adapter(
        tmp_path / "om",
        org_by_key("om"),
        "folder.toml",
        node,
        token,
    )
    assert om.manual_ack, "the OM's documented system confirms imports itself"


def test_the_webhook_config_pushes_to_the_stand_in_over_https(
    tmp_path: Path, node: NodeFiles
) -> None:
    cert, key = workspace.self_signed_certificate(tmp_path / "tls")
    assert key.stat().st_mode & 0o077 == 0
    token = workspace.write_secret(tmp_path / "vt" / "node-token", "t" * 43)
    vt = workspace.webhook_adapter(
        tmp_path / "vt",
        org_by_key("veiligthuis"),
        node,
        token,
        "https://127.0.0.1:9999/zvg/inbound",
        cert,
    )
    config = webhook_adapter.load(vt.config)
    assert config.webhook.push_url.startswith("https://")
    assert config.webhook.mapping is None
    assert not config.webhook.unsafe_allow_http
    assert vt.signing_secret is not None
    assert len(vt.signing_secret) >= 32


def test_toml_written_is_toml_read(tmp_path: Path) -> None:
    doc = {"a": {"s": 'quote " and \\ slash', "n": 2, "f": 0.5, "b": True, "l": ["x", "y"]}}
    path = workspace.write_toml(tmp_path / "x.toml", doc, "header\nsecond line")
    assert tomllib.loads(path.read_text("utf-8")) == doc


# ------------------------------------------------------------------ processes


def test_a_process_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    group = ProcessGroup(tmp_path, tmp_path)
    script = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(120)\n"
    )
    child = group.spawn("stubborn", [sys.executable, "-c", script])
    _eventually(lambda: "ready" in child.log.read_text(), "child ready")
    group.stop_all(grace=0.5)
    assert child.process.returncode == -signal.SIGKILL
    group.stop_all(grace=0.5)  # idempotent


def test_a_draining_process_gets_its_sigterm(tmp_path: Path) -> None:
    group = ProcessGroup(tmp_path, tmp_path)
    child = group.spawn("polite", [sys.executable, "-c", "import time; time.sleep(120)"])
    group.stop_all()
    assert child.process.returncode == -signal.SIGTERM


def test_adapters_are_stopped_before_the_nodes_they_talk_to(tmp_path: Path) -> None:
    """The bug: the demo sent SIGTERM to every process at once; a folder adapter whose node was
    already gone retried the node for ten seconds before it saw the stop (the demo's summary
    waited for it). An adapter (``stop_first``) now stops, and is waited for, before the nodes."""
    group = ProcessGroup(tmp_path, tmp_path)
    order = tmp_path / "order"

    def stub(name: str) -> list[str]:
        script = (
            "import signal, sys, time\n"
            "def stop(*_):\n"
            f"    open({str(order)!r}, 'a').write({name!r} + '\\n')\n"
            "    sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, stop)\n"
            "print('ready', flush=True)\n"
            "time.sleep(120)\n"
        )
        return [sys.executable, "-c", script]

    node = group.spawn("node", stub("node"))
    adapter = group.spawn("adapter", stub("adapter"), stop_first=True)
    for child in (node, adapter):
        _eventually(lambda c=child: "ready" in c.log.read_text(), f"{child.name} ready")
    group.stop_all()
    assert order.read_text().split() == ["adapter", "node"]


def test_children_die_with_the_demo_even_on_sigkill(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG: a `kill -9` of the demo still stops the nodes it started."""
    demo = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from demo.processes import ProcessGroup
        group = ProcessGroup(Path({str(tmp_path)!r}), Path({str(tmp_path)!r}))
        child = group.spawn("node", [sys.executable, "-c", "import time; time.sleep(120)"])
        print(child.process.pid, flush=True)
        time.sleep(120)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", demo], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    parent.kill()
    parent.wait()

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # A zombie waiting for init to reap it is gone too.
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.split(")")[-1].split()[0] == "Z"

    try:
        _eventually(gone, "the child of a killed demo to stop")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # only if the test failed: do not leave it running


def test_a_failed_process_is_named_with_its_last_log_line(tmp_path: Path) -> None:
    group = ProcessGroup(tmp_path, tmp_path)
    child = group.spawn(
        "broken", [sys.executable, "-c", "import sys; print('bad config'); sys.exit(2)"]
    )
    child.process.wait()
    assert group.exited() == [child]
    assert child.tail() == "bad config"


# ------------------------------------------------------------------ output


def test_plain_terminals_get_ascii_and_no_colour() -> None:
    stream = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    console = Console(stream)
    assert (console.arrow, console.check) == ("->", "ok")
    assert console.bold("x") == "x", "no colour codes when stdout is not a terminal"
    utf8 = Console(io.TextIOWrapper(io.BytesIO(), encoding="utf-8"))
    assert (utf8.arrow, utf8.check) == ("\u2192", "\u2713")


def test_an_unexpected_failure_is_one_line_with_the_traceback_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*_args: object, **_kw: object) -> None:
        raise RuntimeError("something nobody planned")

    monkeypatch.setattr("demo.__main__.run_demo", boom)
    (tmp_path / "work" / "logs").mkdir(parents=True)
    result = CliRunner().invoke(demo_command, ["--work", str(tmp_path / "work")])
    assert result.exit_code == 1
    [line] = [ln for ln in result.output.splitlines() if ln.strip()]
    assert line.startswith("zvg: error: the demo failed unexpectedly (RuntimeError")
    saved = tmp_path / "work" / "logs" / "demo-traceback.txt"
    assert str(saved) in line
    assert "something nobody planned" in saved.read_text()


def test_an_interrupt_is_one_line_and_the_signals_exit_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from demo.run import DemoInterrupted

    def interrupted(*_args: object, **_kw: object) -> None:
        raise DemoInterrupted(signal.SIGTERM)

    monkeypatch.setattr("demo.__main__.run_demo", interrupted)
    result = CliRunner().invoke(demo_command, ["--work", str(tmp_path / "w")])
    assert result.exit_code == 128 + signal.SIGTERM
    assert result.output.strip() == (
        "zvg: error: interrupted by SIGTERM; stopped every process the demo started"
    )
