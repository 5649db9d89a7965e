"""What the REST routes depend on: the services, the agent a token names, bounded parameters."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from kefu.protocol import ApiError, ErrorCode

from .accounts import Agent
from .api_models import PRINTABLE
from .auth import Login
from .services import Services

__all__ = [
    "COOKIE",
    "Credentials",
    "IdP",
    "IdQ",
    "Limit",
    "Me",
    "NameP",
    "NameQ",
    "Offset",
    "Time",
    "client_address",
    "current_agent",
    "login_response",
    "request_token",
    "services_of",
]

COOKIE = "kefu_token"
_bearer = HTTPBearer(auto_error=False, description="the token from /api/login or /doLogin")


def services_of(request: Request) -> Services:
    sv: Services = request.app.state.services
    return sv


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def request_token(request: Request, cred: HTTPAuthorizationCredentials | None) -> str:
    token = cred.credentials if cred is not None else request.cookies.get(COOKIE)
    if not token:
        raise ApiError("send Authorization: Bearer <token> (from /api/login)", code=ErrorCode.unauthenticated)
    return token


async def current_agent(request: Request, cred: Credentials) -> Agent:
    return await services_of(request).auth.check(request_token(request, cred))


Me = Annotated[Agent, Depends(current_agent)]
# Every parameter is bounded (issue 15): an offset past int64 was an OverflowError, a 500.
MAX_OFFSET = 1_000_000_000
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
NameQ = Annotated[str | None, Query(min_length=1, max_length=64, pattern=PRINTABLE)]
NameP = Annotated[str, Path(min_length=1, max_length=64, pattern=PRINTABLE)]
IdP = Annotated[str, Path(min_length=1, max_length=64, pattern=PRINTABLE)]
IdQ = Annotated[str, Query(min_length=1, max_length=64, pattern=PRINTABLE)]
Time = Annotated[datetime | None, Query(description="ISO 8601; without a zone, UTC")]


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def login_response(login: Login, request: Request, response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.set_cookie(
        COOKIE,
        login.token,
        max_age=max(1, int((login.expires_at - services_of(request).settings.now()).total_seconds())),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response
