"""The plugin's HTTP calls to the server's REST API: snapshots, photos and
recordings (SPEC §4.4; the server's side is ``kefu.server.media``).

Every call carries the agent's login token (``Authorization: Bearer``), which
the plugin holds in memory only. :class:`RecordingUpload` sends a call's
recording in chunks while it is made (``PUT /api/calls/{id}/recording?offset=N``),
each chunk at its offset (the recorder rewrites the header at the end, so the
last chunks go back to earlier offsets), and closes it with ``final=true``:
a plugin that crashes loses at most the chunks not sent yet, a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from ssl import SSLContext
from typing import Any

import httpx

from kefu.protocol import ApiError, ErrorCode
from kefu.protocol.client_session import reply_error
from kefu.protocol.wire import Json

from .security import path_within

__all__ = ["RecordingUpload", "ServerApi"]

log = logging.getLogger("kefu.plugin.uploads")

_RETRIES = 3  # attempts of one chunk before the upload gives up
_MERGE = 4 * 1024 * 1024  # contiguous chunks are sent together, up to this size


def _error_of(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    error = reply_error(body) if isinstance(body, dict) and isinstance(body.get("error"), dict) else None
    if error is not None:
        return error.exception()
    return ApiError(f"the server answered HTTP {response.status_code}", code=ErrorCode.upstream_down)


class ServerApi:
    """The server's REST API, as the logged-in agent (``token()`` gives the current token)."""

    def __init__(
        self,
        base_url: str,
        token: Callable[[], str | None],
        *,
        timeout: float = 10.0,
        ssl: SSLContext | None = None,
    ) -> None:
        self.base_url = base_url
        self._ssl = ssl
        self._token = token
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # one client (one connection pool) for the plugin's life: making one costs tens of ms
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                timeout=self._timeout,
                trust_env=False,
                verify=self._ssl if self._ssl is not None else True,
            )
        return self._client

    async def _send(self, method: str, url: str, **kw: Any) -> httpx.Response:
        if not path_within(url, "/api/"):  # an id from a message must not lead elsewhere
            raise ApiError("a path off the server's /api/ refused", code=ErrorCode.bad_request)
        token = self._token()
        if token is None:
            raise ApiError("the agent is not logged in", code=ErrorCode.not_logged_in)
        headers = {"Authorization": f"Bearer {token}", **kw.pop("headers", {})}
        try:
            response = await self._http().request(method, url, headers=headers, **kw)
        except httpx.TimeoutException:
            raise ApiError(
                f"the server did not answer {method} {url} in time", code=ErrorCode.timeout
            ) from None
        except httpx.HTTPError as exc:
            raise ApiError(
                f"cannot reach the server ({type(exc).__name__})", code=ErrorCode.upstream_down
            ) from None
        if response.status_code >= 400:
            raise _error_of(response)
        return response

    async def upload_snapshot(self, call_id: str, jpeg: bytes) -> Json:
        """``POST /api/media/snapshot?callId=``: the stored artifact (id, checksum …)."""
        response = await self._send(
            "POST",
            "/api/media/snapshot",
            params={"callId": call_id},
            content=jpeg,
            headers={"Content-Type": "image/jpeg"},
        )
        body: Json = response.json()
        return body

    async def fetch_artifact(self, artifact_id: str) -> bytes:
        """``GET /api/media/{artifactId}``: a photo's or snapshot's bytes."""
        response = await self._send("GET", f"/api/media/{artifact_id}")
        return response.content

    async def put_recording(self, call_id: str, offset: int, data: bytes, *, final: bool = False) -> Json:
        """``PUT /api/calls/{id}/recording?offset=N[&final=true]``."""
        params: dict[str, Any] = {"offset": offset}
        if final:
            params["final"] = "true"
        response = await self._send(
            "PUT",
            f"/api/calls/{call_id}/recording",
            params=params,
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        body: Json = response.json()
        return body

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


class RecordingUpload:
    """Sends one call's recording to the server as it is made.

    :meth:`chunk` is the recorder's ``on_chunk`` listener (on the loop; it
    only queues). One task sends the chunks in order, contiguous ones
    together, each retried a few times; :meth:`finish` waits for the last
    and sends ``final=true``."""

    def __init__(self, api: ServerApi, call_id: str, *, retry_delay: float = 0.2) -> None:
        self.api = api
        self.call_id = call_id
        self.retry_delay = retry_delay
        self.sent = 0  # bytes the server acknowledged
        self.failed: ApiError | None = None
        self._queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        self._task = asyncio.ensure_future(self._run())
        self._end = 0  # the file's size so far (the highest offset + length queued)

    def chunk(self, chunk: Any) -> None:
        """A :class:`~kefu.media.RecordingChunk` (``offset``, ``data``)."""
        self._end = max(self._end, chunk.offset + len(chunk.data))
        self._queue.put_nowait((chunk.offset, chunk.data))

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            offset, data = item
            # contiguous chunks waiting behind this one go in the same request
            while not self._queue.empty() and len(data) < _MERGE:
                nxt = self._queue.get_nowait()
                if nxt is None:
                    await self._put(offset, data)
                    return
                if nxt[0] == offset + len(data):
                    data += nxt[1]
                    continue
                await self._put(offset, data)
                offset, data = nxt
            await self._put(offset, data)

    async def _put(self, offset: int, data: bytes) -> None:
        if self.failed is not None:
            return  # the server refused the recording: nothing more is sent
        for attempt in range(_RETRIES):
            try:
                await self.api.put_recording(self.call_id, offset, data)
                self.sent += len(data)
                return
            except ApiError as exc:
                if exc.code in (ErrorCode.forbidden, ErrorCode.no_such_call, ErrorCode.invalid_field):
                    self.failed = exc
                    log.warning("the server refused the recording of call %s: %s", self.call_id, exc.msg)
                    return
                if attempt == _RETRIES - 1:
                    self.failed = exc
                    log.warning(
                        "recording chunk of call %s at %d not stored (%s); the rest is not sent",
                        self.call_id,
                        offset,
                        exc.msg,
                    )
                    return
                await asyncio.sleep(self.retry_delay * 2**attempt)

    async def finish(self, size: int | None, *, within: float = 30.0) -> Json | None:
        """After the recorder stopped: send what is left, then ``final=true``.
        The stored artifact (with the server's checksum), or None if it failed."""
        self._queue.put_nowait(None)
        try:
            async with asyncio.timeout(within):
                await self._task
                if self.failed is not None:
                    return None
                end = size if size is not None else self._end
                return await self.api.put_recording(self.call_id, end, b"", final=True)
        except (ApiError, TimeoutError) as exc:
            log.warning("could not close the recording of call %s: %s", self.call_id, exc)
            return None
        finally:
            if not self._task.done():
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task

    async def abort(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
