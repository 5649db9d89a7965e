"""Media benchmark: WebRTC between the agent's hub and visitors, on 127.0.0.1.

``run(quick) -> dict`` measures

* offer → first decoded frame, for a bare aiortc pair (the baseline: two
  ``RTCPeerConnection`` objects, aiortc's own green ``VideoStreamTrack``) and
  for kefu's pair (a :class:`~kefu.media.MediaHub` peer and a
  :class:`~kefu.media.MediaMember` with the test pattern), both 640x480;
* the latency of a snapshot (JPEG of the latest received frame);
* (bench/sfu.py, root only) the SFU mode through a real Janus against the hub
  mode: accept → first frame, the plugin's CPU in two- and three-party calls,
  Janus's CPU per forwarded stream, hang-up → downloadable recording;
* the CPU of the hub's process with one member (two-party), with one member
  while recording, and with two members (three-party: the hub forwards B to C
  and C to B), at 640x480 / 30 fps. Members run in their own processes
  (``python -m bench.media --member NAME``), so the hub's figure is the hub's
  alone; their CPU is reported beside it.

Both pairs keep traffic on 127.0.0.1: no STUN server, host candidates on
loopback only (the bare pair too, through kefu.media.host_addresses, as
aioice would otherwise offer the machine's other addresses).

``python -m bench.media [--quick]`` prints the table; ``kefu bench media``
runs it through bench/registry.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, VideoStreamTrack

from kefu.media import (
    MediaHub,
    MediaMember,
    MediaPeer,
    MediaSettings,
    NegotiationNeeded,
    host_addresses,
    open_source,
)

__all__ = ["run"]

ROOT = Path(__file__).resolve().parents[1]
SIZE = (640, 480)
FPS = 30


def _settings(**extra: Any) -> MediaSettings:
    return MediaSettings(video_width=SIZE[0], video_height=SIZE[1], fps=FPS, close_timeout=2.0, **extra)


# ---------------------------------------------------------------- offer → first frame
async def _bare_first_frame() -> float:
    """aiortc alone: offer → first decoded frame at the answerer, in ms."""
    a = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    b = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    got: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    readers: set[asyncio.Future[None]] = set()

    @b.on("track")
    def on_track(track: Any) -> None:
        async def first() -> None:
            await track.recv()
            if not got.done():
                got.set_result(time.perf_counter())

        readers.add(asyncio.ensure_future(first()))

    a.addTrack(VideoStreamTrack())
    try:
        start = time.perf_counter()
        with host_addresses(("127.0.0.1",)):
            await a.setLocalDescription(await a.createOffer())
            await b.setRemoteDescription(a.localDescription)
            await b.setLocalDescription(await b.createAnswer())
            await a.setRemoteDescription(b.localDescription)
        end = await asyncio.wait_for(got, 10)
        return (end - start) * 1000
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.wait_for(a.close(), 5)
        await asyncio.wait_for(b.close(), 5)


async def _kefu_first_frame(s: MediaSettings | None = None) -> tuple[float, float]:
    """kefu: the hub's offer → the member's first decoded frame, in ms; and a
    snapshot's latency at the hub, in ms."""
    s = s if s is not None else _settings()
    source = open_source(s, "agent")
    hub = MediaHub(s, call_id="bench", local="agent", source=source)
    member = MediaMember(s, local="v1", hub="agent")
    try:
        peer = hub.add_member("v1")
        start = time.perf_counter()
        first = asyncio.ensure_future(member.peer.next_frame(within=10))
        offer = await peer.negotiate()
        answer = await member.handle(offer)
        await peer.handle(answer)
        await first
        first_ms = (time.perf_counter() - start) * 1000
        await peer.next_frame(within=10)
        shots = []
        for _ in range(5):
            t = time.perf_counter()
            await hub.snapshot("v1")
            shots.append((time.perf_counter() - t) * 1000)
        return first_ms, statistics.median(shots)
    finally:
        await hub.close()
        await member.close()
        source.stop()


# ---------------------------------------------------------------- through a TURN relay (coturn)
RELAY_ADDRESS = "10.77.0.2"


async def _relay_main(url: str, username: str, credential: str, tries: int) -> None:
    """Child, inside the relay's namespace: first frame direct (host candidates
    on loopback) and through coturn only (no host candidate: relay to relay),
    the same number of tries, one JSON line out."""
    from kefu.media import IceServer

    turn = IceServer((url,), username, credential)
    direct = [(await _kefu_first_frame())[0] for _ in range(tries)]
    relayed = [
        (await _kefu_first_frame(_settings(ice_servers=(turn,), host_addresses=())))[0] for _ in range(tries)
    ]
    print(json.dumps({"direct": direct, "relay": relayed}), flush=True)


def _cpu_seconds(pid: int) -> float:
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _through_relay(tries: int) -> dict[str, Any]:
    """accept → first frame through coturn against direct, in one namespace of
    tests/netns/topology.py (root only), and coturn's CPU meanwhile."""
    try:
        from tests.netns.topology import Topology, unavailable
    except ImportError:
        return {"relay_skipped": "run from the source tree (tests/netns/topology.py)"}
    why = unavailable()
    if why is not None:
        return {"relay_skipped": why}
    from kefu.server.turn import TurnIssuer

    secret = secrets.token_hex(16)
    topo = Topology()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            conf = Path(tmp) / "turnserver.conf"
            conf.write_text(
                f"listening-ip={RELAY_ADDRESS}\nrelay-ip={RELAY_ADDRESS}\nlistening-port=3478\n"
                f"min-port=49152\nmax-port=49352\nuse-auth-secret\nstatic-auth-secret={secret}\n"
                f"realm=kefu.bench\nfingerprint\nno-cli\nno-tls\nno-dtls\nuserdb={tmp}/db\n"
                f"pidfile={tmp}/pid\nlog-file={tmp}/log\nsimple-log\n"
            )
            turn = await topo.spawn("dc", ["turnserver", "-c", str(conf)])
            url = f"turn:{RELAY_ADDRESS}:3478?transport=udp"
            (server,) = TurnIssuer((url,), secret, 3600).ice_servers("bench", datetime.now(UTC))
            await topo.wait_udp("dc", RELAY_ADDRESS, 3478)
            cpu = _cpu_seconds(turn.pid)
            started = time.perf_counter()
            child = await topo.spawn(
                "dc",
                [
                    sys.executable,
                    "-m",
                    "bench.media",
                    "--relay",
                    url,
                    server["username"],
                    server["credential"],
                    str(tries),
                ],
                cwd=ROOT,
            )
            assert child.stdout is not None
            line = await asyncio.wait_for(child.stdout.readline(), 120)
            wall = time.perf_counter() - started
            cpu = _cpu_seconds(turn.pid) - cpu
            got = json.loads(line)
    finally:
        await topo.close()
    direct, relay = statistics.median(got["direct"]), statistics.median(got["relay"])
    return {
        "direct_first_frame_ms": round(direct, 1),
        "relay_first_frame_ms": round(relay, 1),
        "relay_first_frame_ratio": round(relay / direct, 2),
        "relay_cpu_pct": round(100 * cpu / wall, 1),
    }


# ---------------------------------------------------------------- members in their own processes
class RemoteMember:
    """A MediaMember in a child process, driven by JSON lines on its stdin/stdout."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name

    @classmethod
    async def start(cls, name: str) -> RemoteMember:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.media",
            "--member",
            name,
            cwd=str(ROOT),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(proc, name)

    async def call(self, request: dict[str, Any]) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        if not line:
            raise RuntimeError(f"member {self.name} exited")
        return json.loads(line)["reply"]

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.call({"cmd": "quit"})
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


def _drive(peer: MediaPeer, member: RemoteMember) -> Callable[[], Awaitable[None]]:
    """Carry the hub peer's negotiations to the remote member, one at a time."""
    lock = asyncio.Lock()
    running: set[asyncio.Future[None]] = set()

    async def negotiate() -> None:
        async with lock:
            message = await peer.negotiate()
            while message is not None:
                reply = await member.call({"msg": message})
                message = await peer.handle(reply) if reply is not None else None

    def on_event(event: Any) -> None:
        if isinstance(event, NegotiationNeeded):
            task = asyncio.ensure_future(negotiate())
            running.add(task)
            task.add_done_callback(running.discard)

    peer.events.subscribe(on_event)
    return negotiate


async def _member_main(name: str) -> None:
    """The child process: a visitor with the test pattern, answering the hub."""
    member = MediaMember(_settings(), local=name, hub="agent")
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            request = json.loads(line)
            reply: Any = None
            if request.get("cmd") == "cpu":
                reply = time.process_time()
            elif request.get("cmd") == "quit":
                sys.stdout.write(json.dumps({"reply": None}) + "\n")
                sys.stdout.flush()
                break
            else:
                reply = await member.handle(request["msg"])
            sys.stdout.write(json.dumps({"reply": reply}) + "\n")
            sys.stdout.flush()
    finally:
        await member.close()


async def _hub_cpu(members: int, seconds: float, record: bool) -> dict[str, float]:
    """CPU % of one core used by the hub's process, and by each member, over ``seconds``."""
    s = _settings()
    source = open_source(s, "agent")
    hub = MediaHub(s, call_id="bench", local="agent", source=source)
    remote = [await RemoteMember.start(f"m{i}") for i in range(members)]
    folder = tempfile.TemporaryDirectory(prefix="kefu-bench-media-")
    try:
        for m in remote:
            negotiate = _drive(hub.add_member(m.name), m)
            await negotiate()
            await hub.peer(m.name).next_frame(within=20)
        for m in remote:  # every forwarded track flows before we measure
            await hub.peer(m.name).next_frame(within=20)
        await asyncio.sleep(1.0)  # let renegotiations settle (a warm-up, not a wait for an event)
        recorder = hub.start_recording(Path(folder.name) / "call.webm") if record else None
        member_cpu0 = [await m.call({"cmd": "cpu"}) for m in remote]
        wall0, cpu0 = time.monotonic(), time.process_time()
        await asyncio.sleep(seconds)  # the measured window
        wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
        member_cpu = [(await m.call({"cmd": "cpu"})) - c0 for m, c0 in zip(remote, member_cpu0, strict=True)]
        out = {"hub": 100 * cpu / wall, "member": 100 * statistics.mean(member_cpu) / wall}
        if recorder is not None:
            result = await recorder.stop()
            out["recording_kib_per_s"] = result.size / 1024 / max(result.duration, 0.001)
            out["recording_dropped"] = result.dropped
        return out
    finally:
        await hub.close()
        for m in remote:
            await m.stop()
        source.stop()
        folder.cleanup()


async def _sfu(quick: bool) -> dict[str, Any]:
    """The SFU mode against the hub mode, through a real Janus (bench/sfu.py; root only)."""
    try:
        from bench.sfu import measure
    except ImportError:
        return {"sfu_skipped": "bench/sfu.py is missing"}
    return await measure(quick)


async def _run(quick: bool) -> dict[str, Any]:
    tries = 3 if quick else 10
    window = 3.0 if quick else 10.0
    bare = [await _bare_first_frame() for _ in range(tries)]
    ours = [await _kefu_first_frame() for _ in range(tries)]
    two = await _hub_cpu(1, window, record=False)
    rec = await _hub_cpu(1, window, record=True)
    three = await _hub_cpu(2, window, record=False)
    kefu_first = statistics.median(f for f, _ in ours)
    bare_first = statistics.median(bare)
    return {
        "size": f"{SIZE[0]}x{SIZE[1]} @ {FPS} fps, VP8 + Opus, 127.0.0.1",
        "baseline_first_frame_ms": round(bare_first, 1),
        "kefu_first_frame_ms": round(kefu_first, 1),
        "first_frame_ratio": round(kefu_first / bare_first, 2),
        "snapshot_ms": round(statistics.median(s for _, s in ours), 2),
        "hub_cpu_2party_pct": round(two["hub"], 1),
        "member_cpu_2party_pct": round(two["member"], 1),
        "hub_cpu_2party_recording_pct": round(rec["hub"], 1),
        "recording_kib_per_s": round(rec["recording_kib_per_s"], 1),
        "recording_dropped_frames": int(rec["recording_dropped"]),
        "hub_cpu_3party_pct": round(three["hub"], 1),
        "member_cpu_3party_pct": round(three["member"], 1),
        **await _through_relay(tries),
        **await _sfu(quick),
        "cpu_window_s": window,
        "tries": tries,
    }


def run(quick: bool) -> dict[str, Any]:
    """Measure; a flat dict of figures (bench/registry.py makes rows of it)."""
    return asyncio.run(_run(quick))


def _print(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="media: WebRTC on 127.0.0.1", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, str(value))
    Console().print(table)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.media", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 3 tries, 3 s windows")
    parser.add_argument("--member", help=argparse.SUPPRESS)  # the child process of the CPU figures
    parser.add_argument("--relay", nargs=4, help=argparse.SUPPRESS)  # the child of the relay figures
    args = parser.parse_args(argv)
    if args.relay:
        url, username, credential, tries = args.relay
        asyncio.run(_relay_main(url, username, credential, int(tries)))
        return
    if args.member:
        asyncio.run(_member_main(args.member))
        return
    _print(run(args.quick))


if __name__ == "__main__":
    main()
