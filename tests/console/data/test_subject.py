"""A BSN typed into the console becomes the pseudonym the adapters send, and nothing else."""

from __future__ import annotations

import pytest

from adapters._runtime import Pseudonymiser
from gateway.console.data.subject import NotABsn, looks_like_bsn, subject_pseudonym
from gateway.errors import LocalError

KEY = b"ggz-veenland-pseudonym-key-0001!"


@pytest.mark.parametrize("bsn", ["999990019", "999993653", "111222333"])
def test_the_pseudonym_of_a_bsn_is_the_one_the_adapters_send(bsn: str) -> None:
    assert subject_pseudonym(KEY, bsn) == Pseudonymiser(KEY).subject_ref("bsn", bsn)


def test_spaces_and_dots_in_a_typed_bsn_are_ignored() -> None:
    assert subject_pseudonym(KEY, "9999.90.019") == subject_pseudonym(KEY, " 999 990 019")


@pytest.mark.parametrize("typed", ["123456789", "99999001", "9999900190", "000000000", "abc"])
def test_what_is_not_a_bsn_is_refused_without_being_repeated(typed: str) -> None:
    with pytest.raises(NotABsn) as caught:
        subject_pseudonym(KEY, typed)
    assert typed not in str(caught.value)


def test_a_short_key_is_refused() -> None:
    with pytest.raises(LocalError):
        subject_pseudonym(b"short", "999990019")


def test_only_nine_digits_look_like_a_bsn() -> None:
    assert looks_like_bsn("999 990 019")
    assert not looks_like_bsn("sub-c1Ra8Hn4Pe2Ydk")
    assert not looks_like_bsn("12345678")
