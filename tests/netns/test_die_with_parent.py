"""A process a test starts dies with the test process (``die_with_parent``).

Janus, coturn and the servers of the namespace tests run in sessions of their
own; a test run cut short must not leave them behind.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys

from tests.conftest import scaled

_PARENT = """
import subprocess, sys
from tests.netns.topology import die_with_parent
child = subprocess.Popen(["sleep", "600"], start_new_session=True, preexec_fn=die_with_parent)
print(child.pid, flush=True)
sys.stdin.read()  # until the test closes it; then exit without killing the child
"""


def test_a_child_is_killed_when_its_parent_exits() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=os.getcwd()
    )
    assert parent.stdout is not None and parent.stdin is not None
    child_pid = int(parent.stdout.readline())
    pidfd = os.pidfd_open(child_pid)
    try:
        readable, _, _ = select.select([pidfd], [], [], 0)
        assert not readable, "the child runs while its parent does"
        parent.stdin.close()
        assert parent.wait(timeout=scaled(10.0)) == 0
        readable, _, _ = select.select([pidfd], [], [], scaled(5.0))
        assert readable, "the child outlived its parent"
    finally:
        os.close(pidfd)
        if parent.poll() is None:
            parent.kill()
