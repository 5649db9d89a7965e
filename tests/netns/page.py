"""The visitor page in Debian's Chromium on a host of the topology, talking JSON lines.

``ip netns exec <visitor> python -m tests.netns.page PAGE_URL SPKI_HASH``: Playwright's
driver runs here, inside the visitor's namespace, and launches ``/usr/bin/chromium``
(never a downloaded browser) over a pipe (``--remote-debugging-pipe``, a fresh
``--user-data-dir`` of Playwright's), so every socket of the page — the server's
``wss://``, the TURN relay — leaves from the visitor's network. The test process,
in the machine's own namespace, talks to this one on stdin/stdout:

- on start it opens ``PAGE_URL`` (the server's ``/visitor?name=…`` on https: a
  camera needs a secure context) and writes ``{"event": "connected"}`` once the page
  says so;
- ``{"cmd": "accept"}``: waits for the invitation and clicks Accept, writes
  ``{"event": "accepted"}``;
- ``{"cmd": "stats", "where": JS}``: the page's media figures (frames sent and
  decoded, the selected candidate pair's types and addresses) once ``where``
  (over ``s``) holds, ``{"event": "stats", ...}``;
- ``{"cmd": "wait", "js": JS}``: ``{"event": "waited"}`` once ``JS`` (a function) is true;
- ``{"cmd": "screenshot", "path": P}``: the page as a PNG at ``P``.

An error of a command is written as ``{"event": "error", "msg"}``: the test fails
with it instead of waiting.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from playwright.async_api import Page, async_playwright

from tests.browser.harness import CHROMIUM, CHROMIUM_ARGS, page_stats
from tests.conftest import scaled

from .probe import emit, lines

#: Every wait here, in seconds (the test bounds the whole with its own LIMIT).
WAIT = scaled(60.0)

#: What the page's peer connection reports: frames and the route (getStats).
STATS = """async () => {
    const pc = window.kefuVisitor.media.pc;
    if (!pc) return null;
    const out = {inVideo: 0, outVideo: 0, route: null, addresses: null, state: pc.connectionState};
    const report = await pc.getStats();
    const byId = {};
    report.forEach(s => { byId[s.id] = s; });
    report.forEach(s => {
        if (s.type === "inbound-rtp" && s.kind === "video") out.inVideo += s.framesDecoded || 0;
        if (s.type === "outbound-rtp" && s.kind === "video") out.outVideo += s.framesEncoded || 0;
        if (s.type === "transport" && s.selectedCandidatePairId) {
            const p = byId[s.selectedCandidatePairId];
            const local = byId[p.localCandidateId], remote = byId[p.remoteCandidateId];
            out.route = [local.candidateType, remote.candidateType];
            out.addresses = [local.address, remote.address];
        }
    });
    return out;
}"""


def chromium_args(spki_hash: str) -> list[str]:
    """The browser tests' flags, the server's certificate trusted (a test CA is in no
    store), and host candidates with their real addresses (not mDNS names, which the
    plugin on another network could not resolve anyway)."""
    return [
        *CHROMIUM_ARGS,
        f"--ignore-certificate-errors-spki-list={spki_hash}",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
    ]


async def stats(page: Page, where: str) -> dict[str, Any]:
    return await page_stats(page, STATS, where, WAIT)


async def command(page: Page, cmd: dict[str, Any]) -> None:
    what = cmd.get("cmd")
    if what == "accept":
        await page.wait_for_selector("#invite-dialog[open]", timeout=WAIT * 1000)
        await page.click("#accept-btn")
        emit({"event": "accepted"})
    elif what == "stats":
        emit({"event": "stats", **await stats(page, str(cmd["where"]))})
    elif what == "wait":
        await page.wait_for_function(str(cmd["js"]), timeout=WAIT * 1000)
        emit({"event": "waited"})
    elif what == "screenshot":
        await page.screenshot(path=str(cmd["path"]), full_page=True)
        emit({"event": "screenshot", "path": cmd["path"]})
    else:
        emit({"event": "error", "msg": f"unknown command {what!r}"})


async def main(url: str, spki_hash: str) -> None:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=chromium_args(spki_hash), headless=True
        )
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        page.on("console", lambda m: print(f"console {m.type}: {m.text}", file=sys.stderr))
        await page.goto(url)
        await page.wait_for_function(
            "() => document.getElementById('conn').textContent === 'connected'", timeout=WAIT * 1000
        )
        emit({"event": "connected", "version": browser.version})
        reader = await lines()
        while line := await reader.readline():
            cmd = json.loads(line)
            try:
                await command(page, cmd)
            except Exception as exc:  # the test reads it and fails with it
                emit({"event": "error", "msg": f"{type(exc).__name__}: {exc}"})
        await browser.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
