"""Servers under test as separate processes: started, read for their URL, measured
through ``/proc``, stopped. Their output goes to a log file (never a pipe that
could fill up and stall them under load)."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import re
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import Any

from bench.common import ProcSample, proc_sample, raise_fd_limit

__all__ = ["REPO", "ServerProcess", "WorkerPool", "profiled", "py_spy", "python_env", "serve_worker"]

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


def py_spy() -> str | None:
    """The py-spy program beside this Python (the project's .venv), else on ``$PATH``."""
    import shutil

    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.is_file() else shutil.which("py-spy")


@contextlib.contextmanager
def profiled(pid: int, out: Path, *, rate: int = 100) -> Any:
    """Sample process ``pid`` with py-spy while the block runs; on leaving, py-spy is
    interrupted and writes a flame graph (SVG) to ``out`` (raw collapsed stacks when ``out``
    ends in ``.txt``). py-spy needs ptrace on ``pid``
    (root, or ``kernel.yama.ptrace_scope`` 0 for one's own processes): when it cannot
    attach, leaving raises RuntimeError with what it said."""
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy is not installed (it is in the project's dev dependencies)")
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.with_suffix(out.suffix + ".py-spy.log")
    # a .txt file gets py-spy's raw collapsed stacks (one line a stack: easy to grep and sum)
    fmt = "raw" if out.suffix == ".txt" else "flamegraph"
    argv = [exe, "record", "--format", fmt, "--rate", str(rate), "-o", str(out), "--pid", str(pid)]
    with log.open("wb") as sink:
        spy = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        yield spy
    finally:
        if spy.poll() is None:
            spy.send_signal(signal.SIGINT)  # py-spy writes the graph when interrupted
        try:
            spy.wait(60)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(5)
    said = log.read_text(errors="replace")
    if not out.is_file() or out.stat().st_size == 0:
        raise RuntimeError(f"py-spy wrote no flame graph (exit {spy.returncode}): {said[-500:]}")
    log.unlink(missing_ok=True)


def baseline_process(log: Path) -> ServerProcess:
    return ServerProcess(
        [sys.executable, "-m", "bench.baseline_server", "--port", "0"],
        pattern=r"baseline listening on (ws://127\.0\.0\.1:\d+)",
        log=log,
    )


__all__ += ["baseline_process"]


async def serve_worker(conn: Connection, worker: Any) -> None:
    """A worker process's loop: run each ``(command, kwargs)`` from the pipe as
    ``await worker.<command>(**kwargs)`` and send back its dict (or ``{"error": …}``),
    until ``exit``."""
    raise_fd_limit()
    loop = asyncio.get_running_loop()
    while True:
        cmd, kwargs = await loop.run_in_executor(None, conn.recv)
        if cmd == "exit":
            conn.send({"ok": True})
            return
        try:
            result = await getattr(worker, cmd)(**kwargs)
        except Exception:
            conn.send({"error": traceback.format_exc()})
        else:
            conn.send(result)


class WorkerPool:
    """``workers`` spawned processes running the same phase at once.

    Each runs ``target(conn, index, workers, cfg)`` and answers every
    ``(command, kwargs)`` it is sent on its pipe with a dict (``{"error": …}``
    when the command failed); ``("exit", {})`` ends it."""

    def __init__(
        self, target: Callable[..., None], cfg: Any, workers: int = 1, *, what: str = "worker"
    ) -> None:
        ctx = mp.get_context("spawn")
        self.cfg = cfg
        self.what = what
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        for i in range(workers):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=target, args=(child, i, workers, cfg), daemon=True)
            p.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(p)

    @property
    def pids(self) -> list[int]:
        return [int(p.pid) for p in self.procs]

    def call(self, cmd: str, timeout: float = 600.0, **kwargs: Any) -> list[dict[str, Any]]:
        """Run ``cmd`` in every worker; their answers, in worker order."""
        for c in self.conns:
            c.send((cmd, kwargs))
        out = []
        deadline = time.monotonic() + timeout
        for c in self.conns:
            if not c.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"{self.what} did not finish {cmd!r} within {timeout:.0f} s")
            r = c.recv()
            if "error" in r:
                raise RuntimeError(f"{self.what} failed in {cmd!r}:\n{r['error']}")
            out.append(r)
        return out

    def close(self) -> None:
        for c in self.conns:
            with contextlib.suppress(OSError, BrokenPipeError):
                c.send(("exit", {}))
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join(5)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
