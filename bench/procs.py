"""Servers under test as separate processes: started, read for their URL, measured
through ``/proc``, stopped. Their output goes to a log file (never a pipe that
could fill up and stall them under load)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from bench.common import ProcSample, proc_sample, raise_fd_limit

__all__ = ["REPO", "ServerProcess", "python_env"]

REPO = Path(__file__).resolve().parent.parent


def _die_with_parent() -> None:
    """In the child, before exec: be killed when the benchmark process dies (Linux)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def python_env() -> dict[str, str]:
    """The environment for a child Python: ``bench`` importable, no asyncio debug mode
    (it would slow the server under test by an order of magnitude)."""
    env = dict(os.environ)
    env.pop("PYTHONASYNCIODEBUG", None)
    env.pop("PYTHONDEVMODE", None)
    paths = [str(REPO), *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ServerProcess:
    """A server started with ``argv``; ``url`` is what its first matching line printed."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        pattern: str,
        log: Path,
        start_timeout: float = 30.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.pattern = re.compile(pattern)
        self.log = log
        self.start_timeout = start_timeout
        self.env = env if env is not None else python_env()
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> ServerProcess:
        raise_fd_limit()  # the child inherits the raised limit
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace")
            m = self.pattern.search(text)
            if m:
                self.url = m.group(1)
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.argv[:4]} exited with {self.proc.returncode}:\n{text[-3000:]}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"{self.argv[:4]} printed no URL within {self.start_timeout:.0f} s; see {self.log}"
        )

    def sample(self) -> ProcSample:
        return proc_sample(self.pid)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def baseline_process(log: Path) -> ServerProcess:
    return ServerProcess(
        [sys.executable, "-m", "bench.baseline_server", "--port", "0"],
        pattern=r"baseline listening on (ws://127\.0\.0\.1:\d+)",
        log=log,
    )


__all__ += ["baseline_process"]
