"""Real processes sharing one token through FileStore and RedisStore, against the
emulator's loopback server: 4 processes x 8 threads, cold start, a mass 40001 after
``retire_all()``, and the lock holder SIGKILLed in the middle of its fetch.

Workers are spawned (no inherited state) and talk to the test over one pipe each; they
start their calls together (a barrier per process, released by one "go" to all). The
emulator's counters are the oracle. Timeouts below are safety nets only.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import pytest
from _mp_worker import Outcome, run

from wxauth.testing import FakeWeChat

pytestmark = pytest.mark.slow

APPID, SECRET = "wxmultiproc0001", "multi-process-secret-value"
PROCESSES, THREADS = 4, 8
#: Safety net for any one wait on the workers.
WAIT = 60.0


class Fleet:
    """``PROCESSES`` spawned workers, each running :func:`_mp_worker.run`."""

    def __init__(self, kind: str, where: str, api_base: str, *, timeout: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conns: dict[int, Connection] = {}
        self.procs: dict[int, Any] = {}
        self.fetching: list[tuple[int, float]] = []
        self.killed: set[int] = set()
        for _ in range(PROCESSES):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=run,
                args=(child, kind, where, api_base, APPID, SECRET, THREADS, timeout),
                daemon=True,
            )
            proc.start()
            child.close()
            assert proc.pid is not None
            self.conns[proc.pid] = parent
            self.procs[proc.pid] = proc
        ready = self._gather("ready")
        self.lease = float(next(iter(ready.values()))[0])

    def _gather(self, kind: str) -> dict[int, tuple[Any, ...]]:
        """Wait for one ``kind`` message from every live worker; note "fetching" ones."""
        got: dict[int, tuple[Any, ...]] = {}
        deadline = time.monotonic() + WAIT
        while set(got) != set(self.conns) - self.killed:
            waiting = [c for pid, c in self.conns.items() if pid not in got.keys() | self.killed]
            left = deadline - time.monotonic()
            assert left > 0, f"workers did not send {kind!r} within {WAIT}s"
            for conn in wait(waiting, timeout=left):
                assert isinstance(conn, Connection)
                try:
                    message = conn.recv()
                except EOFError:
                    pid = next(p for p, c in self.conns.items() if c is conn)
                    raise AssertionError(f"worker {pid} died unexpectedly") from None
                if message[0] == "fetching":
                    self.fetching.append((message[1], message[2]))
                else:
                    assert message[0] == kind, message
                    got[message[1]] = message[2:]
        return got

    def go(self) -> None:
        for pid, conn in self.conns.items():
            if pid not in self.killed:
                conn.send("go")

    def outcomes(self) -> list[Outcome]:
        return [o for (outcomes,) in self._gather("done").values() for o in outcomes]

    def first_fetcher(self) -> tuple[int, float]:
        """Wait for the first "fetching" report: the pid holding the store lock."""
        deadline = time.monotonic() + WAIT
        while not self.fetching:
            left = deadline - time.monotonic()
            assert left > 0, "no worker started a fetch"
            for conn in wait(list(self.conns.values()), timeout=left):
                assert isinstance(conn, Connection)
                message = conn.recv()
                assert message[0] == "fetching", message
                self.fetching.append((message[1], message[2]))
        return self.fetching[0]

    def kill(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)
        self.procs[pid].join(WAIT)
        self.killed.add(pid)

    def close(self) -> None:
        for pid, conn in self.conns.items():
            if pid not in self.killed:
                with contextlib.suppress(OSError):
                    conn.send("exit")
        for proc in self.procs.values():
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(10)
        for conn in self.conns.values():
            conn.close()


@pytest.fixture(params=["file", pytest.param("redis", marks=pytest.mark.redis)])
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(kind, path or URL) of a store the workers share."""
    if request.param == "file":
        return "file", str(tmp_path / "tokens")
    return "redis", str(request.getfixturevalue("redis_url"))


@pytest.fixture
def fake() -> Iterator[FakeWeChat]:
    fake = FakeWeChat(clock=time.time)
    fake.add_app(APPID, SECRET)
    yield fake
    fake.close()


@pytest.fixture
def fleet_factory(fake: FakeWeChat, shared_store: tuple[str, str]) -> Iterator[Any]:
    fleets: list[Fleet] = []

    def make(api_base: str, *, timeout: float = 5.0) -> Fleet:
        fleet = Fleet(*shared_store, api_base, timeout=timeout)
        fleets.append(fleet)
        return fleet

    yield make
    for fleet in fleets:
        fleet.close()


def assert_all_ok(outcomes: list[Outcome], count: int) -> None:
    failed = [o for o in outcomes if not o.ok]
    assert not failed, failed[:5]
    assert len(outcomes) == count


def test_cold_start_of_4x8_fetches_once(fake: FakeWeChat, fleet_factory: Any) -> None:
    """32 threads in 4 processes, nothing cached: one token fetch, everyone uses it."""
    with fake.serve() as url:
        fleet = fleet_factory(url)
        fleet.go()
        outcomes = fleet.outcomes()
    assert_all_ok(outcomes, PROCESSES * THREADS)
    fake.assert_token_fetches(1)
    assert len(fleet.fetching) == 1
    assert {o.token for o in outcomes} == {fake.latest_token()}
    assert not any(o.retried for o in outcomes)


def test_retire_all_heals_with_exactly_one_more_fetch(fake: FakeWeChat, fleet_factory: Any) -> None:
    """After every token is retired, 32 threads hitting 40001 at once cause one fetch,
    and every call still succeeds (invalidate, refresh, re-send once)."""
    with fake.serve() as url:
        fleet = fleet_factory(url)
        fleet.go()
        assert_all_ok(fleet.outcomes(), PROCESSES * THREADS)
        fake.assert_token_fetches(1)
        first = fake.latest_token()
        assert fake.retire_all() == 1
        fleet.go()
        outcomes = fleet.outcomes()
    assert_all_ok(outcomes, PROCESSES * THREADS)
    fake.assert_token_fetches(2)
    second = fake.latest_token()
    assert second != first
    assert {o.token for o in outcomes} == {second}
    rejected = fake.count(kind="api", errcode=40001)
    assert rejected >= 1  # the stale token was really used, and really refused
    assert sum(o.retried for o in outcomes) == rejected


def test_killed_lock_holder_is_taken_over_within_the_lease(
    fake: FakeWeChat, fleet_factory: Any, shared_store: tuple[str, str]
) -> None:
    """The process fetching under the store lock is SIGKILLed while WeChat hangs: the
    other processes get a token within the lease, from exactly one successful fetch."""
    fake.fail_next(on="token", hang=WAIT)
    with fake.serve() as url:
        fleet = fleet_factory(url, timeout=2.0)
        fleet.go()
        holder, _ = fleet.first_fetcher()
        deadline = time.monotonic() + WAIT
        while fake.token_fetches < 1:  # the holder's request reached WeChat: mid-fetch
            assert time.monotonic() < deadline, "the holder's fetch never arrived"
            time.sleep(0.005)
        fleet.kill(holder)
        killed_at = time.time()
        outcomes = fleet.outcomes()
    assert_all_ok(outcomes, (PROCESSES - 1) * THREADS)
    assert holder not in {o.pid for o in outcomes}
    assert len(fake.issued_tokens) == 1  # the hung request issued nothing
    fake.assert_token_fetches(2)  # the hung one and its successor
    assert [pid for pid, _ in fleet.fetching].count(holder) == 1
    assert len(fleet.fetching) == 2
    assert {o.token for o in outcomes} == {fake.latest_token()}
    waited = max(o.finished for o in outcomes) - killed_at
    assert waited <= fleet.lease + 1.0
    if shared_store[0] == "file":
        # flock: the kernel freed the lock when the holder died; no lease to wait out.
        assert waited < fleet.lease / 2
