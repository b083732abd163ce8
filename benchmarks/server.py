"""The token service (``wxauth serve``) under load: throughput, replicas, a Redis outage.

Run: ``python benchmarks/server.py`` (about 3 minutes; ``--quick`` for a rough pass,
``--only throughput|replicas|outage`` for one part). Everything runs on 127.0.0.1: the
WeChat emulator (``FakeWeChat.serve()``, wall clock) in this process, the services as
subprocesses, and a ``redis-server`` of the script's own on a free port.

Parts:

- ``throughput``: ``GET /v1/apps/{appid}/token`` of ``wxauth serve`` (memory store, one
  app, the process exactly as the command runs it, its access log included, written to
  a file) against a bare Starlette endpoint returning the same JSON constant under
  plain uvicorn (``uvicorn.run(app, host=..., port=...)``: its defaults, its own access
  log included, written to a file). Both run one process, the same event loop and HTTP
  implementation (uvicorn's ``auto``: the script prints which), at log level INFO, each
  with the access log it ships with. 64 keep-alive connections, in alternating blocks
  (A B C D D C B A ...) so that machine noise hits every side alike. The load comes
  from ``wrk`` (one thread; C, so not the bottleneck) when it is on PATH, else from a
  separate Python process (asyncio, raw keep-alive sockets), which is then named in the
  table. With ``taskset`` and two or more CPUs, every server runs on CPU 0 and the load
  on CPU 1 (``--no-pin``: wherever the scheduler puts them). Figures: requests per
  second and p50/p99 latency (medians over the blocks), the ratio service / bare per
  pair of blocks (median, and spread), and the load average before and after. Goal:
  ratio >= 0.8. Also the CPU time each server spent per request (``/proc``, every
  thread, read again 0.3 s after its block so that work left to a thread is counted),
  and its ratio: what each side costs, less moved by other work on the machine than
  the requests per second are. Two informational sides: the bare endpoint with uvicorn's access log
  off (the strictest comparison: a server that logs nothing), and the service with
  its access log off (level WARNING), to show what that log line costs.
- ``replicas``: two ``wxauth serve`` processes on one Redis. 200 reader threads (each its
  own connection, ``RemoteSource`` fetches with both URLs) and 20 clients reporting the
  same rejected token at once: token fetches at the emulator (goal: exactly 1). Then 20
  threads read in a loop and one replica is SIGKILLed: failed reads (goal: 0), reads
  after the kill, and the slowest read.
- ``outage``: one replica on Redis under load (16 threads of raw GETs); Redis is stopped
  for 10 s (SIGTERM; it comes back empty on the same port, as a restart without
  persistence). Figures: ``/readyz`` during the outage, read outcomes by status and
  error code (and whether a 200 carried the token from before), the time from Redis's
  return to ``/readyz`` 200 and to the first token read from the refilled store, and
  token fetches the recovery cost. No restart of the service.

Prints a table, then one JSON line per row.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import logging
import multiprocessing
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import requests
from _redis_server import free_port

import wxauth
from wxauth.httpx import HttpxTransport
from wxauth.server import hash_key
from wxauth.sources import FetchContext, RemoteSource
from wxauth.testing import FakeWeChat

APPID = "wxbench000000001"
SECRET = "0123456789abcdef0123456789abcdef"
SECRET_ENV = "WXAUTH_BENCH_SECRET"
KEY = "wxk_bench-client-key-0123456789abcdefghijklmno"
TOKEN_PATH = f"/v1/apps/{APPID}/token"
CONNECTIONS = 64
#: The JSON the bare endpoint answers: the shape and size of a token answer.
CONSTANT = {"access_token": "86_" + "A" * 150, "expires_in": 7000, "expires_at": 1_900_000_000}
#: The uvicorn options ``wxauth serve`` runs with (wxauth/server/_cli.py): for the service
#: with its access log off, and the bare app with uvicorn's off.
UVICORN_OPTIONS: dict[str, Any] = {
    "log_config": None,
    "access_log": False,
    "lifespan": "on",
    "server_header": False,
    "timeout_graceful_shutdown": 10,
}
PATIENCE = 20.0
#: Seconds after each block before the server's CPU time is read again.
SETTLE = 0.3
HERE = Path(__file__).resolve().parent


# -- the servers ------------------------------------------------------------------------------


def bare_app() -> Any:
    """A Starlette app whose token route returns a constant."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def token(request: Request) -> JSONResponse:
        return JSONResponse(CONSTANT, headers={"Cache-Control": "no-store"})

    return Starlette(routes=[Route("/v1/apps/{app_id}/token", token, methods=["GET"])])


def serve_main(kind: str, port: int, config: str | None) -> None:
    """``--serve``: run one side on uvicorn on 127.0.0.1:``port``."""
    import uvicorn

    if kind == "bare":  # plain uvicorn: its defaults, its access log to stdout
        uvicorn.run(bare_app(), host="127.0.0.1", port=port)
        return
    if kind == "bare-nolog":  # as wxauth serve runs uvicorn, and uvicorn's access log off
        logging.basicConfig(level=logging.INFO)
        app = bare_app()
    else:  # "quiet": the service with its access log off
        from wxauth.server import create_app, load_config

        assert config is not None
        logging.basicConfig(level=logging.WARNING)
        app = create_app(load_config(config))
    uvicorn.run(app, host="127.0.0.1", port=port, **UVICORN_OPTIONS)


def uvicorn_flavour() -> str:
    """The event loop and HTTP implementation uvicorn's ``auto`` picks here."""
    import importlib.util

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"loop {loop}, http {http}, 1 process"


@dataclass
class Process:
    """A server subprocess: its URL, log file and Popen."""

    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def get(self, path: str, **headers: str) -> httpx.Response | None:
        try:
            return httpx.get(self.url + path, headers=headers, timeout=2)
        except httpx.HTTPError:
            return None

    def wait_ready(self, path: str = "/readyz", **headers: str) -> None:
        deadline = time.monotonic() + PATIENCE
        while True:
            answer = self.get(path, **headers)
            if answer is not None and answer.status_code == 200:
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.name} did not become ready:\n{tail}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


#: ``taskset`` prefixes: servers on CPU 0, the load on CPU 1 (see ``--no-pin``).
SERVER_CPU: list[str] = []
LOAD_CPU: list[str] = []


def pin(enabled: bool) -> str:
    """Set the ``taskset`` prefixes; say where things run."""
    taskset = shutil.which("taskset")
    if not enabled or taskset is None or (os.cpu_count() or 1) < 2:
        SERVER_CPU.clear()
        LOAD_CPU.clear()
        return "not pinned"
    SERVER_CPU[:] = [taskset, "-c", "0"]
    LOAD_CPU[:] = [taskset, "-c", "1"]
    return "servers on CPU 0, load on CPU 1"


def start(name: str, args: list[str], workdir: Path, port: int) -> Process:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*SERVER_CPU, sys.executable, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, SECRET_ENV: SECRET},
            cwd=HERE,
        )
    return Process(name, f"http://127.0.0.1:{port}", proc, log)


def write_config(workdir: Path, store: str, emulator: str) -> Path:
    path = workdir / f"wxauth-server-{abs(hash(store)) % 10000}.toml"
    path.write_text(
        f'[server]\nstore = "{store}"\n\n'
        f'[[apps]]\nappid = "{APPID}"\nsecret_env = "{SECRET_ENV}"\n'
        f'api_base = "{emulator}"\nbackoff = 0.05\n\n'
        f'[[clients]]\nname = "bench"\nkey_sha256 = "{hash_key(KEY)}"\napps = ["{APPID}"]\n'
    )
    return path


def wxauth_serve(name: str, config: Path, workdir: Path) -> Process:
    """``python -m wxauth serve`` on a free port, as deployed (INFO log to a file)."""
    port = free_port()
    args = ["-m", "wxauth", "serve", "--config", str(config), "--port", str(port)]
    return start(name, [*args, "--host", "127.0.0.1"], workdir, port)


@contextlib.contextmanager
def running(*processes: Process) -> Iterator[None]:
    try:
        yield
    finally:
        for process in processes:
            process.stop()


# -- load -------------------------------------------------------------------------------------


@dataclass
class Load:
    """One block of load: requests per second, latency percentiles (ms), errors."""

    rps: float
    p50: float
    p99: float
    errors: int
    #: CPU time (user + system, every thread) the server spent per answered request, µs.
    cpu_us: float | None = None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``; else None)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if match is None:
        raise ValueError(f"not a wrk latency: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk_block(url: str, seconds: float) -> Load:
    """``wrk -t1 -c64 --latency`` for ``seconds``; non-2xx answers and socket errors
    count as errors."""
    duration = f"-d{max(1, round(seconds))}s"
    header = f"Authorization: Bearer {KEY}"
    out = subprocess.run(
        [*LOAD_CPU, "wrk", "-t1", f"-c{CONNECTIONS}", duration, "--latency", "-H", header, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    errors = 0
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non2xx:
        errors += int(non2xx.group(1))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return Load(rps, p50, p99, errors)


async def _python_load(host: str, port: int, path: str, seconds: float) -> Load:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {KEY}\r\n\r\n"
    ).encode()
    latencies: list[float] = []
    errors = 0
    end = time.perf_counter() + seconds

    async def connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < end:
                sent = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - sent)
                if status != 200:
                    errors += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(CONNECTIONS)))
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pick(q: float) -> float:
        return latencies[min(int(q * len(latencies)), len(latencies) - 1)] * 1000

    return Load(len(latencies) / elapsed, pick(0.50), pick(0.99), errors)


def _python_block_child(url: str, seconds: float, conn: Any, pinned: bool) -> None:
    if pinned:
        os.sched_setaffinity(0, {1})
    parts = httpx.URL(url)
    conn.send(asyncio.run(_python_load(parts.host, parts.port or 80, parts.path, seconds)))


def python_block(url: str, seconds: float) -> Load:
    """The same load from a separate Python process (asyncio, raw keep-alive sockets)."""
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.Process(
        target=_python_block_child, args=(url, seconds, child, bool(LOAD_CPU))
    )
    proc.start()
    load: Load = parent.recv()
    proc.join()
    return load


# -- results ----------------------------------------------------------------------------------


@dataclass
class Row:
    case: str
    figure: str
    goal: str
    met: bool | None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def table(rows: list[Row]) -> None:
    widths = [max(len(getattr(r, name)) for r in rows) for name in ("case", "figure", "goal")]
    for row in rows:
        mark = {True: "yes", False: "NO", None: "-"}[row.met]
        print(
            f"{row.case:<{widths[0]}}  {row.figure:<{widths[1]}}  {row.goal:<{widths[2]}}  "
            f"{mark:<3}  {row.note}"
        )
    for row in rows:
        print(json.dumps({"case": row.case, "figure": row.figure, "met": row.met, **row.extra}))


# -- part 1: throughput -----------------------------------------------------------------------


#: The sides of the throughput part: (name, label, the command line after ``python``).
SIDES = ("service", "bare", "bare-nolog", "quiet")
LABELS = {
    "service": "wxauth serve",
    "bare": "bare Starlette, plain uvicorn",
    "bare-nolog": "bare, uvicorn access log off",
    "quiet": "service, access log off",
}
#: The ratios reported: (side, against, goal or None for information only).
RATIOS: tuple[tuple[str, str, float | None], ...] = (
    ("service", "bare", 0.8),
    ("service", "bare-nolog", None),
    ("quiet", "bare-nolog", None),
)


def load_average() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def throughput(
    workdir: Path, emulator: str, blocks: int, seconds: float, pinned: bool
) -> list[Row]:
    pinning = pin(pinned)
    try:
        return _throughput(workdir, emulator, blocks, seconds, pinning)
    finally:
        pin(False)  # the other parts run where the scheduler puts them


def _throughput(
    workdir: Path, emulator: str, blocks: int, seconds: float, pinning: str
) -> list[Row]:
    config = write_config(workdir, "memory", emulator)
    processes: dict[str, Process] = {}
    for name in SIDES:
        if name == "service":
            processes[name] = wxauth_serve("service", config, workdir)
            continue
        port = free_port()
        args = [__file__, "--serve", name, "--port", str(port), "--config", str(config)]
        processes[name] = start(name, args, workdir, port)
    block = wrk_block if shutil.which("wrk") else python_block
    generator = "wrk -t1" if block is wrk_block else "a Python asyncio process"
    figures: dict[str, list[Load]] = {name: [] for name in SIDES}
    load_before = load_average()
    with running(*processes.values()):
        for name, process in processes.items():
            if name in ("bare", "bare-nolog"):
                process.wait_ready(TOKEN_PATH)
            else:
                process.wait_ready()
        for process in processes.values():  # warm up: connections, caches, the first read
            block(process.url + TOKEN_PATH, 1.0)
        for i in range(blocks):
            order = list(SIDES) if i % 2 == 0 else list(reversed(SIDES))
            for name in order:
                pid = processes[name].proc.pid
                before = cpu_seconds(pid)
                load = block(processes[name].url + TOKEN_PATH, seconds)
                # A moment for work a side might leave behind (a logging thread's queue)
                # to be done and counted.
                time.sleep(SETTLE)
                after = cpu_seconds(pid)
                if before is not None and after is not None and load.rps > 0:
                    load.cpu_us = (after - before) / (load.rps * seconds) * 1e6
                figures[name].append(load)
    load_after = load_average()
    med = statistics.median
    rows = []
    for name, against, goal in RATIOS:
        mine, base = figures[name], figures[against]
        ratios = [s.rps / b.rps for s, b in zip(mine, base, strict=True)]
        ratio = med(ratios)
        errors = sum(load.errors for load in mine) + sum(load.errors for load in base)
        cpu = [
            (b.cpu_us / s.cpu_us) for s, b in zip(mine, base, strict=True) if s.cpu_us and b.cpu_us
        ]
        cpu_note = (
            f"; CPU per request {med(x.cpu_us for x in mine if x.cpu_us):.0f} vs "
            f"{med(x.cpu_us for x in base if x.cpu_us):.0f} µs, ratio {med(cpu):.3f}"
            if cpu
            else ""
        )
        note = (
            f"{med(x.rps for x in mine):.0f} vs {med(x.rps for x in base):.0f} req/s; "
            f"p50 {med(x.p50 for x in mine):.2f} vs {med(x.p50 for x in base):.2f} ms; "
            f"p99 {med(x.p99 for x in mine):.2f} vs {med(x.p99 for x in base):.2f} ms; "
            f"ratio spread {min(ratios):.3f}..{max(ratios):.3f} over {blocks} blocks of "
            f"{seconds:g}s; {errors} errors{cpu_note}"
        )
        rows.append(
            Row(
                f"throughput: {LABELS[name]} / {LABELS[against]}",
                f"ratio {ratio:.3f}",
                "(info)" if goal is None else f">= {goal}",
                None if goal is None else (ratio >= goal and errors == 0),
                note,
                {
                    "ratio": round(ratio, 4),
                    "ratios": [round(r, 4) for r in ratios],
                    "rps": [round(x.rps) for x in mine],
                    "base_rps": [round(x.rps) for x in base],
                    "p50_ms": [round(x.p50, 3) for x in mine],
                    "p99_ms": [round(x.p99, 3) for x in mine],
                    "base_p50_ms": [round(x.p50, 3) for x in base],
                    "base_p99_ms": [round(x.p99, 3) for x in base],
                    "cpu_us": [x.cpu_us and round(x.cpu_us, 1) for x in mine],
                    "base_cpu_us": [x.cpu_us and round(x.cpu_us, 1) for x in base],
                    "cpu_ratios": [round(r, 4) for r in cpu],
                    "errors": errors,
                },
            )
        )
    setup = (
        f"load: {generator}, {CONNECTIONS} connections; {pinning}; uvicorn "
        f"{uvicorn_version()} ({uvicorn_flavour()}); load average {load_before} before, "
        f"{load_after} after"
    )
    rows.append(Row("throughput: setup", "-", "-", None, setup, {"setup": setup}))
    return rows


def uvicorn_version() -> str:
    import uvicorn

    return str(uvicorn.__version__)


# -- redis ------------------------------------------------------------------------------------


class Redis:
    """A redis-server on a fixed loopback port that can be stopped and started again
    (empty: no persistence)."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH")
        self.binary = binary
        self.port = free_port()
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self.workdir)]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2) as s,
            ):
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


# -- part 2: replicas -------------------------------------------------------------------------

TLS = ssl.create_default_context()


def remote_reader(urls: list[str]) -> Callable[[], tuple[str, float]]:
    """One client's RemoteSource fetch, on its own httpx connection."""
    source = RemoteSource(urls, key=KEY).for_app(APPID)
    ctx = FetchContext(
        session=requests.Session(),  # unused: the transport is given
        timeout=10.0,
        clock=time.time,
        store=wxauth.MemoryStore(),
        retries=0,
        transport=HttpxTransport(httpx.Client(verify=TLS)),
    )
    return lambda: source.fetch(ctx)


def replicas(workdir: Path, fake: FakeWeChat, emulator: str) -> list[Row]:
    redis = Redis(workdir)
    redis.start()
    config = write_config(workdir, redis.url, emulator)
    before = fake.count(path="/cgi-bin/token")
    a, b = (wxauth_serve(f"replica-{i}", config, workdir) for i in "ab")
    rows = []
    try:
        with running(a, b):
            a.wait_ready()
            b.wait_ready()
            startup = fake.count(path="/cgi-bin/token") - before
            rows.append(_reports(fake, a.url, b.url, startup))
            rows.append(_kill(a, b.url))
    finally:
        redis.stop()
    return rows


def _reports(fake: FakeWeChat, a: str, b: str, startup: int) -> Row:
    rejected = remote_reader([a])()[0]
    fake.retire_all()
    reporters = [
        wxauth.TokenManager(
            APPID,
            source=RemoteSource([a, b] if i % 2 else [b, a], key=KEY),
            store=wxauth.MemoryStore(),
        )
        for i in range(20)
    ]
    for tokens in reporters:
        tokens.get_token()
    readers = [remote_reader([a, b] if i % 2 else [b, a]) for i in range(200)]
    before = fake.count(path="/cgi-bin/token")
    go = threading.Barrier(len(readers) + len(reporters))
    fresh: list[str] = []
    failed: list[str] = []
    reads = 0
    lock = threading.Lock()

    def report(tokens: wxauth.TokenManager) -> None:
        go.wait()
        tokens.invalidate(rejected)
        fresh.append(tokens.get_token())

    def read(fetch: Callable[[], tuple[str, float]]) -> None:
        nonlocal reads
        go.wait()
        for _ in range(5):
            try:
                fetch()
            except wxauth.WxAuthError as exc:
                with lock:
                    failed.append(str(exc))
            else:
                with lock:
                    reads += 1

    threads = [threading.Thread(target=report, args=(t,)) for t in reporters]
    threads += [threading.Thread(target=read, args=(f,)) for f in readers]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    fetches = fake.count(path="/cgi-bin/token") - before
    same = len(set(fresh)) == 1 and rejected not in fresh
    return Row(
        "replicas: 200 readers + 20 reports",
        f"{fetches} fetch{'es' if fetches != 1 else ''}",
        "exactly 1",
        fetches == 1 and not failed and same,
        f"{reads} reads ok, {len(failed)} failed, in {elapsed:.2f}s; the 20 reporters got "
        f"{len(set(fresh))} distinct fresh token(s); both replicas' startup: {startup} fetch",
        {"fetches": fetches, "reads": reads, "failed": len(failed), "startup_fetches": startup},
    )


def _kill(a: Process, b_url: str) -> Row:
    stop = threading.Event()
    lock = threading.Lock()
    ok = 0
    failed: list[str] = []
    slowest = 0.0
    killed_at = float("inf")
    after_kill = 0

    def loop(fetch: Callable[[], tuple[str, float]]) -> None:
        nonlocal ok, slowest, after_kill
        while not stop.is_set():
            began = time.perf_counter()
            try:
                fetch()
            except wxauth.WxAuthError as exc:
                with lock:
                    failed.append(str(exc))
                continue
            took = time.perf_counter() - began
            with lock:
                ok += 1
                slowest = max(slowest, took)
                if began > killed_at:
                    after_kill += 1

    threads = [
        threading.Thread(target=loop, args=(remote_reader([a.url, b_url]),)) for _ in range(20)
    ]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    killed_at = time.perf_counter()
    os.kill(a.proc.pid, signal.SIGKILL)
    a.proc.wait(5)
    time.sleep(3.0)
    stop.set()
    for thread in threads:
        thread.join()
    return Row(
        "replicas: SIGKILL one under load",
        f"{len(failed)} failed reads",
        "0",
        not failed,
        f"{ok} reads ok by 20 threads with both URLs, {after_kill} of them begun after the "
        f"kill; slowest read {slowest * 1000:.0f} ms",
        {
            "failed": len(failed),
            "ok": ok,
            "after_kill": after_kill,
            "slowest_ms": round(slowest * 1000, 1),
        },
    )


# -- part 3: a Redis outage -------------------------------------------------------------------


def outage(workdir: Path, fake: FakeWeChat, emulator: str, down: float) -> list[Row]:
    redis = Redis(workdir)
    redis.start()
    config = write_config(workdir, redis.url, emulator)
    service = wxauth_serve("outage-replica", config, workdir)
    headers = {"Authorization": f"Bearer {KEY}"}
    outcomes: collections.Counter[str] = collections.Counter()
    readyz: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    phase = "before"
    stop = threading.Event()
    first_ready_after: float | None = None
    first_store_token_after: float | None = None
    first_new_token: float | None = None
    try:
        with running(service):
            service.wait_ready()
            token_before = httpx.get(service.url + TOKEN_PATH, headers=headers).json()[
                "access_token"
            ]
            fetches_before = fake.count(path="/cgi-bin/token")

            def load() -> None:
                nonlocal first_new_token
                with httpx.Client(base_url=service.url, headers=headers, timeout=10) as client:
                    while not stop.is_set():
                        try:
                            answer = client.get(TOKEN_PATH)
                        except httpx.HTTPError as exc:
                            what = f"transport error {type(exc).__name__}"
                        else:
                            if answer.status_code == 200:
                                same = answer.json()["access_token"] == token_before
                                what = "200 " + ("the token from before" if same else "a new token")
                                if not same:
                                    with lock:
                                        first_new_token = first_new_token or time.perf_counter()
                            else:
                                what = f"{answer.status_code} {answer.json().get('error')}"
                        with lock:
                            outcomes[f"{phase}: {what}"] += 1

            threads = [threading.Thread(target=load) for _ in range(16)]
            for thread in threads:
                thread.start()
            time.sleep(1.0)
            phase = "outage"
            redis.stop()
            went_down = time.perf_counter()
            while time.perf_counter() - went_down < down:
                answer = service.get("/readyz")
                with lock:
                    readyz["no answer" if answer is None else str(answer.status_code)] += 1
                time.sleep(0.2)
            phase = "after"
            redis.start()
            back = time.perf_counter()
            while time.perf_counter() - back < 30:
                answer = service.get("/readyz")
                if answer is not None and answer.status_code == 200:
                    first_ready_after = time.perf_counter() - back
                    break
                time.sleep(0.05)
            while first_new_token is None and time.perf_counter() - back < 30:
                time.sleep(0.01)
            if first_new_token is not None:
                first_store_token_after = first_new_token - back
            time.sleep(1.0)
            stop.set()
            for thread in threads:
                thread.join()
            fetches = fake.count(path="/cgi-bin/token") - fetches_before
    finally:
        redis.stop()
    during = {k.split(": ", 1)[1]: v for k, v in outcomes.items() if k.startswith("outage")}
    after = {k.split(": ", 1)[1]: v for k, v in outcomes.items() if k.startswith("after")}
    failed_during = sum(v for k, v in during.items() if not k.startswith("200"))
    ready_ok = readyz.get("200", 0)
    ready = "never" if first_ready_after is None else f"after {first_ready_after:.2f}s"
    new_token = "never" if first_new_token is None else f"{first_store_token_after:.2f}s"
    return [
        Row(
            f"outage: /readyz while Redis is down {down:g}s",
            ", ".join(f"{n} x {k}" for k, n in sorted(readyz.items())),
            "fails (503)",
            ready_ok == 0,
            "polled every 0.2 s",
            {"readyz": dict(readyz)},
        ),
        Row(
            "outage: reads while Redis is down",
            f"{sum(during.values())} reads, {failed_during} not 200",
            "503 clear, or valid token",
            all(k.startswith("200 the token from before") or k.startswith("503") for k in during),
            "; ".join(f"{n} x {k}" for k, n in sorted(during.items())),
            {"during": during},
        ),
        Row(
            "outage: recovery after Redis returns",
            f"/readyz 200 {ready}",
            "no restart",
            first_ready_after is not None and all(k.startswith("200") for k in after),
            f"first read of the token fetched into the refilled store: {new_token}; "
            f"{fetches} token fetch(es) in outage and recovery; reads after: "
            + "; ".join(f"{n} x {k}" for k, n in sorted(after.items())),
            {
                "ready_after_s": first_ready_after,
                "store_token_after_s": first_store_token_after,
                "fetches": fetches,
                "after": after,
            },
        ),
    ]


# -- main -------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter blocks")
    parser.add_argument("--only", choices=("throughput", "replicas", "outage"))
    parser.add_argument("--blocks", type=int, default=8, help="blocks per side (throughput)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per block")
    parser.add_argument("--down", type=float, default=10.0, help="seconds Redis is down")
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin the servers and the load to CPUs"
    )
    parser.add_argument("--serve", choices=SIDES[1:], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_main(args.serve, args.port, args.config)
        return 0
    # Failovers after the SIGKILL are expected: one warning per reader would drown the table.
    logging.getLogger("wxauth").setLevel(logging.ERROR)
    blocks, seconds = (4, 1.0) if args.quick else (args.blocks, args.seconds)
    rows: list[Row] = []
    with (
        tempfile.TemporaryDirectory(prefix="wxauth-bench-server-") as tmp,
        FakeWeChat(clock=time.time) as fake,
        fake.serve() as emulator,
    ):
        workdir = Path(tmp)
        fake.add_app(APPID, SECRET)
        if args.only in (None, "throughput"):
            rows += throughput(workdir, emulator, blocks, seconds, not args.no_pin)
        if args.only in (None, "replicas"):
            rows += replicas(workdir, fake, emulator)
        if args.only in (None, "outage"):
            rows += outage(workdir, fake, emulator, args.down)
    table(rows)
    return 0 if all(row.met is not False for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
