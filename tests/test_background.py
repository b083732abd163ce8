"""The opt-in background refresher, driven by the emulator's clock."""

from __future__ import annotations

import os
import threading

import pytest

import wxauth
from wxauth.testing import FakeWeChat

APPID, SECRET = "wxbackground01", "background-secret"


@pytest.fixture
def fake() -> FakeWeChat:
    fake = FakeWeChat(start=1_800_000_000.0)
    fake.add_app(APPID, SECRET)
    yield fake
    fake.close()


def refresher_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"wxauth-refresh-{APPID}"]


def make(fake: FakeWeChat, url: str, **options: object) -> wxauth.TokenManager:
    return wxauth.TokenManager(
        APPID,
        SECRET,
        api_base=url,
        clock=fake.clock,
        background_refresh=True,
        poll_interval=0.05,
        retries=0,
        backoff=0,
        **options,  # type: ignore[arg-type]
    )


def test_no_request_waits_on_a_fetch_across_24_simulated_hours(fake: FakeWeChat) -> None:
    """With the refresher on, every get_token() in a simulated day is served from cache."""
    with fake.serve() as url, make(fake, url) as manager:
        manager.start_background()
        assert manager.sync_background()
        served = set()
        for _ in range(24 * 60):  # one simulated minute per step
            fake.advance(60)
            assert manager.sync_background()
            token = manager.get_token()
            assert fake.token_status(token) == "valid"
            served.add(token)
        assert manager.stats.foreground_fetches == 0
        # 86400 / (7200 - 300 - 120) = 12.7 renewals a day, plus the first fetch.
        assert 13 <= manager.stats.background_fetches <= 14
        assert fake.token_fetches == manager.stats.background_fetches
        assert len(served) == manager.stats.background_fetches


def test_a_failed_background_refresh_keeps_serving_and_retries(fake: FakeWeChat) -> None:
    """A failing refresh logs, keeps the valid token in service, and succeeds later."""
    with fake.serve() as url, make(fake, url) as manager:
        manager.start_background()
        assert manager.sync_background()
        first = manager.get_token()
        fake.fail_next(2, on="token", errcode=-1)
        fake.advance(7200 - 400)  # inside the background window, outside the margin
        assert manager.sync_background()
        assert manager.stats.failures == 1
        assert manager.get_token() == first
        assert manager.stats.foreground_fetches == 0
        assert manager.sync_background()  # the second injected failure
        fake.advance(1)  # past the failure backoff that two failures in a row impose
        assert manager.sync_background()  # then a success
        assert manager.stats.failures == 2
        assert manager.get_token() != first
        assert manager.stats.foreground_fetches == 0


def test_close_stops_the_thread(fake: FakeWeChat) -> None:
    """close() (or leaving the with block) ends the refresher thread."""
    with fake.serve() as url:
        manager = make(fake, url)
        manager.get_token()  # starts the refresher lazily
        assert len(refresher_threads()) == 1
        manager.close()
        assert refresher_threads() == []
        assert manager.sync_background() is False


def test_only_the_lock_holder_refreshes_a_shared_store(fake: FakeWeChat) -> None:
    """Two refreshers on one store make one fetch per renewal between them."""
    store = wxauth.MemoryStore()
    with fake.serve() as url, make(fake, url, store=store) as a, make(fake, url, store=store) as b:
        a.start_background()
        b.start_background()
        for _ in range(6 * 60):
            fake.advance(60)
            assert a.sync_background()
            assert b.sync_background()
        # 6 simulated hours: the first token and 3 renewals (every 6780 s).
        assert fake.token_fetches == 4
        assert a.stats.fetches + b.stats.fetches == 4


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_the_refresher_restarts_in_a_forked_child(fake: FakeWeChat) -> None:
    """A child process gets its own refresher on first use, and the parent keeps its own."""
    with fake.serve() as url, make(fake, url) as manager:
        manager.start_background()
        assert manager.sync_background()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                alive_before = len(refresher_threads())
                manager.get_token()
                ok = alive_before == 0 and len(refresher_threads()) == 1
                ok = ok and manager.sync_background()
                code = 0 if ok else 3
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert len(refresher_threads()) == 1


def test_a_refresher_waiting_on_another_fetch_does_not_spin(fake: FakeWeChat) -> None:
    """While another manager on the store is fetching, a refresher that finds the lock
    taken looks again after a pause instead of retrying in a tight loop."""
    store = wxauth.MemoryStore()
    with fake.serve() as url, make(fake, url, store=store) as waiter:
        fetcher = wxauth.TokenManager(APPID, SECRET, api_base=url, clock=fake.clock, store=store)
        fetcher.get_token()
        waiter.start_background()
        assert waiter.sync_background()
        fake.advance(7200 - 400)  # inside the background window of the stored token
        fake.token_latency = 1.0
        pool = threading.Thread(target=fetcher.refresh)
        pool.start()
        refresher = waiter._refresher
        assert refresher is not None
        before = refresher._completed
        pool.join(10)
        fake.token_latency = 0.0
        cycles = refresher._completed - before
        # poll_interval=0.05 s: about 20 looks in the 1 s fetch; a spinning loop makes
        # thousands.
        assert cycles < 100, cycles
        assert waiter.stats.fetches == 0
