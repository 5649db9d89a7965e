"""The floor (issue 20): supervisors and teams, the day's figures, reasons, a supervisor's actions,
the live streams. Every test runs the real server on SQLite and, when configured, PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from kefu.server.floor import figures, not_ready_by_reason
from kefu.server.reasons import add_reason
from kefu.server.teams import add_team, assign, set_supervisor
from tests.conftest import ServerHandle
from tests.server.test_rest import api


async def floor_people(server: ServerHandle) -> dict[str, str]:
    """Teams t1 (a1, a2, supervised by sup) and t2 (a3); boss is an admin. Returns tokens."""
    sv = server.services
    for name in ("a1", "a2", "a3", "sup"):
        await server.add_agent(name)
    await server.add_agent("boss", admin=True)
    await set_supervisor(sv.store, "sup")
    now = server.settings.now()
    await add_team(sv.store, "t1", now=now)
    await add_team(sv.store, "t2", now=now)
    for team, name in (("t1", "a1"), ("t1", "a2"), ("t1", "sup"), ("t2", "a3")):
        await assign(sv.store, team, name)
    return {n: await server.login(n) for n in ("a1", "a2", "a3", "sup", "boss")}


# --- who sees the floor


async def test_only_supervisors_and_admins_see_the_floor(server: ServerHandle) -> None:
    tokens = await floor_people(server)
    async with api(server, tokens["a1"]) as c:
        for path in ("/api/floor", "/api/metrics", "/api/floor/stream", "/api/metrics/stream", "/api/teams"):
            r = await c.get(path)
            assert r.status_code == 403, path
            assert r.json() == {"error": {"code": "forbidden", "msg": r.json()["error"]["msg"]}}
        r = await c.post("/api/agents/a2/state", json={"state": "busy"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
        r = await c.post("/api/reasons", json={"code": "X", "label": "x"})
        assert r.status_code == 403
    async with api(server, None) as c:
        assert (await c.get("/api/floor")).status_code == 401
    async with api(server, tokens["sup"]) as c:
        names = [a["name"] for a in (await c.get("/api/floor")).json()["agents"]]
        assert names == ["a1", "a2", "sup"]  # its team, not t2's a3 nor the admin
        assert [t["name"] for t in (await c.get("/api/teams")).json()] == ["t1"]
    async with api(server, tokens["boss"]) as c:
        names = [a["name"] for a in (await c.get("/api/floor")).json()["agents"]]
        assert names == ["a1", "a2", "a3", "boss", "sup"]


async def test_the_floor_shows_state_meaning_reason_sessions_and_the_queue(server: ServerHandle) -> None:
    tokens = await floor_people(server)
    a1 = await server.agent("a1", add=False, ready=True)
    await a1.call("setAgentState", {"state": "busy", "reason": "lunch"})
    v1 = await server.visitor("v1")
    sid = (await v1.send_message("hello"))["sessionId"]
    async with api(server, tokens["sup"]) as c:
        floor = (await c.get("/api/floor")).json()
    a = {x["name"]: x for x in floor["agents"]}["a1"]
    assert a["state"] == "001000" and a["meaning"] and a["reason"] == "lunch" and a["by"] is None
    assert a["teams"] == ["t1"] and a["connected"] is True and a["openSessions"] == 0
    assert [q["sessionId"] for q in floor["queue"]] == [sid] and floor["queue"][0]["wait"] >= 0
    assert floor["metrics"]["waiting"] == 1


# --- the figures of a scripted day


async def test_metrics_of_a_scripted_day(server: ServerHandle) -> None:
    tokens = await floor_people(server)
    start = server.settings.now()
    a1 = await server.agent("a1", add=False, ready=True)
    a2 = await server.agent("a2", add=False)
    # v1 is answered at once (wait 0)
    v1 = await server.visitor("v1")
    s1 = (await v1.send_message("one"))["sessionId"]
    await a1.next_event("sessionAssigned")
    await a1.call("setAgentState", {"state": "busy", "reason": "lunch"})
    # v2 waits 30 s, then a2 becomes ready and takes it
    v2 = await server.visitor("v2")
    await v2.send_message("two")
    server.clock.advance(30)
    await a2.call("setAgentState", {"state": "idle"})
    await a2.next_event("sessionAssigned")
    # v3 gives up after 10 s: abandoned
    await a2.call("setAgentState", {"state": "busy", "reason": "training"})
    v3 = await server.visitor("v3")
    await v3.send_message("three")
    server.clock.advance(10)
    await v3.close_session()
    # a1 handles s1 for 100 s in all, a2 its session for 50 s
    server.clock.advance(60)
    await a1.call("chatClose", {"session_id": s1})
    await a2.call("chatClose", {})
    async with api(server, tokens["boss"]) as c:
        r = await c.get("/api/metrics", params={"since": start.isoformat(), "slaSeconds": 20})
    m = r.json()
    assert (m["offered"], m["answered"], m["answeredWithin"], m["abandoned"], m["waiting"]) == (3, 2, 1, 1, 0)
    assert m["serviceLevel"] == pytest.approx(1 / 3, abs=1e-3)
    assert m["averageWait"] == pytest.approx(15, abs=1)  # (0 + 30) / 2
    assert m["handled"] == 2 and m["averageHandle"] == pytest.approx((100 + 70) / 2, abs=1)
    reasons = {x["reason"]: x for x in m["notReady"]}
    assert reasons["lunch"]["count"] == 1 and reasons["lunch"]["seconds"] == pytest.approx(100, abs=1)
    assert reasons["training"]["count"] == 1 and reasons["training"]["seconds"] == pytest.approx(70, abs=1)
    async with api(server, tokens["boss"]) as c:  # another service level threshold
        r = await c.get("/api/metrics", params={"since": start.isoformat(), "slaSeconds": 40})
        assert r.json()["serviceLevel"] == pytest.approx(2 / 3, abs=1e-3)
        bad = await c.get("/api/metrics", params={"slaSeconds": -1})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_field"


def _row(**kw: Any) -> SimpleNamespace:
    return SimpleNamespace(**kw)


def test_figures_are_computed_from_rows() -> None:
    t0 = datetime(2026, 1, 5, 9, tzinfo=UTC)
    s = lambda c, a=None, x=None, st="closed": _row(  # noqa: E731
        created_at=t0 + timedelta(seconds=c),
        assigned_at=None if a is None else t0 + timedelta(seconds=a),
        closed_at=None if x is None else t0 + timedelta(seconds=x),
        status=st,
    )
    rows = [s(0, 5, 65), s(10, 40, 100), s(20, None, 50), s(30, None, None, "queued"), s(-100, -90, 10)]
    calls = [_row(answered_at=t0, ended_at=t0 + timedelta(seconds=120))]
    f = figures(rows, calls, since=t0, until=t0 + timedelta(hours=1), sla_seconds=20)
    assert (f["offered"], f["answered"], f["answeredWithin"], f["abandoned"], f["waiting"]) == (4, 2, 1, 1, 1)
    assert f["serviceLevel"] == pytest.approx(1 / 3, abs=1e-3) and f["averageWait"] == pytest.approx(17.5)
    # handled: the three closed in the window with an agent (one created the day before)
    assert f["handled"] == 3 and f["averageHandle"] == pytest.approx((60 + 60 + 100) / 3, abs=1e-3)
    assert f["callsHandled"] == 1 and f["averageCallHandle"] == 120
    empty = figures([], [], since=t0, until=t0, sla_seconds=20)
    assert empty["serviceLevel"] is None and empty["averageWait"] is None


def test_not_ready_time_by_reason_starts_at_the_window() -> None:
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    ch = lambda agent, n, code, reason, sec: _row(  # noqa: E731
        agent_id=agent, num=n, new_code=code, reason=reason, at=t0 + timedelta(seconds=sec)
    )
    rows = [
        ch(1, 1, "001000", "lunch", -60),  # before the window: 60 s of it fall outside
        ch(1, 2, "002000", None, 30),
        ch(1, 3, "001000", None, 40),
        ch(2, 4, "001000", "lunch", 10),
    ]
    out = not_ready_by_reason(rows, since=t0, until=t0 + timedelta(seconds=100))
    assert out[1]["lunch"] == [0, 30.0] and out[1]["none"] == [1, 60.0]
    assert out[2]["lunch"] == [1, 90.0]


# --- reasons


async def test_a_reason_catalogue_refuses_unknown_reasons_and_free_text_works_without(
    server: ServerHandle,
) -> None:
    tokens = await floor_people(server)
    a1 = await server.agent("a1", add=False, ready=True)
    ok = await a1.request("setAgentState", {"state": "busy", "reason": "anything goes"})
    assert ok.get("error") is None  # no catalogue: free text, as in the spec
    async with api(server, tokens["boss"]) as c:
        r = await c.post("/api/reasons", json={"code": "LUNCH", "label": "Lunch break"})
        assert r.status_code == 201
        bad = await c.post("/api/reasons", json={"code": "with space", "label": "x"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_field"
        dup = await c.post("/api/reasons", json={"code": "LUNCH", "label": "again"})
        assert dup.json()["error"]["code"] == "invalid_field"
    async with api(server, tokens["a1"]) as c:
        assert (await c.get("/api/reasons")).json() == [{"code": "LUNCH", "label": "Lunch break"}]
    await a1.call("setAgentState", {"state": "idle"})
    refused = await a1.request("setAgentState", {"state": "busy", "reason": "coffee"})
    assert refused["error"]["code"] == "invalid_field"
    assert (await a1.call("getState"))["state"] == "002000"  # unchanged, connection intact
    await a1.call("setAgentState", {"state": "busy", "reason": "LUNCH"})
    async with api(server, tokens["boss"]) as c:
        hist = (await c.get("/api/agents/a1/states")).json()
        assert hist[-1]["new"] == "001000" and hist[-1]["reason"] == "LUNCH"
        m = (await c.get("/api/metrics")).json()
        lunch = {x["reason"]: x for x in m["notReady"]}["LUNCH"]
        assert lunch["label"] == "Lunch break" and lunch["count"] == 1


# --- a supervisor's actions


async def test_a_supervisor_sets_an_agents_state_and_logs_it_out_audited(server: ServerHandle) -> None:
    tokens = await floor_people(server)
    await add_reason(server.services.store, "MEETING", "Team meeting", now=server.settings.now())
    a1 = await server.agent("a1", add=False, ready=True)
    await server.agent("a3", add=False, ready=True)
    async with api(server, tokens["sup"]) as c:
        r = await c.post("/api/agents/a1/state", json={"state": "busy", "reason": "MEETING"})
        assert r.status_code == 200 and r.json()["state"] == "001000" and r.json()["by"] == "sup"
        push = await a1.next_event(mark="state")
        assert push["state"] == "001000" and push["payload"]["by"] == "sup"
        bad = await c.post("/api/agents/a1/state", json={"state": "idle", "reason": "x" * 40})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_field"
        unknown = await c.post("/api/agents/a1/state", json={"state": "busy", "reason": "NAP"})
        assert unknown.json()["error"]["code"] == "invalid_field"
        other = await c.post("/api/agents/a3/state", json={"state": "busy"})  # not its team
        assert other.status_code == 404 and other.json()["error"]["code"] == "no_such_agent"
        r = await c.post("/api/agents/a1/logout")
        assert r.json()["state"] == "000000"
        again = await c.post("/api/agents/a1/logout")
        assert again.status_code == 409 and again.json()["error"]["code"] == "invalid_state"
        floor = (await c.get("/api/floor")).json()
        a = {x["name"]: x for x in floor["agents"]}["a1"]
        assert a["state"] == "000000" and a["by"] == "sup"
    async with api(server, tokens["boss"]) as c:
        hist = (await c.get("/api/agents/a1/states")).json()
    assert [(h["new"], h["reason"], h["by"]) for h in hist[-2:]] == [
        ("001000", "MEETING", "sup"),
        ("000000", "logout", "sup"),
    ]
    assert hist[0]["by"] is None  # the agent's own changes name nobody


# --- live streams


async def sse(client: httpx.AsyncClient, path: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    async with client.stream("GET", path) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        event = ""
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                yield event, json.loads(line[6:])


@pytest.mark.server_settings(floor_push_interval=0.0)
async def test_the_floor_stream_shows_each_change(server: ServerHandle) -> None:
    tokens = await floor_people(server)
    a1 = await server.agent("a1", add=False)
    async with api(server, tokens["sup"]) as c:
        frames = sse(c, "/api/floor/stream")
        name, first = await anext(frames)
        assert name == "floor" and {a["name"]: a["state"] for a in first["agents"]}["a1"] == "001000"
        await a1.call("setAgentState", {"state": "idle"})
        while True:
            _, frame = await anext(frames)
            if {a["name"]: a["state"] for a in frame["agents"]}["a1"] == "002000":
                break
        v1 = await server.visitor("v1")
        await a1.call("setAgentState", {"state": "busy", "reason": "break"})
        sid = (await v1.send_message("hi"))["sessionId"]
        while True:
            _, frame = await anext(frames)
            if [q["sessionId"] for q in frame["queue"]] == [sid]:
                break
        await frames.aclose()
    async with api(server, tokens["boss"]) as c:
        metrics = sse(c, "/api/metrics/stream")
        name, m = await anext(metrics)
        assert name == "metrics" and m["waiting"] == 1 and "agents" not in m
        await v1.close_session()
        server.services.floor.changed()  # a session closing is shown at the next refresh
        while m["abandoned"] != 1:
            _, m = await anext(metrics)
        await metrics.aclose()


# --- wrap-up per team


async def test_a_teams_wrap_up_policy_ends_after_call_work_and_may_be_extended_once(
    server: ServerHandle,
) -> None:
    from kefu.protocol.machine import Event, Flow

    tokens = await floor_people(server)
    sv = server.services
    async with api(server, tokens["boss"]) as c:
        r = await c.post("/api/teams", json={"name": "fast", "wrapUpSeconds": 0.05, "wrapUpExtend": True})
        assert r.status_code == 201
        r = await c.post("/api/teams/fast/members", json={"agent": "a1"})
        assert r.json()["member"] is True
        bad = await c.post("/api/teams", json={"name": "neg", "wrapUpSeconds": -1})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_field"
    a1 = await server.agent("a1", add=False, ready=True)
    aid = (await sv.agents.get(1)).id
    assert sv.agents.wrap_up_seconds(aid) == 0.05 and sv.agents.wrap_up_seconds(aid + 1) == 0.0
    for event in (Event.invite, Event.accept, Event.agentHangup):
        await sv.agents.apply(aid, Flow.callVisitor, event, call_id="c1")
    codes = [(await a1.next_event(mark="state"))["state"] for _ in range(4)]
    assert codes == ["003001", "006011", "005004", "002000"]  # the team's timer, not the server's (0: none)
    # extending: once, only in after-call work
    with pytest.raises(Exception, match="not in after-call work"):
        await sv.agents.extend_wrap_up(await sv.agents.get(aid))
    for event in (Event.invite, Event.accept, Event.agentHangup):
        await sv.agents.apply(aid, Flow.callVisitor, event, call_id="c2")
    agent = await sv.agents.get(aid)
    due = await sv.agents.extend_wrap_up(agent)
    assert due == pytest.approx(agent.state_since.timestamp() + 0.1)
    with pytest.raises(Exception, match="once"):
        await sv.agents.extend_wrap_up(agent)
    codes = [(await a1.next_event(mark="state"))["state"] for _ in range(4)]
    assert codes[-1] == "002000"


async def test_wrap_up_codes_are_recorded_for_the_agents_own_sessions(server: ServerHandle) -> None:
    tokens = await floor_people(server)
    a1 = await server.agent("a1", add=False, ready=True)
    v1 = await server.visitor("v1")
    sid = (await v1.send_message("hi"))["sessionId"]
    await a1.next_event("sessionAssigned")
    async with api(server, tokens["a1"]) as c:
        r = await c.post("/api/wrapups", json={"code": "RESOLVED", "sessionId": sid, "note": "card blocked"})
        assert r.status_code == 201 and r.json()["code"] == "RESOLVED"
        none = await c.post("/api/wrapups", json={"code": "RESOLVED"})
        assert none.status_code == 400 and none.json()["error"]["code"] == "missing_field"
    async with api(server, tokens["a2"]) as c:
        other = await c.post("/api/wrapups", json={"code": "RESOLVED", "sessionId": sid})
        assert other.status_code == 404 and other.json()["error"]["code"] == "no_such_session"


def test_cli_teams_supervisors_and_reasons(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from kefu.cli import app

    run = CliRunner().invoke
    d = ["--data-dir", str(tmp_path)]
    assert run(app, ["team", "add", "retail", "--wrap-up-seconds", "30", *d]).exit_code == 0
    r = run(app, ["agent", "add", "s1", "--supervisor", "--team", "retail", "--password", "pw-s1-secret", *d])
    assert r.exit_code == 0 and "supervisor" in r.output
    assert run(app, ["agent", "add", "a1", "--password", "pw-a1-secret", *d]).exit_code == 0
    assert run(app, ["team", "assign", "retail", "a1", *d]).exit_code == 0
    listed = run(app, ["team", "list", *d])
    assert (
        listed.exit_code == 0 and "s1" in listed.output and "a1" in listed.output and "30 s" in listed.output
    )
    assert run(app, ["team", "assign", "nope", "a1", *d]).exit_code == 1
    assert run(app, ["reason", "add", "LUNCH", "Lunch break", *d]).exit_code == 0
    assert "Lunch break" in run(app, ["reason", "list", *d]).output
    assert run(app, ["reason", "add", "bad code", "x", *d]).exit_code == 1
    assert run(app, ["agent", "role", "a1", "--supervisor", *d]).exit_code == 0
    assert run(app, ["reason", "remove", "LUNCH", *d]).exit_code == 0
