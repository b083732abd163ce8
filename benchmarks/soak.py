"""Soak simulation: 24 simulated hours of 8 worker processes sharing one WeChat app.

Not a test: a measurement. For each setup (a private MemoryStore per worker, one
FileStore, one RedisStore) it starts the emulator's loopback server with a frozen clock,
spawns the workers, and then drives simulated time: each step the driver advances the
emulator clock by ``--step`` seconds, publishes the new time to the workers through a
shared ``multiprocessing.Value`` (their ``TokenManager(clock=...)``), and lets every
worker make ``--calls`` API calls through :class:`wxauth.WxAuth`. The emulator applies
WeChat's rules: every classic fetch retires the app's older tokens after 300 s, and the
daily quota is 2000 fetches. The simulation starts at a quota-day boundary (midnight,
Beijing time), so "per day" means one quota day.

Reported per setup: token fetches (requests to /cgi-bin/token), tokens issued, quota
refusals (45009), API calls and failed calls (a call whose final answer was not
errcode 0, or that raised). The floor for 24 hours is 86400 / (7200 - 300) ~ 12.5
fetches; N private caches settle near 288 x (N - 1) (see docs/stores.md).

Usage::

    python benchmarks/soak.py                       # all three setups, 24 h, 60 s steps
    python benchmarks/soak.py --setups file --hours 2
    REDIS_URL=redis://127.0.0.1:6379/0 python benchmarks/soak.py --setups redis

The Redis setup starts its own ``redis-server`` on a free loopback port unless
``REDIS_URL`` (or ``--redis-url``) names one; it is skipped when neither is available.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import logging
import multiprocessing
import os
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from typing import Any

from _redis_server import redis_server

APPID, SECRET = "wxsoak000000001", "soak-secret-value-0123"
API_PATH = "/cgi-bin/get_api_domain_ip"
DAY = 86400.0
BEIJING = 8 * 3600.0
#: Simulated start: a quota-day boundary (00:00 Beijing time).
START = (1_800_000_000.0 + BEIJING) // DAY * DAY + DAY - BEIJING


# -- the worker process --------------------------------------------------------------------


def worker(conn: Connection, setup: str, where: str, api_base: str, clock: Any) -> None:
    """One worker: a TokenManager on the shared clock, calling the API when told."""
    import requests

    import wxauth

    # Each 40001 is logged as a warning; thousands of them would bury the report.
    logging.getLogger("wxauth").addHandler(logging.NullHandler())

    store: wxauth.TokenStore
    if setup == "memory":
        store = wxauth.MemoryStore()
    elif setup == "file":
        store = wxauth.FileStore(where)
    else:
        store = wxauth.RedisStore.from_url(where, prefix="wxauth-soak:")
    manager = wxauth.TokenManager(
        APPID, SECRET, api_base=api_base, store=store, clock=lambda: float(clock.value)
    )
    session = requests.Session()
    session.auth = wxauth.WxAuth(manager=manager)
    conn.send("ready")
    while True:
        command = conn.recv()
        if command == "exit":
            break
        failures: collections.Counter[str] = collections.Counter()
        for _ in range(int(command)):
            try:
                response = session.get(api_base + API_PATH, timeout=30)
                errcode = int(response.json().get("errcode", 0))
                if errcode != 0:
                    failures[f"errcode {errcode}"] += 1
            except Exception as exc:
                failures[type(exc).__name__] += 1
        conn.send(dict(failures))
    session.close()
    manager.close()
    store.close()


# -- redis-server ------------------------------------------------------------------------


# -- the driver ----------------------------------------------------------------------------


def simulate(setup: str, where: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one setup through ``args.hours`` simulated hours; return its figures."""
    from wxauth.testing import FakeWeChat

    ctx = multiprocessing.get_context("spawn")
    fake = FakeWeChat(start=START, seed=1)
    fake.add_app(APPID, SECRET)
    clock = ctx.Value("d", fake.clock(), lock=False)
    failures: collections.Counter[str] = collections.Counter()
    calls = 0
    began = time.monotonic()
    with fake.serve() as url:
        conns: list[Connection] = []
        procs = []
        for _ in range(args.workers):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker, args=(child, setup, where, url, clock), daemon=True)
            proc.start()
            child.close()
            conns.append(parent)
            procs.append(proc)
        try:
            for conn in conns:
                if conn.recv() != "ready":
                    raise RuntimeError("a worker failed to start")
            steps = int(args.hours * 3600 / args.step)
            for step in range(steps):
                if step:
                    fake.advance(args.step)
                clock.value = fake.clock()
                for conn in conns:
                    conn.send(args.calls)
                for conn in conns:
                    failures.update(conn.recv())
                calls += args.workers * args.calls
        finally:
            for conn in conns:
                with contextlib.suppress(OSError):
                    conn.send("exit")
            for proc in procs:
                proc.join(30)
                if proc.is_alive():
                    proc.kill()
    fake.close()
    days = args.hours / 24
    token_requests = fake.count(kind="token")
    return {
        "setup": setup,
        "workers": args.workers,
        "sim_hours": args.hours,
        "step_s": args.step,
        "token_fetches": token_requests,
        "fetches_per_day": round(token_requests / days, 1),
        "tokens_issued": len(fake.issued_tokens),
        "quota_refusals": fake.count(kind="token", errcode=45009),
        "api_calls": calls,
        "failed_calls": sum(failures.values()),
        "failures": dict(failures),
        "runtime_s": round(time.monotonic() - began, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setups", default="memory,file,redis")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--step", type=float, default=60.0, help="simulated seconds per step")
    parser.add_argument("--calls", type=int, default=2, help="API calls per worker per step")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    args = parser.parse_args(argv)

    results = []
    with contextlib.ExitStack() as stack:
        for setup in args.setups.split(","):
            where = ""
            if setup == "file":
                where = stack.enter_context(tempfile.TemporaryDirectory(prefix="wxauth-soak-"))
            elif setup == "redis":
                where = args.redis_url or stack.enter_context(redis_server(must_start=True)) or ""
                if not where:
                    print("redis: skipped (no redis-server binary and no REDIS_URL)")
                    continue
                import redis

                redis.Redis.from_url(where).flushdb()
            elif setup != "memory":
                parser.error(f"unknown setup {setup!r}")
            result = simulate(setup, where, args)
            results.append(result)
            print(json.dumps(result), flush=True)

    floor = 86400 / (7200 - 300)
    print()
    print(
        f"{args.workers} workers, {args.hours:g} simulated hours, {args.step:g} s steps, "
        f"{args.calls} calls per worker per step (floor: {floor:.1f} fetches/day)"
    )
    header = f"{'setup':<8} {'fetches/day':>11} {'issued':>7} {'45009':>6} {'calls':>7} "
    print(header + f"{'failed':>7} {'runtime':>8}")
    for r in results:
        print(
            f"{r['setup']:<8} {r['fetches_per_day']:>11} {r['tokens_issued']:>7} "
            f"{r['quota_refusals']:>6} {r['api_calls']:>7} {r['failed_calls']:>7} "
            f"{r['runtime_s']:>7}s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
