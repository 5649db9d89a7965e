"""A network namespace for media through Janus (which skips loopback for ICE).

:class:`Namespace` makes ``kefu-sfu-<random>`` with ``lo`` up and a dummy
interface ``d0`` holding 10.77.9.1/24 (``accept_local`` on, so packets from
that address to itself are taken). Janus runs inside with ``ip netns exec``
(the kit's ``prefix``); :meth:`Namespace.enter` moves the calling thread —
the test's, where its event loop runs — into it with ``setns(2)``, so the
kefu server, the plugin's media and the Python visitor the test creates open
their sockets there; :meth:`Namespace.leave` moves it back. Only root can do
this: :func:`unavailable` says why not otherwise.

Sockets made in the namespace stay there: the test must make every socket it
needs (no PostgreSQL or Redis on the host's 127.0.0.1) while inside.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import subprocess

__all__ = ["HOST", "Namespace", "unavailable"]

HOST = "10.77.9.1"  # the media's host candidates, and Janus's
CLONE_NEWNET = 0x40000000


def unavailable() -> str | None:
    """Why the namespace cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add, setns)"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


class Namespace:
    def __init__(self) -> None:
        self.name = f"kefu-sfu-{secrets.token_hex(4)}"
        self.prefix = ["ip", "netns", "exec", self.name]
        self._home: int | None = None
        self._libc = ctypes.CDLL("libc.so.6", use_errno=True)

    def create(self) -> None:
        _ip("netns", "add", self.name)
        try:
            _ip("-n", self.name, "link", "set", "lo", "up")
            # a veth pair with both ends inside (containers often lack the dummy driver)
            _ip("-n", self.name, "link", "add", "d0", "type", "veth", "peer", "name", "d1")
            _ip("-n", self.name, "addr", "add", f"{HOST}/24", "dev", "d0")
            _ip("-n", self.name, "link", "set", "d0", "up")
            _ip("-n", self.name, "link", "set", "d1", "up")
            subprocess.run(
                [*self.prefix, "sysctl", "-qw", "net.ipv4.conf.all.accept_local=1"],
                check=True,
                capture_output=True,
                timeout=10,
            )
        except BaseException:
            self.delete()
            raise

    def _setns(self, fd: int) -> None:
        if self._libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns: {os.strerror(err)}")

    def enter(self) -> None:
        """Move this thread into the namespace (until :meth:`leave`)."""
        self._home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        fd = os.open(f"/var/run/netns/{self.name}", os.O_RDONLY)
        try:
            self._setns(fd)
        finally:
            os.close(fd)

    def leave(self) -> None:
        if self._home is not None:
            try:
                self._setns(self._home)
            finally:
                os.close(self._home)
                self._home = None

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True, timeout=10)
