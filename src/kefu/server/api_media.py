"""The REST routes of media artifacts: photos, snapshots, recordings (SPEC §4.4; server/media.py)."""

from __future__ import annotations

import logging
import pathlib
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from kefu.protocol import ApiError, ErrorCode

from .api_deps import IdP, IdQ, Me, client_address, services_of
from .api_models import ERRORS, FILE, WRITES, ArtifactOut, error_answers
from .vault import MediaKeyError

__all__ = ["router"]

log = logging.getLogger("kefu.server.api")
router = APIRouter()


async def _body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise ApiError(f"at most {limit} bytes", code=ErrorCode.too_large)
    data = await request.body()
    if len(data) > limit:
        raise ApiError(f"at most {limit} bytes", code=ErrorCode.too_large)
    return data


@router.post(
    "/api/visitor/photo",
    tags=["media"],
    response_model=ArtifactOut,
    responses=error_answers(400, 401, 403, 404, 413, 500, 507),
)
async def visitor_photo(request: Request, callId: IdQ, requestId: IdQ) -> Any:
    """A visitor's photo for the agent's ``takePhoto`` (body: the JPEG; headers
    ``X-Visitor-Name`` and ``X-Visitor-Key``; a name that is not ASCII is sent
    percent-encoded with ``X-Visitor-Name-Encoding: percent``). ``requestId`` is
    the agent's open request (``photoRequest``); each is answered once."""
    name = request.headers.get("x-visitor-name", "")
    if request.headers.get("x-visitor-name-encoding", "").lower() == "percent":
        name = unquote(name)  # a header value is ASCII: names such as 访客一 come percent-encoded
    key = request.headers.get("x-visitor-key", "")
    sv = services_of(request)
    upload = await sv.media.photo_allowed(name, key, callId, requestId)  # before the body is read
    data = await _body(request, sv.settings.max_image_bytes)
    return await sv.media.visitor_photo(upload, data, client_address(request))


@router.post(
    "/api/media/snapshot",
    tags=["media"],
    response_model=ArtifactOut,
    responses=error_answers(400, 401, 403, 404, 413, 500, 507),
)
async def agent_snapshot(request: Request, agent: Me, callId: IdQ) -> Any:
    """A snapshot the agent's plugin took of the visitor's video (body: the JPEG)."""
    sv = services_of(request)
    data = await _body(request, sv.settings.max_image_bytes)
    return await sv.media.agent_snapshot(agent, callId, data, client_address(request))


async def _artifact_file(media: Any, art: Any, path: pathlib.Path) -> Response:
    """An artifact's file: as it is on disk, or decrypted while it is sent (evidence at rest)."""
    headers = {"X-Checksum-SHA256": art.sha256}
    segments = media.content(art, path)
    if segments is None:
        return FileResponse(path, media_type=art.content_type, headers=headers)
    try:
        first = await run_in_threadpool(next, segments, b"")
    except MediaKeyError as exc:
        log.error("%s %s cannot be decrypted: %s", art.kind, art.id, exc)
        raise ApiError("this artifact cannot be decrypted on this server", code=ErrorCode.internal) from None

    async def body() -> AsyncIterator[bytes]:
        try:
            yield first
            async for segment in iterate_in_threadpool(segments):
                yield segment
        finally:
            segments.close()  # the file, also when the reader went away mid-way

    headers["Content-Length"] = str(art.size)
    return StreamingResponse(body(), media_type=art.content_type, headers=headers)


@router.put(
    "/api/calls/{call_id}/recording",
    tags=["media"],
    response_model=ArtifactOut,
    responses=error_answers(400, 401, 403, 404, 409, 413, 500, 507),
)
async def recording_chunk(
    request: Request,
    call_id: IdP,
    agent: Me,
    offset: Annotated[int, Query(ge=0, le=2**62)],
    final: bool = False,
) -> Any:
    """A chunk of the call's recording, written at ``offset``; ``final`` closes it (checksum).

    ``offset`` is at most the size stored so far (no holes; the error names the
    expected offset); after ``final`` the recording never changes (409
    ``recording_finished``); a recording is at most ``max_recording_bytes``."""
    sv = services_of(request)
    data = await _body(request, sv.settings.max_recording_chunk_bytes)
    return await sv.media.recording_chunk(agent, call_id, offset, data, final, client_address(request))


@router.get(
    "/api/calls/{call_id}/recording",
    tags=["media"],
    response_class=FileResponse,
    responses={**FILE, **WRITES},
)
async def recording(
    request: Request, call_id: IdP, agent: Me, part: Annotated[int, Query(ge=1, le=1000)] = 1
) -> Response:
    """The call's recording (WebM), for the call's agents and admins; every read is audited.
    ``part``: in the hub mode a call transferred to another agent is recorded in parts, one
    per hub, in order (the call record's ``recordingParts``); 1 is the first (D51)."""
    sv = services_of(request)
    art, path = await sv.media.recording_of(agent, call_id, client_address(request), part)
    return await _artifact_file(sv.media, art, path)


@router.get("/api/calls/{call_id}/media", tags=["media"], response_model=list[ArtifactOut], responses=ERRORS)
async def call_media(request: Request, call_id: IdP, agent: Me) -> Any:
    """The photos, snapshots and recording of a call."""
    return await services_of(request).media.of_call(agent, call_id)


@router.get(
    "/api/media/{artifact_id}", tags=["media"], response_class=FileResponse, responses={**FILE, **WRITES}
)
async def media_one(request: Request, artifact_id: IdP, agent: Me) -> Response:
    """One photo, snapshot or recording; every read is audited."""
    sv = services_of(request)
    art, path = await sv.media.read(agent, artifact_id, client_address(request))
    return await _artifact_file(sv.media, art, path)
