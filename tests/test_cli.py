"""`kefu states` as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from kefu.cli import app

runner = CliRunner()


def test_states_table() -> None:
    r = runner.invoke(app, ["states"])
    assert r.exit_code == 0
    assert "callVisitor_VisitorAcceptSuccess" in r.output and "006011" in r.output


def test_states_json() -> None:
    r = runner.invoke(app, ["states", "--json"])
    rows = json.loads(r.output)
    assert len(rows) == 49 + 21  # issue 20: the call transfers' 21 codes (005015: queued to a team)
    row = next(x for x in rows if x["code"] == "006011")
    assert row["name"] == "callVisitor_VisitorAcceptSuccess"
    assert row["state"] == "006000" and row["addition"] is False
    additions = {x["code"] for x in rows if x["addition"]}
    assert {"001000", "002000", "004001", "004002", "004003", "005015", "006023", "007004"} <= additions
    assert len(additions) == 25


def test_states_explains_a_transfer_code() -> None:
    r = runner.invoke(app, ["states", "007004"])
    assert r.exit_code == 0
    assert "consultTransfer_inviteSendSuccess" in r.output and "the visitor is on hold" in r.output


def test_states_explains_one_code() -> None:
    r = runner.invoke(app, ["states", "006011"])
    assert r.exit_code == 0
    assert "call out: visitor accepted" in r.output
    assert "callVisitor" in r.output and "accept" in r.output and "006000" in r.output


def test_states_seven_digit_alias_and_unknown() -> None:
    assert "002010" in runner.invoke(app, ["states", "0020010"]).output
    r = runner.invoke(app, ["states", "123456"])
    assert r.exit_code == 2 and "unknown state code" in r.output


def test_console_script_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "kefu.cli", "states", "--json"], capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout)[0]["code"] == "000000"
