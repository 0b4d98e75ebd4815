"""The setups of ``benchmarks.e2e --stores ... --processes ...`` (issue 19 point 5): two node
processes per organisation run on PostgreSQL only (decision 0109); SQLite keeps one, and the
benchmark says so rather than running it or failing the whole list."""

from __future__ import annotations

import pytest

from benchmarks._stores import Setup, check, paired_ratios, plan


def test_one_and_two_processes_on_both_stores_leave_out_sqlite_with_two() -> None:
    setups, skipped = plan("sqlite,postgres", "1,2")
    assert setups == [Setup("sqlite", 1), Setup("postgres", 1), Setup("postgres", 2)]
    assert len(skipped) == 1
    assert skipped[0].startswith("sqlite, 2 processes/org: not run")
    assert "one node process per organisation" in skipped[0]


def test_only_sqlite_with_two_processes_is_refused_in_one_line() -> None:
    with pytest.raises(SystemExit) as refused:
        plan("sqlite", "2")
    assert "nothing to run" in str(refused.value)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("stores", "processes", "says"),
    [
        ("oracle", "1", "unknown store"),
        ("postgres", "3", "postgres runs 1 or 2"),
        ("postgres", "two", "not a list of numbers"),
    ],
)
def test_what_nobody_can_run_is_refused(stores: str, processes: str, says: str) -> None:
    with pytest.raises(SystemExit) as refused:
        plan(stores, processes)
    assert says in str(refused.value)


def test_a_sqlite_setup_with_two_processes_given_directly_is_refused() -> None:
    with pytest.raises(SystemExit, match="sqlite runs 1 node process"):
        check([Setup("sqlite", 2)])


def test_ratios_are_paired_round_by_round() -> None:
    assert paired_ratios([50.0, 90.0], [100.0, 60.0]) == [0.5, 1.5]
    assert Setup("postgres", 2).name == "postgres, 2 processes/org"
