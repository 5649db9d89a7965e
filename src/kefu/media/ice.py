"""ICE configuration: which servers and which local addresses.

Two defaults of aiortc / aioice break the network rule of DESIGN §6 (media in
tests and in the embedded default goes to 127.0.0.1 only):

* aiortc uses a public STUN server when ``iceServers`` is ``None``:
  :func:`rtc_configuration` always passes the configured list, empty by default;
* aioice offers host candidates on every interface *except* loopback
  (``aioice.ice.get_host_addresses``).

For the second, :func:`host_addresses` sets, for the code awaited inside it,
the addresses aioice gathers host candidates on. It works through one
replacement of ``aioice.ice.get_host_addresses`` (installed once, on first
use) that returns the addresses of the current context and falls back to
aioice's own lookup when no context set any, so code outside
:class:`~kefu.media.peer.MediaPeer` sees aioice unchanged. A context
variable rather than a global: each peer may use other addresses, and
``asyncio.gather`` copies the context into the tasks that gather.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer

from .errors import MediaError
from .settings import IceServer, MediaSettings

__all__ = [
    "default_host_addresses",
    "gathered_addresses",
    "host_addresses",
    "ice_servers_from_wire",
    "is_loopback_server",
    "rtc_configuration",
]

_ADDRESSES: ContextVar[tuple[str, ...] | None] = ContextVar("kefu_media_host_addresses", default=None)
_original: Callable[[bool, bool], list[str]] | None = None


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    chosen = _ADDRESSES.get()
    if chosen is None:
        assert _original is not None
        return _original(use_ipv4, use_ipv6)
    out = []
    for address in chosen:
        version = ipaddress.ip_address(address).version
        if (version == 4 and use_ipv4) or (version == 6 and use_ipv6):
            out.append(address)
    return out


def _install() -> None:
    global _original
    if _original is None:
        _original = aioice.ice.get_host_addresses
        aioice.ice.get_host_addresses = _get_host_addresses


def gathered_addresses(use_ipv4: bool = True, use_ipv6: bool = True) -> list[str]:
    """The addresses aioice would gather host candidates on here and now."""
    _install()
    return aioice.ice.get_host_addresses(use_ipv4, use_ipv6)


@contextmanager
def host_addresses(addresses: tuple[str, ...] | None) -> Iterator[None]:
    """Within this block (and tasks it starts), gather host candidates on
    ``addresses`` only; ``None`` leaves aioice's choice."""
    for address in addresses or ():
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise MediaError(f"host address {address!r} is not an IP address") from None
    _install()
    token = _ADDRESSES.set(addresses)
    try:
        yield
    finally:
        _ADDRESSES.reset(token)


def rtc_configuration(settings: MediaSettings) -> RTCConfiguration:
    """The ``RTCConfiguration`` for ``settings``: its ICE servers and no others."""
    return RTCConfiguration(iceServers=[_rtc_server(s) for s in settings.ice_servers])


def _rtc_server(server: IceServer) -> RTCIceServer:
    return RTCIceServer(urls=list(server.urls), username=server.username, credential=server.credential)


def is_loopback_server(server_url: str) -> bool:
    """Whether the kefu server at ``server_url`` is on this machine's loopback."""
    host = (urlsplit(server_url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_host_addresses(server_url: str) -> tuple[str, ...] | None:
    """Where to offer host candidates by default: loopback only when the server
    is on loopback (the embedded default, DESIGN §6), else every interface but
    loopback (``None``: aioice's own list), so a call across networks has host
    candidates where a peer or the relay can reach them."""
    return ("127.0.0.1",) if is_loopback_server(server_url) else None


def ice_servers_from_wire(data: Any) -> tuple[IceServer, ...]:
    """The server's ``iceServers`` (auth / hello reply, ``iceServers`` answer) as
    :class:`IceServer`\\ s. Raises :class:`MediaError` on a malformed list."""
    if data is None:
        return ()
    if not isinstance(data, list):
        raise MediaError("iceServers: a list of {urls, username, credential}")
    out = []
    for entry in data:
        if not isinstance(entry, dict):
            raise MediaError("iceServers: each entry is an object")
        urls = entry.get("urls")
        if isinstance(urls, str):
            urls = [urls]
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise MediaError("iceServers[].urls: a URL or a list of URLs")
        username, credential = entry.get("username"), entry.get("credential")
        if not (username is None or isinstance(username, str)) or not (
            credential is None or isinstance(credential, str)
        ):
            raise MediaError("iceServers[].username and credential: strings")
        out.append(IceServer(tuple(urls), username, credential))
    return tuple(out)
