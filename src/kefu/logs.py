"""Every process's log: no secret in any line, at any level (reliability §1.4).

kefu's own lines never name a password or a token, but the libraries under
it log what they send and receive: httpx an ``HTTP Request: GET <url>`` line
at INFO, websockets every frame at DEBUG (the agent's ``auth`` with its
token, an SDK's ``hello`` with the pairing token, ``startLogin`` with the
password), uvicorn a failed request's traceback. :class:`RedactingFilter`,
on the one handler :func:`configure_logging` puts on the root logger — by
``kefu server``, ``kefu plugin``, ``kefu visitor`` and ``kefu demo`` alike —
rewrites every record before it is written: a data frame's content is
dropped (the byte count stays); the value of a
``pwd``/``password``/``token``/``credential``/``secret`` query parameter,
JSON or Python field, and of an ``Authorization`` header or a ``Bearer``
token, becomes ``***`` — in the message, its arguments and its traceback.
It is a second line of defence: the password is not in a URL to begin with
(:mod:`kefu.plugin.login`), and the server's database engine never puts a
statement's parameters (row values) in an error (``hide_parameters``,
:mod:`kefu.server.store`).
"""

from __future__ import annotations

import logging
import re
import sys
from typing import TextIO

__all__ = ["LOG_HANDLER_MARK", "MASK", "RedactingFilter", "configure_logging", "redact_secrets"]

MASK = "***"

#: A name that holds a secret: pwd, password, passwd, token, access_token,
#: ice_credential, turnCredential, client_secret ...
_SECRET_WORD = re.compile(r"pwd|passw(?:or)?d|token|credential|secret", re.IGNORECASE)

# Every pattern starts only where a name starts (after a quote, or not after a name's
# character), and names are checked by _SECRET_WORD afterwards: linear in the line's length.
_NAME = r"[A-Za-z0-9_\-]+"
#: websockets' DEBUG line of a data frame: "> TEXT '{…}' [104 bytes]". Its content is never
#: logged: it carries tokens and passwords, and websockets cuts a long one in the middle
#: ("{"token…Xk2f"}"), where no name is left to mask by.
_FRAME = re.compile(r"^(?P<d>[<>] (?:TEXT|BINARY|CONT)) .*(?P<m>\[[^\[\]]*\bbytes?\b[^\[\]]*\])$", re.S)
#: "name": "value" and 'name': 'value' (JSON, a Python repr); a value cut short ends the line.
_QUOTED = re.compile(
    rf"""(?P<q>["'])(?P<k>{_NAME})(?P=q)(?P<sep>\s*:\s*)"""
    r"""(?:(?P<v>["'])(?:\\.|(?!(?P=v)).)*(?P=v)?|(?P<bare>[^\s"',}\]]+))"""
)
#: name=value (a query string, a form, key=value words), also percent-encoded (%3D).
_ASSIGNED = re.compile(rf"(?<![A-Za-z0-9_\-])(?P<k>{_NAME})(?P<sep>=|%3[Dd])(?P<v>[^&\s\"'#;,)\]}}]*)")
#: Authorization: Bearer x / Basic x, and a Bearer token anywhere.
_AUTHORIZATION = re.compile(r"(?P<k>\bauthorization[\"']?\s*[:=]\s*[\"']?)[^\r\n\"']*", re.IGNORECASE)
_BEARER = re.compile(r"\b(?P<k>bearer\s+)[A-Za-z0-9\-._~+/=]+", re.IGNORECASE)


def _quoted(m: re.Match[str]) -> str:
    if not _SECRET_WORD.search(m["k"]):
        return m[0]
    head = f"{m['q']}{m['k']}{m['q']}{m['sep']}"
    return head + (f"{m['v']}{MASK}{m['v']}" if m["v"] is not None else MASK)


def _assigned(m: re.Match[str]) -> str:
    return f"{m['k']}{m['sep']}{MASK}" if _SECRET_WORD.search(m["k"]) else m[0]


def redact_secrets(text: str) -> str:
    """``text`` with the value of every secret field masked (see the module's docstring)."""
    text = _FRAME.sub(r"\g<d> (content not logged) \g<m>", text)
    text = _QUOTED.sub(_quoted, text)
    text = _ASSIGNED.sub(_assigned, text)
    text = _AUTHORIZATION.sub(rf"\g<k>{MASK}", text)
    return _BEARER.sub(rf"\g<k>{MASK}", text)


#: The mark of the handler :func:`configure_logging` installed.
LOG_HANDLER_MARK = "_kefu_redacting_handler"


class RedactingFilter(logging.Filter):
    """A handler's filter: the record's message, arguments and traceback, redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what can be kept
            message = f"{record.msg!s} {record.args!r}"
        record.msg = redact_secrets(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_secrets(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_secrets(record.stack_info)
        return True


def configure_logging(level: str | int = "info", stream: TextIO | None = None) -> logging.Handler:
    """A process's log: one handler on the root logger, to ``stream`` (stderr:
    the terminal, or ``plugin.log`` when ``IMClient.startup`` started the
    plugin), every record redacted. Returns the handler. A handler an earlier
    call put there is replaced (one process, one log: a command run twice in
    one interpreter, as tests do, does not write every line twice)."""
    if isinstance(level, str):
        level = getattr(logging, level.upper(), logging.INFO)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, LOG_HANDLER_MARK, False)]:
        root.removeHandler(old)
    setattr(handler, LOG_HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
