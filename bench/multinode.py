"""Scenario ``multinode`` (issue 9): the IM load on 2 and 3 nodes behind nginx, beside one node.

The load of :mod:`bench.im` (quick: 100 visitors, 5 agents) runs against one
``kefu server`` on PostgreSQL, then against 2 and 3 nodes sharing that
database and one Redis (``--redis … --node-id N``) behind nginx (round robin,
no stickiness; a generated config in a temp dir, on 127.0.0.1). The figures
are the same as one node's; CPU and memory are the nodes' sums.

PostgreSQL: as :mod:`bench.storage`. Redis: ``$KEFU_BENCH_REDIS_URL``, else
``$KEFU_TEST_REDIS_URL``, else ``redis://127.0.0.1:6379/0``. What is missing
(PostgreSQL, Redis, nginx) is said in the table instead of a figure.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.baseline import measure_baseline
from bench.common import ProcSample, Result, Row
from bench.cpucap import cpu_cap
from bench.im import CAPACITY, im_rows, load_of, measure_server
from bench.kefu_server import SERVER_OPTIONS, add_agents, agent_names
from bench.measure import Load
from bench.procs import ServerProcess
from bench.storage import _pg, _pg_reachable, postgres_url

__all__ = ["run"]


def redis_url() -> str:
    return (
        os.environ.get("KEFU_BENCH_REDIS_URL")
        or os.environ.get("KEFU_TEST_REDIS_URL")
        or "redis://127.0.0.1:6379/0"
    )


def nginx_path() -> str | None:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def engines_ready(res: Result, db: str, redis: str, nginx: str | None) -> bool:
    """PostgreSQL, Redis and nginx answer; otherwise ``res`` is skipped, saying which and why."""
    missing = [
        (what, why)
        for what, why in (
            ("PostgreSQL", _pg_reachable(db)),
            ("Redis", _redis_reachable(redis)),
            ("nginx", None if nginx else "not installed (apt-get install nginx-light)"),
        )
        if why is not None
    ]
    if missing:
        res.status = "skipped"
        for what, why in missing:
            res.add(Row(f"{what} not available", why[:120]))
    return not missing


def _redis_reachable(url: str) -> str | None:
    async def ping() -> None:
        import redis.asyncio as aioredis

        r = aioredis.from_url(url)
        try:
            await asyncio.wait_for(r.ping(), 5)
        finally:
            await r.aclose()

    try:
        asyncio.run(ping())
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nginx_config(tmp: Path, port: int, upstreams: list[str], *, tls: tuple[Path, Path] | None = None) -> Path:
    """nginx in front of ``upstreams`` as docs/deploy.md ("TLS") configures it: round
    robin, WebSocket upgrade, the client's address and scheme passed on
    (``X-Forwarded-For``, ``X-Forwarded-Proto``, ``X-Forwarded-Host``), no root paths.
    With ``tls`` (certificate with its chain, key) it terminates TLS on ``port``."""
    servers = "".join(f"        server {u.split('://', 1)[1]};\n" for u in upstreams)
    listen = f"127.0.0.1:{port}"
    certificate = ""
    if tls is not None:
        listen += " ssl"
        certificate = (
            f"        ssl_certificate     {tls[0]};\n"
            f"        ssl_certificate_key {tls[1]};\n"
            "        ssl_protocols TLSv1.2 TLSv1.3;\n"
        )
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"""daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream kefu {{
{servers}    }}
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        listen {listen};
{certificate}        client_max_body_size 64m;
        location / {{
            proxy_pass http://kefu;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Host $host;
            proxy_read_timeout 3600s;
        }}
    }}
}}
"""
    )
    return conf


class Nodes:
    """Several node processes as one server for :func:`bench.measure.measure`: ``url`` is
    nginx's, a sample is the nodes' sum."""

    def __init__(self, nodes: list[ServerProcess], url: str) -> None:
        self.nodes = nodes
        self.url = url

    def sample(self) -> ProcSample:
        s = [n.sample() for n in self.nodes]
        return ProcSample(
            at=time.monotonic(),
            cpu_s=sum(x.cpu_s for x in s),
            rss_bytes=sum(x.rss_bytes for x in s),
            threads=sum(x.threads for x in s),
            parts=tuple(s),
        )

    def tail(self, chars: int = 1500) -> str:
        return "\n".join(n.tail(chars // len(self.nodes)) for n in self.nodes)


def _node(
    workdir: Path,
    db: str,
    schema: str,
    redis: str | None,
    prefix: str,
    node_id: int,
    *,
    python: str = sys.executable,
    extra: Sequence[str] = (),
) -> ServerProcess:
    """A ``kefu server`` node started by ``python`` (another tree's, to compare) with ``extra`` options."""
    argv = [python, "-m", "kefu.cli", "server", "--port", "0", "--data-dir", str(workdir / "data")]
    argv += ["--db", db, "--db-schema", schema]
    if redis:
        argv += ["--redis", redis, "--redis-prefix", prefix, "--node-id", str(node_id)]
    argv += [*SERVER_OPTIONS, *extra]
    return ServerProcess(
        argv,
        pattern=r"kefu server listening on (http://127\.0\.0\.1:\d+)",
        log=workdir / f"node-{node_id}.log",
    )


def _measure(
    load: Load,
    workdir: Path,
    n: int,
    db: str,
    redis: str,
    nginx: str | None,
    *,
    idle: Callable[[], dict[str, Any]] | None = None,
    python: str = sys.executable,
    extra: Sequence[str] = (),
    profile: Path | None = None,
    node_cpu: float | None = None,
    fronted: bool = False,
) -> dict[str, Any]:
    """The IM load on ``n`` nodes (one: no nginx, no Redis, unless ``fronted``). ``node_cpu``:
    each node may use that share of a core (:func:`bench.cpucap.cpu_cap`); ``profile``: py-spy
    on each node at saturation (:func:`bench.measure.measure`)."""
    fronted = fronted or n > 1
    schema = f"bench_mn_{secrets.token_hex(4)}"
    prefix = f"kefu-bench-{secrets.token_hex(4)}:"
    names = agent_names(load.agents)
    add_agents(workdir / "data", names, capacity=CAPACITY, db_url=db, db_schema=schema, python=python)
    try:
        with ExitStack() as stack:
            procs = [
                stack.enter_context(
                    _node(
                        workdir,
                        db,
                        schema,
                        redis if fronted else None,
                        prefix,
                        i + 1,
                        python=python,
                        extra=extra,
                    )
                )
                for i in range(n)
            ]
            if node_cpu is not None:
                for p in procs:
                    stack.enter_context(cpu_cap(p.pid, node_cpu))
            if not fronted:
                server: Any = Nodes(procs, procs[0].url)
            else:
                assert nginx is not None
                port = _free_port()
                conf = nginx_config(workdir, port, [p.url for p in procs])
                lb = subprocess.Popen([nginx, "-p", str(workdir), "-c", str(conf)], stdin=subprocess.DEVNULL)
                stack.callback(lambda: (lb.terminate(), lb.wait(10)))
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    try:
                        socket.create_connection(("127.0.0.1", port), 0.2).close()
                        break
                    except OSError:
                        time.sleep(0.05)
                server = Nodes(procs, f"http://127.0.0.1:{port}")
            return measure_server(server, load, names, idle=idle, profile=profile)
    finally:
        asyncio.run(_pg(db, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def run(
    quick: bool, *, workers: int | None = None, visitors: int | None = None, agents: int | None = None
) -> Result:
    res = Result("multinode", "the IM load on 1, 2 and 3 nodes (PostgreSQL + Redis + nginx)", quick=quick)
    n = visitors or (100 if quick else 1000)
    m = agents or (5 if quick else 100)
    load = load_of(n, m, quick=quick, workers=workers)
    active = load.active
    db, redis = postgres_url(), redis_url()
    nginx = nginx_path()
    res.params = {**load.__dict__, "postgres": db.split("@")[-1], "redis": redis.split("@")[-1]}
    if not engines_ready(res, db, redis, nginx):
        return res
    with tempfile.TemporaryDirectory(prefix="kefu-bench-mn-") as tmp:
        root = Path(tmp)
        b = measure_baseline(load, root / "baseline")
        res.raw = {"baseline": b}
        for nodes in (1, 2, 3):
            k = _measure(load, root / f"n{nodes}", nodes, db, redis, nginx)
            res.raw[f"nodes_{nodes}"] = k
            label = "one node (PostgreSQL)" if nodes == 1 else f"{nodes} nodes behind nginx"
            res.add(Row(f"— {label}: {n:,} visitors, {m} agents, {active:,} chatting"))
            res.add(*im_rows(k, b, load, goals=False))
    return res
