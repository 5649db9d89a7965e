"""The visitor side: :class:`Visitor` (an asyncio client of ``/ws/visitor``),
:class:`Link` (the envelope client it is built on) and ``kefu visitor``."""

from .client import Visitor, ws_url
from .link import Link, LinkClosed, RequestFailed

__all__ = ["Link", "LinkClosed", "RequestFailed", "Visitor", "ws_url"]
