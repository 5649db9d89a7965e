from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .kit import Janus, available


@pytest.fixture
async def janus(tmp_path: Path) -> AsyncIterator[Janus]:
    why = available()
    if why:
        pytest.skip(why)
    j = Janus(tmp_path / "janus")
    await j.start()
    try:
        yield j
    finally:
        await j.stop()
