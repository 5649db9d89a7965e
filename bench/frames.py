"""What a frame costs the server outside the database (issue 18, D77–D79).

``python -m bench.frames [--base /work/main] [--clients 50] [--seconds 5] [--rounds 3]``

Two ``kefu server`` processes (SQLite, the benchmarks' options), run side by
side: ``base`` from another checkout (``--base``: its ``.venv``'s Python and
its ``src``; main, for the same-run baseline) and ``new`` from this one.
``--clients`` visitors connect to each (``hello``), then, round by round and
the two servers alternating, each visitor sends ``ping`` and waits for the
``pong`` for ``--seconds`` (closed loop): a frame read, decoded and
dispatched, a reply built, encoded and written — no storage. Per window: the
server's CPU (% of a core, ``/proc``), round trips/s, the server's CPU per
round trip (µs) and the round trip's p50 / p99 at the client. ``--profile DIR``:
py-spy samples each window (raw collapsed stacks, ``DIR/frames-<server>-<round>.txt``).
Prints a table and one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from bench.common import percentiles, proc_sample
from bench.kefu_server import SERVER_OPTIONS, ws_of
from bench.procs import REPO, ServerProcess, profiled, python_env

__all__ = ["main"]


def _server(checkout: Path, workdir: Path) -> ServerProcess:
    python = checkout / ".venv" / "bin" / "python"
    argv = [str(python), "-m", "kefu.cli", "server", "--port", "0", "--data-dir", str(workdir / "data")]
    env = python_env()
    env["PYTHONPATH"] = str(checkout)  # its own bench and kefu, not this checkout's
    return ServerProcess(
        [*argv, *SERVER_OPTIONS],
        pattern=r"kefu server listening on (http://127\.0\.0\.1:\d+)",
        log=workdir / "server.log",
        env=env,
    )


async def _hello(url: str, n: int) -> ClientConnection:
    ws = await connect(url, max_size=None)
    await ws.send(json.dumps({"v": 1, "id": "h", "mark": "hello", "params": {"name": f"bench-{n}"}}))
    reply = json.loads(await ws.recv())
    assert reply.get("subMark") == "success", reply
    return ws


async def _pings(ws: ClientConnection, until: float, rtts: list[float]) -> None:
    n = 0
    while time.monotonic() < until:
        n += 1
        t0 = time.perf_counter()
        await ws.send(f'{{"v":1,"id":"p{n}","mark":"ping"}}')
        while True:  # pushes (a queue position…) may come between
            msg = json.loads(await ws.recv())
            if msg.get("id") == f"p{n}":
                break
        assert msg.get("subMark") == "pong", msg
        rtts.append((time.perf_counter() - t0) * 1000)


async def _window(srv: ServerProcess, clients: list[ClientConnection], seconds: float) -> dict[str, Any]:
    rtts: list[float] = []
    before = proc_sample(srv.pid)
    until = time.monotonic() + seconds
    await asyncio.gather(*(_pings(ws, until, rtts) for ws in clients))
    after = proc_sample(srv.pid)
    wall = after.at - before.at
    cpu_s = after.cpu_s - before.cpu_s
    p = percentiles(rtts)
    return {
        "cpu_pct": round(100 * cpu_s / wall, 1),
        "rtt_per_s": round(len(rtts) / wall),
        "cpu_us_per_rtt": round(cpu_s / len(rtts) * 1e6, 1),
        "p50_ms": round(p["p50"] or 0.0, 2),
        "p99_ms": round(p["p99"] or 0.0, 2),
    }


async def run(
    base: Path, clients: int, seconds: float, rounds: int, profile: Path | None = None
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kefu-frames-") as tmp:
        servers = {
            "base": _server(base, Path(tmp) / "base").start(),
            "new": _server(REPO, Path(tmp) / "new").start(),
        }
        try:
            conns = {
                name: [await _hello(ws_of(srv.url) + "/ws/visitor", i) for i in range(clients)]
                for name, srv in servers.items()
            }
            out: dict[str, list[dict[str, Any]]] = {"base": [], "new": []}
            for r in range(rounds):
                order = ("base", "new") if r % 2 == 0 else ("new", "base")
                for name in order:
                    srv = servers[name]
                    if profile is None:
                        out[name].append(await _window(srv, conns[name], seconds))
                        continue
                    with profiled(srv.pid, profile / f"frames-{name}-{r + 1}.txt"):
                        out[name].append(await _window(srv, conns[name], seconds))
            for cs in conns.values():
                for ws in cs:
                    await ws.close()
        finally:
            for srv in servers.values():
                srv.stop()
    return {"clients": clients, "seconds": seconds, "checkout": str(base), "load": os.getloadavg(), **out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", type=Path, default=Path("/work/main"), help="the baseline's checkout")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", type=Path, default=None, help="a folder for py-spy's raw stacks")
    args = ap.parse_args()
    res = asyncio.run(run(args.base, args.clients, args.seconds, args.rounds, args.profile))
    print(
        f"{'round':>5s} {'server':>6s} {'cpu %':>6s} {'rtt/s':>7s} {'µs/rtt':>7s} {'p50 ms':>7s} {'p99 ms':>7s}"
    )
    for r in range(args.rounds):
        for name in ("base", "new"):
            w = res[name][r]
            print(
                f"{r + 1:5d} {name:>6s} {w['cpu_pct']:6.1f} {w['rtt_per_s']:7d} {w['cpu_us_per_rtt']:7.1f} "
                f"{w['p50_ms']:7.2f} {w['p99_ms']:7.2f}"
            )
    print(json.dumps(res))


if __name__ == "__main__":
    main()
