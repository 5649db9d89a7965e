"""SPEC §5.2 row by row, from shared/spec/states.json (or its copy in tests/data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kefu.protocol import ADDITIONS, CODE_INFO, SPEC_CODES, Code, TopState, parse_code

DATA = Path(__file__).parent.parent / "data" / "states.json"
SPEC_ROWS = json.loads(DATA.read_text(encoding="utf-8"))


def test_the_spec_lists_45_codes_and_we_have_each() -> None:
    assert len(SPEC_ROWS) == 45
    assert [c.value for c in SPEC_CODES] == [r["code"] for r in SPEC_ROWS]


@pytest.mark.parametrize("row", SPEC_ROWS, ids=[r["code"] for r in SPEC_ROWS])
def test_spec_row(row: dict[str, str]) -> None:
    code = Code(row["code"])
    assert code.name == row["name"]
    assert CODE_INFO[code].meaning == row["meaning"]
    assert code.top.value == row["state"]
    assert CODE_INFO[code].meaning_zh
    assert not CODE_INFO[code].addition


def test_additions_are_marked() -> None:
    transfers = {"001003", "002013", "004003", *(f"0050{n}" for n in range(11, 16))}  # 005015: D50
    transfers |= {f"0060{n}" for n in range(15, 25)} | {"007003", "007004", "008003"}  # issue 20
    assert {c.value for c in ADDITIONS} == {"001000", "002000", "004001", "004002"} | transfers
    assert Code("004001").top is TopState.ringing


def test_every_code_is_six_digits() -> None:
    for c in Code:
        assert len(c.value) == 6 and c.value.isdigit()


@pytest.mark.parametrize(
    ("text", "code"),
    [("0020010", "002010"), ("0050010", "005010"), ("0060010", "006010"), ("006001", "006001")],
)
def test_seven_digit_spellings_parse(text: str, code: str) -> None:
    # SPEC §5.3.1: accepted on input, 6 digits emitted
    assert parse_code(text).value == code


@pytest.mark.parametrize("bad", ["", "6001", "0060011", "999999", 6001, None, "00600a"])
def test_bad_codes_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_code(bad)


def test_spec_decisions_busy_and_timeout() -> None:
    # SPEC §5.3.2
    assert Code.inviteThirdVisitor_busy.value == "006002"
    assert Code.inviteThirdVisitor_Timeout.value == "006003"
    assert Code.inviteThirdAgent_busy.value == "006007"
    assert Code.inviteThirdAgent_Timeout.value == "006008"
