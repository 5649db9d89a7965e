"""A supervisor helping in a call (issue 20), hub mode on loopback: how soon each mode acts.

``run(quick) -> dict`` measures, with 320x240 at 15 fps (the test media), over
``tries`` calls (a new visitor each), from the supervisor's request's ``success``:

* ``monitorCall`` → the first frame of the visitor's camera at the supervisor
  (the hub offers it a connection with every member's tracks);
* ``whisper`` → the first frame of the supervisor's audio at the agent's hub
  (the supervisor sends its microphone: one renegotiation with the hub);
* ``barge`` → the first frame of the supervisor's audio at the visitor (the
  hub forwards it: one renegotiation with the visitor);

and, in the same run, the baseline those compare with: the agent's
``acceptSuccess`` → the first frame of the visitor's camera at the hub (the
call's own media setup). Every process is this one (server, both plugins, the
visitor); run from the source tree (it uses the tests' kits).
``python -m bench.supervise [--quick]``; ``kefu bench supervise``.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["measure", "run"]


async def measure(quick: bool) -> dict[str, Any]:
    try:
        from tests.conftest import Clock, ServerHandle, fast_settings
    except ImportError:
        return {"supervise_skipped": "run from the source tree (tests/e2e)"}
    tries = 3 if quick else 9
    with tempfile.TemporaryDirectory(prefix="kefu-bench-supervise-") as tmp:
        folder = Path(tmp)
        server = ServerHandle(fast_settings(folder / "server", Clock(), ring_timeout=10.0, call_grace=1.0))
        await server.start()
        try:
            times = await _measure(server, folder, tries)
        finally:
            await server.stop()
    out: dict[str, Any] = {"supervise_media": "320x240 @ 15 fps, VP8 + Opus, hub mode, loopback"}
    for key, values in times.items():
        out[f"{key}_p50_ms"] = round(statistics.median(values), 1)
        out[f"{key}_max_ms"] = round(max(values), 1)
    out["supervise_tries"] = tries
    return out


async def _measure(server: Any, folder: Path, tries: int) -> dict[str, list[float]]:
    from tests.e2e.callkit import SMALL_MEDIA, AgentSide
    from tests.plugin.harness import LIMIT

    from kefu.server.teams import add_team, assign, set_supervisor
    from kefu.visitor import MediaStatus

    sv = server.services
    for name in ("ba1", "boss"):
        await server.add_agent(name)
    await set_supervisor(sv.store, "boss")
    await add_team(sv.store, "t1", now=server.settings.now())
    for name in ("ba1", "boss"):
        await assign(sv.store, "t1", name)
    agent = await AgentSide(server, "ba1", folder / "plugin-ba1", media=SMALL_MEDIA).start(ready=True)
    boss = await AgentSide(server, "boss", folder / "plugin-boss", media=SMALL_MEDIA).start()
    times: dict[str, list[float]] = {
        "accept_to_first_frame": [],
        "monitor_to_first_frame": [],
        "whisper_to_agent_hears": [],
        "barge_to_visitor_hears": [],
    }
    try:
        for i in range(tries):
            v = await server.visitor(f"bv{i}", media=SMALL_MEDIA, on_invite="accept")
            c = agent.call("callbackToVisitor", {"visitorName": v.name})
            accepted = await c.callback("acceptSuccess", "006011")
            t0 = time.perf_counter()
            hub = agent.plugin.hub
            await hub.peer(v.name).next_frame(v.name, "camera", within=LIMIT)
            times["accept_to_first_frame"].append(1000 * (time.perf_counter() - t0))
            await v.wait_for(MediaStatus, lambda e: e.status == "connected", within=LIMIT)
            call_id = accepted["payload"]["callId"]

            await boss.call("monitorCall", {"callId": call_id}).callback("success")
            t0 = time.perf_counter()
            mine = boss.plugin.media.calls[call_id]
            await mine.member.peer.next_frame(v.name, "camera", within=LIMIT)
            times["monitor_to_first_frame"].append(1000 * (time.perf_counter() - t0))

            await boss.call("whisper").callback("success")
            t0 = time.perf_counter()
            await hub.peer("boss").next_frame("boss", "mic", within=LIMIT)
            times["whisper_to_agent_hears"].append(1000 * (time.perf_counter() - t0))

            await boss.call("barge").callback("success")
            t0 = time.perf_counter()
            await v.media.peer.next_frame("boss", "mic", within=LIMIT)
            times["barge_to_visitor_hears"].append(1000 * (time.perf_counter() - t0))

            await boss.call("leaveMonitor").callback("success")
            await agent.call("videoDisconnect").callback("success")
            await v.wait_for(MediaStatus, lambda e: e.status == "closed", within=LIMIT)
            await agent.call("setAgentState", {"state": "idle"}).callback("success")
            await agent.plugin.media.wait_closed()
            await boss.plugin.media.wait_closed()
        return times
    finally:
        await boss.close()
        await agent.close()


def run(quick: bool) -> dict[str, Any]:
    """Measure; a flat dict of figures (bench/registry.py makes rows of it)."""
    return asyncio.run(measure(quick))


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run("--quick" in sys.argv), indent=1))
