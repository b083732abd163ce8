"""TokenManager: when it fetches, single flight, compare-and-invalidate, refresh ahead,
errors never cached, fork safety; plus the Token value and the default MemoryStore."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

import wxauth
from wxauth.testing import FakeWeChat, WeChatInterceptor

if TYPE_CHECKING:
    from conftest import Held

APPID = "wxmanager00000001"
SECRET = "manager-secret-8d1e4f0a9c2b7e35"
START = 1_800_000_000.0


@pytest.fixture
def wechat(wechat: FakeWeChat) -> FakeWeChat:
    """The emulator, with this module's app registered."""
    wechat.add_app(APPID, SECRET)
    return wechat


def manager(clock: Callable[[], float] | None = None, **options: object) -> wxauth.TokenManager:
    options.setdefault("backoff", 0)
    return wxauth.TokenManager(APPID, SECRET, clock=clock, **options)  # type: ignore[arg-type]


def run_together(n: int, func: Callable[[int], object], timeout: float = 20) -> list[object]:
    """Run ``func(i)`` in ``n`` threads released at once by a barrier; return results
    (or the exceptions raised) in order."""
    barrier = threading.Barrier(n)

    def task(i: int) -> object:
        barrier.wait(timeout)
        try:
            return func(i)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(task, i) for i in range(n)]
        return [f.result(timeout) for f in futures]


# -- fetching and caching ---------------------------------------------------------------


def test_first_call_fetches_with_the_classic_query(
    wechat: FakeWeChat, wechat_interceptor: WeChatInterceptor
) -> None:
    """GET /cgi-bin/token?grant_type=client_credential&appid=...&secret=... once."""
    token = manager(wechat.clock).get_token()
    assert wechat.issued_tokens == [token]
    (call,) = wechat_interceptor.mock.calls
    request = call.request
    assert request.method == "GET"
    assert urlsplit(request.url or "").path == "/cgi-bin/token"
    query = parse_qs(urlsplit(request.url or "").query)
    assert query == {"grant_type": ["client_credential"], "appid": [APPID], "secret": [SECRET]}


def test_token_is_cached_until_the_refresh_margin(wechat: FakeWeChat) -> None:
    """expires_in 7200, margin 300: served from cache up to 6900 s, refetched at 6900 s."""
    tokens = manager(wechat.clock, refresh_margin=300)
    first = tokens.get_token()
    for _ in range(50):
        assert tokens.get_token() == first
    wechat.advance(6899)
    assert tokens.get_token() == first
    wechat.assert_token_fetches(1)
    wechat.advance(1)
    second = tokens.get_token()
    assert wechat.issued_tokens == [first, second]
    wechat.assert_token_fetches(2)


def test_expires_in_is_taken_from_the_answer(wechat: FakeWeChat) -> None:
    """A token granted for 3600 s is refetched at 3300 s, not at 6900 s."""
    wechat.expires_in = 3600
    start = wechat.clock()
    tokens = manager(wechat.clock)
    token = tokens.get()
    assert token.expires_at == start + 3600
    assert token.fetched_at == start
    wechat.advance(3299)
    tokens.get_token()
    wechat.assert_token_fetches(1)
    wechat.advance(1)
    tokens.get_token()
    wechat.assert_token_fetches(2)


def test_short_lived_token_is_not_refetched_on_every_call(wechat: FakeWeChat) -> None:
    """expires_in 60 with the default 300 s margin: the margin is capped at half the
    lifetime, so the token serves 30 s of calls and is refetched once after that."""
    wechat.expires_in = 60
    tokens = manager(wechat.clock)
    first = tokens.get_token()
    for _ in range(30):
        for _ in range(10):
            assert tokens.get_token() == first
        wechat.advance(1)
    wechat.assert_token_fetches(1)
    second = tokens.get_token()
    assert wechat.issued_tokens == [first, second]
    wechat.assert_token_fetches(2)


def test_zero_margin_refreshes_at_expiry(wechat: FakeWeChat) -> None:
    """refresh_margin=0 keeps a token until its expires_at."""
    tokens = manager(wechat.clock, refresh_margin=0)
    first = tokens.get_token()
    wechat.advance(7199.5)
    assert tokens.get_token() == first
    wechat.advance(0.5)
    second = tokens.get_token()
    assert wechat.issued_tokens == [first, second]


def test_expired_token_is_never_served(wechat: FakeWeChat) -> None:
    """Past expiry the caller waits for a new token, even if that fetch fails."""
    tokens = manager(wechat.clock)
    first = tokens.get_token()
    wechat.advance(7200)
    wechat.fail_next(on="token", errcode=40013)
    with pytest.raises(wxauth.CredentialError):
        tokens.get_token()
    second = tokens.get_token()
    assert wechat.issued_tokens == [first, second]


def test_refresh_fetches_whatever_the_cache_holds(wechat: FakeWeChat) -> None:
    """refresh() forces a fetch and the new token is what get_token serves next."""
    tokens = manager(wechat.clock)
    first = tokens.get_token()
    second = tokens.refresh()
    assert wechat.issued_tokens == [first, second]
    assert tokens.get_token() == second
    wechat.assert_token_fetches(2)


def test_refresh_raises_when_the_forced_fetch_fails(wechat: FakeWeChat) -> None:
    """refresh() asks for a new token: a failure is raised, not hidden behind the old one."""
    tokens = manager(wechat.clock)
    old = tokens.get_token()
    wechat.fail_next(on="token", errcode=45009)
    with pytest.raises(wxauth.QuotaError):
        tokens.refresh()
    assert tokens.get_token() == old  # the valid token is still served


def test_fetch_uses_the_given_session_timeout_and_api_base(rsps: responses.RequestsMock) -> None:
    """session=, timeout= and api_base= reach the token request."""
    seen: list[requests.PreparedRequest] = []
    url = "https://wechat-proxy.example/wx/cgi-bin/token"

    def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        seen.append(request)
        return 200, {}, json.dumps({"access_token": "A" * 40, "expires_in": 7200})

    rsps.add_callback(responses.GET, url, callback=answer)
    session = requests.Session()
    session.headers["User-Agent"] = "wxauth-test-agent"
    tokens = manager(
        lambda: START, session=session, timeout=3.5, api_base="https://wechat-proxy.example/wx/"
    )
    assert tokens.get_token() == "A" * 40
    (request,) = seen
    assert request.headers["User-Agent"] == "wxauth-test-agent"
    assert request.req_kwargs["timeout"] == 3.5  # type: ignore[attr-defined]


def test_token_lives_in_the_given_store(wechat: FakeWeChat) -> None:
    """Two managers on one store share its token: the second one does not fetch."""
    store = wxauth.MemoryStore()
    one, two = manager(wechat.clock, store=store), manager(wechat.clock, store=store)
    first = one.get_token()
    assert two.get_token() == first
    wechat.assert_token_fetches(1)
    stored = store.get(one.key)
    assert stored is not None
    assert stored.value == first
    assert stored.expires_at == wechat.clock() + 7200


def test_default_clock_is_wall_clock_epoch_seconds(wechat: FakeWeChat) -> None:
    """Without clock=, expiry is time.time() based (comparable across processes)."""
    before = time.time()
    token = manager().get()
    assert before - 1 <= token.fetched_at <= time.time() + 1
    assert token.expires_at == pytest.approx(token.fetched_at + 7200)


def test_each_fetch_is_logged_at_info_with_appid_and_expires_in(
    wechat: FakeWeChat, caplog: pytest.LogCaptureFixture
) -> None:
    """Logger ``wxauth``: one INFO per fetch naming the appid and expires_in."""
    caplog.set_level(logging.INFO, logger="wxauth")
    tokens = manager(wechat.clock)
    tokens.get_token()
    tokens.get_token()
    fetches = [
        r
        for r in caplog.records
        if r.name == "wxauth" and r.levelno == logging.INFO and "7200" in r.getMessage()
    ]
    assert len(fetches) == 1
    assert APPID in fetches[0].getMessage()


# -- errors are never cached ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("errcode", "error"),
    [
        (40125, wxauth.CredentialError),
        (45009, wxauth.QuotaError),
        (-1, wxauth.TokenFetchError),
        (0, wxauth.TokenFetchError),  # an answer without an access_token
    ],
    ids=["40125-invalid-appsecret", "45009-quota", "-1-system-busy", "no-access-token"],
)
def test_an_error_is_never_cached(wechat: FakeWeChat, errcode: int, error: type[Exception]) -> None:
    """A failed fetch raises; the next call fetches again and succeeds."""
    tokens = manager(wechat.clock, retries=0)
    wechat.fail_next(on="token", errcode=errcode)
    with pytest.raises(error):
        tokens.get_token()
    assert tokens.peek() is None
    token = tokens.get_token()
    assert wechat.issued_tokens == [token]
    wechat.assert_token_fetches(2)


def test_failed_refresh_ahead_keeps_serving_the_valid_token(
    wechat: FakeWeChat, caplog: pytest.LogCaptureFixture
) -> None:
    """Inside the margin a failing fetch does not break callers while the old token is
    still valid (WARNING logged); once it expires the error is raised."""
    caplog.set_level(logging.WARNING, logger="wxauth")
    tokens = manager(wechat.clock, retries=0)
    first = tokens.get_token()
    wechat.advance(7000)
    wechat.fail_next(10, on="token", errcode=-1)
    assert tokens.get_token() == first
    assert any(r.levelno == logging.WARNING and APPID in r.getMessage() for r in caplog.records)
    wechat.advance(200)
    with pytest.raises(wxauth.TokenFetchError):
        tokens.get_token()


def test_failed_refresh_ahead_does_not_hammer_the_endpoint(wechat: FakeWeChat) -> None:
    """After a refresh ahead fails, calls in the next 30 s are served the valid token
    without another fetch; after that a fetch is tried again."""
    tokens = manager(wechat.clock, retries=0)
    first = tokens.get_token()
    wechat.advance(6950)
    wechat.fail_next(on="token", errcode=-1)
    for _ in range(20):
        assert tokens.get_token() == first
        wechat.advance(1)
    wechat.assert_token_fetches(2)
    wechat.advance(10)  # 30 s after the failure
    second = tokens.get_token()
    assert wechat.issued_tokens == [first, second]
    wechat.assert_token_fetches(3)


# -- compare-and-invalidate ---------------------------------------------------------------------


def test_invalidate_is_compare_and_delete(wechat: FakeWeChat) -> None:
    """invalidate(t) drops the cache only if it still holds t, and says whether it did."""
    tokens = manager(wechat.clock)
    assert tokens.invalidate("never-issued") is False  # empty cache
    current = tokens.get_token()
    assert tokens.invalidate("some-other-token") is False
    assert tokens.get_token() == current  # untouched: no fetch
    wechat.assert_token_fetches(1)
    assert tokens.invalidate(current) is True
    assert tokens.invalidate(current) is False  # already gone
    fresh = tokens.get_token()
    assert fresh != current
    wechat.assert_token_fetches(2)
    assert tokens.invalidate(current) is False  # stale report: the fresh token stays
    assert tokens.get_token() == fresh
    wechat.assert_token_fetches(2)


# -- single flight --------------------------------------------------------------------------------


def test_32_threads_cold_start_make_exactly_one_fetch(wechat: FakeWeChat) -> None:
    """32 threads released together on an empty cache share one slow fetch."""
    wechat.token_latency = 0.3
    tokens = manager(wechat.clock)
    results = run_together(32, lambda _: tokens.get_token())
    assert results == wechat.issued_tokens * 32
    wechat.assert_token_fetches(1)


def test_32_threads_invalidating_the_same_stale_token_make_exactly_one_fetch(
    wechat: FakeWeChat,
) -> None:
    """All 32 saw 40001 for the same token: one drop, one new fetch, one new token."""
    tokens = manager(wechat.clock)
    stale = tokens.get_token()
    wechat.token_latency = 0.2

    def saw_40001(_: int) -> tuple[bool, str]:
        return tokens.invalidate(stale), tokens.get_token()

    results = run_together(32, saw_40001)
    wechat.assert_token_fetches(2)
    dropped = [d for d, _ in results]  # type: ignore[misc]
    assert dropped.count(True) == 1
    _, fresh = wechat.issued_tokens
    assert {t for _, t in results} == {fresh}  # type: ignore[misc]


def test_concurrent_callers_share_the_error_of_the_fetch(wechat: FakeWeChat) -> None:
    """Callers waiting on a failing fetch all get its error; there is one call."""
    wechat.fail_next(on="token", errcode=40125)
    wechat.token_latency = 0.3
    tokens = manager(wechat.clock)
    results = run_together(8, lambda _: tokens.get_token())
    assert all(isinstance(r, wxauth.CredentialError) for r in results), results
    wechat.assert_token_fetches(1)


def test_each_caller_gets_its_own_traceback_of_a_shared_error(wechat: FakeWeChat) -> None:
    """Followers get the leader's error (same type and errcode), but the traceback each
    one sees is its own: only the leader's shows the fetch it made."""
    wechat.fail_next(on="token", errcode=40125)
    wechat.token_latency = 0.3
    tokens = manager(wechat.clock)
    results = run_together(8, lambda _: tokens.get_token())
    assert all(isinstance(r, wxauth.CredentialError) and r.errcode == 40125 for r in results)
    fetched = [
        r
        for r in results
        if isinstance(r, BaseException)
        and any(f.name == "fetch_token_answer" for f in traceback.extract_tb(r.__traceback__))
    ]
    assert len(fetched) == 1


def test_refresh_ahead_serves_the_old_token_without_waiting(wechat: FakeWeChat, held: Held) -> None:
    """While one caller fetches inside the margin, every other caller gets the still-valid
    token at once: they return while the fetch is provably still blocked."""
    tokens = manager(wechat.clock)
    old = tokens.get_token()
    wechat.advance(7000)  # inside the 300 s margin, 200 s before expiry
    with ThreadPoolExecutor(9) as pool:
        with held:
            leader = pool.submit(tokens.get_token)
            assert held.arrived.wait(5), "the refresh-ahead fetch never started"
            others = [pool.submit(tokens.get_token) for _ in range(8)]
            served = [f.result(timeout=3) for f in others]
            assert served == [old] * 8
            assert not leader.done()  # the fetch was still in flight meanwhile
        new = leader.result(timeout=5)
    assert wechat.issued_tokens == [old, new]
    assert tokens.get_token() == new
    wechat.assert_token_fetches(2)


def test_without_a_valid_token_callers_wait_for_the_fetch(wechat: FakeWeChat, held: Held) -> None:
    """Past expiry nobody gets the old token: followers wait for the leader's new one."""
    tokens = manager(wechat.clock)
    tokens.get_token()
    wechat.advance(7200)
    with ThreadPoolExecutor(5) as pool:
        with held:
            leader = pool.submit(tokens.get_token)
            assert held.arrived.wait(5)
            followers = [pool.submit(tokens.get_token) for _ in range(4)]
            time.sleep(0.1)  # give a wrong implementation the chance to answer early
            assert not any(f.done() for f in followers)
        served = {f.result(timeout=5) for f in [leader, *followers]}
    _, new = wechat.issued_tokens
    assert served == {new}
    wechat.assert_token_fetches(2)


def test_managers_sharing_a_store_share_one_fetch(wechat: FakeWeChat) -> None:
    """Managers on one store (as processes on a shared store) make one fetch between
    them: the second waits for the store lock, then finds the token and does not fetch."""
    store = wxauth.MemoryStore()
    managers = [manager(wechat.clock, store=store) for _ in range(4)]
    wechat.token_latency = 0.3
    results = run_together(16, lambda i: managers[i % 4].get_token())
    assert results == wechat.issued_tokens * 16
    wechat.assert_token_fetches(1)


def test_refresh_ahead_elsewhere_on_the_store_is_not_waited_for(
    wechat: FakeWeChat, held: Held
) -> None:
    """Inside the margin, a manager that finds the store lock taken by another one
    (another process, with a shared store) serves the still-valid token at once."""
    store = wxauth.MemoryStore()
    first, second = manager(wechat.clock, store=store), manager(wechat.clock, store=store)
    old = first.get_token()
    wechat.advance(7000)
    with ThreadPoolExecutor(2) as pool:
        with held:
            refreshing = pool.submit(first.get_token)
            assert held.arrived.wait(5)
            assert pool.submit(second.get_token).result(timeout=3) == old
        new = refreshing.result(timeout=5)
    assert wechat.issued_tokens == [old, new]
    assert second.get_token() == new
    wechat.assert_token_fetches(2)


def test_a_store_lock_held_too_long_is_a_token_fetch_error(wechat: FakeWeChat) -> None:
    """With no valid token and the store lock held elsewhere past lock_timeout, the
    caller gets a TokenFetchError instead of waiting forever (and nothing is fetched)."""
    store = wxauth.MemoryStore()
    tokens = manager(wechat.clock, store=store, lock_timeout=0.2)
    held = store.lock(tokens.key, lease=30)
    assert held.acquire(blocking=False)
    try:
        with pytest.raises(wxauth.TokenFetchError) as info:
            tokens.get_token()
    finally:
        held.release()
    assert "lock" in str(info.value)
    wechat.assert_token_fetches(0)
    token = tokens.get_token()
    assert wechat.issued_tokens == [token]


def test_managers_sharing_a_store_share_one_token_and_one_flight(
    wechat: FakeWeChat, held: Held
) -> None:
    """A WxAuth and a TokenManager of one app built on one store make one fetch, even
    when their first calls race: the single flight is per app and store, not per
    manager. (Managers with no store= share the process-wide default store, and so a
    flight too; this one is explicit.)"""
    store = wxauth.MemoryStore()
    auth = wxauth.WxAuth(APPID, SECRET, store=store)
    tokens = wxauth.TokenManager(APPID, SECRET, store=store)
    with ThreadPoolExecutor(16) as pool:
        with held:
            futures = [pool.submit((auth if i % 2 else tokens).get_token) for i in range(16)]
            assert held.arrived.wait(5)
        assert len({f.result(timeout=5) for f in futures}) == 1
    assert auth.get_token() == tokens.get_token()
    wechat.assert_token_fetches(1)


# -- fork ---------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_while_another_thread_holds_the_fetch(wechat: FakeWeChat, held: Held) -> None:
    """A child forked while a thread of the parent is inside a fetch (holding the flight
    and the store lock) inherits no held lock: it fetches its own token at once."""
    tokens = manager(timeout=1, retries=0, lock_timeout=1)
    with ThreadPoolExecutor(1) as pool:
        with held:  # holds the parent's fetch only
            parent_fetch = pool.submit(tokens.get_token)
            assert held.arrived.wait(5)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork + threads
                pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child
                code = 3
                try:
                    token = tokens.get_token()
                    code = 0 if wechat.issued_tokens == [token] else 1
                except BaseException:
                    code = 2
                finally:
                    os._exit(code)
            status = wait_for_child(pid, timeout=20)
        parent_fetch.result(timeout=5)
    assert os.WIFEXITED(status), f"child status {status}"
    assert os.WEXITSTATUS(status) == 0, f"child exit code {os.WEXITSTATUS(status)}"


def wait_for_child(pid: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.02)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung: a lock was inherited in a held state")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_memory_store_in_a_forked_child_keeps_its_records_and_frees_its_locks() -> None:
    """A MemoryStore copied by fork keeps its token and small records, and its per-key lock
    (held by a parent thread at fork time) is free in the child."""
    store = wxauth.MemoryStore()
    store.set("k", wxauth.Token.issued("T" * 40, 7200, time.time()))
    store.set_meta("k:budget", "[1, 2]", ttl=600)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store.lock("k", lease=30):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 3
            try:
                token = store.get("k")
                if token is None or token.value != "T" * 40:
                    code = 10  # the token was lost
                elif store.get_meta("k:budget") != "[1, 2]":
                    code = 11  # the small records were lost
                elif not store.lock("k", lease=30).acquire(timeout=2):
                    code = 12  # the lock came over held
                else:
                    code = 0
            except BaseException:
                code = 2
            finally:
                os._exit(code)
        status = wait_for_child(pid, timeout=20)
    finally:
        release.set()
        holder.join(5)
    assert os.WIFEXITED(status), f"child status {status}"
    assert os.WEXITSTATUS(status) == 0, f"child exit code {os.WEXITSTATUS(status)}"


# -- Token ----------------------------------------------------------------------------------------


def test_token_lifetime_and_refresh_point() -> None:
    """refresh_at is expires_at minus the margin, the margin capped at half the lifetime."""
    token = wxauth.Token.issued("T" * 40, 7200, START)
    assert token.lifetime == 7200
    assert token.refresh_at(300) == START + 6900
    short = wxauth.Token.issued("T" * 40, 60, START)
    assert short.refresh_at(300) == START + 30
    assert not short.needs_refresh(START + 29.9, 300)
    assert short.needs_refresh(START + 30, 300)
    assert not token.is_expired(START + 7199.9)
    assert token.is_expired(START + 7200)


def test_token_json_round_trip() -> None:
    """to_json/from_json is how shared stores keep a token."""
    token = wxauth.Token.issued("T" * 512, 7200, START)
    assert wxauth.Token.from_json(token.to_json()) == token
    assert wxauth.Token.from_json(token.to_json().encode()) == token


@pytest.mark.parametrize("record", ['{"value": "x"}', "[1, 2]", '"text"', "not json"])
def test_token_from_a_malformed_record_is_a_value_error(record: str) -> None:
    """A damaged record raises ValueError, never KeyError/TypeError."""
    with pytest.raises(ValueError):
        wxauth.Token.from_json(record)


# -- MemoryStore ----------------------------------------------------------------------------------


def test_memory_store_write_unless_newer_and_compare_and_delete() -> None:
    """set() never replaces a later-fetched token; delete_if() compares the value."""
    store = wxauth.MemoryStore()
    newer = wxauth.Token.issued("NEW" * 10, 7200, START + 10)
    older = wxauth.Token.issued("OLD" * 10, 7200, START)
    assert store.set("k", newer) is True
    assert store.set("k", older) is False
    assert store.get("k") == newer
    assert store.delete_if("k", older.value) is False
    assert store.get("k") == newer
    assert store.delete_if("k", newer.value) is True
    assert store.get("k") is None
    assert store.delete_if("missing", "x") is False


def test_memory_store_lock_is_per_key_and_exclusive() -> None:
    """The single-flight lock of a key excludes a second holder; other keys are free."""
    store = wxauth.MemoryStore()
    first = store.lock("a", lease=30)
    assert first.acquire(blocking=False)
    try:
        assert not store.lock("a", lease=30).acquire(blocking=False)
        assert not store.lock("a", lease=30).acquire(timeout=0.05)
        other = store.lock("b", lease=30)
        assert other.acquire(blocking=False)
        other.release()
    finally:
        first.release()
    with store.lock("a", lease=30):
        pass


def test_memory_store_meta_records() -> None:
    """Small records round-trip and are separate from tokens."""
    store = wxauth.MemoryStore()
    assert store.get_meta("k") is None
    store.set_meta("k", "value", ttl=60)
    assert store.get_meta("k") == "value"
    assert store.get("k") is None
