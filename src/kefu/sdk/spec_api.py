"""The spec's API of :class:`~kefu.sdk.imclient.IMClient` (SPEC §4.1–§4.6 and the additions of §5.3.6).

Each method is one mark: it takes the v1204 callback object (``options``
with callables for the sub-marks) and/or the v190307 ``callback(state,
payload)``, and returns a :class:`Pending` for the first answer. They all go
through :meth:`SpecApi._call`, which :class:`~kefu.sdk.imclient.IMClient`
implements (the connection to the plugin).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Generator, Mapping
from typing import Any

__all__ = ["Json", "Options", "Pending", "SpecApi", "StateCallback"]

Json = dict[str, Any]
Options = Mapping[str, Any]
StateCallback = Callable[[Any, Any], Any]


class Pending(concurrent.futures.Future[Json]):
    """The first answer of a request; ``await`` it in asyncio code."""

    def __await__(self) -> Generator[Any, None, Json]:
        return asyncio.wrap_future(self).__await__()


class SpecApi:
    """The marks of the plugin's control API, as the spec names them."""

    def _call(
        self, mark: str, options: Options | StateCallback | None, callback: StateCallback | None
    ) -> Pending:
        raise NotImplementedError  # IMClient sends the request

    # --- SPEC §4.1 the plugin's window

    def startLogin(self, options: Options | None = None, callback: StateCallback | None = None) -> Pending:
        """``{minimize, data: {url}}``; ``error`` with ``code == -1`` when the login timed out."""
        return self._call("startLogin", options, callback)

    def setWindowSize(self, options: Options | None = None, callback: StateCallback | None = None) -> Pending:
        return self._call("setWindowSize", options, callback)

    def minimize(self, options: Options | None = None, callback: StateCallback | None = None) -> Pending:
        return self._call("minimize", options, callback)

    def startup(self, options: Options | None = None, callback: StateCallback | None = None) -> Pending:
        """``{clientUrl: "pocprotocol://"}``: show the plugin; start ``kefu plugin`` if nothing answers."""
        return self._call("startup", options, callback)

    def restore(self, options: Options | None = None, callback: StateCallback | None = None) -> Pending:
        return self._call("restore", options, callback)

    def quit(self, options: Options | None = None, callback: StateCallback | None = None) -> Pending:
        self._quitting = True
        return self._call("quit", options, callback)

    def getWindow(self, options: Options | None = None, callback: StateCallback | None = None) -> Pending:
        """Addition: the window model (``width``, ``height``, ``minimized``, ``visible``)."""
        return self._call("getWindow", options, callback)

    # --- SPEC §4.2 IM

    def pickUpSession(self, options: Options | None = None, callback: StateCallback | None = None) -> Pending:
        """``{session_id}`` (required)."""
        return self._call("pickUpSession", options, callback)

    def chatClose(self, options: Options | None = None, callback: StateCallback | None = None) -> Pending:
        return self._call("chatClose", options, callback)

    def sendMessage(self, options: Options | None = None, callback: StateCallback | None = None) -> Pending:
        """Addition: ``{session_id, text, clientMsgId?}``."""
        return self._call("sendMessage", options, callback)

    def transferSession(
        self, options: Options | None = None, callback: StateCallback | None = None
    ) -> Pending:
        """Addition (issue 20): ``{session_id, agentName?, note?}``: the session to the agent
        named, or back to the head of the queue; ``success(data)`` with the session."""
        return self._call("transferSession", options, callback)

    # --- call transfers (addition, issue 20; docs/calls.md "Transfers")

    def transferCall(self, options: Options | None = None, callback: StateCallback | None = None) -> Pending:
        """Addition (issue 20): ``{agentName | teamName, mode?: "blind" | "consult", note?}``:
        the agent's call to another agent. ``inviteSuccess`` (007003 / 007004) while the target
        rings; then ``transferSuccess`` (005011, blind: the target has the call), or at once
        ``queued`` (005015, blind to a team none of whose agents is ready: the call waits in
        its queue without this agent, D50),
        ``acceptSuccess`` (008003, consult: talking to the target), ``completeSuccess`` (005012),
        ``refuse`` / ``timeoutDisconnect`` / ``error`` / ``cancelSuccess`` / ``targetLeft``
        (006xxx: the call stays with this agent)."""
        return self._call("transferCall", options, callback)

    def completeTransfer(
        self, options: Options | None = None, callback: StateCallback | None = None
    ) -> Pending:
        """Addition (issue 20): the consult transfer completes: ``completeSuccess`` (005012)."""
        return self._call("completeTransfer", options, callback)

    def cancelTransfer(
        self, options: Options | None = None, callback: StateCallback | None = None
    ) -> Pending:
        """Addition (issue 20): the transfer is withdrawn: ``cancelSuccess`` (006018 / 006022)."""
        return self._call("cancelTransfer", options, callback)

    # --- additions (issue 20): a supervisor helping in a call (docs/calls.md)

    def monitorCall(self, options: Options | None = None, callback: StateCallback | None = None) -> Pending:
        """Addition (issue 20), for supervisors: ``{callId}`` or ``{agentName}``: listen to and
        watch the call, unheard; ``success(data)`` with the call and ``mode: "monitor"``."""
        return self._call("monitorCall", options, callback)

    def whisper(self, options: Options | None = None, callback: StateCallback | None = None) -> Pending:
        """Addition (issue 20): in the call monitored, only its agent hears the supervisor."""
        return self._call("whisper", options, callback)

    def barge(self, options: Options | None = None, callback: StateCallback | None = None) -> Pending:
        """Addition (issue 20): in the call monitored, every member hears the supervisor."""
        return self._call("barge", options, callback)

    def leaveMonitor(self, options: Options | None = None, callback: StateCallback | None = None) -> Pending:
        """Addition (issue 20): the supervisor leaves the call it helps in."""
        return self._call("leaveMonitor", options, callback)

    # --- SPEC §4.3 audio and video (the call orchestration answers them)

    def videoPickUp(self, options: Options | None = None, callback: StateCallback | None = None) -> Pending:
        return self._call("videoPickUp", options, callback)

    def multipleVideoPickUp(
        self, options: Options | None = None, callback: StateCallback | None = None
    ) -> Pending:
        return self._call("multipleVideoPickUp", options, callback)

    def multipleVideoRefuse(
        self, options: Options | None = None, callback: StateCallback | None = None
    ) -> Pending:
        return self._call("multipleVideoRefuse", options, callback)

    def videoInviteAgent(
        self, options: Options | None = None, callback: StateCallback | None = None
    ) -> Pending:
        return self._call("videoInviteAgent", options, callback)

    def callbackToVisitor(
        self, options: Options | None = None, callback: StateCallback | None = None
    ) -> Pending:
        return self._call("callbackToVisitor", options, callback)

    def videoInviteCurrentVisitor(
        self, options: Options | None = None, callback: StateCallback | None = None
    ) -> Pending:
        return self._call("videoInviteCurrentVisitor", options, callback)

    def videoInviteVisitor(
        self, options: Options | None = None, callback: StateCallback | None = None
    ) -> Pending:
        return self._call("videoInviteVisitor", options, callback)

    def videoDisconnect(
        self, options: Options | None = None, callback: StateCallback | None = None
    ) -> Pending:
        return self._call("videoDisconnect", options, callback)

    # --- SPEC §4.4, §4.5 (the media layer answers them)

    def takePhoto(self, options: Options | None = None, callback: StateCallback | None = None) -> Pending:
        return self._call("takePhoto", options, callback)

    def snapshot(self, options: Options | None = None, callback: StateCallback | None = None) -> Pending:
        return self._call("snapshot", options, callback)

    def inviteShare(self, options: Options | None = None, callback: StateCallback | None = None) -> Pending:
        return self._call("inviteShare", options, callback)

    # --- SPEC §4.6 queries

    def sessionCount(self, options: Options | None = None, callback: StateCallback | None = None) -> Pending:
        """``success(data)``: ``data["payload"]["sessionCount"]``."""
        return self._call("sessionCount", options, callback)

    def sessionState(self, options: Options | None = None, callback: StateCallback | None = None) -> Pending:
        """``success(data)``: ``data["payload"]["sessions"]``."""
        return self._call("sessionState", options, callback)

    def isMultipleVideo(
        self, options: Options | None = None, callback: StateCallback | None = None
    ) -> Pending:
        """``success(data)``: ``data["data"]`` is True in a three-party video."""
        return self._call("isMultipleVideo", options, callback)

    def isShareState(self, options: Options | None = None, callback: StateCallback | None = None) -> Pending:
        """``success(data)``: ``data["data"]`` is True while a screen share is on."""
        return self._call("isShareState", options, callback)

    # --- additions (SPEC §5.3.6)

    def setAgentState(self, options: Options | None = None, callback: StateCallback | None = None) -> Pending:
        """``{state: "idle" | "busy", reason?}``; the callback gets 002000 / 001000."""
        return self._call("setAgentState", options, callback)

    def logout(
        self, options: Options | StateCallback | None = None, callback: StateCallback | None = None
    ) -> Pending:
        """``logout(callback)``: the callback gets 000000."""
        return self._call("logout", options, callback)

    def getState(
        self, options: Options | StateCallback | None = None, callback: StateCallback | None = None
    ) -> Pending:
        return self._call("getState", options, callback)
