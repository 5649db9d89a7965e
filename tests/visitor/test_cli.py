"""`kefu visitor` with calls: options, the timeline it prints, when it stops,
against the scripted visitor socket (tests/visitor/peer.py); Ctrl-C in a
real child process."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest
from typer.testing import CliRunner

from kefu.cli import app
from kefu.visitor.cli import Options, run
from tests.conftest import child_env

from .peer import ScriptedServer, error


@pytest.fixture(autouse=True)
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # the calls table on one line a row


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--source", "bogus"], "source 'bogus': use 'pattern', 'device:/dev/videoN' or 'file:<path>'"),
        (["--source", "file:/nonexistent/x.webm"], "does not exist"),
        (["--audio-input", "mic"], "audio_input 'mic'"),
        (["--on-invite", "maybe"], "Invalid value"),
        (["--hangup-after", "-1"], "Invalid value"),
    ],
)
def test_bad_options_exit_2_saying_what_to_change(args: list[str], says: str) -> None:
    result = CliRunner().invoke(app, ["visitor", "v1", "--server", "http://127.0.0.1:9", *args])
    assert result.exit_code == 2
    assert says in " ".join(result.output.split())  # typer's box may wrap it


async def test_it_takes_an_invitation_and_hangs_up_after_a_while(
    scripted: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    opts = Options("v1", scripted.url, [], on_invite="accept", hangup_after=0.05, allow_photo=False)
    task = asyncio.create_task(run(opts))
    await scripted.push("photoRequest", {"callId": "c0", "requestId": "p1", "agentName": "a1"})
    assert (await scripted.next_request("photoAnswer"))["params"]["answer"] == "disabled"
    await scripted.call("c1", "invited", agentName="a1", role="visitor")
    assert (await scripted.next_request("answerCall"))["params"] == {"callId": "c1", "answer": "accept"}
    assert (await scripted.next_request("hangup"))["params"] == {"callId": "c1"}
    assert await asyncio.wait_for(task, 10) == 0  # its call is over: done
    out = capsys.readouterr().out
    timeline = [line.split("s  ", 1)[1] for line in out.splitlines() if line[:8].strip().endswith("s")]
    assert timeline == [
        "connected as v1 (id vid-1; key key-1)",
        "call c0: agent a1 takes a photo (p1)",
        "call c0: photo p1: photos are disabled here",
        "call c1: agent a1 invites you to a video call",
        "call c1: you accepted the invitation (automatically)",
        "call c1: you hung up",
    ]
    row = next(line for line in out.splitlines() if line.startswith("│ c1 "))
    assert [cell.strip() for cell in row.split("│")[1:-1]] == [
        "c1",
        "a1",
        "invited",
        "accepted",
        "",
        "",
        "you hung up",
    ]


async def test_it_asks_for_video_joins_and_leaves_when_the_call_ends(
    scripted: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    scripted.answers["sendMessage"] = lambda _: {
        "subMark": "success",
        "payload": {"sessionId": "s1", "status": "open"},
    }
    scripted.answers["requestVideo"] = lambda _: {"subMark": "success", "payload": {"callId": "c1"}}
    task = asyncio.create_task(run(Options("v1", scripted.url, ["I need help"], request_video=True)))
    await scripted.next_request("requestVideo")
    await scripted.call("c1", "ringing", agentName="a1")
    await scripted.call("c1", "accepted", agentName="a1")
    assert (await scripted.next_request("joinCall"))["params"] == {"callId": "c1"}
    await scripted.call("c1", "ended", by="a1", reason="agent hung up")
    assert await asyncio.wait_for(task, 10) == 0
    assert "hangup" not in scripted.marks()  # it ended on the agent's side
    out = capsys.readouterr().out
    for line in (
        "you: I need help",
        "call c1: you asked for video",
        "call c1: your video request rings for agent a1",
        "call c1: you joined the call (automatically)",
        "call c1: ended by a1 (agent hung up)",
    ):
        assert line in out


async def test_it_waits_for_an_agent_before_asking_for_video(
    scripted: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assigned = False
    scripted.answers["sendMessage"] = lambda _: {
        "subMark": "success",
        "payload": {"sessionId": "s1", "status": "queued", "position": 1},
    }
    scripted.answers["requestVideo"] = lambda _: (
        {"subMark": "success", "payload": {"callId": "c1"}}
        if assigned
        else error("no_such_session", "no open session with an agent")
    )
    task = asyncio.create_task(run(Options("v1", scripted.url, ["hello"], request_video=True)))
    await scripted.next_request("sendMessage")
    await scripted.push("queue", {"position": 1})
    assigned = True
    await scripted.push("sessionAssigned", {"sessionId": "s1", "agentName": "a1"})
    await scripted.next_request("requestVideo")
    await scripted.call("c1", "cancelled", reason="timeout")  # the agent did not pick up
    assert await asyncio.wait_for(task, 10) == 0  # it asked after the agent came, and the call is over
    out = capsys.readouterr().out
    assert out.index("agent a1 took the session s1") < out.index("call c1: you asked for video")
    assert "call c1: over before it connected (timeout)" in out


async def test_a_refused_video_request_exits_1_with_a_hint(
    scripted: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    scripted.answers["sendMessage"] = lambda _: {
        "subMark": "success",
        "payload": {"sessionId": "s1", "status": "open"},
    }
    scripted.answers["requestVideo"] = lambda _: error("no_such_session", "no open session with an agent")
    assert await run(Options("v1", scripted.url, ["hello"], request_video=True)) == 1
    out = capsys.readouterr().out
    assert (
        "asking for video failed: no_such_session: no open session with an agent (send a message first" in out
    )


async def test_when_wait_is_up_it_hangs_up_and_exits_0(
    scripted: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    task = asyncio.create_task(run(Options("v1", scripted.url, [], wait=0.5)))
    await scripted.call("c1", "invited", agentName="a1")
    await scripted.next_request("answerCall")
    assert (await scripted.next_request("hangup", within=10))["params"] == {"callId": "c1"}
    assert await asyncio.wait_for(task, 10) == 0
    out = capsys.readouterr().out
    assert "0.5 s are up" in out and "hanging up before leaving" in out


async def test_the_server_dropping_it_exits_1(
    scripted: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    task = asyncio.create_task(run(Options("v1", scripted.url, [])))
    await scripted.call("c0", "cancelled", reason="timeout")  # returns once it is connected
    assert scripted.ws is not None
    await scripted.ws.close(1011, "server restarting")
    assert await asyncio.wait_for(task, 10) == 1
    out = capsys.readouterr().out
    assert "disconnected (1011 server restarting)" in out
    assert "the server closed the connection; run again to come back (with --key)" in out


async def test_it_says_when_the_address_is_no_kefu_server(capsys: pytest.CaptureFixture[str]) -> None:
    assert await run(Options("v1", "http://127.0.0.1:9", [])) == 1
    assert "cannot reach http://127.0.0.1:9" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("sig", "ignored", "says"),
    [
        (signal.SIGINT, False, "stopped (Ctrl-C)"),
        # started in a script's background (or a CI runner): SIGINT ignored, as the shell does
        (signal.SIGINT, True, "stopped (Ctrl-C)"),
        (signal.SIGTERM, False, "stopped (SIGTERM)"),
    ],
    ids=["ctrl-c", "ctrl-c-in-a-background-job", "sigterm"],
)
async def test_ctrl_c_or_sigterm_hangs_up_and_exits_0(
    scripted: ScriptedServer, sig: signal.Signals, ignored: bool, says: str
) -> None:
    def start_ignoring_sigint() -> None:  # in the child, before it runs Python
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kefu.cli",
        "visitor",
        "v1",
        "--server",
        scripted.url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=child_env(COLUMNS="200"),
        preexec_fn=start_ignoring_sigint if ignored else None,
    )
    try:
        await scripted.call("c1", "invited", agentName="a1")  # waits for the child to connect
        await scripted.next_request("answerCall", within=30)
        proc.send_signal(sig)
        assert (await scripted.next_request("hangup", within=30))["params"] == {"callId": "c1"}
        async with asyncio.timeout(30):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    assert says in text and "hanging up before leaving" in text and "call c1: you hung up" in text


async def test_at_debug_level_it_logs_the_frames_but_not_their_secrets(scripted: ScriptedServer) -> None:
    """`--log-level debug` shows websockets' frames on stderr, redacted (kefu.logs): the
    visitorKey of the hello, a credential for coming back, is in no line."""
    key = "vk-" + os.urandom(6).hex()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kefu.cli",
        "visitor",
        "v1",
        "--server",
        scripted.url,
        "--key",
        key,
        "--chat",
        "hello",
        "--wait",
        "0.2",
        "--log-level",
        "debug",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=child_env(COLUMNS="200"),
    )
    async with asyncio.timeout(30):
        _, err = await proc.communicate()
    log = err.decode()
    assert proc.returncode == 0, log
    assert (await scripted.next_request("sendMessage"))["params"]["text"] == "hello"
    assert "> TEXT (content not logged)" in log  # the hello and the message, as frames
    assert key[-8:] not in log  # not even the tail websockets keeps of a long frame
