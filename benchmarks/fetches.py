"""What wxauth saves: token fetches and failed calls, counted by the WeChat emulator.

Run: ``python benchmarks/fetches.py`` (under half a minute; ``--quick`` skips the
multi-process section, ``--no-outage`` the 11 s outage case, ``--no-wechatpy`` the
comparison).

Everything talks HTTP to ``FakeWeChat`` on a loopback port (``fake.serve()``): nothing
leaves 127.0.0.1. Where real time runs, the token endpoint answers after 50 ms, about
what a real one takes, so that callers arriving together really do overlap. Cases:

- ``cold``: 32 threads share one ``WxAuth`` and each call an API at once, no token yet.
- ``retire``: then the emulator retires the token (as if another server had fetched
  one) and the 32 threads call again: every first attempt is answered 40001.
- ``persistent-40001``, ``persistent-40001-x20``: every API call is answered 40001 (a
  broken account), from a fresh start: how many attempts and fetches 5 calls cost, and
  20 calls in quick succession.
- ``persistent-40001-day``: the same for a simulated day, one call every 30 s of the
  emulator clock (2880 calls): how many fetches the rejection streak and the day
  budget let through.
- ``two-wxauth-day``: two ``WxAuth(appid, secret)`` in one process, built without
  ``store=``, alternating calls every 30 s for a simulated day; ``wxauth-per-request``:
  a new ``WxAuth`` for each of 1000 requests, 30 s apart. Each also with a private
  ``MemoryStore`` per ``WxAuth`` (``*-private-stores``), which is what the default was
  before managers shared one process-wide store: for contrast.
- ``outage-503``, ``outage-recovery``: the token endpoint answers HTTP 503 for 10 s of
  real time while 8 threads call ``get_token()`` in a loop, cold; token requests per
  second, errors by type, then the time from the fault clearing to the first token.
- ``procs-*``: 4 processes x 8 threads with one ``FileStore``, one ``RedisStore`` (when
  ``redis-server`` is on PATH; the script starts its own on a free loopback port) and,
  for contrast, a private ``MemoryStore`` each. Rounds: cold; after a retire; then
  three times "5 minutes later" (the emulator clock moves 301 s, so a token that a
  later fetch replaced stops working, as on WeChat; the workers' clocks move with it).
- ``ticket-*``: ``TicketManager(tokens, "jsapi").get_ticket()``: 32 threads cold;
  4 processes x 8 threads on one ``FileStore`` and one ``RedisStore``; and an access
  token retired under a ticket fetch (``retire_all()``, the emulator clock 301 s on,
  then ``refresh()``): ticket requests and token fetches the emulator saw.
- ``wechatpy-*`` (if ``wechatpy`` is importable): the same cold / retire / persistent
  cases with ``wechatpy.WeChatClient`` pointed at the same emulator, for comparison.

The simulated days run on a frozen emulator clock that starts at a quota-day boundary
(midnight, Beijing time); every ``TokenManager`` there uses ``clock=fake.clock``.

Prints a table, then one JSON line per case.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import math
import multiprocessing
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from _redis_server import redis_server

from wxauth import (
    FileStore,
    MemoryStore,
    RedisStore,
    RefreshBudgetError,
    TicketManager,
    TokenManager,
    TokenStore,
    WxAuth,
    WxAuthError,
)
from wxauth.testing import FakeWeChat

APPID = "wx0123456789abcdef"
SECRET = "0123456789abcdef0123456789abcdef"
API_PATH = "/cgi-bin/user/info"
THREADS = 32
PROCESSES = 4
PROC_THREADS = 8
TOKEN_LATENCY = 0.05
#: Seconds the emulator clock moves between the "5 minutes later" rounds: just past
#: the 300 s a replaced classic token keeps working.
FIVE_MINUTES = 301.0
#: The outage case: threads calling get_token(), seconds of HTTP 503, and the pause of
#: each thread between two calls.
OUTAGE_THREADS = 8
OUTAGE_SECONDS = 10.0
OUTAGE_CALL_GAP = 0.005
#: The simulated-day cases: one call every DAY_STEP emulator seconds for 24 hours, and
#: the calls of the WxAuth-per-request case.
DAY_STEP = 30.0
DAY_CALLS = int(86400 / DAY_STEP)
PER_REQUEST_CALLS = 1000
#: A quota-day boundary (00:00 Beijing time) for the simulated days to start at.
DAY_START = (1_800_000_000.0 + 8 * 3600) // 86400 * 86400 + 86400 - 8 * 3600


@dataclass
class Row:
    case: str
    calls: int
    token_fetches: int
    api_attempts: int
    failed_calls: int
    expect: str
    met: bool | None
    note: str = ""
    #: More figures of the case, for its JSON line only.
    extra: dict[str, Any] = field(default_factory=dict)

    def json_line(self) -> str:
        return json.dumps(
            {
                "case": self.case,
                "calls": self.calls,
                "token_fetches": self.token_fetches,
                "api_attempts": self.api_attempts,
                "failed_calls": self.failed_calls,
                "goal": self.expect,
                "met": self.met,
                **self.extra,
            }
        )


def quiet() -> None:
    """Every healed 40001 logs a warning; the table says it better."""
    logging.getLogger("wxauth").setLevel(logging.ERROR)


def new_fake() -> FakeWeChat:
    """An emulator on real time (so other processes agree with it) with one app."""
    fake = FakeWeChat(clock=time.time, token_latency=TOKEN_LATENCY, seed=6)
    fake.add_app(APPID, SECRET)
    fake.add_api(API_PATH, json={"subscribe": 1, "openid": "o6_bmjrPTlm6_2sgVt7hMZOPfL2M"})
    return fake


class Counts:
    """Token fetches and API attempts the emulator saw since the last :meth:`take`."""

    def __init__(self, fake: FakeWeChat) -> None:
        self.fake = fake
        self.fetches = fake.token_fetches
        self.api = fake.api_calls

    def take(self) -> tuple[int, int]:
        fetches, api = self.fake.token_fetches, self.fake.api_calls
        delta = (fetches - self.fetches, api - self.api)
        self.fetches, self.api = fetches, api
        return delta


def call_ok(session: requests.Session, url: str, auth: Any) -> bool:
    """One logical API call; whether it ended with errcode 0."""
    try:
        response = session.get(url, params={"openid": "o6_bmjrPTlm6_2sgVt7hMZOPfL2M"}, auth=auth)
        return response.ok and response.json().get("errcode", 0) == 0
    except (requests.RequestException, ValueError, RefreshBudgetError):
        return False


def in_threads(count: int, work: Callable[[int], bool]) -> int:
    """Run ``work(i)`` in ``count`` threads released together; return how many failed."""
    barrier = threading.Barrier(count)
    results: list[bool] = [False] * count

    def run(i: int) -> None:
        barrier.wait()
        results[i] = work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results.count(False)


# -- in one process --------------------------------------------------------------------


def wxauth_cases(base: str, fake: FakeWeChat) -> list[Row]:
    counts = Counts(fake)
    auth = WxAuth(APPID, SECRET, api_base=base)
    url = base + API_PATH
    sessions = [requests.Session() for _ in range(THREADS)]
    rows = []

    failed = in_threads(THREADS, lambda i: call_ok(sessions[i], url, auth))
    fetches, attempts = counts.take()
    rows.append(
        Row(
            "cold",
            THREADS,
            fetches,
            attempts,
            failed,
            "1 fetch, 0 failed",
            fetches == 1 and not failed,
        )
    )

    fake.retire_all()
    failed = in_threads(THREADS, lambda i: call_ok(sessions[i], url, auth))
    fetches, attempts = counts.take()
    rows.append(
        Row(
            "retire",
            THREADS,
            fetches,
            attempts,
            failed,
            "1 fetch, 0 failed",
            fetches == 1 and not failed,
            f"{fake.count(kind='api', errcode=40001)} first attempts answered 40001, "
            "each sent once more",
        )
    )

    auth.manager.close()
    for session in sessions:
        session.close()
    return rows


def same_token_resent(response: requests.Response) -> bool:
    """Whether a re-sent request carried the very token its first attempt was refused."""
    if not response.history:
        return False

    def token(r: requests.Response) -> list[str]:
        url = r.request.url if r.request is not None else ""
        return parse_qs(urlsplit(url or "").query).get("access_token", [])

    return token(response.history[0]) == token(response)


def persistent_cases() -> list[Row]:
    """Every API call answers 40001 (a broken account), from a fresh start: a new
    emulator empties the default store, so no earlier rejection is remembered."""
    rows = []
    # Each logical call is sent once more, and the second 40001 is returned as it is.
    # The first rejection refetches at once; the replacement being rejected too starts
    # the rejection streak, which holds further refetches (30 s, doubling).
    logical = 5
    with new_fake() as fake, fake.serve() as base:
        auth = WxAuth(APPID, SECRET, api_base=base)
        session = requests.Session()
        fake.fail_next(10**6, on="api", errcode=40001)
        returned = []
        same = 0
        for _ in range(logical):
            response = session.get(base + API_PATH, auth=auth)
            returned.append((response.json().get("errcode"), len(response.history)))
            same += same_token_resent(response)
        rows.append(
            Row(
                "persistent-40001",
                logical,
                fake.token_fetches,
                fake.api_calls,
                sum(code != 0 for code, _ in returned),
                "<= 2 attempts per call",
                # The first call heals once (2 attempts); once the refetch is held, the
                # 40001 answer is returned as it is (1 attempt, no re-send).
                fake.api_calls <= 2 * logical
                and fake.token_fetches <= 2
                and same == 0
                and all(code == 40001 for code, _ in returned),
                f"{fake.api_calls / logical:.1f} attempts per call, {fake.token_fetches} "
                f"fetches in all; the first call re-sends once (history holds the first "
                f"40001), the others get WeChat's answer while the refetch is held; {same} "
                "re-sent with the token just refused",
                {"resent_same_token": same},
            )
        )
        auth.manager.close()
        session.close()

    # ... and within a minute the refetches stay few: the rejection streak holds them,
    # and the refresh budget (10 fetches a minute by default) is the backstop.
    logical = 20
    with new_fake() as fake, fake.serve() as base:
        auth = WxAuth(APPID, SECRET, api_base=base)
        session = requests.Session()
        fake.fail_next(10**6, on="api", errcode=40001)
        budget = auth.manager.max_fetches_per_minute or 0
        budget_errors = 0
        began = time.monotonic()
        for _ in range(logical):
            try:
                session.get(base + API_PATH, auth=auth)
            except RefreshBudgetError:
                budget_errors += 1
        took = time.monotonic() - began
        fetches = fake.token_fetches
        rows.append(
            Row(
                "persistent-40001-x20",
                logical,
                fetches,
                fake.api_calls,
                logical,
                f"<= {budget} fetches/min",
                fetches <= budget,
                f"{logical} calls in {took:.1f} s; {budget_errors} refused by the refresh "
                "budget (RefreshBudgetError)",
                {"refresh_budget_errors": budget_errors},
            )
        )
        auth.manager.close()
        session.close()
    return rows


# -- an outage of the token endpoint (real time) ---------------------------------------


def outage_case(outage: float = OUTAGE_SECONDS) -> list[Row]:
    """The token endpoint answers HTTP 503 for ``outage`` seconds of real time while
    ``OUTAGE_THREADS`` threads call ``get_token()`` in a loop (each pausing
    ``OUTAGE_CALL_GAP`` between calls), cold: there is no token to fall back on. Then
    the fault is cleared: how long until a caller gets a token?"""
    fake = new_fake()
    rows = []
    with fake, fake.serve() as base:
        manager = TokenManager(APPID, SECRET, api_base=base, clock=time.time)
        fake.fail_next(10**6, on="token", status=503)
        errors: collections.Counter[str] = collections.Counter()
        calls = [0] * OUTAGE_THREADS
        recovered_at: list[float] = []
        healed = threading.Event()
        stop = threading.Event()
        lock = threading.Lock()

        def work(i: int) -> None:
            while not stop.is_set():
                calls[i] += 1
                try:
                    manager.get_token()
                except WxAuthError as exc:
                    with lock:
                        errors[type(exc).__name__] += 1
                else:
                    with lock:
                        recovered_at.append(time.monotonic())
                    healed.set()
                time.sleep(OUTAGE_CALL_GAP)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(OUTAGE_THREADS)]
        began_wall = time.time()
        for thread in threads:
            thread.start()
        time.sleep(outage)
        fake.clear_faults()
        cleared_wall, cleared = time.time(), time.monotonic()
        outage_calls = sum(calls)
        outage_errors = dict(errors)
        healed.wait(30)
        stop.set()
        for thread in threads:
            thread.join()
        manager.close()

    token_calls = [c for c in fake.calls if c.is_token_fetch]
    during = [c for c in token_calls if c.time < cleared_wall]
    per_second = [0] * round(outage)
    for call in during:
        second = min(int(call.time - began_wall), len(per_second) - 1)
        per_second[second] += 1
    # The first fetch of the outage still makes its ordinary retries (2, after 0.5 s
    # and 1 s); from then on the failure backoff paces the tries.
    steady = per_second[2:]
    steady_rate = sum(steady) / len(steady)
    recovery = (recovered_at[0] - cleared) if recovered_at and healed.is_set() else None
    failed = sum(outage_errors.values())
    only_fetch_errors = set(outage_errors) == {"TokenFetchError"}
    note = (
        f"{OUTAGE_THREADS} threads, HTTP 503 for {outage:g} s: {len(during)} token requests "
        f"({steady_rate:.2f}/s after the first 2 s; per second: "
        f"{' '.join(map(str, per_second))}); errors: "
        + ", ".join(f"{name} {n}" for name, n in sorted(outage_errors.items()))
    )
    rows.append(
        Row(
            "outage-503",
            outage_calls,
            len(during),
            0,
            failed,
            "~1 token request/s",
            only_fetch_errors and max(steady, default=0) <= 2,
            note,
            {
                "outage_s": outage,
                "token_requests_per_second": per_second,
                "steady_rate": round(steady_rate, 2),
                "errors": outage_errors,
            },
        )
    )
    rows.append(
        Row(
            "outage-recovery",
            1,
            len(token_calls) - len(during),
            0,
            0 if recovery is not None else 1,
            "token < 2 s after",
            recovery is not None and recovery < 2.0,
            "first successful get_token() "
            + ("never came" if recovery is None else f"{recovery:.2f} s after the fault cleared"),
            {"recovery_s": None if recovery is None else round(recovery, 3)},
        )
    )
    return rows


# -- one simulated day (the emulator's clock) --------------------------------------------


def day_fake() -> FakeWeChat:
    """An emulator on a frozen clock that starts at a quota-day boundary (midnight,
    Beijing time), answering tokens at once: the scenarios below move its clock."""
    fake = FakeWeChat(start=DAY_START, seed=9)
    fake.add_app(APPID, SECRET)
    fake.add_api(API_PATH, json={"subscribe": 1, "openid": "o6_bmjrPTlm6_2sgVt7hMZOPfL2M"})
    return fake


@dataclass
class Tally:
    """What the callers of a simulated day saw."""

    calls: int = 0
    failed: int = 0
    retried: int = 0
    #: Calls re-sent with the token their first attempt was refused (refetch held).
    same_token: int = 0
    raised: collections.Counter[str] = field(default_factory=collections.Counter)

    def call(self, session: requests.Session, url: str, auth: WxAuth) -> None:
        self.calls += 1
        try:
            response = session.get(url, auth=auth)
        except (WxAuthError, requests.RequestException) as exc:
            self.failed += 1
            self.raised[type(exc).__name__] += 1
            return
        if response.history:
            self.retried += 1
            self.same_token += same_token_resent(response)
        if response.json().get("errcode", 0) != 0:
            self.failed += 1


def persistent_40001_day() -> list[Row]:
    """Every API call answers 40001 for a whole simulated day, one call every
    ``DAY_STEP`` seconds: the rejection streak holds the refetches (30 s doubling to
    30 min), the day budget caps what is left."""
    fake = day_fake()
    with fake, fake.serve() as base:
        auth = WxAuth(APPID, SECRET, api_base=base, clock=fake.clock)
        session = requests.Session()
        fake.fail_next(10**6, on="api", errcode=40001)
        tally = Tally()
        for i in range(DAY_CALLS):
            if i:
                fake.advance(DAY_STEP)
            tally.call(session, base + API_PATH, auth)
        auth.manager.close()
        session.close()
    fetches = fake.token_fetches
    raised = ", ".join(f"{n} {name}" for name, n in sorted(tally.raised.items()))
    return [
        Row(
            "persistent-40001-day",
            tally.calls,
            fetches,
            fake.api_calls,
            tally.failed,
            "<= 300 fetches",
            fetches <= 300,
            f"one call every {DAY_STEP:g} s for 24 h, every answer 40001; "
            f"{tally.retried} calls re-sent once, {tally.same_token} of them with the token "
            "just refused (refetch held)" + (f"; raised: {raised}" if raised else "; none raised"),
            {
                "retried_calls": tally.retried,
                "resent_same_token": tally.same_token,
                "raised": dict(tally.raised),
            },
        )
    ]


def day_auth(base: str, fake: FakeWeChat, private: bool) -> WxAuth:
    """A WxAuth on the emulator's clock; without ``store=`` unless ``private``."""
    if private:
        return WxAuth(APPID, SECRET, api_base=base, clock=fake.clock, store=MemoryStore())
    return WxAuth(APPID, SECRET, api_base=base, clock=fake.clock)


def many_auths_day() -> list[Row]:
    """WxAuth objects of one app in one process, built without ``store=``: they share
    the process-wide default store. Each case has a contrast built with a private
    ``MemoryStore`` each, which is what the default was before (informational)."""
    rows = []
    floor = math.ceil(86400 / (7200 - 300))  # a token lives 7200 s, renewed 300 s early
    for private in (False, True):
        fake = day_fake()
        with fake, fake.serve() as base:
            url = base + API_PATH
            auths = [day_auth(base, fake, private) for _ in range(2)]
            session = requests.Session()
            tally = Tally()
            for i in range(DAY_CALLS):
                if i:
                    fake.advance(DAY_STEP)
                tally.call(session, url, auths[i % 2])
            fetches = fake.token_fetches
            suffix = "-private-stores" if private else ""
            rows.append(
                Row(
                    f"two-wxauth-day{suffix}",
                    tally.calls,
                    fetches,
                    fake.api_calls,
                    tally.failed,
                    "(old default)" if private else f"{floor} fetches (floor)",
                    None if private else fetches <= floor,
                    f"two WxAuth(appid, secret), alternating, one call every {DAY_STEP:g} s "
                    f"for 24 h; {tally.retried} calls re-sent after a 40001"
                    + ("; store=MemoryStore() each, as the default was before" if private else ""),
                    {"retried_calls": tally.retried},
                )
            )
            for auth in auths:
                auth.manager.close()
            session.close()

        fake = day_fake()
        with fake, fake.serve() as base:
            session = requests.Session()
            tally = Tally()
            managers = []
            for i in range(PER_REQUEST_CALLS):
                if i:
                    fake.advance(DAY_STEP)
                auth = day_auth(base, fake, private)
                tally.call(session, base + API_PATH, auth)
                managers.append(auth.manager)
            for manager in managers:
                manager.close()
            session.close()
            fetches = fake.token_fetches
            span = (PER_REQUEST_CALLS - 1) * DAY_STEP
            want = math.ceil(span / (7200 - 300)) + (span % (7200 - 300) == 0)
            rows.append(
                Row(
                    f"wxauth-per-request{suffix}",
                    tally.calls,
                    fetches,
                    fake.api_calls,
                    tally.failed,
                    "(old default)" if private else f"{want} fetches (one token's)",
                    None if private else fetches <= want,
                    f"a new WxAuth(appid, secret) for each request, one every {DAY_STEP:g} s "
                    f"({span / 3600:.1f} h); {tally.retried} calls re-sent after a 40001"
                    + ("; store=MemoryStore() each, as the default was before" if private else ""),
                    {"retried_calls": tally.retried},
                )
            )
    return rows


# -- several processes -----------------------------------------------------------------


def make_store(kind: str, where: str) -> TokenStore:
    if kind == "file":
        return FileStore(where)
    if kind == "redis":
        return RedisStore.from_url(where)
    return MemoryStore()


def process_worker(
    index: int,
    kind: str,
    where: str,
    base: str,
    rounds: int,
    barrier: Any,
    results: Any,
    offset: Any,
) -> None:
    """One worker process: ``PROC_THREADS`` threads share one WxAuth on ``kind`` store;
    every round starts and ends on ``barrier`` so the parent can act in between. Its
    clock is the emulator's: real time plus the seconds the parent moved it on
    (``offset``), so a token's age is the same to wxauth as to the emulator."""
    quiet()

    def clock() -> float:
        return time.time() + float(offset.value)

    auth = WxAuth(APPID, SECRET, api_base=base, store=make_store(kind, where), clock=clock)
    url = base + API_PATH
    sessions = [requests.Session() for _ in range(PROC_THREADS)]
    failures = []
    for _ in range(rounds):
        barrier.wait()
        failures.append(in_threads(PROC_THREADS, lambda i: call_ok(sessions[i], url, auth)))
        barrier.wait()
    results.put((index, failures))
    auth.manager.close()


def process_cases(base: str, fake: FakeWeChat, kind: str, where: str) -> list[Row]:
    """Rounds: cold, after a retire, then three "5 minutes later". A row for each of
    the first two, one for the last three together."""
    label = {"file": "FileStore", "redis": "RedisStore", "memory": "private MemoryStore"}[kind]
    shared = kind != "memory"
    plan = ["cold", "retire", "+5min", "+5min", "+5min"]
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES + 1)
    offset = ctx.Value("d", 0.0, lock=False)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=process_worker,
            args=(i, kind, where, base, len(plan), barrier, results, offset),
            daemon=True,
        )
        for i in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    counts = Counts(fake)
    per_round = []
    for step in plan:
        if step == "retire":
            fake.retire_all()
        elif step == "+5min":
            fake.advance(FIVE_MINUTES)
            offset.value += FIVE_MINUTES
        barrier.wait(60)
        barrier.wait(60)
        per_round.append(counts.take())
    failures = [0] * len(plan)
    for _ in procs:
        _, failed = results.get(timeout=60)
        failures = [a + b for a, b in zip(failures, failed, strict=True)]
    for proc in procs:
        proc.join(10)

    calls = PROCESSES * PROC_THREADS
    where_note = f"{PROCESSES} procs x {PROC_THREADS} threads, {label}"
    rows = []
    for i, step in enumerate(plan[:2]):  # cold, retire
        want = 1 if shared else PROCESSES
        fetches, attempts = per_round[i]
        rows.append(
            Row(
                f"procs-{kind}-{step}",
                calls,
                fetches,
                attempts,
                failures[i],
                f"{want} fetch{'es' if want > 1 else ''}, 0 failed",
                fetches == want and not failures[i],
                where_note,
            )
        )
    # The "5 minutes later" rounds, as one row.
    rounds = len(plan) - 2
    fetches = sum(f for f, _ in per_round[2:])
    attempts = sum(a for _, a in per_round[2:])
    failed = sum(failures[2:])
    want = 0 if shared else (PROCESSES - 1) * rounds
    rows.append(
        Row(
            f"procs-{kind}-every-5min-x{rounds}",
            calls * rounds,
            fetches,
            attempts,
            failed,
            f"{want} fetches, 0 failed",
            fetches == want and not failed,
            f"{where_note}; {fetches / rounds:.1f} fetches per 5 min "
            f"= {fetches / rounds * 288:.0f} a day (quota 2000)",
        )
    )
    return rows


# -- tickets ---------------------------------------------------------------------------

TICKET_PATH = "/cgi-bin/ticket/getticket"


class TicketCounts:
    """Ticket requests (all, and those answered errcode != 0) and token fetches the
    emulator saw since the last :meth:`take`."""

    def __init__(self, fake: FakeWeChat) -> None:
        self.fake = fake
        self.seen = len(self.fake.calls)

    def take(self) -> tuple[int, int, int]:
        calls = list(self.fake.calls)[self.seen :]
        self.seen += len(calls)
        tickets = [c for c in calls if c.path == TICKET_PATH]
        rejected = sum(1 for c in tickets if c.errcode)
        return len(tickets), rejected, sum(1 for c in calls if c.is_token_fetch)


def ticket_ok(tickets: TicketManager) -> bool:
    try:
        return bool(tickets.get_ticket())
    except WxAuthError:
        return False


def ticket_threads_case() -> list[Row]:
    """32 threads ask one cold ``TicketManager`` for the jsapi ticket at once."""
    with new_fake() as fake, fake.serve() as base:
        counts = TicketCounts(fake)
        tokens = TokenManager(APPID, SECRET, api_base=base, store=MemoryStore())
        tickets = TicketManager(tokens, "jsapi")
        failed = in_threads(THREADS, lambda _: ticket_ok(tickets))
        ticket_calls, rejected, fetches = counts.take()
        tickets.close()
        tokens.close()
    return [
        Row(
            "ticket-cold",
            THREADS,
            fetches,
            0,
            failed,
            "1 ticket, 1 token fetch",
            ticket_calls == 1 and fetches == 1 and not failed,
            f"{THREADS} threads, one TicketManager(tokens, 'jsapi'): {ticket_calls} ticket "
            f"requests ({rejected} rejected), {fetches} token fetches",
            {"ticket_fetches": ticket_calls, "ticket_rejected": rejected},
        )
    ]


def ticket_worker(kind: str, where: str, base: str, barrier: Any, results: Any) -> None:
    """One worker process: ``PROC_THREADS`` threads ask one TicketManager on ``kind``."""
    quiet()
    tokens = TokenManager(APPID, SECRET, api_base=base, store=make_store(kind, where))
    tickets = TicketManager(tokens, "jsapi")
    barrier.wait()
    results.put(in_threads(PROC_THREADS, lambda _: ticket_ok(tickets)))
    tickets.close()
    tokens.close()


def ticket_process_case(base: str, fake: FakeWeChat, kind: str, where: str) -> Row:
    label = {"file": "FileStore", "redis": "RedisStore"}[kind]
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    counts = TicketCounts(fake)
    procs = [
        ctx.Process(target=ticket_worker, args=(kind, where, base, barrier, results), daemon=True)
        for _ in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    failed = sum(results.get(timeout=60) for _ in procs)
    for proc in procs:
        proc.join(10)
    ticket_calls, rejected, fetches = counts.take()
    return Row(
        f"ticket-procs-{kind}",
        PROCESSES * PROC_THREADS,
        fetches,
        0,
        failed,
        "1 ticket, 1 token fetch",
        ticket_calls == 1 and fetches == 1 and not failed,
        f"{PROCESSES} procs x {PROC_THREADS} threads, {label}, cold: {ticket_calls} ticket "
        f"requests ({rejected} rejected), {fetches} token fetches",
        {"ticket_fetches": ticket_calls, "ticket_rejected": rejected},
    )


def ticket_retired_token_case() -> list[Row]:
    """A ticket, then the access token under it is retired (``retire_all()``) and the
    emulator clock moves past the 300 s grace; ``refresh()`` asks for a new ticket with
    the cached, now rejected token: it should fetch one token and ask once more."""
    with new_fake() as fake, fake.serve() as base:
        tokens = TokenManager(APPID, SECRET, api_base=base, store=MemoryStore(), clock=fake.clock)
        tickets = TicketManager(tokens, "jsapi")
        tickets.get_ticket()
        counts = TicketCounts(fake)
        fake.retire_all()
        fake.advance(FIVE_MINUTES)
        failed = 0 if ticket_ok_refresh(tickets) else 1
        ticket_calls, rejected, fetches = counts.take()
        tickets.close()
        tokens.close()
    return [
        Row(
            "ticket-retired-token",
            1,
            fetches,
            0,
            failed,
            "1 fetch, 1 re-ask, 0 failed",
            fetches == 1 and ticket_calls - rejected == 1 and rejected == 1 and not failed,
            f"refresh() after retire_all() + {FIVE_MINUTES:g} s: {ticket_calls} ticket "
            f"requests ({rejected} rejected, {ticket_calls - rejected} re-asked), "
            f"{fetches} token fetches",
            {
                "ticket_fetches": ticket_calls,
                "ticket_rejected": rejected,
                "ticket_refetches": ticket_calls - rejected,
            },
        )
    ]


def ticket_ok_refresh(tickets: TicketManager) -> bool:
    try:
        return bool(tickets.refresh())
    except WxAuthError:
        return False


# -- wechatpy, for comparison ----------------------------------------------------------


def wechatpy_cases(base: str, fake: FakeWeChat) -> list[Row]:
    """The cold / retire / persistent cases with wechatpy's ``WeChatClient``.

    wechatpy fetches tokens from a hard-coded ``https://api.weixin.qq.com`` URL, so the
    client below overrides that method, and its HTTP session refuses any host but
    127.0.0.1 before a single request is made: nothing can reach WeChat.
    """
    from requests.adapters import HTTPAdapter
    from wechatpy import WeChatClient
    from wechatpy.exceptions import WeChatClientException

    class LoopbackOnly(HTTPAdapter):
        def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
            host = urlsplit(request.url or "").hostname
            if host != "127.0.0.1":
                raise requests.ConnectionError(f"refused: {host} is not the emulator")
            return super().send(request, *args, **kwargs)

    class EmulatorClient(WeChatClient):  # type: ignore[misc]
        def __init__(self, appid: str, secret: str) -> None:
            super().__init__(appid, secret)
            guard = LoopbackOnly()
            self._http.mount("http://", guard)
            self._http.mount("https://", guard)
            self.API_BASE_URL = base + "/cgi-bin/"

        def fetch_access_token(self) -> Any:
            return self._fetch_access_token(
                url=self.API_BASE_URL + "token",
                params={
                    "grant_type": "client_credential",
                    "appid": self.appid,
                    "secret": self.secret,
                },
            )

    counts = Counts(fake)
    client = EmulatorClient(APPID, SECRET)
    path = API_PATH.removeprefix("/cgi-bin/")

    def call(_: int) -> bool:
        try:
            return (
                client.get(path, params={"openid": "o6_bmjrPTlm6_2sgVt7hMZOPfL2M"}).get(
                    "errcode", 0
                )
                == 0
            )
        except (WeChatClientException, requests.RequestException):
            return False

    rows = []
    failed = in_threads(THREADS, call)
    fetches, attempts = counts.take()
    rows.append(
        Row(
            "wechatpy-cold",
            THREADS,
            fetches,
            attempts,
            failed,
            "(wxauth: 1)",
            None,
            "MemoryStorage",
        )
    )
    fake.retire_all()
    failed = in_threads(THREADS, call)
    fetches, attempts = counts.take()
    rows.append(Row("wechatpy-retire", THREADS, fetches, attempts, failed, "(wxauth: 1)", None))

    # Bounded, because wechatpy's auto_retry re-fetches and retries for as long as
    # WeChat says 40001: the emulator's injected faults are what stops it here.
    faults = 20
    fake.fail_next(faults, on="api", errcode=40001)
    failed = in_threads(1, call)
    fetches, attempts = counts.take()
    fake.clear_faults()
    rows.append(
        Row(
            "wechatpy-persistent-40001",
            1,
            fetches,
            attempts,
            failed,
            "(wxauth: 2 attempts, 1 fetch)",
            None,
            f"retried until the {faults} injected 40001s ran out",
        )
    )
    return rows


# -- main ------------------------------------------------------------------------------


def print_rows(rows: list[Row]) -> None:
    print(
        f"{'case':<34} {'calls':>5} {'fetches':>7} {'attempts':>8} {'failed':>6}  {'goal':<24} met"
    )
    for r in rows:
        met = "-" if r.met is None else ("yes" if r.met else "NO")
        print(
            f"{r.case:<34} {r.calls:>5} {r.token_fetches:>7} {r.api_attempts:>8} "
            f"{r.failed_calls:>6}  {r.expect:<24} {met}"
        )
        if r.note:
            print(f"{'':<36}{r.note}")
    print()
    for r in rows:
        print(r.json_line())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip the multi-process cases")
    parser.add_argument("--no-wechatpy", action="store_true", help="skip the comparison")
    parser.add_argument(
        "--no-outage", action="store_true", help="skip the outage case (10 s of real time)"
    )
    args = parser.parse_args(argv)

    quiet()
    rows: list[Row] = []
    with new_fake() as fake, fake.serve() as base:
        rows += wxauth_cases(base, fake)
    rows += persistent_cases()
    rows += persistent_40001_day()
    rows += many_auths_day()
    if not args.no_outage:
        rows += outage_case()
    rows += ticket_threads_case()
    rows += ticket_retired_token_case()

    if not args.quick:
        with tempfile.TemporaryDirectory(prefix="wxauth-fetches-") as tmp:
            stores = [("file", str(Path(tmp) / "tokens"))]
            with redis_server() as redis_url:
                if redis_url is None:
                    print(
                        "RedisStore cases skipped: needs redis-server on PATH and the redis "
                        "package (pip install 'wxauth[redis]')"
                    )
                else:
                    stores.append(("redis", redis_url))
                stores.append(("memory", ""))
                for kind, where in stores:
                    with new_fake() as fake, fake.serve() as base:
                        rows += process_cases(base, fake, kind, where)
                for kind, where in stores:
                    if kind != "memory":
                        with new_fake() as fake, fake.serve() as base:
                            rows.append(ticket_process_case(base, fake, kind, where))

    if not args.no_wechatpy:
        try:
            import wechatpy
        except Exception as exc:  # it raises a bare Exception without a crypto library
            print(f"wechatpy comparison skipped ({type(exc).__name__}: {exc})")
        else:
            with new_fake() as fake, fake.serve() as base:
                rows += wechatpy_cases(base, fake)
            print(f"compared with wechatpy {wechatpy.__version__}")

    print_rows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
