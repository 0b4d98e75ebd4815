"""The two verifiers of an evidence bundle agree: the node's (gateway/audit/evidence.py, in
this process) and the browser's (gateway/console/static/js/evidence-verify.js, under ``node``),
each written to docs/evidence-bundle.md. On the golden bundles both verify and report the same;
on every tampered bundle (tampers.py) both fail with the same reason code.

The JavaScript verifier runs once for the whole set (one ``node`` process, well under a second),
on WebCrypto: the same code the officer's browser runs.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gateway.audit.evidence import REASONS, BundleCheck, check_bundle, load_directory
from gateway.audit.inspect import VerificationFailed
from gateway.cli import cli
from gateway.core.directory import TrustedDirectory
from schemas.catalogue import default_catalogue
from tests.console.evidence.tampers import CASES, FIXTURES, SIGNED, UNREACHED, build

ROOT = Path(__file__).resolve().parents[3]
VERIFIER = ROOT / "gateway" / "console" / "static" / "js" / "evidence-verify.js"
RUNNER = Path(__file__).parent / "run_js.mjs"
SPEC = ROOT / "docs" / "evidence-bundle.md"
NOW = datetime.fromisoformat((FIXTURES / "now.txt").read_text().strip())
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(
    NODE is None, reason="node (Node.js 20+) runs the browser's verifier; it is not installed"
)


def run_js(directory: Path, now: datetime, files: list[Path]) -> dict[str, dict[str, Any]]:
    """The JavaScript verifier's result for each file, by file name."""
    assert NODE is not None
    done = subprocess.run(
        [NODE, str(RUNNER), str(directory), now.isoformat(), *map(str, files)],
        capture_output=True,
        check=True,
        timeout=120,
        cwd=ROOT,
    )
    out: dict[str, dict[str, Any]] = json.loads(done.stdout)
    return {Path(k).name: v for k, v in out.items()}


@pytest.fixture(scope="module")
def directory() -> TrustedDirectory:
    return load_directory(
        (FIXTURES / "directory.json").read_bytes(), now=NOW, catalogue=default_catalogue()
    )


@pytest.fixture(scope="module")
def outcomes(
    tmp_path_factory: pytest.TempPathFactory, directory: TrustedDirectory
) -> dict[str, tuple[BundleCheck, dict[str, Any]]]:
    """Every golden, tampered and signed-tampered bundle through both verifiers."""
    folder = tmp_path_factory.mktemp("tampered")
    files: list[Path] = []
    for case in CASES:
        path = folder / f"{case.name}.json"
        path.write_bytes(build(case))
        files.append(path)
    files += [FIXTURES / f"{base}.json" for base in ("sent", "received")]
    files += [FIXTURES / "signed" / f"{name}.json" for name, _, _ in SIGNED]
    js = run_js(FIXTURES / "directory.json", NOW, files)
    return {
        f.stem: (check_bundle(f.read_bytes(), directory=directory, now=NOW), js[f.name])
        for f in files
    }


def _same_report(python: BundleCheck, js: dict[str, Any]) -> None:
    assert python.report is not None
    report = asdict(python.report)
    assert js["report"]["lines"] == report["lines"]
    assert js["report"]["cosigners"] == report["cosigners"]
    assert js["report"]["checkpointSize"] == report["checkpoint_size"]
    assert js["report"]["origin"] == report["origin"]
    for count in ("records", "messages", "receipts", "contradictions"):
        assert js["report"][count] == report[count], count


@pytest.mark.parametrize("base", ["sent", "received"])
def test_the_golden_bundles_verify_in_both_with_the_same_report(
    outcomes: dict[str, tuple[BundleCheck, dict[str, Any]]], base: str
) -> None:
    python, js = outcomes[base]
    assert python.ok, python.detail
    assert js["ok"], js
    _same_report(python, js)


def test_the_golden_bundles_exercise_every_part_and_both_suites() -> None:
    """What the set starts from: ES256 and Ed25519 signatures, a cosigned checkpoint, receipts
    with inclusion proofs in the receiver's log, a kept contradiction and a signed message."""
    sent = json.loads((FIXTURES / "sent.json").read_text())
    received = json.loads((FIXTURES / "received.json").read_text())
    assert "/witness " in sent["checkpoint"]
    assert sent["receipts"]
    assert sent["contradictions"]
    assert received["messages"]
    algs = {
        json.loads(_unb64u(jws.split(".")[0]))["alg"]
        for jws in [received["messages"][0]["inner_jws"], sent["receipts"][0]["inner_jws"]]
    }
    assert algs == {"ES256", "Ed25519"}
    receipt = json.loads(_unb64u(sent["receipts"][0]["inner_jws"].split(".")[1]))
    assert receipt["body"]["proof"].startswith("c2sp.org/tlog-proof@v1\nextra ")


def _unb64u(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_a_tampered_bundle_fails_with_the_same_reason_in_both(
    outcomes: dict[str, tuple[BundleCheck, dict[str, Any]]], case: Any
) -> None:
    python, js = outcomes[case.name]
    assert python.reason == case.reason, (python.detail, case.what)
    assert js["reason"] == case.reason, (js.get("detail"), case.what)
    if case.reason is None:
        _same_report(python, js)


@pytest.mark.parametrize(("name", "reason", "what"), SIGNED, ids=[s[0] for s in SIGNED])
def test_a_bundle_a_member_signed_wrongly_fails_with_the_same_reason_in_both(
    outcomes: dict[str, tuple[BundleCheck, dict[str, Any]]],
    name: str,
    reason: str | None,
    what: str,
) -> None:
    python, js = outcomes[name]
    assert python.reason == reason, (python.detail, what)
    assert js["reason"] == reason, (js.get("detail"), what)
    if reason is None:
        _same_report(python, js)
        assert python.report is not None
        assert python.report.cosigners == []


def test_every_reason_code_is_reached_by_the_set_or_says_why_not() -> None:
    reached = {c.reason for c in CASES} | {s[1] for s in SIGNED} | {"directory_invalid"}
    assert set(REASONS) - reached == set(UNREACHED)
    assert not set(UNREACHED) & reached


def test_both_verifiers_and_the_specification_list_the_same_reason_codes() -> None:
    script = f'import("{VERIFIER.as_uri()}").then(m => console.log(JSON.stringify(m.REASONS)))'
    assert NODE is not None
    done = subprocess.run(
        [NODE, "--input-type=module", "-e", script], capture_output=True, check=True, timeout=60
    )
    assert json.loads(done.stdout) == list(REASONS)
    documented = re.findall(r"^\| `([a-z_]+)` \| §", SPEC.read_text("utf-8"), re.MULTILINE)
    assert documented == list(REASONS)


def _tampered_directory(tmp: Path) -> Path:
    doc = json.loads((FIXTURES / "directory.json").read_text())
    doc["signatures"] = doc["signatures"][:1]  # below the authority's threshold of 2
    path = tmp / "directory.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("problem", ["below_threshold", "expired"])
def test_a_bad_directory_fails_with_the_same_reason_in_both(tmp_path: Path, problem: str) -> None:
    if problem == "below_threshold":
        path, now = _tampered_directory(tmp_path), NOW
    else:
        path, now = FIXTURES / "directory.json", NOW + timedelta(days=3660)
    with pytest.raises(VerificationFailed) as failed:
        load_directory(path.read_bytes(), now=now, catalogue=default_catalogue())
    assert failed.value.code == "directory_invalid"
    js = run_js(path, now, [FIXTURES / "sent.json"])
    assert js["sent.json"]["reason"] == "directory_invalid", js


def test_a_bundle_checked_after_the_audit_keys_ended_fails_in_both(
    directory: TrustedDirectory,
) -> None:
    """Keys are looked up at the time of checking (docs/evidence-bundle.md §3): before the
    directory's keys were valid, politie's checkpoint has no trusted signature."""
    before = NOW - timedelta(days=1)
    python = check_bundle((FIXTURES / "sent.json").read_bytes(), directory=directory, now=before)
    assert python.reason == "checkpoint_invalid"
    js = run_js(FIXTURES / "directory.json", before, [FIXTURES / "sent.json"])
    assert js["sent.json"]["reason"] == "checkpoint_invalid", js


def test_one_byte_changes_anywhere_give_the_same_outcome_in_both(
    tmp_path: Path, directory: TrustedDirectory
) -> None:
    """Beyond the named cases: 120 bundles with one byte changed at a random place (seeded), to
    a character that matters to JSON, base64 or the notes. Both verifiers agree on each: the
    same reason, or both verify with the same report (a change to an unverified member)."""
    rng = random.Random(16)
    alphabet = b'AQgw019+/=-_"{}[],:\\ \n.x'
    files = []
    for base in ("sent", "received"):
        raw = (FIXTURES / f"{base}.json").read_bytes()
        for i in range(60):
            changed = bytearray(raw)
            changed[rng.randrange(len(changed))] = rng.choice(alphabet)
            path = tmp_path / f"{base}-{i}.json"
            path.write_bytes(bytes(changed))
            files.append(path)
    js = run_js(FIXTURES / "directory.json", NOW, files)
    reasons = set()
    for path in files:
        python = check_bundle(path.read_bytes(), directory=directory, now=NOW)
        assert python.reason == js[path.name]["reason"], (path.name, python.detail, js[path.name])
        if python.ok:
            _same_report(python, js[path.name])
        reasons.add(python.reason)
    assert len(reasons) >= 5  # the changes reached several steps, not only the JSON parser


def test_zvg_audit_verify_bundle_names_the_reason_code(tmp_path: Path) -> None:
    """The CLI says the code the console's browser check gives for the same bundle."""
    runner = CliRunner()
    directory = str(FIXTURES / "directory.json")
    good = runner.invoke(
        cli, ["audit", "verify-bundle", str(FIXTURES / "sent.json"), "--directory", directory]
    )
    assert good.exit_code == 0, good.output
    sent = json.loads((FIXTURES / "sent.json").read_text())
    assert (
        f"{len(sent['records'])} record(s) proved in checkpoint {sent['records'][-1]['index'] + 1} "
        "of veenstad.zvg/00000001999000002000/audit-log, cosigned by Gemeente Veenstad"
    ) in good.output
    case = next(c for c in CASES if c.name == "record_view_changed")
    forged = tmp_path / "forged.json"
    forged.write_bytes(build(case))
    bad = runner.invoke(cli, ["audit", "verify-bundle", str(forged), "--directory", directory])
    assert bad.exit_code == 1
    assert "record_proof_invalid: record 0:" in bad.output


#: Values whose canonical form is easy to get wrong: member order by UTF-16 code units (not
#: code points: U+FB01 sorts after U+1F600's surrogates), escapes, non-ASCII, integer edges.
CANONICAL_CASES: list[Any] = [
    {"b": 1, "a": [True, False, None], "": "empty name"},
    {"\ufb01": 1, "\U0001f600": 2, "z": 3, "é": 4, "Z": 5},
    {"s": 'tab\tnl\ncr\rbs\\q"ctl\x01\x1fdel\x7fsep\u2028é😀'},
    {"n": [0, -1, 9007199254740991, -9007199254740991]},
    {"nested": {"b": {"d": [], "c": {}}, "a": []}},
]


def test_both_verifiers_write_the_same_canonical_json() -> None:
    """The leaf data of a record (docs/evidence-bundle.md §4.4) is the same bytes in both."""
    from gateway.core.commit import canonical_json

    script = (
        f'const m = await import("{VERIFIER.as_uri()}");'
        "const input = await new Promise(r => { let d = ''; process.stdin.on('data', c => d += c);"
        " process.stdin.on('end', () => r(d)); });"
        "const out = JSON.parse(input).map(t => m.canonicalJson(m.parseStrictJson(t)));"
        "process.stdout.write(JSON.stringify(out));"
    )
    texts = [json.dumps(v, ensure_ascii=bool(i % 2)) for i, v in enumerate(CANONICAL_CASES)]
    assert NODE is not None
    done = subprocess.run(
        [NODE, "--input-type=module", "-e", script],
        input=json.dumps(texts).encode(),
        capture_output=True,
        check=True,
        timeout=60,
    )
    js = json.loads(done.stdout)
    assert js == [canonical_json(v).decode("utf-8") for v in CANONICAL_CASES]
