"""`python -m bench.msgpath`: the message path alone, both variants, sane figures."""

from __future__ import annotations

import pytest
from bench.msgpath import measure

pytestmark = pytest.mark.timeout(120)


async def test_msgpath_measures_both_variants_and_group_commit_batches() -> None:
    res = await measure(senders=6, agents=2, seconds=0.5, db=None)
    alone, grouped = res["one_a_transaction"], res["group_commit"]
    for r in (alone, grouped):
        assert r["messages"] > 0 and r["msg_per_s"] > 0 and r["cpu_us_per_msg"] > 0
        assert r["failed_batches"] == 0
    assert alone["per_transaction"] == 1.0  # the writer closed: every message alone
    assert grouped["per_transaction"] > 1.0  # six senders in a closed loop share commits
