"""Every error the system can return, and the exception tree that carries them.

The wire form is the spec's (SPEC §2, v1204.2)::

    {"error": {"code": "SDK_11", "msg": "..."}}

with one exception kept exactly as the spec prints it (SPEC §4.4)::

    {"error": {"type": "snapShotDisabled", "msg": "snapShotDisabled"}}

Exception tree::

    KefuError                     every error this package raises on purpose
    ├── ProtocolError             the peer broke the protocol (bad message)
    ├── InvalidTransition         an event the state machine does not allow
    └── ApiError                  a request was understood and refused

Each carries an :class:`ErrorCode` from :data:`CATALOGUE`, so adapters turn
any of them into the wire form with :meth:`KefuError.to_wire`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CATALOGUE",
    "ApiError",
    "ErrorCode",
    "ErrorInfo",
    "InvalidTransition",
    "KefuError",
    "ProtocolError",
    "error_body",
    "localize",
]

#: The languages of error messages: Chinese by default (as the seed prints them), English on request.
LANGS = ("zh", "en")
DEFAULT_LANG = "zh"
__all__ += ["DEFAULT_LANG", "LANGS"]


class ErrorCode(enum.Enum):
    """Error codes. The spec's own keep their spelling; ours are snake_case."""

    # --- the spec's (SPEC §4.1, §4.3, §4.4)
    SDK_08 = "SDK_08"
    SDK_11 = "SDK_11"
    login_timeout = -1
    snapShotDisabled = "snapShotDisabled"
    # --- the wire: the peer broke the protocol
    bad_json = "bad_json"
    bad_request = "bad_request"
    missing_field = "missing_field"
    invalid_field = "invalid_field"
    unknown_mark = "unknown_mark"
    unsupported_version = "unsupported_version"
    too_large = "too_large"
    binary_frame = "binary_frame"
    duplicate_request = "duplicate_request"
    # --- who you are
    unauthenticated = "unauthenticated"
    bad_credentials = "bad_credentials"
    token_expired = "token_expired"
    login_locked = "login_locked"
    forbidden = "forbidden"
    origin_refused = "origin_refused"
    host_refused = "host_refused"
    controller_busy = "controller_busy"
    account_disabled = "account_disabled"
    token_revoked = "token_revoked"
    too_many_connections = "too_many_connections"
    local_network_denied = "local_network_denied"
    # --- what you asked
    not_logged_in = "not_logged_in"
    invalid_state = "invalid_state"
    no_such_session = "no_such_session"
    session_closed = "session_closed"
    no_such_call = "no_such_call"
    no_such_agent = "no_such_agent"
    no_such_visitor = "no_such_visitor"
    visitor_offline = "visitor_offline"
    agent_offline = "agent_offline"
    not_in_call = "not_in_call"
    no_capacity = "no_capacity"
    agent_busy = "agent_busy"
    transfer_in_progress = "transfer_in_progress"
    no_transfer = "no_transfer"
    no_agent_available = "no_agent_available"
    not_available_yet = "not_available_yet"
    no_media = "no_media"
    no_such_media = "no_such_media"
    share_refused = "share_refused"
    photo_refused = "photo_refused"
    redirect_refused = "redirect_refused"
    recording_finished = "recording_finished"
    no_such_request = "no_such_request"
    no_such_webhook = "no_such_webhook"
    # --- the system
    rate_limited = "rate_limited"
    upstream_down = "upstream_down"
    plugin_unreachable = "plugin_unreachable"
    storage_full = "storage_full"
    media_server_unavailable = "media_server_unavailable"
    media_server_lost = "media_server_lost"
    media_unreachable = "media_unreachable"
    timeout = "timeout"
    internal = "internal"


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    code: ErrorCode
    msg: str
    msg_zh: str
    when: str
    http_status: int = 400
    spec: bool = False


E = ErrorCode
CATALOGUE: dict[ErrorCode, ErrorInfo] = {
    i.code: i
    for i in (
        ErrorInfo(
            E.SDK_08,
            "id lookup failed; check the visitor's details",
            "查询id出错,请检查访客信息是否正确",
            "a call API names a visitor or agent that does not exist (SPEC §4.3)",
            404,
            spec=True,
        ),
        ErrorInfo(
            E.SDK_11,
            "the visitor is in a session now; cannot call out",
            "当前访客正在进行会话,无法外呼",
            "a call API names a visitor who is in a session with another agent (SPEC §4.3)",
            409,
            spec=True,
        ),
        ErrorInfo(
            E.login_timeout,
            "login timed out",
            "登录超时",
            "startLogin got no answer from the server within the login timeout (SPEC §4.1)",
            504,
            spec=True,
        ),
        ErrorInfo(
            E.snapShotDisabled,
            "snapShotDisabled",
            "snapShotDisabled",
            "takePhoto while the visitor has photos disabled (SPEC §4.4)",
            409,
            spec=True,
        ),
        ErrorInfo(
            E.bad_json,
            "the message is not valid JSON",
            "消息不是合法的JSON",
            "a text frame that does not parse, has duplicate keys, NaN/Infinity or is nested too deep",
        ),
        ErrorInfo(
            E.bad_request,
            "the message is not a request object",
            "消息不是请求对象",
            "the top level is not an object, or a field has a value the API does not take",
        ),
        ErrorInfo(
            E.missing_field,
            "a required field is missing",
            "缺少必填字段",
            "a request without id or mark, or an API call without a required parameter",
        ),
        ErrorInfo(
            E.invalid_field,
            "a field has the wrong type or value",
            "字段类型或取值错误",
            "a field has the wrong JSON type (no coercion) or an out-of-range value",
        ),
        ErrorInfo(
            E.unknown_mark,
            "unknown API",
            "未知的API",
            "the mark names no API of this protocol",
        ),
        ErrorInfo(
            E.unsupported_version,
            "unsupported protocol version",
            "不支持的协议版本",
            "the message's v is not a version this peer speaks",
        ),
        ErrorInfo(
            E.too_large,
            "the message is too large",
            "消息过大",
            "a message over the size limit (64 KiB); repeated, the connection closes with 1009",
            413,
        ),
        ErrorInfo(
            E.binary_frame,
            "binary frames are not accepted; send JSON text",
            "不接受二进制帧,请发送JSON文本",
            "a binary WebSocket frame on a text protocol",
        ),
        ErrorInfo(
            E.duplicate_request,
            "a request with this id is already in progress",
            "相同id的请求正在处理中",
            "a request id reused while the first request with it is still running",
            409,
        ),
        ErrorInfo(
            E.unauthenticated,
            "authenticate first",
            "请先认证",
            "a request before the first auth message, or with no or a wrong token",
            401,
        ),
        ErrorInfo(
            E.bad_credentials,
            "wrong name or password",
            "用户名或密码错误",
            "login with an unknown name or a wrong password",
            401,
        ),
        ErrorInfo(
            E.token_expired,
            "the token has expired; log in again",
            "令牌已过期,请重新登录",
            "a token past its expiry",
            401,
        ),
        ErrorInfo(
            E.login_locked,
            "too many failed logins; try again later",
            "登录失败次数过多,请稍后再试",
            "repeated failed logins for one name or address",
            429,
        ),
        ErrorInfo(
            E.forbidden,
            "not allowed",
            "无权操作",
            "an agent acting on another agent's session, call or data without being admin",
            403,
        ),
        ErrorInfo(
            E.origin_refused,
            "this page's origin may not control the plugin",
            "该页面来源无权控制插件",
            "a WebSocket handshake whose Origin is not in the allowlist",
            403,
        ),
        ErrorInfo(
            E.host_refused,
            "wrong Host header",
            "Host头不合法",
            "a handshake whose Host is not 127.0.0.1 or localhost with the port (DNS rebinding)",
            403,
        ),
        ErrorInfo(
            E.controller_busy,
            "another client controls the plugin",
            "插件已被其他客户端控制",
            "a second controlling client while one is connected",
            409,
        ),
        ErrorInfo(
            E.account_disabled,
            "this account is disabled",
            "账号已停用",
            "login with a disabled agent account",
            403,
        ),
        ErrorInfo(
            E.not_logged_in,
            "the agent is not logged in",
            "坐席未签入",
            "an API that needs a logged-in agent, before startLogin succeeded",
            401,
        ),
        ErrorInfo(
            E.invalid_state,
            "not allowed in the agent's current state",
            "当前状态下不允许该操作",
            "an event the state machine does not allow from the current state; nothing changes",
            409,
        ),
        ErrorInfo(
            E.no_such_session,
            "no such session",
            "会话不存在",
            "a session id that does not exist or is not visible to the caller",
            404,
        ),
        ErrorInfo(
            E.session_closed,
            "the session is closed",
            "会话已关闭",
            "an action on a session that has been closed",
            409,
        ),
        ErrorInfo(
            E.no_such_call,
            "no such call",
            "通话不存在",
            "a call id that does not exist or is over",
            404,
        ),
        ErrorInfo(
            E.no_such_agent,
            "no such agent",
            "坐席不存在",
            "an agent name that does not exist",
            404,
        ),
        ErrorInfo(
            E.no_such_visitor,
            "no such visitor",
            "访客不存在",
            "a visitor name or id that does not exist",
            404,
        ),
        ErrorInfo(
            E.visitor_offline,
            "the visitor is not connected",
            "访客不在线",
            "a call API names a visitor whose page or app is not connected",
            409,
        ),
        ErrorInfo(
            E.agent_offline,
            "the agent is not logged in or not connected",
            "坐席未登录或不在线",
            "a transfer names an agent who is logged out or whose plugin is not connected",
            409,
        ),
        ErrorInfo(
            E.not_in_call,
            "not in a call",
            "当前不在通话中",
            "a media API (snapshot, takePhoto, inviteShare, videoDisconnect) outside a call",
            409,
        ),
        ErrorInfo(
            E.no_capacity,
            "the agent has no free capacity",
            "坐席接待量已满",
            "picking up a session beyond the agent's maximum number of sessions",
            409,
        ),
        ErrorInfo(
            E.agent_busy,
            "the agent cannot take a call now",
            "坐席当前无法接听",
            "a call transfer names an agent who is not ready (not idle) (issue 20)",
            409,
        ),
        ErrorInfo(
            E.transfer_in_progress,
            "a transfer of this call is already in progress",
            "该通话已有转接正在进行",
            "transferCall while a transfer of the same call rings or is consulting (issue 20)",
            409,
        ),
        ErrorInfo(
            E.no_transfer,
            "no transfer of this agent is in progress",
            "当前没有进行中的转接",
            "completeTransfer or cancelTransfer without a transfer of the agent's call (issue 20)",
            409,
        ),
        ErrorInfo(
            E.no_agent_available,
            "no agent of the queue is ready",
            "该队列没有空闲坐席",
            "a call transferred to a team (queue) none of whose agents is ready now (issue 20)",
            409,
        ),
        ErrorInfo(
            E.not_available_yet,
            "this API is not available in this version",
            "该API在此版本中尚不可用",
            "an API whose part of the system is not built yet",
            501,
        ),
        ErrorInfo(
            E.no_media,
            "no video from the visitor yet",
            "尚未收到访客视频",
            "snapshot before any frame of the visitor's video arrived",
            409,
        ),
        ErrorInfo(
            E.no_such_media,
            "no such photo, snapshot or recording",
            "照片、截图或录像不存在",
            "a media artifact that does not exist or that the caller may not see",
            404,
        ),
        ErrorInfo(
            E.share_refused,
            "the visitor refused to share the screen",
            "访客拒绝共享屏幕",
            "inviteShare refused or failed on the visitor's side",
            409,
        ),
        ErrorInfo(
            E.photo_refused,
            "the visitor refused the photo",
            "访客拒绝拍照",
            "takePhoto refused by the visitor",
            409,
        ),
        ErrorInfo(
            E.redirect_refused,
            "returnTo is not an allowed origin",
            "returnTo 不是允许的地址",
            "doLogin with a returnTo outside the allowed origins (no open redirect)",
            400,
        ),
        ErrorInfo(
            E.rate_limited,
            "too many messages; slow down",
            "消息过于频繁,请稍后再试",
            "more messages than the connection's rate limit; repeated, closes with 1008",
            429,
        ),
        ErrorInfo(
            E.upstream_down,
            "the connection to the server is down; it is being restored",
            "与服务器的连接已断开,正在恢复",
            "a plugin API that needs the server while the plugin's link to it is down",
            503,
        ),
        ErrorInfo(
            E.plugin_unreachable,
            "the plugin does not answer; start it (IMClient.startup or `kefu plugin`)",
            "插件无响应,请先启动插件",
            "an SDK whose connection to the plugin failed or broke",
            503,
        ),
        ErrorInfo(
            E.token_revoked,
            "this token was revoked (logged out, or the account was changed); log in again",
            "令牌已失效(已退出登录或账号已变更),请重新登录",
            "a request or socket that presents a token revoked by logout, disabling or an admin",
            401,
        ),
        ErrorInfo(
            E.too_many_connections,
            "too many connections from this address; close some and try again",
            "该地址的连接数过多,请关闭部分连接后重试",
            "a new connection from an address that already holds the configured maximum",
            429,
        ),
        ErrorInfo(
            E.local_network_denied,
            "the browser refused this page access to the local network (the plugin on 127.0.0.1): "
            "allow 'local network access' for this site, or ask IT to set the "
            "LocalNetworkAccessAllowedForUrls policy for the workstation origin",
            "浏览器拒绝了本页面访问本地网络(127.0.0.1 上的插件):请为本站点允许"
            "「本地网络访问」,或请IT为坐席页面的来源配置 LocalNetworkAccessAllowedForUrls 策略",
            "imclient.js on a page whose Local Network Access permission is denied or not granted",
            403,
        ),
        ErrorInfo(
            E.recording_finished,
            "the recording is finished and cannot be changed",
            "录像已完成,不可修改",
            "a recording upload after the final chunk (evidence is immutable)",
            409,
        ),
        ErrorInfo(
            E.no_such_request,
            "no open request with this id",
            "没有该id对应的待处理请求",
            "a photo or answer for a request id that was never made, or is already answered",
            404,
        ),
        ErrorInfo(
            E.no_such_webhook,
            "no such webhook",
            "该回调地址(webhook)不存在",
            "a webhook id that was never registered, or was deleted",
            404,
        ),
        ErrorInfo(
            E.storage_full,
            "the server's storage is full; nothing was stored. Free disk space and try again",
            "服务器存储空间已满,未保存任何内容。请释放磁盘空间后重试",
            "a write that failed for lack of space (disk or quota); the request was not acknowledged",
            507,
        ),
        ErrorInfo(
            E.media_server_unavailable,
            "the media server is unavailable; the call cannot be placed now",
            "媒体服务器不可用,暂时无法建立通话",
            "a call while the data centre's media server (Janus) does not answer",
            503,
        ),
        ErrorInfo(
            E.media_server_lost,
            "the media server stopped during the call; the call has ended",
            "通话过程中媒体服务器停止工作,通话已结束",
            "the data centre's media server (Janus) died or restarted mid-call: every call whose media "
            "went through it ends with this reason (what was recorded until then is kept)",
            503,
        ),
        ErrorInfo(
            E.media_unreachable,
            "the call's media could not connect (no network path, even through the relay)",
            "通话媒体无法连通(即使经由中继也无可用网络路径)",
            "a member's WebRTC media did not connect within the bound (ICE failed, TURN unreachable):"
            " the call ends with this reason",
            504,
        ),
        ErrorInfo(
            E.timeout,
            "the operation timed out",
            "操作超时",
            "a request that got no answer in time",
            504,
        ),
        ErrorInfo(
            E.internal,
            "internal error",
            "内部错误",
            "a bug: the request failed unexpectedly; nothing was changed",
            500,
        ),
    )
}
del E


def error_body(code: ErrorCode, msg: str | None = None) -> dict[str, Any]:
    """The ``error`` object of the wire form for ``code``."""
    text = msg if msg is not None else CATALOGUE[code].msg
    if code is ErrorCode.snapShotDisabled:
        # SPEC §4.4 prints this one with "type", not "code": keep it exact.
        return {"type": code.value, "msg": text}
    return {"code": code.value, "msg": text}


def localize(error: dict[str, Any], lang: str) -> dict[str, Any]:
    """``error`` (the wire's ``{"code", "msg"}``) in ``lang``. In Chinese, ``msg`` is the
    catalogue's Chinese message and a specific English message moves to ``detail``; in English,
    or for a code outside the catalogue, ``error`` is returned as it is."""
    if lang == "en":
        return error
    try:
        info = CATALOGUE[ErrorCode(error.get("code", error.get("type")))]
    except ValueError:
        return error
    out = {**error, "msg": info.msg_zh}
    msg = error.get("msg")
    if msg and msg not in (info.msg, info.msg_zh):
        out["detail"] = msg
    return out


class KefuError(Exception):
    """Root of every error this package raises on purpose."""

    code: ErrorCode = ErrorCode.internal

    def __init__(self, msg: str | None = None, *, code: ErrorCode | None = None) -> None:
        if code is not None:
            self.code = code
        self.msg = msg if msg is not None else CATALOGUE[self.code].msg
        super().__init__(self.msg)

    def to_wire(self) -> dict[str, Any]:
        return error_body(self.code, self.msg)


class ProtocolError(KefuError):
    """The peer sent something this protocol does not accept."""

    code = ErrorCode.bad_request

    def __init__(
        self, msg: str | None = None, *, code: ErrorCode | None = None, field: str | None = None
    ) -> None:
        super().__init__(msg, code=code)
        self.field = field
        self.request_id: str | None = None
        self.mark: str | None = None


class ApiError(KefuError):
    """A request was understood and refused."""


class InvalidTransition(KefuError):
    """The agent state machine does not allow this event from this state."""

    code = ErrorCode.invalid_state

    def __init__(self, state: str, flow: str, event: str, reason: str | None = None) -> None:
        self.state = state
        self.flow = flow
        self.event = event
        why = f" ({reason})" if reason else ""
        super().__init__(f"{flow}.{event} is not allowed in state {state}{why}")
