"""takePhoto, the visitor's part: upload the still to the server over HTTP.

``POST /api/visitor/photo?callId=&requestId=`` with the JPEG as the body and
the visitor's name and key in ``X-Visitor-Name`` / ``X-Visitor-Key``
(docs/calls.md). HTTP header values are Latin-1 at most, so a name that is
not plain ASCII is sent percent-encoded (UTF-8), and ``X-Visitor-Name-Encoding:
percent`` says so.
"""

from __future__ import annotations

import ssl as ssl_module
from typing import Any
from urllib.parse import quote

import httpx

from kefu.protocol import ApiError, ErrorCode
from kefu.protocol.wire import Json

__all__ = ["PhotoUploadFailed", "http_client", "http_url", "upload_photo"]


class PhotoUploadFailed(ApiError):
    """The server did not take the photo (``status``: its HTTP status, or None when unreachable)."""

    code = ErrorCode.internal

    def __init__(self, msg: str, *, status: int | None = None) -> None:
        super().__init__(msg)
        self.status = status


def http_url(server: str, path: str) -> str:
    """``ws://host:port`` (or ``http://…``) → ``http://host:port/path``."""
    base = server.rstrip("/")
    if base.startswith("ws://"):
        base = "http://" + base[len("ws://") :]
    elif base.startswith("wss://"):
        base = "https://" + base[len("wss://") :]
    return base + path


def http_client(timeout: float, ssl: ssl_module.SSLContext | None = None) -> httpx.AsyncClient:
    """The HTTP client of one visitor (made once: making one costs tens of ms).
    ``trust_env=False``: never through a proxy from the environment. ``ssl``: the
    context of an https server (a bank's own CA); None: the system's CAs."""
    return httpx.AsyncClient(timeout=timeout, trust_env=False, verify=ssl if ssl is not None else True)


def name_headers(name: str) -> dict[str, str]:
    if name.isascii() and name.isprintable():
        return {"X-Visitor-Name": name}
    return {"X-Visitor-Name": quote(name, safe=""), "X-Visitor-Name-Encoding": "percent"}


async def upload_photo(
    client: httpx.AsyncClient,
    server: str,
    *,
    name: str,
    key: str,
    call_id: str,
    request_id: str,
    jpeg: bytes,
) -> Json:
    """Upload one photo with ``client`` (make it with :func:`http_client`); return
    the server's answer (``{"artifactId": …}``).

    Raises :class:`PhotoUploadFailed` with a short reason when it did not work."""
    headers = {"Content-Type": "image/jpeg", "X-Visitor-Key": key, **name_headers(name)}
    try:
        response = await client.post(
            http_url(server, "/api/visitor/photo"),
            params={"callId": call_id, "requestId": request_id},
            content=jpeg,
            headers=headers,
        )
    except httpx.HTTPError as exc:
        raise PhotoUploadFailed(f"upload failed: {type(exc).__name__}: {exc}") from exc
    body: Any
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 300:
        raise PhotoUploadFailed(
            f"upload failed: HTTP {response.status_code} {_error_text(body)}".rstrip(),
            status=response.status_code,
        )
    return body if isinstance(body, dict) else {}


def _error_text(body: Any) -> str:
    """The error of a kefu error body (``{"error": {code, msg}}``) or FastAPI's ``detail``."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return f"{error.get('code')}: {error.get('msg')}"
        detail = body.get("detail")
        if isinstance(detail, str):
            return detail
        if isinstance(detail, dict) and isinstance(detail.get("error"), dict):
            return f"{detail['error'].get('code')}: {detail['error'].get('msg')}"
    return ""
