"""Every call flow and chat of the one-node tests, with the agent and the visitor on different nodes.

The tests are those of ``tests/server/test_calls.py`` and
``tests/server/test_sessions.py``, run against the ``server`` fixture of
``tests/multinode/conftest.py``: agents on node 1 (a second agent on node 2),
visitors on the last node, on 2 and 3 nodes. Same state codes, same pushes.
"""

from __future__ import annotations

import pytest

from tests.server.test_calls import *  # noqa: F403
from tests.server.test_sessions import *  # noqa: F403

pytestmark = pytest.mark.server_settings(ring_timeout=5.0, call_grace=0.2)
