"""Bad input end to end: with the agent logged in, every bad frame gets an
error in the spec's form, and the connection serves the next good request —
one the plugin forwards to the server and back (reliability §8)."""

from __future__ import annotations

import json
import queue
from pathlib import Path
from typing import Any

from kefu.protocol import MAX_MESSAGE_BYTES
from kefu.sdk import IMClient
from tests.plugin.harness import LIMIT, Raw, Stack, ThreadedStack

BAD: list[tuple[str | bytes, str]] = [
    ("{not json", "bad_json"),
    ('{"v":1,"id":"1","mark":"sessionCount"', "bad_json"),
    ('"just a string"', "bad_request"),
    ("42", "bad_request"),
    ('{"v":1,"mark":"sessionCount"}', "missing_field"),  # no id
    ('{"v":1,"id":"","mark":"sessionCount"}', "invalid_field"),
    ('{"v":1,"id":"x","mark":"runProgram","params":{"path":"/bin/sh"}}', "unknown_mark"),
    ('{"v":1,"id":"x","mark":"writeFile","params":{"path":"../../x"}}', "unknown_mark"),
    ('{"v":1,"id":"x","mark":"pickUpSession","params":{"session_id":["s"]}}', "invalid_field"),
    ('{"v":1,"id":"x","mark":"setAgentState","params":{"state":"IDLE"}}', "invalid_field"),
    ('{"v":1,"id":"x","mark":"setAgentState","params":{"state":"idle","extra":1}}', "invalid_field"),
    ('{"v":1,"id":"x","mark":"sendMessage","params":{"session_id":"s","text":""}}', "invalid_field"),
    ('{"v":1,"id":"x","mark":"startLogin","params":{"data":{}}}', "missing_field"),
    ('{"v":"1","id":"x","mark":"sessionCount"}', "unsupported_version"),
    ('{"v":1,"id":"x","mark":"sessionCount","params":[]}', "invalid_field"),
    ('{"v":1,"id":"x","id":"y","mark":"sessionCount"}', "bad_json"),
    ('{"v":1,"id":"x","mark":"sessionCount","params":{"n":1e400}}', "bad_json"),
    ('{"v":1,"id":"x","mark":"sessionCount","params":{"n":' + "9" * 30 + "}}", "bad_json"),
    ('{"v":1,"id":"x","mark":"sendMessage","params":{"session_id":"s","text":"\\ud800"}}', "bad_json"),
    (b'{"v":1,"id":"x","mark":"sessionCount"}', "binary_frame"),
    (b"\xff\xfe\x00", "binary_frame"),
    ("x" * (1024 * 1024), "too_large"),  # a 1 MiB frame
    ('{"v":1,"id":"x","mark":"sessionCount","params":{"p":"' + "y" * MAX_MESSAGE_BYTES + '"}}', "too_large"),
]


async def test_bad_frames_get_errors_and_the_next_request_reaches_the_server(tmp_path: Path) -> None:
    async with Stack(tmp_path) as stack:
        async with Raw.connect(stack.p) as raw:
            login = await raw.call("login", "startLogin", {"data": {"url": stack.login_url()}})
            assert login["subMark"] == "success"
            for i, (frame, code) in enumerate(BAD):
                await raw.send(frame)
                while True:
                    reply = await raw.recv()
                    if reply.get("subMark") == "error":
                        break
                    raw.pushes.append(reply)
                assert reply["error"]["code"] == code, (str(frame)[:50], reply)
                assert reply["error"]["msg"], frame
                good = await raw.call(f"ok{i}", "sessionCount")
                assert good["subMark"] == "success" and good["payload"] == {"sessionCount": 0}, frame
            assert raw.ws.protocol.close_rcvd is None
            assert stack.p.link is not None and stack.p.link.up  # the agent's link never noticed


def test_bad_parameters_through_the_imclient(tmp_path: Path) -> None:
    with ThreadedStack(tmp_path) as ts:
        errors: queue.Queue[dict[str, Any]] = queue.Queue()
        client = IMClient(ts.stack.options())
        try:
            client.startLogin({"data": {"url": ts.stack.login_url()}}).result(LIMIT)
            for api, params, field in (
                ("pickUpSession", {}, "params.session_id"),
                ("pickUpSession", {"session_id": 7}, "params.session_id"),
                ("setWindowSize", {"width": "wide", "height": "400"}, "params.width"),
                ("setAgentState", {"state": "asleep"}, "params.state"),
                ("startLogin", {"data": {"url": "http://evil.example/doLogin"}}, "params.data.url"),
                ("startup", {"clientUrl": "file:///bin/sh"}, "params.clientUrl"),
                ("sessionCount", {"unexpected": True}, "params.unexpected"),
            ):
                getattr(client, api)({**params, "error": errors.put}).result(LIMIT)
                data = errors.get(timeout=LIMIT)
                assert data["error"]["field"] == field, (api, data)
                assert data["error"]["msg"] and json.dumps(data)
                count = client.sessionCount().result(LIMIT)
                assert count["payload"]["sessionCount"] == 0
        finally:
            client.close()
