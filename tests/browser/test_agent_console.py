"""The agent console (``/agent`` on the server, the spec's ssoTo) in Chromium,
driving a real plugin through imclient.js, with Python visitors and the
browser visitor page around it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext, Page

from kefu.visitor import ChatMessage, Visitor
from tests.plugin.harness import PASSWORD, Stack

from .harness import LIMIT, MEDIA, screenshot, wait_js

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

MS = LIMIT * 1000


@pytest_asyncio.fixture(loop_scope="session")
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with Stack(tmp_path, media=MEDIA) as s:
        yield s


async def open_console(context: BrowserContext, stack: Stack) -> Page:
    page = await context.new_page()
    await page.goto(f"{stack.server.url}/agent?plugin=ws://127.0.0.1:{stack.p.port}")
    await page.wait_for_selector("#login-btn:not([disabled])", timeout=MS)
    return page


async def sign_in(page: Page, name: str = "a1") -> None:
    await page.fill("#login-name", name)
    await page.fill("#login-pwd", PASSWORD)
    await page.click("#login-btn")
    await page.wait_for_selector("#console:not(.hidden)", timeout=MS)


async def shows_state(page: Page, code: str) -> str:
    """Until the console shows ``code``; the meaning it shows."""
    await wait_js(page, "code => document.getElementById('state-code').textContent === code", code)
    meaning: str = await page.inner_text("#state-meaning")
    return meaning


async def test_sign_in_state_queue_chat_and_a_video_request(context: BrowserContext, stack: Stack) -> None:
    async with Visitor(stack.server.url, "vic", timeout=LIMIT, on_invite="accept", media=MEDIA) as vic:
        await vic.send_message("Hi, is anyone there?")  # waiting before the agent signs in
        page = await open_console(context, stack)
        await page.fill("#login-name", "a1")
        await page.fill("#login-pwd", "wrong")
        await page.click("#login-btn")
        await page.wait_for_selector("#login-error >> text=wrong name or password", timeout=MS)
        await sign_in(page)
        assert await shows_state(page, "001000") == "not ready (logged in, or set not ready by hand)"
        assert "service: connected" in await page.inner_text("#server-pill")

        # the visitor who waits is listed from the start; the agent picks the session up
        row = page.locator("#queue tr", has_text="vic")
        await row.wait_for(timeout=MS)
        assert await page.inner_text("#queue-count") == "1"
        await row.get_by_role("button", name="Pick up vic").click()
        await page.locator("#sessions tr", has_text="vic").wait_for(timeout=MS)
        await page.wait_for_selector("#log .msg.them >> text=Hi, is anyone there?", timeout=MS)
        await wait_js(page, "() => document.getElementById('queue-count').textContent === '0'")

        # chat both ways
        await page.fill("#text", "Yes, how can I help?")
        await page.click("#send-btn")
        said = await vic.wait_for(ChatMessage, lambda e: e.text == "Yes, how can I help?", within=LIMIT)
        assert said.text == "Yes, how can I help?"
        await vic.send_message("I would like a video call")
        await page.wait_for_selector("#log .msg.them >> text=I would like a video call", timeout=MS)

        # ready / not ready, live
        await page.click("#ready-btn")
        assert await shows_state(page, "002000") == "ready (set by hand, or wrap-up ended)"
        await page.select_option("#busy-reason", "break")
        await page.click("#busy-btn")
        await shows_state(page, "001000")
        await page.click("#ready-btn")
        await shows_state(page, "002000")

        # the visitor asks for video: the console rings; the agent picks up
        await vic.request_video()
        await page.wait_for_selector("#ringing:not(.hidden) >> text=vic asks for a video call", timeout=MS)
        await shows_state(page, "004001")
        await page.click("#pickup-btn")
        assert await shows_state(page, "006013") == "visitor invite: connected"
        await page.wait_for_selector("#members >> text=vic", timeout=MS)
        await vic.hangup()
        assert await shows_state(page, "005007") == "visitor invite: visitor hung up"
        timeline = await page.inner_text("#timeline")
        for code in ("004001", "006013", "005007"):
            assert code in timeline

        # closing the chat from the console
        await page.click("#close-chat-btn")
        await wait_js(page, "() => document.getElementById('session-count').textContent === '0'")
    await page.close()


async def test_console_and_visitor_page_in_a_call(
    context: BrowserContext, other_context: BrowserContext, stack: Stack
) -> None:
    console = await open_console(context, stack)
    await sign_in(console)
    await console.click("#ready-btn")
    await shows_state(console, "002000")

    visitor = await other_context.new_page()  # the visitor's own browser
    await visitor.goto(f"{stack.server.url}/visitor?name=Eve")
    await visitor.fill("#text", "Hello, I want to open an account")
    await visitor.click("#chat-form button[type=submit]")
    await console.wait_for_selector("#log .msg.them >> text=open an account", timeout=MS)
    await console.fill("#text", "Welcome Eve! Let us do it by video.")
    await console.click("#send-btn")
    await visitor.wait_for_selector(".msg.them >> text=Let us do it by video", timeout=MS)

    # the console calls the visitor of the current session (videoInviteCurrentVisitor)
    await console.click("#video-chat-btn")
    await shows_state(console, "003002")
    await visitor.wait_for_selector("#invite-dialog[open]", timeout=MS)
    await screenshot(visitor, "visitor-invitation")
    await visitor.click("#accept-btn")
    assert await shows_state(console, "006012") == "current visitor: accepted"
    await wait_js(
        visitor, "() => { const v = document.querySelector('.tile video'); return v && v.videoWidth > 0; }"
    )

    # snapshot (the plugin's picture of Chromium's camera), then a photo the visitor agrees to
    media = stack.p.media
    assert media is not None
    (hub_call,) = media.calls.values()
    await hub_call.hub.peer("Eve").next_frame("Eve", within=LIMIT)  # type: ignore[union-attr]
    await console.click("#snapshot-btn")
    await console.wait_for_selector("#shot-box:not(.hidden) >> text=Snapshot", timeout=MS)
    await console.click("#photo-btn")
    await visitor.wait_for_selector("#photo-dialog[open]", timeout=MS)
    await visitor.click("#photo-yes")
    await console.wait_for_selector("#shot-caption >> text=Photo", timeout=MS)
    shot = await console.evaluate("() => window.kefuConsole.lastImage")
    assert shot["what"] == "Photo" and shot["width"] >= 640

    # the screen share, asked from the console
    await console.click("#share-btn")
    await visitor.wait_for_selector("#share-dialog[open]", timeout=MS)
    await visitor.click("#share-yes")
    await console.wait_for_selector("#sharing >> text=on", timeout=MS)
    await visitor.wait_for_selector(".tile video", timeout=MS)

    await screenshot(console, "agent-console-in-call")
    await screenshot(visitor, "visitor-page-in-call")

    await visitor.click("#share-stop-btn")
    await console.wait_for_selector("#sharing >> text=off", timeout=MS)
    # inviteShare's own callbacks: open, then close (SPEC §4.5)
    await console.wait_for_selector("#timeline >> text=the screen share ended", timeout=MS)
    assert await console.locator("#timeline >> text=the visitor shares the screen").count() == 1
    await console.click("#hangup-btn")
    assert await shows_state(console, "005006") == "current visitor: agent hung up after the answer"
    await wait_js(visitor, "() => document.getElementById('call-panel').classList.contains('hidden')")
    await screenshot(console, "agent-console-after-call")
    await visitor.close()
    await console.close()


async def test_transfers_and_a_supervisors_action_show_in_the_console(
    context: BrowserContext, stack: Stack
) -> None:
    """Issue 20: the console transfers a chat with a note, drops it, shows one handed to it
    (with the other agent's note) and names the supervisor who changed its state."""
    import httpx

    from tests.e2e.test_im_transfer import second_agent

    await stack.server.add_agent("boss", admin=True)
    a2 = await second_agent(stack)
    async with Visitor(stack.server.url, "vt", timeout=LIMIT) as vt:
        sid = (await vt.send_message("Can I raise my card limit?"))["sessionId"]
        page = await open_console(context, stack)
        await sign_in(page)
        await page.locator("#queue tr", has_text="vt").get_by_role("button", name="Pick up vt").click()
        await page.locator("#sessions tr", has_text="vt").wait_for(timeout=MS)

        await page.fill("#transfer-to", "a2")
        await page.fill("#transfer-note", "card limit; customer since 2009")
        await page.click("#transfer-btn")
        got = (await a2.next_event("sessionAssigned"))["payload"]
        assert got["sessionId"] == sid
        assert got["transfer"] == {
            "from": "a1",
            "reason": "transferred",
            "note": "card limit; customer since 2009",
        }
        await page.locator("#sessions tr", has_text="vt").wait_for(state="detached", timeout=MS)
        await page.wait_for_selector("#timeline >> text=transferred vt to a2", timeout=MS)

        # a2 hands it back with a note: the console shows the chat, its history and the note
        await a2.call(
            "transferSession", {"session_id": sid, "agentName": "a1", "note": "limit raised, confirm"}
        )
        await page.locator("#sessions tr", has_text="vt").wait_for(timeout=MS)
        await page.wait_for_selector("#log .msg.them >> text=Can I raise my card limit?", timeout=MS)
        await page.wait_for_selector(
            "#log .msg.system >> text=Transferred from a2: limit raised, confirm", timeout=MS
        )

        # a supervisor sets the agent not ready: the console names them
        token = (await stack.server.services.auth.login("boss", PASSWORD, "127.0.0.1")).token
        async with httpx.AsyncClient(base_url=stack.server.url) as c:
            r = await c.post(
                "/api/agents/a1/state",
                json={"state": "busy", "reason": "coaching"},
                headers={"Authorization": f"Bearer {token}"},
            )
        assert r.status_code == 200, r.text
        await page.wait_for_selector("#supervisor-pill >> text=supervisor boss", timeout=MS)
        await shows_state(page, "001000")
        await screenshot(page, "agent-console-transfer")
        await page.close()
    await a2.aclose()


async def test_call_transfers_show_in_the_console(context: BrowserContext, stack: Stack) -> None:
    """Issue 20: a call transferred to the console's agent rings with the other agent's name
    and note; the console then consults another agent (the visitor on hold) and completes."""
    from tests.e2e.test_im_transfer import second_agent

    a2 = await second_agent(stack)  # on the server's socket, without a plugin (no media)
    page = await open_console(context, stack)
    await sign_in(page)
    await page.click("#ready-btn")
    await shows_state(page, "002000")
    async with Visitor(stack.server.url, "vc", timeout=LIMIT, on_invite="accept"):
        await a2.call("setAgentState", {"state": "idle"})
        await a2.call("callbackToVisitor", {"visitorName": "vc"})
        while (await a2.next_event(mark="state"))["state"] != "006011":
            pass  # the visitor accepts by itself
        await a2.call("transferCall", {"agentName": "a1", "note": "wants a mortgage"})
        await page.wait_for_selector(
            "#ringing-text >> text=Agent a2 transfers a call to you — note: wants a mortgage", timeout=MS
        )
        await screenshot(page, "agent-console-transfer-ringing")
        await page.click("#pickup-btn")
        await shows_state(page, "006023")
        # the console consults a2 (ready again after the blind transfer's after-call work)
        await a2.call("setAgentState", {"state": "idle"})
        await page.fill("#call-transfer-to", "a2")
        await page.select_option("#call-transfer-mode", "consult")
        await page.fill("#call-transfer-note", "second opinion")
        await page.click("#call-transfer-btn")
        await shows_state(page, "007004")
        await page.wait_for_selector(
            "#call-transfer-text >> text=Calling a2; the visitor is on hold.", timeout=MS
        )
        assert await page.is_disabled("#transfer-complete-btn")
        await a2.call("multipleVideoPickUp")
        await shows_state(page, "008003")
        await page.wait_for_selector("#call-transfer-text >> text=Consulting a2", timeout=MS)
        await screenshot(page, "agent-console-consulting")
        await page.click("#transfer-complete-btn")
        await shows_state(page, "005012")
        await page.wait_for_selector("#call-transfer", state="hidden", timeout=MS)
        await page.wait_for_selector("#timeline >> text=the call went to a2", timeout=MS)
        await a2.call("videoDisconnect")
    await page.close()
    await a2.aclose()
