"""Every process's CPU per part over a window (bench.measure's ``sat_cpu_pct_by_part``)."""

from __future__ import annotations

import os

import pytest
from bench.common import all_cpu, cpu_by_part


def test_parts_by_pid_and_by_command_line() -> None:
    before = {
        1: ("python -m kefu.cli server", 10.0),
        2: ("nginx: worker process", 1.0),
        3: ("redis-server 127.0.0.1:6379", 5.0),
        4: ("postgres: 15/main: postgres kefu_bench_1a2b 127.0.0.1(5050) idle", 2.0),
        5: ("postgres: 15/main: walwriter", 0.0),
        6: ("chromium --headless", 0.0),
    }
    after = {
        1: ("python -m kefu.cli server", 11.0),  # +1.0 s
        2: ("nginx: worker process", 1.2),
        3: ("redis-server 127.0.0.1:6379", 5.1),
        4: ("postgres: 15/main: postgres kefu_bench_1a2b 127.0.0.1(5050) idle", 2.5),
        5: ("postgres: 15/main: walwriter", 0.1),
        6: ("chromium --headless", 0.3),
        7: ("postgres: 15/main: postgres kefu_bench_1a2b 127.0.0.1(5051) idle", 0.5),  # new: from 0
    }
    parts = cpu_by_part(before, after, 2.0, {1: "node 1"})
    assert parts == pytest.approx(
        {
            "node 1": 50.0,
            "nginx": 10.0,
            "redis": 5.0,
            "postgres kefu_bench_1a2b": 50.0,  # a backend of that database, the new one counted from 0
            "postgres": 5.0,
            "other": 15.0,
        }
    )


def test_this_process_is_read() -> None:
    name, cpu = all_cpu()[os.getpid()]
    assert "python" in name or "pytest" in name
    assert cpu >= 0
