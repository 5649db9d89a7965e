"""`python -m bench.steady`: a node's CPU idle, at a steady rate and at saturation."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.steady import run

pytestmark = pytest.mark.timeout(180)


def test_steady_measures_three_windows_with_nothing_lost(tmp_path: Path) -> None:
    res = run(visitors=12, agents=3, window=1.0, profile=set(), out=tmp_path)
    for w in ("idle", "rate", "sat"):
        assert res[f"{w}_cpu_pct"] >= 0
        assert res[f"{w}_io_per_s"]["syscw"] >= 0
    assert res["rate_latency_ms"]["count"] > 0  # the chatting visitors' messages were delivered
    assert res["sat_acked_per_s"] > 0 and res["sat_cpu_us_per_msg"] > 0
    assert res["loss"]["lost"] == 0 and res["loss"]["duplicated"] == 0
