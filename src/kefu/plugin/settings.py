"""The plugin's settings: one frozen object, every timeout and limit in it.

Tests build :class:`PluginSettings` with millisecond timeouts; ``kefu plugin``
builds it from its options. Nothing else reads the environment, except
:func:`kefu.paths.default_data_dir`, which the SDK uses too (to find ``plugin.token``).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from kefu.paths import DATA_DIR_ENV, DEFAULT_PORT, TOKEN_FILE, default_data_dir
from kefu.protocol.hosts import origin_of

if TYPE_CHECKING:  # loading the settings must not load aiortc
    from kefu.media import MediaSettings

__all__ = [
    "DATA_DIR_ENV",
    "DEFAULT_PORT",
    "TOKEN_FILE",
    "PluginSettings",
    "default_data_dir",
    "default_media",
    "origin_of",
]


def default_media() -> MediaSettings:
    """The plugin's media by default: the embedded default of DESIGN §6
    (loopback host candidates, no ICE server, the test pattern), recording on."""
    from kefu.media import MediaSettings

    return MediaSettings(record=True)


@dataclass(frozen=True)
class PluginSettings:
    """Everything ``kefu plugin`` can be told. Times are in seconds."""

    server_url: str
    port: int = DEFAULT_PORT
    data_dir: Path = field(default_factory=default_data_dir)
    #: Origins allowed besides the defaults (the server's, ``http://127.0.0.1:<port>``,
    #: ``http://localhost:<port>``).
    allow_origins: tuple[str, ...] = ()
    allow_many: bool = False
    login_timeout: float = 30.0
    #: A client without an Origin must send ``hello`` with the token within this time.
    hello_timeout: float = 5.0
    #: How long a request forwarded to the server may wait for its first answer.
    request_timeout: float = 10.0
    #: The link to the server: first reconnect delay, doubling up to the maximum.
    backoff_min: float = 0.5
    backoff_max: float = 10.0
    open_timeout: float = 10.0
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    #: Messages over this many bytes are answered ``too_large`` (the connection stays).
    max_message: int = 64 * 1024
    #: Frames over this many bytes close the connection (1009): the socket layer's limit.
    max_frame: int = 2 * 1024 * 1024
    #: Connections at once (pending pairing included); more get HTTP 503.
    max_connections: int = 8
    #: Per connection: at most ``rate_limit`` messages in ``rate_window`` seconds
    #: (the server's own limit on the agent's link is 100 in 10 s).
    rate_limit: int = 100
    rate_window: float = 10.0
    #: Pairing: this many wrong tokens within ``pairing_window`` lock pairing for ``pairing_lock``.
    pairing_failures: int = 5
    pairing_window: float = 60.0
    pairing_lock: float = 60.0
    #: How long ``quit`` waits for the server to confirm the logout.
    quit_logout_timeout: float = 2.0
    #: Messages queued for one SDK connection before it is closed as too slow.
    max_outbound: int = 1000
    #: WebRTC media of the calls (``None``: ``--no-media``, calls are signalling only).
    #: ``media.record`` records every call the agent leads and uploads it in chunks.
    media: MediaSettings | None = field(default_factory=default_media)
    #: How long ``takePhoto`` waits for the photo, and ``inviteShare`` for the
    #: visitor's answer, before answering ``timeout``.
    media_timeout: float = 25.0
    #: Bounds each HTTP upload or download (snapshot, photo, recording chunk).
    http_timeout: float = 10.0
    #: TLS of the control socket (``--tls-cert``/``--tls-key``): ``wss://`` and
    #: ``https://…/imclient.js`` on the port, the certificate's DNS names allowed as Host.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: The CA file the link to an ``https://`` server trusts (``--server-ca``, a bank's own
    #: CA); None: the system's CAs.
    server_ca: Path | None = None
    #: A member's media not connected within this (or its ICE failed) is reported
    #: to the server (``mediaFailed``): the call ends with ``media_unreachable``.
    media_connect_timeout: float = 15.0

    def __post_init__(self) -> None:
        origin_of(self.server_url)  # raises on a bad URL
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is not a TCP port")
        if self.media_timeout <= 0 or self.http_timeout <= 0 or self.media_connect_timeout <= 0:
            raise ValueError("media_timeout, http_timeout and media_connect_timeout must be positive")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both a certificate and its key (--tls-cert and --tls-key)")

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def server_ssl(self) -> ssl.SSLContext | None:
        """The TLS context of the link to an https server with ``server_ca``; None: the defaults.
        Raises :class:`~kefu.tls.TlsError` for a CA file that cannot be loaded."""
        if self.server_ca is None:
            return None
        from kefu.tls import client_context

        return client_context(self.server_ca)

    @property
    def server_origin(self) -> str:
        return origin_of(self.server_url)

    @property
    def agent_ws_url(self) -> str:
        """``ws(s)://host:port/ws/agent`` of the server."""
        origin = self.server_origin
        scheme, rest = origin.split("://", 1)
        return ("wss" if scheme == "https" else "ws") + "://" + rest + "/ws/agent"

    @property
    def http_base(self) -> str:
        """``http(s)://host:port`` of the server's REST API."""
        origin = self.server_origin
        scheme, rest = origin.split("://", 1)
        return ("https" if scheme in ("https", "wss") else "http") + "://" + rest

    @property
    def token_path(self) -> Path:
        return self.data_dir / TOKEN_FILE

    def origins(self, port: int) -> frozenset[str]:
        """The Origin allowlist once the plugin listens on ``port``."""
        base = {self.server_origin, f"http://127.0.0.1:{port}", f"http://localhost:{port}"}
        return frozenset(base | {origin_of(o) for o in self.allow_origins})
