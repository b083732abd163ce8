"""Open Platform at scale: every authorizer's token kept fresh by a fleet of worker
processes sharing one RedisStore, for simulated hours against the emulator.

Not a test: a measurement (issue #14, deliverable 4). The parent process runs the
emulator on loopback (``fake.serve()``) with a frozen clock, starts its own
``redis-server``, registers one component and ``--authorizers`` authorizers, stores
their refresh tokens (the platform's registry) and pushes a ``component_verify_ticket``
every 10 simulated minutes, as WeChat does. ``--workers`` processes each run an
:class:`~wxauth.openplatform.AuthorizerFleet` on a
:class:`~wxauth.openplatform.ComponentTokenManager`; one more process plays the callers
(a ``ComponentTokenManager`` of its own, no fleet). Each step the parent advances the
shared clock (a ``multiprocessing.Value`` that every process's ``clock=`` reads, and the
emulator's) by ``--step`` seconds, waits until every live worker has worked off what is
due (simulated time stands still meanwhile), and has the callers call ``--calls`` random
authorizers: ``get_token()`` then an API call through the emulator, re-sent once after
``invalidate`` on 40001/42001 as ``WxAuth`` does.

On a real platform authorizers joined over time, so their tokens fall due at scattered
times. The run starts that way: the first fetches are spread over one refresh cycle
(the warm-up, ~1.9 simulated hours; ``--no-warmup`` fetches every one at once), and the
callers call only authorizers fetched already.

Events (by default a third and two thirds into the run; ``--no-kill``, ``--no-flush``):

- ``--kill-at H``: at the first step from hour H at which worker 0 holds claims, it is
  SIGKILLed. Its claimed authorizers must be renewed by the others before their tokens
  expire. For the next 75 s the simulated clock runs at real speed, so the dead
  worker's Redis lock leases (real-time ``PX``) end when they would have in a real
  deployment.
- ``--flush-at H``: ``FLUSHALL``: tokens, refresh tokens, ticket and schedule are gone.
  The fleets re-seed from ``api_get_authorizer_list`` (their component token still in
  their processes) and fetch every authorizer again; no authorizer may be lost. The
  callers are pointed at 200 authorizers for the hour after the kill and the flush.

Reported: API calls answered 42001 (expired) or 40001 (retired) by phase, and whether
the re-sent call passed; foreground fetches by callers; double fetches (an authorizer
fetched again before its previous token was due, i.e. within one refresh window; the
first fetch after the flush is counted apart); late fetches (after the previous token
had expired) and the smallest headroom (seconds the previous token still had);
fetches per authorizer per day in steady state against the floor for the fleet's
margin; the workers' largest lag behind a due time (simulated seconds: at most one
step, as the clock waits for them) and the longest real time a step took to drain (the
flush's burst); what became of the dead worker's claims; Redis memory per authorizer
(``INFO memory`` before and after, ``MEMORY USAGE`` of one authorizer's keys and of the
shared ones).

Usage::

    python benchmarks/openplatform.py                   # 100,000 authorizers, 4 workers, 24 h
    python benchmarks/openplatform.py --authorizers 10000 --kill-at 8 --flush-at 16
    python benchmarks/openplatform.py --authorizers 2000 --hours 3 --no-flush --json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import multiprocessing
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from multiprocessing.connection import Connection
from typing import Any

from _redis_server import redis_server

COMPONENT, SECRET = "wxbenchcomponent01", "bench-component-secret-0123456789"
PUSH_TOKEN, AES_KEY = "benchpushtoken", "B" * 43
API_PATH = "/cgi-bin/get_api_domain_ip"
LIFETIME = 7200.0
DAY = 86400.0
BEIJING = 8 * 3600.0
#: Simulated start: a quota-day boundary (00:00 Beijing time).
START = (1_800_000_000.0 + BEIJING) // DAY * DAY + DAY - BEIJING
#: After the kill, simulated time runs at real speed this long (seconds): past the dead
#: worker's fleet lease (60 s) and the manager's lock lease (39 s).
REAL_SPEED_AFTER_KILL = 75.0
#: An idle worker looks again after this many real seconds even if the clock stood still.
IDLE_LOOK = 0.05
#: WeChat pushes a verify ticket this often (simulated seconds).
TICKET_INTERVAL = 600.0


def appid_of(i: int) -> str:
    return f"wxa{i:015d}"


def platform_on(url: str, api_base: str, clock: Any) -> Any:
    import wxauth
    from wxauth.openplatform import ComponentTokenManager

    return ComponentTokenManager(
        COMPONENT,
        SECRET,
        token=PUSH_TOKEN,
        encoding_aes_key=AES_KEY,
        store=wxauth.RedisStore.from_url(url),
        api_base=api_base,
        clock=lambda: float(clock.value),
        # A simulated day passes in minutes: the real-time per-minute budget would trip.
        max_fetches_per_minute=None,
    )


# -- the worker processes -----------------------------------------------------------------


def worker(
    index: int,
    url: str,
    api_base: str,
    clock: Any,
    done_through: Any,
    busy: Any,
    stats: Any,
    stop: Any,
    options: dict[str, Any],
) -> None:
    """One fleet worker: look whenever the clock moved or the last look did work, and
    every :data:`IDLE_LOOK` seconds besides (as ``run_forever`` polls), so that idle
    workers join in when another one seeds a lost schedule."""
    from wxauth.openplatform import AuthorizerFleet

    logging.getLogger("wxauth").addHandler(logging.NullHandler())
    logging.getLogger("wxauth").propagate = False
    platform = platform_on(url, api_base, clock)
    fleet = AuthorizerFleet(platform, seed=index, **options)
    seen, worked, looked = -1.0, True, 0.0
    while not stop.is_set():
        now = float(clock.value)
        if now == seen and not worked and time.monotonic() - looked < IDLE_LOOK:
            time.sleep(0.001)
            continue
        looked = time.monotonic()
        busy[index] = 1
        before = fleet.stats.claimed + fleet.stats.seeds
        try:
            fleet.step()
        except Exception as exc:  # Redis gone for a moment: look again
            print(f"worker {index}: {type(exc).__name__}: {exc}", file=sys.stderr)
            time.sleep(0.05)
        busy[index] = 0
        worked = fleet.stats.claimed + fleet.stats.seeds != before
        seen = now
        done_through[index] = now
        s = fleet.stats
        stats[index * 6 : index * 6 + 6] = [
            s.fetched,
            s.fresh,
            s.busy,
            s.failures,
            s.max_lag,
            s.seeds,
        ]
    platform.close()


def caller(conn: Connection, url: str, api_base: str, clock: Any) -> None:
    """The callers: ``get_token()`` of the authorizers named, then an API call each;
    like :class:`wxauth.WxAuth`, a call refused 40001/42001 reports the token
    (``invalidate``) and is sent once more with the next one."""
    import requests

    logging.getLogger("wxauth").addHandler(logging.NullHandler())
    logging.getLogger("wxauth").propagate = False
    platform = platform_on(url, api_base, clock)
    session = requests.Session()
    shown: Counter[str] = Counter()
    conn.send("ready")
    while True:
        command = conn.recv()
        if command == "exit":
            break
        outcome: Counter[str] = Counter()
        for appid in command:
            manager = platform.authorizer(appid)
            before = manager.stats.fetches
            try:
                token = manager.get_token()
            except Exception as exc:
                outcome[f"get_token {type(exc).__name__}"] += 1
                shown[type(exc).__name__] += 1
                if shown[type(exc).__name__] <= 3:
                    print(f"caller: {appid} at {clock.value - START:.0f} s: {exc}", file=sys.stderr)
                continue
            try:
                errcode = api_call(session, api_base, token)
                outcome[f"errcode {errcode}"] += 1
                if errcode in (40001, 42001):
                    manager.invalidate(token)
                    retried = api_call(session, api_base, manager.get_token())
                    outcome[f"retried: errcode {retried}"] += 1
            except Exception as exc:
                outcome[f"api {type(exc).__name__}"] += 1
            outcome["foreground fetches"] += manager.stats.fetches - before
        conn.send(dict(outcome))
    session.close()
    platform.close()


def api_call(session: Any, api_base: str, token: str) -> int:
    answer = session.get(api_base + API_PATH, params={"access_token": token}, timeout=30)
    return int(answer.json().get("errcode", 0))


# -- what the emulator sees -----------------------------------------------------------------


class FetchLog:
    """Every authorizer token the emulator issued, judged against the one before.

    A fetch less than ``window`` after the previous one is a double fetch (the previous
    token was not due yet), except the first fetch after the flush (every token was
    lost). One after the previous token expired is late; ``headroom`` is how long the
    previous token still had to live."""

    def __init__(self, window: float, lease: float) -> None:
        self.window = window
        self.lease = lease
        self.lock = threading.Lock()
        self.last: dict[str, float] = {}
        self.fetches = 0
        self.cold = 0
        self.doubles = 0
        self.late = 0
        self.min_headroom = float("inf")
        self.intervals = 0.0
        self.interval_count = 0
        self.double_examples: list[tuple[str, float, float]] = []
        #: The flush: when, and the authorizers fetched since.
        self.recovering_since: float | None = None
        self.recovered: set[str] = set()
        self.recovery = 0
        self.recovery_span = 0.0
        #: The dead worker's orphans: when, and each one's refresh after it.
        self.watched: dict[str, tuple[float, float] | None] = {}
        self.watched_since = 0.0
        self.lost_with_the_worker = 0

    def watch(self, appids: list[str], since: float) -> None:
        with self.lock:
            self.watched = dict.fromkeys(appids)
            self.watched_since = since

    def issued(self, appid: str, now: float) -> None:
        with self.lock:
            self.fetches += 1
            previous = self.last.get(appid)
            self.last[appid] = now
            if self.recovering_since is not None and appid not in self.recovered:
                self.recovered.add(appid)
                self.recovery += 1
                self.recovery_span = max(self.recovery_span, now - self.recovering_since)
                return
            if previous is None:
                self.cold += 1
                return
            since = now - previous
            if since < self.window and appid in self.watched and previous >= self.watched_since:
                # The dead worker fetched it at the kill and died before storing it: that
                # token was lost with the process, and the others fetched another.
                self.lost_with_the_worker += 1
                self.watched[appid] = (now - self.watched_since, float("inf"))
                return
            if since < self.window:
                self.doubles += 1
                if len(self.double_examples) < 5:
                    self.double_examples.append((appid, previous - START, now - START))
                return
            headroom = previous + LIFETIME - now
            if appid in self.watched and self.watched[appid] is None:
                self.watched[appid] = (now - self.watched_since, headroom)
            self.min_headroom = min(self.min_headroom, headroom)
            if headroom < 0:
                self.late += 1
            self.intervals += since
            self.interval_count += 1

    def watch_report(self) -> dict[str, Any]:
        """What became of the dead worker's claimed authorizers: renewed by another
        worker (how long after the kill, and how long their tokens still had), renewed
        by the dead one before it died (the others found them fresh: no fetch), or not
        renewed at all (must be 0)."""
        by_others = [v for v in self.watched.values() if v is not None]
        before = [
            appid
            for appid, v in self.watched.items()
            if v is None and self.last.get(appid, 0.0) >= self.watched_since
        ]
        return {
            "renewed_by_the_others": len(by_others),
            "renewed_after_s": round(max((d for d, _ in by_others), default=0.0), 1),
            "min_headroom_s": round(
                min((h for _, h in by_others if h != float("inf")), default=0.0), 1
            ),
            "renewed_before_it_died": len(before),
            "fetch_lost_with_it": self.lost_with_the_worker,
            "not_renewed": len(self.watched) - len(by_others) - len(before),
        }


def tracked(fake: Any, log: FetchLog) -> None:
    """Wrap the emulator's ``handle`` so that each issued authorizer token is logged."""
    handle = fake.handle

    def logging_handle(request: Any) -> Any:
        reply = handle(request)
        if request.path.endswith("/api_authorizer_token") and b"authorizer_access_token" in (
            reply.body
        ):
            log.issued(json.loads(request.body)["authorizer_appid"], fake.clock())
        return reply

    fake.handle = logging_handle


def percentiles(values: list[float]) -> dict[str, float]:
    """Median, 99th percentile and largest of ``values`` (seconds)."""
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "p50": round(ordered[len(ordered) // 2], 3),
        "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
        "max": round(ordered[-1], 3),
    }


# -- Redis memory --------------------------------------------------------------------------


def used_memory(client: Any) -> int:
    return int(client.info("memory")["used_memory"])


def keys_of(client: Any, appid: str) -> dict[str, int]:
    """``MEMORY USAGE`` of every key naming ``appid``, by key pattern."""
    sizes: dict[str, int] = {}
    for key in client.scan_iter(match=f"*{appid}*", count=10_000):
        text = key.decode()
        sizes[text.replace(appid, "<appid>")] = int(client.memory_usage(key) or 0)
    return sizes


def shared_keys(client: Any, n: int) -> dict[str, float]:
    """Bytes per authorizer of the keys all authorizers share: the registry's hash and
    the fleet's sorted set."""
    names = [*client.scan_iter(match="wxauth:records:openplatform:*", count=10_000)]
    names.append(f"wxauth:openplatform:{COMPONENT}:fleet:due".encode())
    return {
        key.decode(): round(int(client.memory_usage(key, samples=0) or 0) / n, 1)
        for key in names
        if client.exists(key)
    }


# -- the driver -----------------------------------------------------------------------------


def simulate(args: argparse.Namespace, url: str) -> dict[str, Any]:
    import redis

    from wxauth import Secret
    from wxauth.openplatform import AuthorizerFleet
    from wxauth.testing import FakeWeChat

    ctx = multiprocessing.get_context("spawn")
    client = redis.Redis.from_url(url)
    client.flushall()
    baseline = used_memory(client)
    # No Call records, and tokens forgotten an hour after they expired: a simulated day
    # issues 1.3 million of them.
    fake = FakeWeChat(start=START, seed=1, call_history=0, forget_tokens_after=3600.0)
    fake.add_component(COMPONENT, SECRET, token=PUSH_TOKEN, encoding_aes_key=AES_KEY)
    n = args.authorizers
    names = [appid_of(i) for i in range(n)]
    began = time.monotonic()
    refresh = fake.add_authorizers(COMPONENT, names)
    log = FetchLog(window=LIFETIME - args.margin - args.jitter - 1.0, lease=args.lease)
    tracked(fake, log)
    clock = ctx.Value("d", fake.clock(), lock=False)
    done_through = ctx.Array("d", [-1.0] * args.workers, lock=False)
    busy = ctx.Array("b", [0] * args.workers, lock=False)
    stats = ctx.Array("d", [0.0] * (6 * args.workers), lock=False)
    stop = ctx.Event()
    options = {
        "margin": args.margin,
        "jitter": args.jitter,
        "lease": args.lease,
        "batch": args.batch,
        "sync_interval": args.sync_interval,
        "seed_spread": args.seed_spread,
    }
    # Authorizers joined over time on a real platform: spread the first fetches over
    # one refresh cycle (the warm-up), so that due times are spread as they would be.
    cycle = LIFETIME - args.margin - args.jitter / 2
    warmup = cycle if args.warmup else 0.0
    report: dict[str, Any] = {
        "authorizers": n,
        "workers": args.workers,
        "sim_hours": args.hours,
        "step_s": args.step,
        "margin_s": args.margin,
        "jitter_s": args.jitter,
        "seed_spread_s": args.seed_spread,
        "lease_s": args.lease,
        "warmup_s": round(warmup),
    }
    drains: list[float] = []
    steady_drains: list[float] = []
    phases: dict[str, Counter[str]] = {}
    with fake.serve() as api_base:
        home = platform_on(url, api_base, clock)  # the platform's web side: pushes
        query, body = fake.verify_ticket_push(COMPONENT)
        home.handle_push(query, body)
        before_registry = used_memory(client)
        for appid, token in refresh.items():
            home.refresh_tokens.put(appid, Secret(token))
        after_registry = used_memory(client)
        AuthorizerFleet(home).schedule(
            {appid: START + warmup * i / n for i, appid in enumerate(names)}
        )
        report["setup_s"] = round(time.monotonic() - began, 1)
        procs: dict[int, Any] = {}

        def spawn(i: int) -> None:
            procs[i] = ctx.Process(
                target=worker,
                args=(i, url, api_base, clock, done_through, busy, stats, stop, options),
                daemon=True,
            )
            procs[i].start()

        for i in range(args.workers):
            spawn(i)
        parent_conn, child_conn = ctx.Pipe()
        caller_proc = ctx.Process(
            target=caller, args=(child_conn, url, api_base, clock), daemon=True
        )
        caller_proc.start()
        if parent_conn.recv() != "ready":
            raise RuntimeError("the caller process did not start")
        alive = set(range(args.workers))
        rng = random.Random(7)
        hour = 3600.0
        end = START + args.hours * hour
        kill_at = None if args.kill_at is None else START + args.kill_at * hour
        flush_at = None if args.flush_at is None else START + args.flush_at * hour
        next_ticket = fake.clock() + TICKET_INTERVAL
        next_print = START + hour
        watched: list[str] = []
        watch_until = kill_watch_until = -1.0  # simulated time
        flushed = False
        real_speed_until = 0.0
        kill_misses = 0
        last_tick = time.monotonic()

        def drain() -> float:
            """Wait until every live worker has looked at the current time."""
            t0 = time.monotonic()
            now = float(clock.value)
            while any(done_through[i] < now for i in alive):
                time.sleep(0.0005)
                if time.monotonic() - t0 > args.drain_timeout:
                    raise RuntimeError(f"workers did not drain within {args.drain_timeout}s")
            return time.monotonic() - t0

        try:
            drains.append(drain())
            while fake.clock() < end:
                flushing = flush_at is not None and not flushed and fake.clock() >= flush_at
                if flushing:
                    # Before the clock moves, so no worker looks in between.
                    report["memory"] = memory_report(
                        client, baseline, (before_registry, after_registry), n
                    )
                    log.recovering_since = fake.clock()
                    client.flushall()
                    flushed = True
                    watched = rng.sample(names, min(200, n))
                    watch_until = fake.clock() + hour
                if time.monotonic() < real_speed_until:
                    time.sleep(max(0.0, 1.0 - (time.monotonic() - last_tick)))
                    advance = time.monotonic() - last_tick
                else:
                    advance = args.step
                last_tick = time.monotonic()
                fake.advance(advance)
                clock.value = fake.clock()
                if fake.clock() >= next_ticket:
                    query, body = fake.verify_ticket_push(COMPONENT)
                    home.handle_push(query, body)
                    next_ticket += TICKET_INTERVAL
                if kill_at is not None and fake.clock() >= kill_at and "kill" not in report:
                    killed = kill_one(args, client, clock, busy, done_through, procs, alive)
                    if killed["orphaned"]:
                        report["kill"] = killed
                        watched = killed.pop("orphans")
                        watch_until = kill_watch_until = fake.clock() + hour
                        log.watch(watched, fake.clock())
                        real_speed_until = time.monotonic() + REAL_SPEED_AFTER_KILL
                    else:  # it held no claim at that moment: a new worker 0, and again
                        drain()
                        kill_misses += 1
                        spawn(0)
                        alive.add(0)
                drained = drain()
                drains.append(drained)
                if flushing:
                    report["flush"] = {
                        "at_h": round((log.recovering_since - START) / hour, 2),
                        "drained_in_real_s": round(drained, 1),
                    }
                elapsed = fake.clock() - START
                joined = n if elapsed >= warmup else int(n * elapsed / warmup)
                sample = rng.sample(names[:joined], min(args.calls, joined)) if joined else []
                if fake.clock() <= watch_until:
                    sample += watched
                parent_conn.send(sample)
                phase = "steady"
                if flushed:
                    phase = "after the flush"
                elif fake.clock() <= kill_watch_until:
                    phase = "hour after the kill"
                elif elapsed < warmup:
                    phase = "warm-up"
                phases.setdefault(phase, Counter()).update(parent_conn.recv())
                if phase == "steady":
                    steady_drains.append(drained)
                if fake.clock() >= next_print:
                    next_print += hour
                    print(
                        f"  hour {elapsed / hour:5.1f}: {log.fetches} fetches, "
                        f"{time.monotonic() - began:7.0f} s real",
                        file=sys.stderr,
                        flush=True,
                    )
            if "memory" not in report:
                report["memory"] = memory_report(
                    client, baseline, (before_registry, after_registry), n
                )
        finally:
            stop.set()
            with contextlib.suppress(OSError):
                parent_conn.send("exit")
            for proc in [*procs.values(), caller_proc]:
                proc.join(10)
                if proc.is_alive():
                    proc.kill()
            home.close()
    fake.close()
    per_worker = [list(stats[i * 6 : i * 6 + 6]) for i in range(args.workers)]
    days = args.hours / 24
    steady = log.intervals / log.interval_count if log.interval_count else float("nan")
    api = fake.errcodes(kind="api")
    if "kill" in report:
        report["kill"].update(log.watch_report())
        report["kill"]["attempts"] = kill_misses + 1
    if "flush" in report:
        report["flush"].update(
            {
                "refetched": log.recovery,
                "authorizers_lost": n - len(log.recovered),
                "last_refetch_after_s": round(log.recovery_span, 1),
            }
        )
    report.update(
        {
            "api_calls": sum(api.values()),
            "api_errcodes": {str(k): v for k, v in sorted(api.items(), key=str)},
            "expired_token_calls": api.get(42001, 0),
            "retired_token_calls": api.get(40001, 0),
            "caller_outcomes": {k: dict(sorted(v.items())) for k, v in phases.items()},
            "authorizer_fetches": log.fetches,
            "first_fetches": log.cold,
            "double_fetches": log.doubles,
            "double_examples": log.double_examples,
            "late_fetches": log.late,
            "min_headroom_s": round(log.min_headroom, 1),
            "fetches_per_authorizer_day_all": round(log.fetches / n / days, 2),
            "steady_interval_s": round(steady, 1),
            "steady_fetches_per_day": round(DAY / steady, 2),
            "floor_per_day": round(DAY / (LIFETIME - args.margin - args.jitter / 2), 2),
            "max_lag_s": round(max(w[4] for w in per_worker), 1),
            "max_drain_s": round(max(drains, default=0.0), 2),
            "steady_drain_s": percentiles(steady_drains),
            "fleet_fetched_per_worker": [int(w[0]) for w in per_worker],
            "fleet_fresh": int(sum(w[1] for w in per_worker)),
            "fleet_busy": int(sum(w[2] for w in per_worker)),
            "fleet_failures": int(sum(w[3] for w in per_worker)),
            "runtime_s": round(time.monotonic() - began, 1),
        }
    )
    client.close()
    return report


def kill_one(
    args: argparse.Namespace,
    client: Any,
    clock: Any,
    busy: Any,
    done_through: Any,
    procs: dict[int, Any],
    alive: set[int],
) -> dict[str, Any]:
    """SIGKILL worker 0 while it is inside a look (so most likely holding claims);
    return how many authorizers it left claimed, and which."""
    victim = 0
    deadline = time.monotonic() + 5
    while not busy[victim] and time.monotonic() < deadline:
        time.sleep(0.0001)
    time.sleep(0.003)  # past the claim, into the refreshes
    os.kill(procs[victim].pid, signal.SIGKILL)
    procs[victim].join(5)
    alive.discard(victim)
    busy[victim] = 0
    now = float(clock.value)
    # The others finish their own claims; what is left at the claim score is the dead one's.
    while any(done_through[i] < now for i in alive):
        time.sleep(0.001)
    due_key = f"wxauth:openplatform:{COMPONENT}:fleet:due"
    claim_end = now + args.lease
    orphans = [m.decode() for m in client.zrangebyscore(due_key, claim_end, claim_end)]
    return {
        "killed_at_h": round((now - START) / 3600, 2),
        "orphaned": len(orphans),
        "orphans": orphans,
    }


def memory_report(client: Any, baseline: int, registry: tuple[int, int], n: int) -> dict[str, Any]:
    """Redis memory now, per authorizer: in all, in the registry (the refresh tokens'
    hash) alone, and by key for one authorizer and for the shared keys."""
    now = used_memory(client)
    return {
        "used_memory_mb": round(now / 1e6, 1),
        "bytes_per_authorizer": round((now - baseline) / n),
        "registry_bytes_per_authorizer": round((registry[1] - registry[0]) / n),
        "keys_of_one_authorizer": keys_of(client, appid_of(n // 2)),
        "shared_keys_bytes_per_authorizer": shared_keys(client, n),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--authorizers", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--step", type=float, default=30.0, help="simulated seconds per step")
    parser.add_argument("--calls", type=int, default=20, help="caller API calls per step")
    parser.add_argument("--kill-at", type=float, help="simulated hour (default: hours/3)")
    parser.add_argument("--flush-at", type=float, help="simulated hour (default: 2*hours/3)")
    parser.add_argument("--no-kill", action="store_true", help="kill no worker")
    parser.add_argument("--no-flush", action="store_true", help="do not flush Redis")
    parser.add_argument("--margin", type=float, default=420.0)
    parser.add_argument("--jitter", type=float, default=60.0)
    parser.add_argument(
        "--seed-spread",
        type=float,
        default=0.0,
        help="the fleets' seed_spread: a re-seeding (after the flush) falls due over "
        "this many simulated seconds instead of at once (default 0)",
    )
    parser.add_argument("--lease", type=float, default=60.0)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument(
        "--sync-interval",
        type=float,
        default=3600.0,
        help="simulated seconds between registry reconciliations",
    )
    parser.add_argument("--drain-timeout", type=float, default=1800.0)
    parser.add_argument(
        "--no-warmup",
        dest="warmup",
        action="store_false",
        help="fetch every authorizer at the start instead of over the first cycle",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON only")
    args = parser.parse_args(argv)
    if args.kill_at is None and not args.no_kill:
        args.kill_at = args.hours / 3
    if args.flush_at is None and not args.no_flush:
        args.flush_at = 2 * args.hours / 3
    if args.no_kill:
        args.kill_at = None
    if args.no_flush:
        args.flush_at = None
    with redis_server(must_start=True) as url:
        assert url is not None
        report = simulate(args, url)
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
