"""The SFU mode against the hub mode (issue 17), in a network namespace with a real Janus.

``run(quick) -> dict`` measures, with 320x240 at 15 fps (the test media):

* the agent's ``acceptSuccess`` → the first frame of the visitor's camera in
  the agent's plugin, p50 and max over ``tries`` calls, in each mode; in the
  SFU mode also with the subscriptions' former DTLS role (``active``, the
  calls interleaved with the default ``passive`` ones: D45), each call after
  the previous one's recording was made (the server's post-processing runs on
  this same machine);
* the CPU of the agent's plugin (``kefu plugin --headless`` in its own process,
  so the figure is the plugin's alone) in a two-party call (one visitor) and a
  three-party call (a visitor and a second agent), in each mode; in the SFU mode
  also with every received audio frame decoded (``--sfu-decode-all-audio``, the
  former way: ``sfu_decode_all_audio_*``, measured before the default: D49), and
  with every received video frame decoded (``--sfu-decode-all-video``: the way
  before D55, audio on demand; ``sfu_decode_all_video_*``), and with the
  subscriptions' receive-side bandwidth estimate (``--sfu-estimate-bandwidth``:
  abs-send-time taken, a REMB computed per video packet; the way before D56,
  ``sfu_estimate_bandwidth_*``), and with every sent frame encoded in aiortc's
  thread pool (``--encode-on-loop=none``: the way before D64, ``sfu_encode_in_threads_*``;
  the hub mode's too, ``hub_encode_in_threads_*``);
* Janus's CPU in the three-party SFU call, and per forwarded stream (each of
  the three members' audio and video forwarded to the two others: 12);
* the time from the hang-up to a downloadable recording (the SFU mode's
  post-processing: ``janus-pp-rec`` and ``ffmpeg``, then sealing and storing),
  for a call of ``call_seconds``.

``ab(rounds) -> dict`` is the same-run comparison of the latest saving against the
way before it: one server and one Janus, the plugin's two- and three-party CPU
(the call above) and its camera's frame rate at the visitor, with each of
:data:`AB`'s option sets in turn, ``rounds`` times, and with ``--main TREE`` the
plugin of another source tree first in each round (``python -m bench.sfu --ab
[ROUNDS] [--main TREE]``; the load average at both ends).

Root only (it makes the namespace of tests/janus/netns.py and runs Janus in
it, as the tests do); run from the source tree (it uses the tests' kits).
``kefu bench media`` runs it after bench/media.py's figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

__all__ = ["AB", "ab", "measure", "run"]

STREAMS_3PARTY = 3 * 2 * 2  # members × others × (audio, video)

#: ``ab``'s variants, alternated within each round: the way before the latest saving
#: (D64: every frame encoded in aiortc's thread pool), then the default
AB: dict[str, tuple[str, ...]] = {"encode_in_threads": ("--encode-on-loop", "none"), "default": ()}


def _cpu_seconds(pid: int) -> float:
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.asynccontextmanager
async def _janus(prefix: str) -> AsyncIterator[tuple[Path, Any, list[str]]]:
    """A network namespace entered, and Janus started in it (tests/janus's kits): a scratch
    folder, the Janus, the namespace's command prefix; all gone at the end."""
    from tests.janus.kit import Janus
    from tests.janus.netns import Namespace

    ns = Namespace()
    ns.create()
    ns.enter()
    try:
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            janus = Janus(Path(tmp) / "janus")
            janus.prefix = ns.prefix
            await janus.start()
            try:
                yield Path(tmp), janus, ns.prefix
            finally:
                await janus.stop()
    finally:
        ns.leave()
        ns.delete()


def _unavailable() -> str | None:
    """Why Janus in a namespace cannot run here (not root, no Janus, not the source tree)."""
    try:
        from tests.janus.kit import available
        from tests.janus.netns import unavailable
    except ImportError:
        return "run from the source tree (tests/janus)"
    return unavailable() or available()


async def measure(quick: bool) -> dict[str, Any]:
    why = _unavailable()
    if why:
        return {"sfu_skipped": why}
    tries = 3 if quick else 9
    window = 3.0 if quick else 10.0
    async with _janus("kefu-bench-sfu-") as (tmp, janus, prefix):
        return await _measure(tmp, janus, prefix, tries, window, call_seconds=5.0)


@contextlib.asynccontextmanager
async def _server(folder: Path, janus: Any | None) -> AsyncIterator[Any]:
    from tests.conftest import Clock, ServerHandle, fast_settings

    extra: dict[str, Any] = {}
    if janus is not None:
        extra = {
            "janus_url": janus.url,
            "janus_api_secret": janus.api_secret,
            "janus_admin_key": janus.admin_key,
            "janus_recordings": janus.recordings,
            "recording_tile": (320, 240),
            "media_keys": (bytes(range(32)),),
        }
    server = ServerHandle(fast_settings(folder, Clock(), ring_timeout=10.0, call_grace=1.0, **extra))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def _measure(
    tmp: Path, janus: Any, prefix: list[str], tries: int, window: float, call_seconds: float
) -> dict[str, Any]:
    out: dict[str, Any] = {"sfu_media": "320x240 @ 15 fps, VP8 + Opus, in a network namespace"}
    for mode in ("hub", "sfu"):
        async with _server(tmp / mode, janus if mode == "sfu" else None) as server:
            firsts = await _first_frames(server, tmp / mode, tries, sfu=mode == "sfu")
            for label, times in firsts.items():
                out[f"{label}_accept_to_first_frame_p50_ms"] = round(statistics.median(times), 1)
                out[f"{label}_accept_to_first_frame_max_ms"] = round(max(times), 1)
            if mode == "sfu":  # the former ways first, then the default, in the same server
                formers = {  # D49's before, D55's (audio on demand), D56's (both on demand)
                    "decode_all_audio": "--sfu-decode-all-audio",
                    "decode_all_video": "--sfu-decode-all-video",
                    "estimate_bandwidth": "--sfu-estimate-bandwidth",
                    "encode_in_threads": "--encode-on-loop=none",  # D64's before
                }
                for name, option in formers.items():
                    cpu = await _plugin_cpu(
                        server, tmp / f"before{name.replace('_', '')}", prefix, window, janus, option
                    )
                    out.update({f"sfu_{name}_{k}": v for k, v in cpu.items()})
            if mode == "hub":  # the hub's peers encode their audio on the loop too (D64): its before
                cpu = await _plugin_cpu(
                    server, tmp / "hubthreads", prefix, window, None, "--encode-on-loop=none"
                )
                out.update({f"hub_encode_in_threads_{k}": v for k, v in cpu.items()})
            cpu = await _plugin_cpu(server, tmp / mode, prefix, window, janus if mode == "sfu" else None)
            out.update({f"{mode}_{k}": v for k, v in cpu.items()})
            if mode == "sfu":
                out.update(await _recording_latency(server, tmp / mode, call_seconds))
    out["sfu_cpu_window_s"] = window
    out["sfu_tries"] = tries
    return out


def _media() -> Any:
    from tests.e2e.callkit import SMALL_MEDIA
    from tests.janus.netns import HOST

    return replace(SMALL_MEDIA, host_addresses=(HOST,))


async def _first_frame(agent: Any, name: str) -> None:
    from tests.janus.test_calls_sfu import frame_of
    from tests.plugin.harness import LIMIT

    from kefu.media import SfuMember

    media = agent.plugin.hub
    if isinstance(media, SfuMember):
        await frame_of(media, name)
    else:
        await media.peer(name).next_frame(name, "camera", within=LIMIT)


async def _visitor_frame(v: Any, name: str) -> None:
    from tests.janus.test_calls_sfu import frame_of
    from tests.plugin.harness import LIMIT

    from kefu.media import SfuMember
    from kefu.visitor import MediaStatus

    if v.media is None:
        await v.wait_for(MediaStatus, lambda e: e.status == "connected", within=LIMIT)
    if isinstance(v.media, SfuMember):
        await frame_of(v.media, name)
    else:
        await v.media.peer.next_frame(name, "camera", within=LIMIT)


async def _hang_up(agent: Any, v: Any) -> None:
    from tests.plugin.harness import LIMIT

    from kefu.visitor import MediaStatus

    await agent.call("videoDisconnect").callback("success")
    await v.wait_for(MediaStatus, lambda e: e.status == "closed", within=LIMIT)
    await agent.call("setAgentState", {"state": "idle"}).callback("success")


async def _first_frames(server: Any, folder: Path, tries: int, *, sfu: bool) -> dict[str, list[float]]:
    """``tries`` calls (hub), or ``tries`` with each DTLS role interleaved (sfu)."""
    from tests.e2e.callkit import AgentSide

    await server.add_agent("f1")
    agent = await AgentSide(server, "f1", folder / "plugin-f1", media=_media()).start(ready=True)
    roles = {"sfu": _media(), "sfu_dtls_active": replace(_media(), sfu_dtls_passive=False)} if sfu else {}
    plan = [(label, m) for _ in range(tries) for label, m in roles.items()] or [("hub", _media())] * tries
    try:
        times: dict[str, list[float]] = {}
        for i, (label, media) in enumerate(plan):
            plugin_media = agent.plugin.media
            plugin_media.base = plugin_media.settings = media  # the plugin's peers of the next call
            v = await server.visitor(f"fv{i}", media=media, on_invite="accept")
            c = agent.call("callbackToVisitor", {"visitorName": v.name})
            await c.callback("acceptSuccess", "006011")
            accepted = time.perf_counter()
            await _first_frame(agent, v.name)
            times.setdefault(label, []).append(1000 * (time.perf_counter() - accepted))
            await _hang_up(agent, v)
            await agent.plugin.media.wait_closed()
            if sfu:
                await server.services.calls.sfu.aclose_pending()  # its recording made
        return times
    finally:
        await agent.close()


async def _plugin_cpu(
    server: Any, folder: Path, prefix: list[str], window: float, janus: Any | None, *options: str
) -> dict[str, Any]:
    """The plugin's CPU (its own process, with ``options``) in a two-party, then a three-party
    call; Janus's too."""
    from tests.e2e.callkit import AgentSide, plugin_process
    from tests.janus.netns import HOST

    tag = folder.name  # the names of this round's agents and visitor
    p1_name, p2_name, v_name = f"p1{tag}", f"p2{tag}", f"cv{tag}"
    await server.add_agent(p1_name)
    await server.add_agent(p2_name)
    out: dict[str, Any] = {}
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    async with plugin_process(
        server,
        folder / "plugin-p1",
        folder / "plugin-p1.log",
        "--candidate-address",
        HOST,
        *options,
        prefix=prefix,
    ) as proc:
        p1 = await AgentSide.of_process(server, p1_name, proc.url, proc.token).start(ready=True)
        p2 = await AgentSide(server, p2_name, folder / "plugin-p2", media=_media()).start(ready=True)
        try:
            v = await server.visitor(v_name, media=_media(), on_invite="accept")
            c = p1.call("callbackToVisitor", {"visitorName": v_name})
            await c.callback("acceptSuccess", "006011")
            await _visitor_frame(v, p1_name)
            await asyncio.sleep(1.0)  # warm-up (renegotiations settle), not a wait for an event
            out["plugin_cpu_2party_pct"] = await _cpu(proc.proc.pid, window)
            invite = p1.call("videoInviteAgent", {"agentName": p2_name})
            await p2.state("004002")
            await p2.call("multipleVideoPickUp").callback("acceptSuccess", "006014")
            await invite.callback("acceptSuccess", "008002")
            await _visitor_frame(v, p2_name)
            if janus is not None:  # p2 receives through Janus (in the hub mode, from p1's hub: not its own)
                await _first_frame(p2, v_name)
                await _first_frame(p2, p1_name)
            await asyncio.sleep(1.0)  # warm-up
            if janus is not None:
                janus0, wall0 = _cpu_seconds(janus.proc.pid), time.monotonic()
                camera = v.media.subscription(p1_name).received_track(p1_name, "camera")
                assert camera is not None
                arrived0 = camera.arrived
            out["plugin_cpu_3party_pct"] = await _cpu(proc.proc.pid, window)
            if janus is not None:
                elapsed = time.monotonic() - wall0
                pct = 100 * (_cpu_seconds(janus.proc.pid) - janus0) / elapsed
                out["janus_cpu_3party_pct"] = round(pct, 1)
                out["janus_cpu_per_stream_pct"] = round(pct / STREAMS_3PARTY, 2)
                # the plugin's camera as the visitor gets it: the frame rate it sends (D64)
                out["plugin_camera_fps_3party"] = round((camera.arrived - arrived0) / elapsed, 1)
            await p1.call("videoDisconnect").callback("success")
        finally:
            await p2.close()
            await p1.close()
    return out


async def _cpu(pid: int, window: float) -> float:
    cpu0, wall0 = _cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(window)  # the measured window
    return round(100 * (_cpu_seconds(pid) - cpu0) / (time.monotonic() - wall0), 1)


async def _recording_latency(server: Any, folder: Path, call_seconds: float) -> dict[str, Any]:
    """Hang-up → the recording downloadable, for a call of ``call_seconds``."""
    import httpx
    from tests.e2e.callkit import AgentSide

    await server.add_agent("r1")
    agent = await AgentSide(server, "r1", folder / "plugin-r1", media=_media()).start(ready=True)
    try:
        await server.visitor("rv", media=_media(), on_invite="accept")
        c = agent.call("callbackToVisitor", {"visitorName": "rv"})
        call_id = (await c.callback("acceptSuccess", "006011"))["payload"]["callId"]
        await _first_frame(agent, "rv")
        await asyncio.sleep(call_seconds)  # the call's length
        hung_up = time.perf_counter()
        await agent.call("videoDisconnect").callback("success")
        await server.services.calls.sfu.aclose_pending()
        auth = {"Authorization": f"Bearer {agent.plugin.api_token}"}
        async with httpx.AsyncClient(base_url=server.url) as http:
            got = await http.get(f"/api/calls/{call_id}/recording", headers=auth)
        ready = time.perf_counter() - hung_up
        assert got.status_code == 200, got.text
        return {
            "sfu_call_s": call_seconds,
            "sfu_hangup_to_recording_ms": round(1000 * ready),
            "sfu_recording_kib": round(len(got.content) / 1024, 1),
        }
    finally:
        await agent.close()


async def measure_ab(
    rounds: int, window: float = 10.0, main: Path | None = None, only: tuple[str, ...] = ()
) -> dict[str, Any]:
    """:data:`AB`'s variants alternated ``rounds`` times against one server and one Janus;
    with ``main`` (a source tree, e.g. ``git archive main``) first in each round the plugin
    of that tree (its ``src`` on ``PYTHONPATH``), with no option."""
    import os

    why = _unavailable()
    if why:
        return {"sfu_skipped": why}
    out: dict[str, Any] = {"load_at_start": os.getloadavg()[0], "rounds": rounds, "window_s": window}
    async with _janus("kefu-bench-sfu-ab-") as (tmp, janus, ns_prefix), _server(tmp / "sfu", janus) as server:
        variants = {n: (ns_prefix, o) for n, o in AB.items() if not only or n in only}
        if main is not None:
            trees = [*ns_prefix, "env", f"PYTHONPATH={main / 'src'}"]
            variants = {"main": (trees, ()), **variants}
        for r in range(rounds):
            for name, (prefix, options) in variants.items():
                folder = tmp / f"{name.replace('_', '')}{r}"
                cpu = await _plugin_cpu(server, folder, prefix, window, janus, *options)
                for k, v in cpu.items():
                    out.setdefault(f"{name}_{k}", []).append(v)
    for name in (["main"] if main is not None else []) + [n for n in AB if not only or n in only]:
        for figure in ("plugin_cpu_2party_pct", "plugin_cpu_3party_pct", "plugin_camera_fps_3party"):
            out[f"{name}_{figure}_mean"] = round(statistics.mean(out[f"{name}_{figure}"]), 2)
    out["load_at_end"] = os.getloadavg()[0]
    return out


def ab(rounds: int, main: Path | None = None, only: tuple[str, ...] = ()) -> dict[str, Any]:
    """:func:`measure_ab`, from synchronous code (``only``: those of :data:`AB`'s variants)."""
    return asyncio.run(measure_ab(rounds, main=main, only=only))


def run(quick: bool) -> dict[str, Any]:
    """Measure; a flat dict of figures (bench/registry.py makes rows of it)."""
    return asyncio.run(measure(quick))


if __name__ == "__main__":
    import json
    import sys

    if "--ab" in sys.argv:  # --ab [ROUNDS] [--main TREE] [--only NAME,...]
        rest = sys.argv[sys.argv.index("--ab") + 1 :]
        tree = Path(sys.argv[sys.argv.index("--main") + 1]).resolve() if "--main" in sys.argv else None
        only = tuple(sys.argv[sys.argv.index("--only") + 1].split(",")) if "--only" in sys.argv else ()
        print(json.dumps(ab(int(rest[0]) if rest and rest[0].isdigit() else 3, tree, only), indent=1))
    else:
        print(json.dumps(run("--quick" in sys.argv), indent=1))
