"""`python -m bench.frames` and `python -m bench.decoder`: sane figures, both sides measured."""

from __future__ import annotations

import pytest
from bench.decoder import CASES, ENCODE_CASES, old_decode_request, old_encode
from bench.frames import run
from bench.procs import REPO

from kefu.protocol.wire import decode_request, encode

pytestmark = pytest.mark.timeout(120)


async def test_frames_measures_both_servers_alternating() -> None:
    res = await run(REPO, clients=3, seconds=0.3, rounds=2)  # this checkout on both sides
    for side in ("base", "new"):
        assert len(res[side]) == 2
        for w in res[side]:
            assert w["rtt_per_s"] > 0 and w["cpu_us_per_rtt"] > 0 and 0 < w["p50_ms"] <= w["p99_ms"]


def test_the_decoders_baseline_is_the_old_decoder_and_agrees() -> None:
    for name, text, api in CASES:
        old, new = old_decode_request(text, api), decode_request(text, api)
        assert (old.id, old.mark, old.params, old.v) == tuple(new), name
    for name, msg in ENCODE_CASES:
        assert encode(msg) == old_encode(msg), name
