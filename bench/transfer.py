"""A blind call transfer's media gap (issue 20, D30), against the call's own start.

The server is its own process (``kefu server``); two real plugins (aiortc, the
hub mode) and their SDK ``Client``, and a Python visitor (``kefu.visitor``,
auto-accept) run in this process, all on 127.0.0.1, 320x240 at 15 fps. Each
round:

- **baseline** (the same run): agent 1 calls the visitor out; from its
  ``acceptSuccess`` (006011) to the visitor's first decoded frame of agent 1
  — the hub's offer, the answer, ICE and DTLS, the first frame;
- **transfer**: agent 1 hands the call to agent 2 (``transferCall``, blind);
  from agent 2's ``multipleVideoPickUp`` reply (006023) to the visitor's first
  decoded frame of agent 2 — the old hub closing, agent 2's plugin making the
  new hub and offering, the visitor answering it.

``python -m bench.transfer [--rounds N]`` prints the medians and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import machine_info
from bench.kefu_server import AGENT_PASSWORD, add_agents, kefu_process
from kefu.media import MediaSettings
from kefu.plugin import Plugin
from kefu.plugin.settings import PluginSettings
from kefu.sdk import Client
from kefu.visitor import MediaStatus, Visitor

__all__ = ["main", "run"]

MEDIA = MediaSettings(video_width=320, video_height=240, fps=15, record=False, close_timeout=1.0)
AGENTS = ("bench-t1", "bench-t2")


async def _agent(url: str, name: str, folder: Path) -> tuple[Plugin, Client]:
    plugin = Plugin(PluginSettings(server_url=url, port=0, data_dir=folder, media=MEDIA))
    await plugin.start()
    client = Client(plugin.url, data_dir=folder)
    await client.__aenter__()
    await client.start_login(f"{url}/doLogin?name={name}&pwd={AGENT_PASSWORD}&returnTo=")
    await client.set_agent_state("idle")
    return plugin, client


async def _first_frame_of(v: Visitor, agent: str, mark: int) -> None:
    await v.wait_for(
        MediaStatus, lambda e: e.status == "connected" and v.timeline.index(e) >= mark, within=20
    )
    assert v.media is not None
    await v.media.peer.next_frame(agent, "camera", within=20)


async def _round(url: str, c1: Client, c2: Client, v: Visitor) -> tuple[float, float]:
    mark = len(v.timeline)
    call = c1.stream("callbackToVisitor", {"visitorName": v.name})
    async for r in call:
        if r.state == "006011":
            break
    start = time.perf_counter()
    await _first_frame_of(v, AGENTS[0], mark)
    baseline = (time.perf_counter() - start) * 1000
    transfer = c1.stream("transferCall", {"agentName": AGENTS[1]})
    await anext(transfer)  # inviteSuccess, 007003
    mark = len(v.timeline)
    picked = await c2.request("multipleVideoPickUp")
    start = time.perf_counter()
    assert picked.state == "006023", picked
    await _first_frame_of(v, AGENTS[1], mark)
    moved = (time.perf_counter() - start) * 1000
    async for r in transfer:
        if r.state == "005011":
            break
    await c2.request("videoDisconnect")
    for c in (c1, c2):
        await c.set_agent_state("idle")
    return baseline, moved


async def _run(work: Path, rounds: int) -> dict[str, Any]:
    server = kefu_process(work).start()
    sides: list[tuple[Plugin, Client]] = []
    try:
        for name in AGENTS:
            sides.append(await _agent(server.url, name, work / f"plugin-{name}"))
        (_, c1), (_, c2) = sides
        base, moved = [], []
        async with Visitor(server.url, "bench-v", on_invite="accept", media=MEDIA, timeout=20) as v:
            for _ in range(rounds):
                b, m = await _round(server.url, c1, c2, v)
                base.append(b)
                moved.append(m)
                await v.settled()
    finally:
        for plugin, client in sides:
            await client.aclose()
            await plugin.aclose()
        server.stop()
    b50, m50 = statistics.median(base), statistics.median(moved)
    return {
        "machine": machine_info(),
        "rounds": rounds,
        "baseline_ms": base,
        "transfer_ms": moved,
        "baseline_p50_ms": round(b50, 1),
        "transfer_p50_ms": round(m50, 1),
        "ratio": round(m50 / b50, 2),
    }


def run(rounds: int = 5) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kefu-bench-transfer-") as tmp:
        work = Path(tmp)
        add_agents(work / "data", AGENTS, capacity=5)
        return asyncio.run(_run(work, rounds))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    result = run(ap.parse_args(argv).rounds)
    print(
        f"call start (accepted → first frame of agent 1): p50 {result['baseline_p50_ms']} ms\n"
        f"blind transfer (picked up → first frame of agent 2): p50 {result['transfer_p50_ms']} ms"
        f" ({result['ratio']}x the call's start)\n"
        f"rounds {result['rounds']}: baseline {[round(x) for x in result['baseline_ms']]},"
        f" transfer {[round(x) for x in result['transfer_ms']]}"
    )


if __name__ == "__main__":
    main()
