"""The visitor side: :class:`Visitor` (an asyncio client of ``/ws/visitor``
that chats and takes video calls with real media), its typed events
(:mod:`kefu.visitor.events`), :class:`Link` (the envelope client it is built
on) and ``kefu visitor``."""

from .client import INVITE_POLICIES, InvitePolicy, Visitor, VisitorCall, ws_url
from .events import (
    CallAction,
    CallUpdate,
    ChatMessage,
    Disconnected,
    Invitation,
    MediaStatus,
    MediaTrack,
    PhotoAnswer,
    PhotoRequest,
    Problem,
    QueuePosition,
    Replaced,
    ServerError,
    SessionAssigned,
    SessionClosed,
    ShareAnswer,
    ShareRequest,
    VisitorEvent,
    from_push,
)
from .link import Link, LinkClosed, RequestFailed
from .media import CallMedia
from .photo import PhotoUploadFailed, upload_photo

__all__ = [
    "INVITE_POLICIES",
    "CallAction",
    "CallMedia",
    "CallUpdate",
    "ChatMessage",
    "Disconnected",
    "Invitation",
    "InvitePolicy",
    "Link",
    "LinkClosed",
    "MediaStatus",
    "MediaTrack",
    "PhotoAnswer",
    "PhotoRequest",
    "PhotoUploadFailed",
    "Problem",
    "QueuePosition",
    "Replaced",
    "RequestFailed",
    "ServerError",
    "SessionAssigned",
    "SessionClosed",
    "ShareAnswer",
    "ShareRequest",
    "Visitor",
    "VisitorCall",
    "VisitorEvent",
    "from_push",
    "upload_photo",
    "ws_url",
]
