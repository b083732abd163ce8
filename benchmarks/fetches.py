"""What wxauth saves: token fetches and failed calls, counted by the WeChat emulator.

Run: ``python benchmarks/fetches.py`` (about half a minute; ``--quick`` skips the
multi-process section, ``--no-wechatpy`` skips the comparison).

Everything talks HTTP to ``FakeWeChat`` on a loopback port (``fake.serve()``): nothing
leaves 127.0.0.1. The token endpoint answers after 50 ms, about what a real one takes,
so that callers arriving together really do overlap. Cases:

- ``cold``: 32 threads share one ``WxAuth`` and each call an API at once, no token yet.
- ``retire``: then the emulator retires the token (as if another server had fetched
  one) and the 32 threads call again: every first attempt is answered 40001.
- ``persistent-40001``: every API call is answered 40001 (a broken account): how many
  attempts and fetches one logical call costs, and where the refresh budget stops it.
- ``procs-*``: 4 processes x 8 threads with one ``FileStore``, one ``RedisStore`` (when
  ``redis-server`` is on PATH; the script starts its own on a free loopback port) and,
  for contrast, a private ``MemoryStore`` each. Rounds: cold; after a retire; then
  three times "5 minutes later" (the emulator clock moves 301 s, so a token that a
  later fetch replaced stops working, as on WeChat).
- ``wechatpy-*`` (if ``wechatpy`` is importable): the same cold / retire / persistent
  cases with ``wechatpy.WeChatClient`` pointed at the same emulator, for comparison.

Prints a table, then one JSON line per case.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from _redis_server import redis_server

from wxauth import (
    FileStore,
    MemoryStore,
    RedisStore,
    RefreshBudgetError,
    TokenStore,
    WxAuth,
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

    # Persistent 40001: each logical call is sent once more after a refresh, and the
    # second 40001 is returned as it is.
    logical = 5
    fake.fail_next(1000, on="api", errcode=40001)
    returned = []
    for _ in range(logical):
        response = sessions[0].get(url, auth=auth)
        returned.append((response.json().get("errcode"), len(response.history)))
    fetches, attempts = counts.take()
    rows.append(
        Row(
            "persistent-40001",
            logical,
            fetches,
            attempts,
            sum(code != 0 for code, _ in returned),
            "2 attempts per call",
            attempts == 2 * logical and all(r == (40001, 1) for r in returned),
            f"{attempts / logical:.0f} attempts and {fetches / logical:.0f} fetch per call; "
            "each returns the second 40001 response (history holds the first)",
        )
    )

    # ... and the refresh budget (10 fetches a minute by default) caps what a broken
    # account can burn: past it, calls fail at once with RefreshBudgetError. A new
    # manager, so that the fetches above do not count against its budget.
    auth.manager.close()
    auth = WxAuth(APPID, SECRET, api_base=base)
    logical = 20
    budget = auth.manager.max_fetches_per_minute or 0
    budget_errors = 0
    for _ in range(logical):
        try:
            sessions[0].get(url, auth=auth)
        except RefreshBudgetError:
            budget_errors += 1
    fetches, attempts = counts.take()
    fake.clear_faults()
    rows.append(
        Row(
            "persistent-40001-x20",
            logical,
            fetches,
            attempts,
            logical,
            f"<= {budget} fetches/min",
            fetches <= budget,
            f"{budget_errors} calls refused by the refresh budget (RefreshBudgetError)",
        )
    )
    auth.manager.close()
    for session in sessions:
        session.close()
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
) -> None:
    """One worker process: ``PROC_THREADS`` threads share one WxAuth on ``kind`` store;
    every round starts and ends on ``barrier`` so the parent can act in between."""
    quiet()
    auth = WxAuth(APPID, SECRET, api_base=base, store=make_store(kind, where))
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
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=process_worker,
            args=(i, kind, where, base, len(plan), barrier, results),
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
    args = parser.parse_args(argv)

    quiet()
    rows: list[Row] = []
    with new_fake() as fake, fake.serve() as base:
        rows += wxauth_cases(base, fake)

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
