"""`bench.cpucap`: a process in a cgroup of its own with the CPU quota asked, and back after."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from bench.cpucap import PERIOD_US, CapUnavailable, cpu_cap


def _groups(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cgroup").read_text().splitlines()


def test_a_process_is_capped_in_its_own_cgroup_and_goes_back_after() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        before = _groups(child.pid)
        try:
            with cpu_cap(child.pid, 0.25) as group:
                assert str(child.pid) in (group / "cgroup.procs").read_text().split()
                if (group / "cpu.max").is_file():  # cgroup v2
                    assert (group / "cpu.max").read_text().split() == ["25000", str(PERIOD_US)]
                else:  # v1's cpu controller
                    assert (group / "cpu.cfs_quota_us").read_text().strip() == "25000"
                    assert (group / "cpu.cfs_period_us").read_text().strip() == str(PERIOD_US)
                assert _groups(child.pid) != before
        except CapUnavailable as exc:
            pytest.skip(f"no cgroup here: {exc}")
        assert _groups(child.pid) == before and not group.exists()
    finally:
        child.kill()
        child.wait()


def test_a_share_that_is_not_a_positive_number_of_cores_is_refused() -> None:
    for share in (0, -1, 65):
        with pytest.raises(ValueError), cpu_cap(1, share):
            pass
