"""A CPU budget for one process: a cgroup capping it at a share of one core.

``bench.twonode --node-cpu 0.3`` gives every node the same budget, so that one
node against two asks whether adding a node adds capacity (the architecture:
no cluster-wide lock, no per-connection polling) apart from how many cores the
machine has left for it: on a small machine, two uncapped nodes compete with
PostgreSQL, nginx and the load for the same cores, and the machine is the limit.

The cgroup is the cpu controller's (cgroup v2 when the unified hierarchy has it,
else v1's ``cpu.cfs_quota_us``). It needs root; when the machine does not allow
it, :func:`cpu_cap` raises :class:`CapUnavailable` with the reason
(:func:`cap_unavailable` asks beforehand, on a child of its own).
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

__all__ = ["CapUnavailable", "cap_unavailable", "cpu_cap"]

PERIOD_US = 100_000

_V2 = Path("/sys/fs/cgroup")
_V2_HYBRID = Path("/sys/fs/cgroup/unified")
_V1 = Path("/sys/fs/cgroup/cpu")


class CapUnavailable(RuntimeError):
    """No cgroup with the cpu controller can be made here (not root, no controller)."""


def _v2_root() -> Path | None:
    for root in (_V2, _V2_HYBRID):
        controllers = root / "cgroup.controllers"
        if controllers.is_file() and "cpu" in controllers.read_text().split():
            return root
    return None


def _group_of(pid: int, v2: bool) -> str:
    """The cgroup ``pid`` is in now, in the v2 hierarchy or in v1's cpu one."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        hid, controllers, path = line.split(":", 2)
        if (v2 and hid == "0") or (not v2 and "cpu" in controllers.split(",")):
            return path
    return "/"


@contextlib.contextmanager
def cpu_cap(pid: int, share: float) -> Iterator[Path]:
    """Process ``pid`` (all its threads) may use ``share`` of one core while the block runs:
    a new cgroup under its own, which it leaves for its own again at the end. Yields the
    cgroup's folder."""
    if not 0 < share <= 64:
        raise ValueError(f"a CPU share is a positive number of cores, not {share}")
    quota = max(1000, round(share * PERIOD_US))
    name = f"kefu-bench-{secrets.token_hex(4)}"
    v2 = _v2_root()
    made: Path | None = None
    try:
        if v2 is not None:
            root = v2 / _group_of(pid, True).lstrip("/")
            made = group = root / name
            group.mkdir()
            (group / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        elif (_V1 / "cpu.cfs_quota_us").is_file():
            root = _V1 / _group_of(pid, False).lstrip("/")
            made = group = root / name
            group.mkdir()
            (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (group / "cpu.cfs_quota_us").write_text(str(quota))
        else:
            raise CapUnavailable("no cgroup cpu controller is mounted")
        (group / "cgroup.procs").write_text(str(pid))
    except OSError as exc:
        if made is not None:
            with contextlib.suppress(OSError):
                made.rmdir()  # made, but the controller is not enabled there
        raise CapUnavailable(f"making a cgroup needs root and a cpu controller: {exc}") from exc
    try:
        yield group
    finally:
        with contextlib.suppress(OSError):  # (the process may have ended)
            (root / "cgroup.procs").write_text(str(pid))
        with contextlib.suppress(OSError):
            group.rmdir()


def cap_unavailable(share: float) -> str | None:
    """Why a process cannot be held to ``share`` of a core here (tried on a child), or ``None``."""
    child = subprocess.Popen(["sleep", "30"])
    try:
        with cpu_cap(child.pid, share):
            return None
    except CapUnavailable as exc:
        return str(exc)
    finally:
        child.kill()
        child.wait()
