"""What wxauth does for async code: token fetches, failed calls and event-loop stalls.

Run: ``python benchmarks/async_fetches.py`` (about 30 s on 2 cores; ``--no-trio`` and
``--no-procs`` skip sections, ``--no-controls`` the cases without wxauth).

Everything talks HTTP to ``FakeWeChat`` on a loopback port (``fake.serve()``), served
from a child process of its own (as WeChat's servers are not in the caller's process:
the emulator's server thread would otherwise take turns at this process's interpreter
lock; ``--emulator-thread`` serves it from a thread here instead); the ``-inproc``
cases use ``fake.httpx_transport()`` in this process. Nothing leaves 127.0.0.1. The
token endpoint answers after 200 ms, so that all the tasks that ask for a token while it
is being fetched really do wait for it. Cases, under asyncio and then trio (all through
anyio):

- ``cold``: 1000 tasks each ``await manager.get_token()`` on a cold
  ``AsyncTokenManager`` (token requests through an ``httpx.AsyncClient``); they are
  spawned 25 a loop turn (``--spawn-batch``), all within about 50 ms, long before the
  200 ms fetch ends. Counts token fetches, and the event loop's largest
  stall: a ticker task sleeps 1 ms (``anyio.sleep(0.001)``) in a loop and records how
  late each wake-up came. The stall is also given per phase: *start* (spawning the
  tasks and running each up to its wait), *in flight* (while the one token request is
  out), *wake* (the answer came: every waiter resumes at once).
- ``cold-control`` (informational): the same 1000 tasks, the same ticker, but each
  task only awaits a plain ``anyio.Event`` that a helper sets after 200 ms: the stalls
  that 1000 tasks started and woken together cost any code on this loop.
- ``waiter-cost`` (informational): what one waiting task costs the loop, in µs, when
  it starts waiting and when it is woken: ``get_token()`` during a fetch held open by
  an in-memory transport, against a plain ``Event.wait()`` and against ``Event.wait()``
  inside ``anyio.move_on_after`` (a cancel scope with a deadline, which is what each
  waiter of ``AsyncTokenManager`` enters; 7 rounds of 1000 tasks; medians).
- ``retire``: then ``fake.retire_all()``, and 1000 tasks each make one API call through
  ``httpx.AsyncClient(auth=wxauth.httpx.WxAuth(manager=m))``: every first attempt with
  the old token is answered 40001. Counts fetches, API attempts, failed calls, stalls.
- ``api-control`` (informational): 1000 API calls with a valid token in ``params`` and
  no WxAuth, through the same kind of client: the stalls httpx itself causes. (Both
  API rounds stall the loop for about 3 s: 1000 requests enter httpcore's pool at once,
  and each entry scans the whole queue.)
- ``retire-inproc``: the retire case with no sockets: a fresh ``AsyncTokenManager``
  whose token requests and the 1000 API calls (spawned 25 a turn) all go through
  ``fake.httpx_transport()``. Counts fetches and failed calls; its stall is given
  beside ``api-inproc-control`` (informational: the same calls with a valid token and
  no WxAuth), since a whole in-process API call runs in one step of the loop.
- ``procs-redis-cold``, ``procs-redis-retire``, ``procs-redis-retire-async-first``:
  4 processes on one Redis with one key prefix, against one emulator: 2 with a
  ``TokenManager`` on a ``RedisStore`` (8 threads, ``httpx.Client`` with ``WxAuth``), 2
  with an ``AsyncTokenManager`` on an ``AsyncRedisStore`` (32 tasks under asyncio,
  ``httpx.AsyncClient`` with ``WxAuth``). A cold round, a round after ``retire_all()``,
  and one more after another ``retire_all()`` 301 s later (the emulator clock and the
  workers' clocks move on; within 300 s a second rejection of a replacement token is
  held by design, as for a broken account) in which the sync processes start 100 ms
  late, so that an async process meets the 40001 first. The clocks are real time plus
  that offset. Needs ``redis-server`` on PATH (the script starts its own on a free
  loopback port).

The API clients are limited to 20 connections: httpcore's pool scans every queued
request against every connection each time it hands one out, so 1000 requests queued
on httpx's default 100 connections spend seconds in that scan (12 s for 1000 plain
calls on this machine), which would measure httpcore, not wxauth.

Before each measured case the heap is frozen (``gc.collect(); gc.freeze()``): a full
collection of this interpreter's heap takes 20-35 ms here and lands on whichever case
allocated past the threshold. The collections during a case are counted and timed.

Prints a table, then one JSON line per case.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import multiprocessing
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
import httpx
from _redis_server import redis_server

import wxauth
from wxauth import AsyncTokenManager, MemoryStore, RedisStore, TokenManager
from wxauth.httpx import WxAuth
from wxauth.stores import AsyncRedisStore
from wxauth.testing import FakeWeChat
from wxauth.transport import HTTPAnswer

APPID = "wx0123456789abcdef"
SECRET = "0123456789abcdef0123456789abcdef"
API_PATH = "/cgi-bin/user/info"
OPENID = "o6_bmjrPTlm6_2sgVt7hMZOPfL2M"
TASKS = 1000
TOKEN_LATENCY = 0.2
#: The ticker's sleep, and the goal for the largest stall of the loop.
TICK = 0.001
STALL_GOAL_MS = 5.0
#: Connections of the API clients (see the module docstring).
API_CONNECTIONS = 20
#: Every case ends within this many seconds, or fails.
CASE_TIMEOUT = 60.0
#: The processes section: 2 sync processes x SYNC_THREADS, 2 async x ASYNC_TASKS.
SYNC_THREADS = 8
ASYNC_TASKS = 32
PROCS = ("sync", "sync", "async", "async")
PREFIX = "wxauth-bench:"
#: The cold cases spawn their tasks in batches of this many, letting the loop run in
#: between: spawning 1000 tasks in one go is an 8-37 ms stall of the spawner's own, and
#: 100 at a time (the earlier setting) is a 4.2-5.0 ms stall of the no-wxauth control
#: alone, the size of the goal itself. 25 at a time still starts all 1000 within a few
#: ms, long before the 200 ms fetch ends. ``--spawn-batch`` sets it.
SPAWN_BATCH = 25
#: Rounds of the waiter-cost case.
COST_ROUNDS = 7

now = time.perf_counter


@dataclass
class Row:
    case: str
    backend: str
    calls: int
    token_fetches: int | None
    api_attempts: int | None
    failed_calls: int | None
    stall_ms: float | None
    expect: str
    met: bool | None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def json_line(self) -> str:
        return json.dumps(
            {
                "case": self.case,
                "backend": self.backend,
                "calls": self.calls,
                "token_fetches": self.token_fetches,
                "api_attempts": self.api_attempts,
                "failed_calls": self.failed_calls,
                "max_stall_ms": None if self.stall_ms is None else round(self.stall_ms, 2),
                "goal": self.expect,
                "met": self.met,
                **self.extra,
            }
        )


def quiet() -> None:
    """Every healed 40001 logs a warning; the table says it better."""
    logging.getLogger("wxauth").setLevel(logging.ERROR)


def new_fake(clock: Callable[[], float] | None = None) -> FakeWeChat:
    fake = FakeWeChat(clock=clock, token_latency=TOKEN_LATENCY, seed=7)
    fake.add_app(APPID, SECRET)
    fake.add_api(API_PATH, json={"subscribe": 1, "openid": OPENID})
    return fake


def api_client(**options: Any) -> httpx.AsyncClient:
    limits = httpx.Limits(
        max_connections=API_CONNECTIONS, max_keepalive_connections=API_CONNECTIONS
    )
    return httpx.AsyncClient(timeout=30.0, limits=limits, **options)


# -- the emulator in a process of its own ----------------------------------------------


def emulator_main(conn: Any) -> None:
    """A child process: the emulator on a loopback port; answers ``(method, args,
    kwargs)`` sent over ``conn`` (``None`` ends it)."""
    quiet()
    with new_fake() as fake, fake.serve() as base:
        conn.send(base)
        while (command := conn.recv()) is not None:
            name, args, kwargs = command
            value = getattr(fake, name)
            conn.send(value(*args, **kwargs) if callable(value) else value)


class EmulatorProcess:
    """``FakeWeChat`` served from a child process, as WeChat's servers are not in the
    caller's process: its HTTP server thread then takes no share of the measured
    loop's interpreter lock. The counts and ``retire_all()`` are asked over a pipe."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=emulator_main, args=(child,), daemon=True)
        self.base = ""

    def __enter__(self) -> EmulatorProcess:
        self._proc.start()
        if not self._conn.poll(CASE_TIMEOUT):
            raise RuntimeError("the emulator process did not start")
        self.base = self._conn.recv()
        return self

    def __exit__(self, *exc: object) -> None:
        self._conn.send(None)
        self._proc.join(10)

    def _ask(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self._conn.send((name, args, kwargs))
        return self._conn.recv()

    @property
    def token_fetches(self) -> int:
        return int(self._ask("token_fetches"))

    @property
    def api_calls(self) -> int:
        return int(self._ask("api_calls"))

    def count(self, **kwargs: Any) -> int:
        return int(self._ask("count", **kwargs))

    def retire_all(self) -> int:
        return int(self._ask("retire_all"))


# -- the ticker ------------------------------------------------------------------------


class Ticker:
    """Sleeps ``TICK`` in a loop and records ``(went to sleep, woke)`` of every sleep:
    a wake-up later than ``TICK`` means the loop was busy (or blocked) meanwhile."""

    def __init__(self) -> None:
        self.ticks: list[tuple[float, float]] = []
        #: The loop thread's CPU time (``time.thread_time``) spent during each sleep: the
        #: part of a stall that was code running on the loop, not the OS running another
        #: process (on a loaded 2-core machine a time slice alone is several ms).
        self.busy: list[float] = []
        self.gc: dict[str, Any] = {}
        self._stop = False

    async def run(self) -> None:
        deadline = now() + CASE_TIMEOUT
        while not self._stop and now() < deadline:
            slept, cpu = now(), time.thread_time()
            await anyio.sleep(TICK)
            self.ticks.append((slept, now()))
            self.busy.append(time.thread_time() - cpu)

    def max_busy_ms(self, start: float = float("-inf"), end: float = float("inf")) -> float:
        """The most CPU time (ms) the loop's thread spent during one sleep that overlaps
        ``[start, end]``: the stall that code on the loop caused, whatever the OS did."""
        spent = [
            b for (s, w), b in zip(self.ticks, self.busy, strict=True) if w >= start and s <= end
        ]
        return max(spent, default=0.0) * 1000

    def stop(self) -> None:
        self._stop = True

    def max_ms(self, start: float = float("-inf"), end: float = float("inf")) -> float:
        """The largest lag (ms) of the sleeps that overlap ``[start, end]``."""
        lags = [w - s - TICK for s, w in self.ticks if w >= start and s <= end]
        return max(lags, default=0.0) * 1000

    def phases(self, began: float, last_entry: float, first_done: float, end: float) -> dict:
        """Largest lag (ms) per phase: start (spawning the tasks up to the last one's
        first step), in flight (strictly between that and the first task done), wake
        (from the first task done to the last)."""
        in_flight = [w - s - TICK for s, w in self.ticks if s > last_entry and w < first_done]
        return {
            "stall_start_ms": round(self.max_ms(began, last_entry), 2),
            "stall_in_flight_ms": round(max(in_flight, default=0.0) * 1000, 2),
            "stall_wake_ms": round(self.max_ms(first_done, end), 2),
        }


class GcWatch:
    """The collector's pauses while a case runs: ``(generation, ms)`` of each."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._began = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = now()
        else:
            self.pauses.append((info["generation"], (now() - self._began) * 1000))

    def __enter__(self) -> GcWatch:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def summary(self) -> dict[str, Any]:
        return {
            "gc_runs": len(self.pauses),
            "gc_max_ms": round(max((ms for _, ms in self.pauses), default=0.0), 2),
        }


async def with_ticker(work: Callable[[], Awaitable[None]]) -> Ticker:
    """Run ``work`` while a ticker runs; return the ticker (its ``gc`` attribute: the
    collector's pauses meanwhile).

    Everything alive before the case is first moved out of the collector's reach
    (``gc.freeze()``, as servers that preload do): a full collection then scans only
    what the case allocates, instead of the whole interpreter's heap, which took 20-35
    ms here and landed on whichever case's allocations triggered it."""
    ticker = Ticker()
    gc.collect()
    gc.freeze()
    try:
        with GcWatch() as watch, anyio.fail_after(CASE_TIMEOUT):
            async with anyio.create_task_group() as group:
                group.start_soon(ticker.run)
                await anyio.sleep(0.02)  # the ticker's steady state first
                try:
                    await work()
                finally:
                    ticker.stop()
    finally:
        gc.unfreeze()
    ticker.gc = watch.summary()
    return ticker


# -- 1000 tasks, cold --------------------------------------------------------------------


@dataclass
class Burst:
    """Times of one burst of tasks: spawning began, each task's entry, the first and
    the last task done; and what the tasks got."""

    began: float = 0.0
    entries: list[float] = field(default_factory=list)
    first_done: float = 0.0
    end: float = 0.0
    results: list[Any] = field(default_factory=list)

    async def run(
        self, task: Callable[[], Awaitable[Any]], count: int, batch: int | None = None
    ) -> None:
        """Run ``count`` tasks; with ``batch``, the spawner lets the loop run after every
        ``batch`` spawns (so its own loop of ``start_soon`` calls is no one long stall)."""

        async def one() -> None:
            self.entries.append(now())
            try:
                result = await task()
            except Exception as exc:  # a failed call; the case counts it
                result = exc
            if not self.results:
                self.first_done = now()
            self.results.append(result)

        self.began = now()
        async with anyio.create_task_group() as group:
            for i in range(count):
                group.start_soon(one)
                if batch and (i + 1) % batch == 0:
                    await anyio.lowlevel.checkpoint()
        self.end = now()

    def phases(self, ticker: Ticker) -> dict:
        phases = ticker.phases(self.began, max(self.entries), self.first_done, self.end)
        phases["busy_ms"] = round(ticker.max_busy_ms(self.began, self.end), 2)
        return phases


def phase_text(phases: dict[str, float], ticker: Ticker) -> str:
    return (
        f"largest CPU-busy stall {phases['busy_ms']:.1f} ms; "
        f"stall by phase: start {phases['stall_start_ms']:.1f} ms, in flight "
        f"{phases['stall_in_flight_ms']:.1f} ms, wake {phases['stall_wake_ms']:.1f} ms; "
        f"{ticker.gc['gc_runs']} collections, the longest {ticker.gc['gc_max_ms']:.1f} ms"
    )


async def cold_case(backend: str, fake: Emulator, manager: AsyncTokenManager) -> Row:
    fetches = fake.token_fetches
    burst = Burst()
    ticker = await with_ticker(lambda: burst.run(manager.get_token, TASKS, SPAWN_BATCH))
    fetched = fake.token_fetches - fetches
    stall = ticker.max_ms(burst.began, burst.end)
    phases = burst.phases(ticker)
    # A call failed if it raised or got another token than the others.
    tokens = Counter(r for r in burst.results if isinstance(r, str))
    failed = TASKS - (tokens.most_common(1)[0][1] if tokens else 0)
    return Row(
        "cold",
        backend,
        TASKS,
        fetched,
        0,
        failed,
        stall,
        f"1 fetch, stall < {STALL_GOAL_MS:g} ms",
        fetched == 1 and failed == 0 and stall < STALL_GOAL_MS,
        f"{TASKS} tasks (spawned {SPAWN_BATCH} at a time) await get_token() on a cold "
        f"AsyncTokenManager; {phase_text(phases, ticker)}; all done "
        f"{(burst.end - burst.began) * 1000:.0f} ms after the first spawn",
        {
            **phases,
            "elapsed_ms": round((burst.end - burst.began) * 1000, 1),
            "manager_fetches": manager.stats.fetches,
            **ticker.gc,
        },
    )


async def cold_control(backend: str) -> Row:
    gate = anyio.Event()

    async def wait() -> int:
        await gate.wait()
        return 1

    async def work() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(burst.run, wait, TASKS, SPAWN_BATCH)
            await anyio.sleep(TOKEN_LATENCY)
            gate.set()

    burst = Burst()
    ticker = await with_ticker(work)
    stall = ticker.max_ms(burst.began, burst.end)
    phases = burst.phases(ticker)
    return Row(
        "cold-control",
        backend,
        TASKS,
        None,
        None,
        None,
        stall,
        "(no wxauth)",
        None,
        f"{TASKS} tasks (spawned {SPAWN_BATCH} at a time) await a plain anyio.Event set "
        f"after {TOKEN_LATENCY:g} s; {phase_text(phases, ticker)}",
        {**phases, **ticker.gc},
    )


# -- what one waiter costs the loop ------------------------------------------------------


class HeldTransport:
    """An in-memory AsyncTransport whose token answer waits until :attr:`release` is
    set: a fetch held open for as long as the measurement needs."""

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.sent = 0

    async def send(self, request: Any, *, timeout: float) -> HTTPAnswer:
        self.sent += 1
        await self.release.wait()
        body = json.dumps({"access_token": "T" * 150, "expires_in": 7200}).encode()
        return HTTPAnswer(200, {"Content-Type": "application/json"}, body)


async def waiter_round(kind: str) -> tuple[float, float]:
    """µs per task to start waiting and to be woken, for ``TASKS`` tasks of ``kind``
    (with the heap frozen, as :func:`with_ticker` does)."""
    gc.collect()
    gc.freeze()
    try:
        return await _waiter_round(kind)
    finally:
        gc.unfreeze()


async def _waiter_round(kind: str) -> tuple[float, float]:
    gate = HeldTransport()
    event = anyio.Event()
    manager = AsyncTokenManager(
        APPID, SECRET, api_base="http://127.0.0.1:9", store=MemoryStore(), transport=gate
    )

    async def plain() -> None:
        await event.wait()

    async def scoped() -> None:
        with anyio.move_on_after(60):
            await event.wait()

    async def token() -> None:
        await manager.get_token()

    task = {"event": plain, "deadline": scoped, "wxauth": token}[kind]
    async with anyio.create_task_group() as group:
        for _ in range(TASKS):
            group.start_soon(task)
        # Both backends run every task made runnable before this task's next turn: the
        # two checkpoints span the tasks' first steps, up to their waits.
        spawned = now()
        await anyio.lowlevel.checkpoint()
        await anyio.lowlevel.checkpoint()
        waiting = now()
        event.set()
        gate.release.set()
        released = now()
    done = now()
    assert kind != "wxauth" or gate.sent == 1, "the waiters made more than one fetch"
    return (waiting - spawned) * 1e6 / TASKS, (done - released) * 1e6 / TASKS


async def waiter_cost(backend: str) -> Row:
    figures: dict[str, list[tuple[float, float]]] = {}
    for _ in range(COST_ROUNDS):
        for kind in ("event", "deadline", "wxauth"):
            figures.setdefault(kind, []).append(await waiter_round(kind))
    med = {
        kind: (
            round(statistics.median(a for a, _ in runs), 2),
            round(statistics.median(b for _, b in runs), 2),
        )
        for kind, runs in figures.items()
    }
    return Row(
        "waiter-cost",
        backend,
        TASKS,
        1,
        None,
        None,
        None,
        "(µs per task)",
        None,
        "µs per task to start waiting / to be woken: get_token() during a fetch "
        f"{med['wxauth'][0]:.1f} / {med['wxauth'][1]:.1f}; plain Event.wait() "
        f"{med['event'][0]:.1f} / {med['event'][1]:.1f}; Event.wait() in a cancel scope "
        f"with a deadline (anyio.move_on_after) {med['deadline'][0]:.1f} / "
        f"{med['deadline'][1]:.1f}",
        {
            "start_us": {k: v[0] for k, v in med.items()},
            "wake_us": {k: v[1] for k, v in med.items()},
        },
    )


# -- 1000 API calls after a retire -------------------------------------------------------


def api_call(
    client: httpx.AsyncClient, url: str, params: dict[str, str]
) -> tuple[Callable[[], Awaitable[bool]], Counter[str]]:
    """A task that makes one API call and says whether it ended with errcode 0; and the
    failures by kind, which it counts."""
    failures: Counter[str] = Counter()

    async def call() -> bool:
        try:
            response = await client.get(url, params=params)
            ok = response.status_code == 200 and response.json().get("errcode", 0) == 0
        except Exception as exc:  # any failure is a failed call; say which kind
            failures[type(exc).__name__] += 1
            return False
        if not ok:
            failures[f"errcode {response.json().get('errcode')}"] += 1
        return ok

    return call, failures


async def api_burst(
    client: httpx.AsyncClient, url: str, params: dict[str, str], batch: int | None = None
) -> tuple[Burst, Ticker, Counter[str]]:
    """One API call in each of ``TASKS`` tasks (spawned ``batch`` a turn), with a ticker;
    returns the burst (its results: whether each call ended with errcode 0), the ticker
    and the failures."""
    call, failures = api_call(client, url, params)
    burst = Burst()
    ticker = await with_ticker(lambda: burst.run(call, TASKS, batch))
    return burst, ticker, failures


async def retire_case(backend: str, fake: Emulator, base: str, manager: AsyncTokenManager) -> Row:
    fake.retire_all()
    fetches, attempts = fake.token_fetches, fake.api_calls
    rejected = fake.count(kind="api", errcode=40001)
    async with api_client(auth=WxAuth(manager=manager)) as client:
        burst, ticker, failures = await api_burst(client, base + API_PATH, {"openid": OPENID})
    fetched = fake.token_fetches - fetches
    sent = fake.api_calls - attempts
    rejected = fake.count(kind="api", errcode=40001) - rejected
    failed = burst.results.count(False)
    elapsed = burst.end - burst.began
    return Row(
        "retire",
        backend,
        TASKS,
        fetched,
        sent,
        failed,
        ticker.max_ms(burst.began, burst.end),
        "1 fetch, 0 failed",
        fetched == 1 and failed == 0,
        f"after retire_all(), {TASKS} tasks make one API call each through "
        f"httpx.AsyncClient(auth=WxAuth(manager=m)), {API_CONNECTIONS} connections: "
        f"{rejected} of the {sent} attempts answered 40001; {elapsed:.1f} s"
        + (f"; failures: {dict(failures)}" if failures else ""),
        {
            "answered_40001": rejected,
            "elapsed_s": round(elapsed, 2),
            "failures": dict(failures),
            **ticker.gc,
        },
    )


async def retire_inproc_case(
    backend: str, fake: FakeWeChat, base: str, manager: AsyncTokenManager
) -> Row:
    """The retire case with everything in process: the API calls and the token fetch
    answered by ``fake.httpx_transport()`` (no sockets, no connection pool, no server
    thread). What is left of the loop's stalls is wxauth's, httpx's request handling
    and the emulator's own: a whole API call runs in one step here (nothing awaits a
    socket), so a turn that resumes 16 woken callers runs 16 calls; the control
    (``api-inproc-control``) shows what 25 calls a turn cost without wxauth.
    ``manager`` has fetched its token already."""
    fake.retire_all()
    fetches, attempts = fake.token_fetches, fake.api_calls
    rejected = fake.count(kind="api", errcode=40001)
    # The manager's api_base: WxAuth sends the token only to that origin (the
    # transport answers whatever the host).
    url = base + API_PATH
    auth = WxAuth(manager=manager)
    async with httpx.AsyncClient(transport=fake.httpx_transport(), auth=auth) as client:
        burst, ticker, failures = await api_burst(client, url, {"openid": OPENID}, SPAWN_BATCH)
    fetched = fake.token_fetches - fetches
    sent = fake.api_calls - attempts
    rejected = fake.count(kind="api", errcode=40001) - rejected
    failed = burst.results.count(False)
    stall = ticker.max_ms(burst.began, burst.end)
    busy = ticker.max_busy_ms(burst.began, burst.end)
    return Row(
        "retire-inproc",
        backend,
        TASKS,
        fetched,
        sent,
        failed,
        stall,
        "1 fetch, 0 failed",
        fetched == 1 and failed == 0,
        f"after retire_all(), {TASKS} tasks (spawned {SPAWN_BATCH} at a time) make "
        f"one API call each through httpx.AsyncClient(transport=fake.httpx_transport(), "
        f"auth=WxAuth(manager=m)), the token fetched through that transport too: "
        f"{rejected} of the {sent} attempts answered 40001; "
        f"largest CPU-busy stall {busy:.1f} ms; {ticker.gc['gc_runs']} collections, the "
        f"longest {ticker.gc['gc_max_ms']:.1f} ms; {(burst.end - burst.began) * 1000:.0f} ms"
        + (f"; failures: {dict(failures)}" if failures else ""),
        {
            "answered_40001": rejected,
            "busy_ms": round(busy, 2),
            "elapsed_ms": round((burst.end - burst.began) * 1000, 1),
            "failures": dict(failures),
            **ticker.gc,
        },
    )


async def api_inproc_control(backend: str, fake: FakeWeChat, base: str, token: str) -> Row:
    """The same in-process API calls with a valid token in ``params`` and no WxAuth."""
    attempts = fake.api_calls
    url = base + API_PATH
    async with httpx.AsyncClient(transport=fake.httpx_transport()) as client:
        burst, ticker, _ = await api_burst(
            client, url, {"openid": OPENID, "access_token": token}, SPAWN_BATCH
        )
    busy = ticker.max_busy_ms(burst.began, burst.end)
    return Row(
        "api-inproc-control",
        backend,
        TASKS,
        None,
        fake.api_calls - attempts,
        burst.results.count(False),
        ticker.max_ms(burst.began, burst.end),
        "(no wxauth)",
        None,
        f"{TASKS} API calls (spawned {SPAWN_BATCH} at a time) with a valid token in params, "
        f"no WxAuth, through fake.httpx_transport(); largest CPU-busy stall {busy:.1f} ms",
        {"busy_ms": round(busy, 2), **ticker.gc},
    )


async def api_control(backend: str, fake: Emulator, base: str, token: str) -> Row:
    attempts = fake.api_calls
    async with api_client() as client:
        burst, ticker, _ = await api_burst(
            client, base + API_PATH, {"openid": OPENID, "access_token": token}
        )
    failed = burst.results.count(False)
    elapsed = burst.end - burst.began
    return Row(
        "api-control",
        backend,
        TASKS,
        None,
        fake.api_calls - attempts,
        failed,
        ticker.max_ms(burst.began, burst.end),
        "(no wxauth)",
        None,
        f"{TASKS} API calls with a valid token in params, no WxAuth, "
        f"{API_CONNECTIONS} connections; {elapsed:.1f} s",
        {"elapsed_s": round(elapsed, 2), **ticker.gc},
    )


#: A case's emulator: in this process (``FakeWeChat``) or a child's.
Emulator = FakeWeChat | EmulatorProcess


async def one_backend(backend: str, controls: bool, emulator_thread: bool) -> list[Row]:
    rows = []
    with contextlib.ExitStack() as stack:
        fake: Emulator
        if emulator_thread:
            fake = stack.enter_context(new_fake())
            base = stack.enter_context(fake.serve())
        else:
            fake = stack.enter_context(EmulatorProcess())
            base = fake.base
        async with httpx.AsyncClient() as token_client:
            manager = AsyncTokenManager(APPID, SECRET, api_base=base, client=token_client)
            rows.append(await cold_case(backend, fake, manager))
            if controls:
                rows.append(await cold_control(backend))
            rows.append(await waiter_cost(backend))
            rows.append(await retire_case(backend, fake, base, manager))
            if controls:
                token = await manager.get_token()
                rows.append(await api_control(backend, fake, base, token))
    rows += await inproc_cases(backend, controls)
    return rows


async def inproc_cases(backend: str, controls: bool) -> list[Row]:
    """The cases with the emulator answering in process (``fake.httpx_transport()``)."""
    rows = []
    base = "https://api.weixin.qq.com"
    with new_fake() as fake:
        async with httpx.AsyncClient(transport=fake.httpx_transport()) as token_client:
            manager = AsyncTokenManager(
                APPID, SECRET, store=MemoryStore(), clock=fake.clock, client=token_client
            )
            await manager.get_token()
            rows.append(await retire_inproc_case(backend, fake, base, manager))
            if controls:
                token = await manager.get_token()
                rows.append(await api_inproc_control(backend, fake, base, token))
    return rows


# -- several processes on one Redis --------------------------------------------------------


#: The rounds of the processes section, and how long the sync processes hold back in
#: each after the start (so that in the last one an async process meets the 40001 first
#: and fetches).
PROC_ROUNDS = ("cold", "retire", "retire-async-first")
SYNC_HOLD_BACK = {"retire-async-first": 0.1}
#: Before the last round the emulator's and the workers' clocks move this far: a token
#: that replaced a rejected one and is rejected again within 300 s is held (the
#: rejection streak: a broken account), so the second retire must come later.
LATER = 301.0


def offset_clock(offset: Any) -> Callable[[], float]:
    """The emulator's clock in a worker: real time plus what the parent moved it by."""

    def clock() -> float:
        return time.time() + float(offset.value)

    return clock


def sync_worker(
    redis_url: str, base: str, barrier: Any, offset: Any
) -> tuple[list[int], list[int]]:
    """``SYNC_THREADS`` threads, each with an ``httpx.Client`` carrying one WxAuth on a
    TokenManager on a RedisStore. Returns the failed calls and the fetches per round."""
    manager = TokenManager(
        APPID,
        SECRET,
        api_base=base,
        store=RedisStore.from_url(redis_url, prefix=PREFIX),
        clock=offset_clock(offset),
    )
    auth = WxAuth(manager=manager)
    clients = [httpx.Client(auth=auth, timeout=30.0) for _ in range(SYNC_THREADS)]
    url = base + API_PATH
    failures, fetches = [], []
    for step in PROC_ROUNDS:
        barrier.wait(CASE_TIMEOUT)
        time.sleep(SYNC_HOLD_BACK.get(step, 0.0))
        before = manager.stats.fetches
        ok = [False] * SYNC_THREADS

        def call(i: int, ok: list[bool] = ok) -> None:
            try:
                response = clients[i].get(url, params={"openid": OPENID})
                ok[i] = response.status_code == 200 and response.json().get("errcode", 0) == 0
            except Exception:
                ok[i] = False

        threads = [threading.Thread(target=call, args=(i,)) for i in range(SYNC_THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(CASE_TIMEOUT)
        failures.append(ok.count(False))
        fetches.append(manager.stats.fetches - before)
        barrier.wait(CASE_TIMEOUT)
    for client in clients:
        client.close()
    manager.close()
    return failures, fetches


async def async_worker(
    redis_url: str, base: str, barrier: Any, offset: Any
) -> tuple[list[int], list[int]]:
    """``ASYNC_TASKS`` tasks sharing an ``httpx.AsyncClient`` with one WxAuth on an
    AsyncTokenManager on an AsyncRedisStore. Returns the failed calls and the fetches
    per round."""
    store = AsyncRedisStore.from_url(redis_url, prefix=PREFIX)
    failures, fetches = [], []
    async with httpx.AsyncClient(timeout=30.0) as token_client:
        manager = AsyncTokenManager(
            APPID,
            SECRET,
            api_base=base,
            store=store,
            client=token_client,
            clock=offset_clock(offset),
        )
        async with api_client(auth=WxAuth(manager=manager)) as client:
            for _ in PROC_ROUNDS:
                await anyio.to_thread.run_sync(barrier.wait, CASE_TIMEOUT)
                before = manager.stats.fetches
                call, _ = api_call(client, base + API_PATH, {"openid": OPENID})
                burst = Burst()
                with anyio.fail_after(CASE_TIMEOUT):
                    await burst.run(call, ASYNC_TASKS)
                failures.append(burst.results.count(False))
                fetches.append(manager.stats.fetches - before)
                await anyio.to_thread.run_sync(barrier.wait, CASE_TIMEOUT)
    await store.aclose()
    return failures, fetches


def process_main(
    index: int, kind: str, redis_url: str, base: str, barrier: Any, results: Any, offset: Any
) -> None:
    quiet()
    if kind == "sync":
        failures, fetches = sync_worker(redis_url, base, barrier, offset)
    else:
        failures, fetches = anyio.run(async_worker, redis_url, base, barrier, offset)
    results.put((index, kind, failures, fetches))


def process_cases(redis_url: str) -> list[Row]:
    """The rounds of :data:`PROC_ROUNDS`; 4 processes, one Redis, one emulator."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(PROCS) + 1)
    results = ctx.Queue()
    offset = ctx.Value("d", 0.0, lock=False)
    # Real time: the workers' clocks are the emulator's.
    with new_fake(clock=time.time) as fake, fake.serve() as base:
        procs = [
            ctx.Process(
                target=process_main,
                args=(i, kind, redis_url, base, barrier, results, offset),
                daemon=True,
            )
            for i, kind in enumerate(PROCS)
        ]
        for proc in procs:
            proc.start()
        per_round = []
        for step in PROC_ROUNDS:
            if step == "retire-async-first":
                fake.advance(LATER)
                offset.value += LATER
            if step.startswith("retire"):
                fake.retire_all()
            fetches, attempts = fake.token_fetches, fake.api_calls
            barrier.wait(CASE_TIMEOUT)
            barrier.wait(CASE_TIMEOUT)
            per_round.append((fake.token_fetches - fetches, fake.api_calls - attempts))
        outcome = sorted(results.get(timeout=CASE_TIMEOUT) for _ in procs)
        for proc in procs:
            proc.join(10)
    calls = sum(SYNC_THREADS if kind == "sync" else ASYNC_TASKS for kind in PROCS)
    rows = []
    for i, step in enumerate(PROC_ROUNDS):
        fetched, attempts = per_round[i]
        failed = sum(failures[i] for _, _, failures, _ in outcome)
        by_process = {f"{kind}-{index}": fetches[i] for index, kind, _, fetches in outcome}
        fetchers = ", ".join(f"{name} {n}" for name, n in by_process.items() if n) or "none"
        rows.append(
            Row(
                f"procs-redis-{step}",
                "mixed",
                calls,
                fetched,
                attempts,
                failed,
                None,
                "1 fetch, 0 failed",
                fetched == 1 and failed == 0,
                f"2 sync processes x {SYNC_THREADS} threads (TokenManager, RedisStore) + "
                f"2 asyncio processes x {ASYNC_TASKS} tasks (AsyncTokenManager, "
                f"AsyncRedisStore), one Redis, prefix {PREFIX!r}"
                + (
                    f"; {LATER:g} s later (emulator and worker clocks), the sync processes "
                    f"start {SYNC_HOLD_BACK[step] * 1000:.0f} ms late"
                    if step in SYNC_HOLD_BACK
                    else ""
                )
                + f"; fetched by: {fetchers}",
                {"fetches_by_process": by_process},
            )
        )
    return rows


# -- main ------------------------------------------------------------------------------


def print_rows(rows: list[Row]) -> None:
    print(
        f"{'case':<30} {'backend':<8} {'calls':>5} {'fetches':>7} {'attempts':>8} "
        f"{'failed':>6} {'stall ms':>8}  {'goal':<26} met"
    )

    def show(value: object) -> str:
        return "-" if value is None else str(value)

    for r in rows:
        met = "-" if r.met is None else ("yes" if r.met else "NO")
        stall = "-" if r.stall_ms is None else f"{r.stall_ms:.1f}"
        print(
            f"{r.case:<30} {r.backend:<8} {r.calls:>5} {show(r.token_fetches):>7} "
            f"{show(r.api_attempts):>8} {show(r.failed_calls):>6} {stall:>8}  "
            f"{r.expect:<26} {met}"
        )
        if r.note:
            print(f"{'':<32}{r.note}")
    print()
    for r in rows:
        print(r.json_line())


def main(argv: list[str] | None = None) -> int:
    global SPAWN_BATCH
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-trio", action="store_true", help="skip the trio run")
    parser.add_argument("--no-procs", action="store_true", help="skip the processes")
    parser.add_argument("--no-controls", action="store_true", help="skip the cases without wxauth")
    parser.add_argument(
        "--spawn-batch",
        type=int,
        default=SPAWN_BATCH,
        help=f"tasks spawned per loop turn in the cold cases (default {SPAWN_BATCH})",
    )
    parser.add_argument(
        "--emulator-thread",
        action="store_true",
        help="serve the loopback emulator from a thread of this process, not a child process",
    )
    args = parser.parse_args(argv)
    SPAWN_BATCH = max(1, args.spawn_batch)
    quiet()
    began = now()
    rows: list[Row] = []
    backends = ["asyncio"] if args.no_trio else ["asyncio", "trio"]
    for backend in backends:
        rows += anyio.run(
            one_backend, backend, not args.no_controls, args.emulator_thread, backend=backend
        )
    if not args.no_procs:
        with redis_server() as redis_url:
            if redis_url is None:
                print(
                    "procs-redis cases skipped: needs redis-server on PATH and the redis "
                    "package (pip install 'wxauth[redis]')"
                )
            else:
                rows += process_cases(redis_url)
    print(
        f"wxauth async, Python {sys.version.split()[0]}, httpx {httpx.__version__}, "
        f"wxauth {getattr(wxauth, '__version__', '?')}; {now() - began:.0f} s"
    )
    print_rows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
