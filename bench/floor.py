"""How live the floor is (issue 20): an agent's state change → the floor stream's frame showing it.

``python -m bench.floor [--changes N] [--push-interval S] [--agents A] [--gap S]``

One server (SQLite in a temporary folder, in this process), ``A`` agents
connected on ``/ws/agent``, an admin watching ``/api/floor/stream`` (the
stream the supervisor page's ``EventSource`` reads). One agent toggles ready /
not ready ``N`` times, ``--gap`` seconds after the previous change was shown; the
figure is the time from sending ``setAgentState`` to the SSE frame that shows
the new state (the page then parses and draws it: a few ms more in
Chromium, measured in tests/browser/test_supervisor.py only as "it updates").
With the default ``--push-interval 0.2`` a change that comes within 0.2 s of
the last round waits for the next one (``--gap 0`` shows it: every change
then waits ~0.2 s); that coalescing bounds the floor's reads to 5 per second
however busy the centre.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import percentiles
from kefu.server import ServerRunner, Settings
from kefu.server.accounts import add_agent
from kefu.visitor import ws_url
from kefu.visitor.link import Link

__all__ = ["measure"]


async def measure(changes: int, push_interval: float, agents: int, gap: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        s = Settings(
            port=0,
            data_dir=Path(tmp),
            scrypt_n=2**10,
            log_level="warning",
            floor_push_interval=push_interval,
            queue_push_interval=0.2,
            rate_limit_messages=1_000_000,
        )
        async with ServerRunner(s) as url:
            links: list[Link] = []
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                from kefu.server.store import Store

                store = Store(s)
                await store.open()
                try:
                    await add_agent(store, "boss", "password", admin=True, now=s.now(), scrypt_n=2**10)
                    for i in range(agents):
                        await add_agent(store, f"a{i}", "password", now=s.now(), scrypt_n=2**10)
                finally:
                    await store.close()
                for i in range(agents):
                    tok = (
                        await http.post("/api/login", json={"name": f"a{i}", "password": "password"})
                    ).json()
                    link = Link(ws_url(url, "/ws/agent"), timeout=30)
                    await link.connect()
                    await link.request("auth", {"token": tok["token"], "lastSeq": 0})
                    links.append(link)
                boss = (await http.post("/api/login", json={"name": "boss", "password": "password"})).json()
                headers = {"Authorization": f"Bearer {boss['token']}"}
                lat: list[float] = []
                async with http.stream("GET", "/api/floor/stream", headers=headers) as r:
                    lines = r.aiter_lines()

                    async def state_of_a0() -> str:
                        while True:
                            line = await anext(lines)
                            if line.startswith("data: "):
                                frame = json.loads(line[6:])
                                return next(a["state"] for a in frame["agents"] if a["name"] == "a0")

                    await state_of_a0()
                    for n in range(changes):
                        if gap > 0:
                            await asyncio.sleep(gap)  # the pace of the changes, not a wait for an event
                        want = "002000" if n % 2 == 0 else "001000"
                        t0 = time.perf_counter()
                        await links[0].call("setAgentState", {"state": "idle" if n % 2 == 0 else "busy"})
                        while await state_of_a0() != want:
                            pass
                        lat.append((time.perf_counter() - t0) * 1000)
                for link in links:
                    await link.disconnect()
    p = percentiles(lat, (50, 90, 99))
    return {"changes": changes, "agents": agents, "pushInterval": push_interval, "gap": gap, "ms": p}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--changes", type=int, default=200)
    ap.add_argument("--push-interval", type=float, default=0.2)
    ap.add_argument("--agents", type=int, default=50)
    ap.add_argument("--gap", type=float, default=0.3, help="seconds between two changes (0: back to back)")
    a = ap.parse_args()
    print(json.dumps(asyncio.run(measure(a.changes, a.push_interval, a.agents, a.gap))))


if __name__ == "__main__":
    main()
