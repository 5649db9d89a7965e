"""``startLogin`` (SPEC §4.1): the login URL's fetch.

The spec's login URL is the server's single-sign-on address,
``https://host/doLogin?name=…&pwd=…&returnTo=``. The plugin fetches it with
``Accept: application/json`` and without following redirects; the server
answers the token of the agent's session. The password travels only in this
one request: it is never logged, stored or kept.

The plugin fetches only its own server: a URL on another origin, or another
path than ``…/doLogin``, is refused (the caller does not choose where the
plugin connects).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from ssl import SSLContext
from typing import Any
from urllib.parse import urlsplit

import httpx

from kefu.protocol import ApiError, ErrorCode, ProtocolError

from .settings import origin_of

__all__ = ["LoginResult", "check_login_url", "fetch_login", "redact"]

log = logging.getLogger("kefu.plugin.login")

_URL_FIELD = "params.data.url"


@dataclass(frozen=True, slots=True)
class LoginResult:
    token: str
    agent: dict[str, Any]
    expires_at: Any = None


def redact(url: str) -> str:
    """The URL without its query (which holds the password), for logs and messages."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def check_login_url(url: str, server_origin: str) -> str:
    """Refuse a login URL that is not the server's ``…/doLogin``."""
    try:
        origin = origin_of(url)
    except ValueError:
        raise ProtocolError(
            "data.url is not an http(s) URL", code=ErrorCode.invalid_field, field=_URL_FIELD
        ) from None
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None or origin.startswith("ws"):
        raise ProtocolError("data.url is not a login URL", code=ErrorCode.invalid_field, field=_URL_FIELD)
    if origin != server_origin:
        raise ProtocolError(
            f"data.url must be on the plugin's server {server_origin}",
            code=ErrorCode.invalid_field,
            field=_URL_FIELD,
        )
    if not parts.path.endswith("/doLogin"):
        raise ProtocolError(
            "data.url must be the server's /doLogin address", code=ErrorCode.invalid_field, field=_URL_FIELD
        )
    return url


def _server_error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        msg = error.get("msg")
        try:
            code = ErrorCode(error.get("code"))
        except ValueError:
            code = ErrorCode.internal
        return ApiError(msg if isinstance(msg, str) else None, code=code)
    return ApiError(
        f"the server answered the login with HTTP {response.status_code}", code=ErrorCode.internal
    )


async def fetch_login(url: str, *, http_timeout: float, ssl: SSLContext | None = None) -> LoginResult:
    """Fetch the login URL; raise :class:`ApiError` with the server's code and
    message, or :class:`TimeoutError` when the server does not answer in time."""
    try:
        async with httpx.AsyncClient(
            follow_redirects=False,
            timeout=http_timeout,
            trust_env=False,
            verify=ssl if ssl is not None else True,
        ) as http:
            response = await http.get(url, headers={"Accept": "application/json"})
    except httpx.TimeoutException:
        raise TimeoutError from None
    except httpx.HTTPError as exc:
        log.warning("login at %s failed: %s", redact(url), type(exc).__name__)
        raise ApiError(f"cannot reach the server at {redact(url)}", code=ErrorCode.upstream_down) from None
    if response.status_code != 200:
        if 300 <= response.status_code < 400:
            raise ApiError(
                f"the server answered the login with a redirect (HTTP {response.status_code})",
                code=ErrorCode.internal,
            )
        raise _server_error(response)
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    token = body.get("token") if isinstance(body, dict) else None
    agent = body.get("agent") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token or not isinstance(agent, dict):
        raise ApiError("the server's login answer has no token", code=ErrorCode.internal)
    return LoginResult(
        token=token, agent=agent, expires_at=body.get("expiresAt") if isinstance(body, dict) else None
    )
