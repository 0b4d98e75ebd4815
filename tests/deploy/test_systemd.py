"""The systemd unit (deploy/systemd/zvg-node@.service).

``systemd-analyze verify`` and ``systemd-analyze security --offline`` check the unit where
systemd is installed (Debian's systemd package; ``scripts/test`` installs it when missing,
``ensure_systemd_analyze`` in scripts/lib.sh; no systemd needs to be running). The guide's
install steps, which verify the unit as installed, run in tests/deploy/test_ops_guide.py. The
unit names ``/opt/zv-gateway/bin/zvg``, which ``verify`` requires to exist, so the checked copy
has only that path replaced by this environment's ``zvg``. A small parser checks the settings
the node relies on everywhere, with or without systemd.

Threats: a node running as root or able to write outside its state folder; a config error
restarted in a loop; a stop timeout shorter than the node's drain (SIGKILL mid-drain).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.node.runner import DRAIN_GRACE_S
from tests.deploy.conftest import DEPLOY, VENV_BIN

UNIT = DEPLOY / "systemd" / "zvg-node@.service"
INSTALLED_ZVG = "/opt/zv-gateway/bin/zvg"
MAX_EXPOSURE = 20
"""``systemd-analyze security`` threshold (0-100; it prints a tenth of it): 2.0 is "OK"."""


def _settings() -> dict[str, dict[str, list[str]]]:
    """section -> key -> values (a key may repeat), comments and blank lines dropped."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = ""
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            assert line.endswith("]"), line
            current = line[1:-1]
            sections[current] = {}
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not key=value: {line}"
        assert current, "a setting before any section"
        sections[current].setdefault(key, []).append(value)
    return sections


def _one(section: str, key: str) -> str:
    (value,) = _settings()[section][key]
    return value


def _seconds(value: str) -> float:
    assert value.endswith("s"), value
    return float(value[:-1])


def test_unit_runs_the_checked_config_as_zvg() -> None:
    assert set(_settings()) == {"Unit", "Service", "Install"}
    assert _one("Service", "User") == "zvg"
    assert _one("Service", "Environment") == "ZVG_CONFIG=/etc/zvg/%i/node.toml"
    assert _one("Service", "ExecStartPre") == (
        f"{INSTALLED_ZVG} node check-config --config ${{ZVG_CONFIG}}"
    )
    assert _one("Service", "ExecStart") == f"{INSTALLED_ZVG} node run --config ${{ZVG_CONFIG}}"
    assert _one("Install", "WantedBy") == "multi-user.target"


def test_unit_restarts_on_failure_but_not_on_a_config_error() -> None:
    assert _one("Service", "Restart") == "on-failure"
    assert _one("Service", "RestartPreventExitStatus") == "2"  # zvg's exit code for LocalError


def test_unit_gives_the_node_time_to_drain() -> None:
    assert _one("Service", "KillSignal") == "SIGTERM"
    assert _seconds(_one("Service", "TimeoutStopSec")) >= DRAIN_GRACE_S + 10


def test_unit_can_write_only_its_own_state_folder() -> None:
    service = _settings()["Service"]
    assert service["ProtectSystem"] == ["strict"]
    assert service["ReadWritePaths"] == ["/var/lib/zvg/%i"]
    assert service["StateDirectory"] == ["zvg/%i"]
    assert service["StateDirectoryMode"] == ["0700"]
    assert service["UMask"] == ["0077"]
    for key in ("NoNewPrivileges", "PrivateTmp", "ProtectHome", "PrivateDevices"):
        assert service[key] == ["yes"], key
    assert service["CapabilityBoundingSet"] == [""]


def _checkable_copy(tmp_path: Path) -> Path:
    """The unit as an instance file, with the installed zvg path replaced by this venv's."""
    text = UNIT.read_text(encoding="utf-8")
    assert INSTALLED_ZVG in text
    copy = tmp_path / "zvg-node@politie.service"
    copy.write_text(text.replace(INSTALLED_ZVG, str(VENV_BIN / "zvg")), encoding="utf-8")
    return copy


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd); parsed above")
    return subprocess.run(
        ["systemd-analyze", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    """Exit 0 and not one warning (unknown keys, bad values and missing programs are warned)."""
    result = _analyze("verify", str(_checkable_copy(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""
    assert result.stdout.strip() == ""


def test_systemd_analyze_security_rates_the_unit_ok(tmp_path: Path) -> None:
    result = _analyze(
        "security", "--offline=yes", f"--threshold={MAX_EXPOSURE}", str(_checkable_copy(tmp_path))
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    assert "Overall exposure level" in result.stdout


def test_verify_would_catch_a_mistake(tmp_path: Path) -> None:
    """The check can fail: an unknown setting makes verify complain."""
    copy = _checkable_copy(tmp_path)
    copy.write_text(
        copy.read_text(encoding="utf-8").replace("[Service]\n", "[Service]\nProtectSytem=strict\n"),
        encoding="utf-8",
    )
    result = _analyze("verify", str(copy))
    assert "Unknown key" in result.stderr
