"""``startLogin`` (SPEC §4.1): the login URL, and the login it asks for.

The spec's login URL is the server's single-sign-on address,
``https://host/doLogin?name=…&pwd=…&returnTo=``. The plugin checks it is
the plugin's own server's ``/doLogin``, takes the name and password out of
it, and logs in with them in the body of ``POST /api/login`` (the same login
as ``/doLogin``'s, answered with the token of the agent's session): the
password is never in a URL the plugin requests, so no HTTP library's log line
or proxy's access log can carry it. It is never logged, stored or kept.

The plugin requests only its own server: a URL on another origin, or whose
path is not ``/doLogin`` once percent-decoded and its dot segments resolved
(``/x/%2e%2e/doLogin``, ``..%2f``, ``%252e`` …), is refused with
``invalid_field`` (the caller does not choose where the plugin connects).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from ssl import SSLContext
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from kefu.protocol import ApiError, ErrorCode, ProtocolError
from kefu.protocol.client_session import reply_error

from .security import path_within
from .settings import origin_of

__all__ = [
    "API_LOGIN_PATH",
    "LOGIN_PATH",
    "LoginForm",
    "LoginResult",
    "check_login_url",
    "fetch_login",
    "redact",
]

log = logging.getLogger("kefu.plugin.login")

_URL_FIELD = "params.data.url"
#: The one path a login URL may have (the server's, SPEC §4.1).
LOGIN_PATH = "/doLogin"
#: Where the plugin sends the name and password (``kefu.server.api``'s JSON login).
API_LOGIN_PATH = "/api/login"


@dataclass(frozen=True, slots=True)
class LoginForm:
    """The name and password of a login URL (the password is not in the repr)."""

    name: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class LoginResult:
    token: str = field(repr=False)
    agent: dict[str, Any]
    expires_at: Any = None


def redact(url: str) -> str:
    """The URL without its query (which holds the password), for logs and messages."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _refuse(msg: str) -> ProtocolError:
    return ProtocolError(msg, code=ErrorCode.invalid_field, field=_URL_FIELD)


def check_login_url(url: str, server_origin: str) -> LoginForm:
    """The name and password of a login URL; refuse one that is not the
    server's ``/doLogin`` (once normalised) or lacks them."""
    try:
        origin = origin_of(url)
    except ValueError:
        raise _refuse("data.url is not an http(s) URL") from None
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None or origin.startswith("ws"):
        raise _refuse("data.url is not a login URL")
    if origin != server_origin:
        raise _refuse(f"data.url must be on the plugin's server {server_origin}")
    if not path_within(parts.path, LOGIN_PATH):
        raise _refuse(
            f"data.url must be the server's {LOGIN_PATH} address "
            "(no other path, no dot segments, no percent-encoded path)"
        )
    query = parse_qs(parts.query, keep_blank_values=True)
    names, passwords = query.get("name", []), query.get("pwd", [])
    if len(names) != 1 or len(passwords) != 1 or not names[0] or not passwords[0]:
        raise _refuse("data.url must carry one name and one pwd (doLogin?name=…&pwd=…)")
    return LoginForm(names[0], passwords[0])


def _server_error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    error = reply_error(body) if isinstance(body, dict) and isinstance(body.get("error"), dict) else None
    if error is not None:
        return error.exception()
    return ApiError(
        f"the server answered the login with HTTP {response.status_code}", code=ErrorCode.internal
    )


async def fetch_login(
    form: LoginForm, base_url: str, *, http_timeout: float, ssl: SSLContext | None = None
) -> LoginResult:
    """Log in at ``base_url``'s ``POST /api/login``; raise :class:`ApiError` with
    the server's code and message, or :class:`TimeoutError` when the server
    does not answer in time."""
    url = base_url + API_LOGIN_PATH
    body = {"name": form.name, "password": form.password}
    try:
        async with httpx.AsyncClient(
            follow_redirects=False,
            timeout=http_timeout,
            trust_env=False,
            verify=ssl if ssl is not None else True,
        ) as http:
            response = await http.post(url, json=body, headers={"Accept": "application/json"})
    except httpx.TimeoutException:
        raise TimeoutError from None
    except httpx.HTTPError as exc:
        log.warning("login at %s failed: %s", url, type(exc).__name__)
        raise ApiError(f"cannot reach the server at {base_url}", code=ErrorCode.upstream_down) from None
    if response.status_code != 200:
        if 300 <= response.status_code < 400:
            raise ApiError(
                f"the server answered the login with a redirect (HTTP {response.status_code})",
                code=ErrorCode.internal,
            )
        raise _server_error(response)
    try:
        answer = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        answer = None
    token = answer.get("token") if isinstance(answer, dict) else None
    agent = answer.get("agent") if isinstance(answer, dict) else None
    if not isinstance(token, str) or not token or not isinstance(agent, dict):
        raise ApiError("the server's login answer has no token", code=ErrorCode.internal)
    return LoginResult(
        token=token, agent=agent, expires_at=answer.get("expiresAt") if isinstance(answer, dict) else None
    )
