"""AsyncTokenManager: the sync manager's rules (single flight, compare-and-invalidate,
refresh ahead, the guards, the sources, the errors) awaited, under asyncio and trio,
against the emulator as an httpx transport (loopback where a real socket matters)."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import pytest
import trio.testing
from _async_helpers import Wire, eventually, leaks

import wxauth
from wxauth.httpx import HttpxTransport
from wxauth.testing import FakeWeChat

pytestmark = pytest.mark.anyio

APPID = "wxasyncmgr0000001"
SECRET = "3c9a5e1f7b2d8a4c6e0f1b3d5a7c9e2f"  # shaped like a real 32-hex AppSecret
CORPID = "wwasynccorp000001"
CORP_SECRET_A = "wecom-app-A-secret-0a1b2c3d4e5f60"
CORP_SECRET_B = "wecom-app-B-secret-f6e5d4c3b2a190"
CREDENTIALS = {"classic": (APPID, SECRET), "wecom": (CORPID, CORP_SECRET_A)}


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def fake(fake_wechat: FakeWeChat) -> FakeWeChat:
    fake_wechat.add_app(APPID, SECRET)
    fake_wechat.add_wecom_app(CORPID, CORP_SECRET_A)
    fake_wechat.add_wecom_app(CORPID, CORP_SECRET_B)
    return fake_wechat


@pytest.fixture
def wire(fake: FakeWeChat) -> Wire:
    return Wire(fake)


@contextlib.asynccontextmanager
async def managed(
    fake: FakeWeChat,
    wire: Wire,
    appid: str = APPID,
    secret: str | None = SECRET,
    **options: Any,
) -> AsyncIterator[wxauth.AsyncTokenManager]:
    """An AsyncTokenManager on the emulator (through ``wire``), on its clock."""
    options.setdefault("clock", fake.clock)
    options.setdefault("backoff", 0)
    async with (
        httpx.AsyncClient(transport=wire) as client,
        wxauth.AsyncTokenManager(appid, secret, client=client, **options) as manager,
    ):
        yield manager


def sync_manager(fake: FakeWeChat, wire: Wire, **options: Any) -> wxauth.TokenManager:
    """A TokenManager of the same app fetching through a sync httpx client on ``wire``."""
    options.setdefault("clock", fake.clock)
    options.setdefault("backoff", 0)
    transport = HttpxTransport(httpx.Client(transport=wire))
    return wxauth.TokenManager(APPID, SECRET, transport=transport, **options)


# -- single flight ------------------------------------------------------------------------


async def test_1000_tasks_starting_cold_make_one_fetch(fake: FakeWeChat, wire: Wire) -> None:
    """1000 tasks ask for the token while the first fetch is held: every one of them is
    waiting when it completes, and all get the one token it brought."""
    results: list[str] = []
    async with managed(fake, wire) as manager:

        async def get() -> None:
            results.append(await manager.get_token())

        wire.hold()
        async with anyio.create_task_group() as tg:
            for _ in range(1000):
                tg.start_soon(get)
            await wire.wait_arrived()
            await anyio.wait_all_tasks_blocked()
            assert results == []
            wire.release()
    assert results == fake.issued_tokens * 1000
    fake.assert_token_fetches(1)


async def test_managers_of_one_app_share_one_flight(fake: FakeWeChat, wire: Wire) -> None:
    """Four managers of one app (no store=) on four clients: one fetch between them."""
    results: list[str] = []
    async with contextlib.AsyncExitStack() as stack:
        managers = [await stack.enter_async_context(managed(fake, wire)) for _ in range(4)]
        wire.hold()
        async with anyio.create_task_group() as tg:
            for i in range(40):

                async def get(manager: wxauth.AsyncTokenManager = managers[i % 4]) -> None:
                    results.append(await manager.get_token())

                tg.start_soon(get)
            await wire.wait_arrived()
            await anyio.wait_all_tasks_blocked()
            wire.release()
    assert results == fake.issued_tokens * 40
    fake.assert_token_fetches(1)


async def test_waiters_share_the_error_of_the_fetch(fake: FakeWeChat, wire: Wire) -> None:
    """Tasks waiting on a failing fetch all get its error (same type and errcode); one
    request was made."""
    fake.fail_next(on="token", errcode=40125)
    errors: list[BaseException] = []
    async with managed(fake, wire) as manager:

        async def get() -> None:
            try:
                await manager.get_token()
            except wxauth.WxAuthError as exc:
                errors.append(exc)

        wire.hold()
        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(get)
            await wire.wait_arrived()
            await anyio.wait_all_tasks_blocked()
            wire.release()
    assert len(errors) == 8
    assert all(type(e) is wxauth.CredentialError and e.errcode == 40125 for e in errors)
    fake.assert_token_fetches(1)


# -- compare-and-invalidate -----------------------------------------------------------------


async def test_invalidate_is_compare_and_delete(fake: FakeWeChat, wire: Wire) -> None:
    """invalidate(t) drops the token only if it is still t, and says whether it did."""
    async with managed(fake, wire) as manager:
        assert await manager.invalidate("never-issued") is False
        current = await manager.get_token()
        assert await manager.invalidate("some-other-token") is False
        assert await manager.get_token() == current
        fake.assert_token_fetches(1)
        assert await manager.invalidate(current) is True
        assert await manager.invalidate(current) is False
        fresh = await manager.get_token()
        assert fresh != current
        assert await manager.invalidate(current) is False  # a stale report
        assert await manager.get_token() == fresh
    fake.assert_token_fetches(2)


async def test_32_tasks_invalidating_the_same_token_make_one_fetch(
    fake: FakeWeChat, wire: Wire
) -> None:
    """32 tasks saw the same token rejected: exactly one invalidate() is True, one new
    token is fetched, and every task gets it."""
    results: list[tuple[bool, str]] = []
    async with managed(fake, wire) as manager:
        stale = await manager.get_token()

        async def saw_40001() -> None:
            dropped = await manager.invalidate(stale)
            results.append((dropped, await manager.get_token()))

        wire.hold()
        async with anyio.create_task_group() as tg:
            for _ in range(32):
                tg.start_soon(saw_40001)
            await wire.wait_arrived()
            await anyio.wait_all_tasks_blocked()
            wire.release()
    fake.assert_token_fetches(2)
    assert [dropped for dropped, _ in results].count(True) == 1
    _, fresh = fake.issued_tokens
    assert {token for _, token in results} == {fresh}


# -- refresh ahead --------------------------------------------------------------------------


async def test_refresh_ahead_serves_the_old_token_while_refreshing(
    fake: FakeWeChat, wire: Wire
) -> None:
    """Inside the margin, while one task fetches the successor, every other task gets the
    still-valid token at once; the successor is served once it is in."""
    async with managed(fake, wire) as manager:
        old = await manager.get_token()
        fake.advance(7000)  # inside the 300 s margin, 200 s before expiry
        new: list[str] = []

        async def refresh_ahead() -> None:
            new.append(await manager.get_token())

        wire.hold()
        async with anyio.create_task_group() as tg:
            tg.start_soon(refresh_ahead)
            await wire.wait_arrived()
            with anyio.fail_after(2):
                served = [await manager.get_token() for _ in range(8)]
            assert served == [old] * 8
            assert new == []  # the fetch was still in flight meanwhile
            wire.release()
        assert fake.issued_tokens == [old, *new]
        assert await manager.get_token() == new[0]
    fake.assert_token_fetches(2)


async def test_past_expiry_callers_wait_for_the_new_token(fake: FakeWeChat, wire: Wire) -> None:
    """Past expiry nobody gets the old token: the callers wait for the fetch."""
    async with managed(fake, wire) as manager:
        await manager.get_token()
        fake.advance(7200)
        results: list[str] = []

        async def get() -> None:
            results.append(await manager.get_token())

        wire.hold()
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(get)
            await wire.wait_arrived()
            await anyio.wait_all_tasks_blocked()
            assert results == []
            wire.release()
    _, new = fake.issued_tokens
    assert results == [new] * 4


async def test_a_failed_refresh_ahead_keeps_serving_the_valid_token(
    fake: FakeWeChat, wire: Wire
) -> None:
    """Inside the margin a failing fetch does not break callers; past expiry it does."""
    async with managed(fake, wire, retries=0) as manager:
        first = await manager.get_token()
        fake.advance(7000)
        fake.fail_next(10, on="token", errcode=-1)
        assert await manager.get_token() == first
        fake.advance(200)
        with pytest.raises(wxauth.TokenFetchError):
            await manager.get_token()


# -- the guards ------------------------------------------------------------------------------


async def test_the_fetch_budget_refuses_past_max_fetches_per_minute(
    fake: FakeWeChat, wire: Wire
) -> None:
    """max_fetches_per_minute=2: the third fetch within a minute is refused without a
    request (RefreshBudgetError, with retry_after); a minute later it is allowed."""
    async with managed(fake, wire, max_fetches_per_minute=2) as manager:
        await manager.get_token()
        await manager.refresh()
        with pytest.raises(wxauth.RefreshBudgetError) as caught:
            await manager.refresh()
        assert 0 < caught.value.retry_after <= 60
        fake.assert_token_fetches(2)
        fake.advance(60.01)
        await manager.refresh()
    fake.assert_token_fetches(3)


async def test_an_outage_raises_fetch_errors_not_budget_errors(
    fake: FakeWeChat, wire: Wire
) -> None:
    """Thirty failing calls a second apart get TokenFetchError, never the
    RefreshBudgetError that counting failures against the budget would give."""
    async with managed(fake, wire, max_fetches_per_minute=3, retries=0) as manager:
        fake.fail_next(1000, on="token", status=502)
        for _ in range(30):
            with pytest.raises(wxauth.WxAuthError) as caught:
                await manager.get_token()
            assert type(caught.value) is wxauth.TokenFetchError
            fake.advance(1)
        fake.clear_faults()
        assert await manager.get_token() == fake.latest_token()
    assert manager.stats.failures >= 25


async def test_failures_in_a_row_pause_the_next_fetch(fake: FakeWeChat, wire: Wire) -> None:
    """After two failures in a row the next call, at once, gets TokenFetchError without a
    request ("next try in"); once the pause is over it fetches."""
    async with managed(fake, wire, retries=0) as manager:
        fake.fail_next(2, on="token", status=500)
        for _ in range(2):
            with pytest.raises(wxauth.TokenFetchError):
                await manager.get_token()
        with pytest.raises(wxauth.TokenFetchError, match="next try in"):
            await manager.get_token()
        fake.assert_token_fetches(2)
        fake.advance(1.01)
        assert await manager.get_token() == fake.latest_token()
    fake.assert_token_fetches(3)


async def test_a_replacement_rejected_at_once_is_held(fake: FakeWeChat, wire: Wire) -> None:
    """The token fetched to replace a rejected one, itself rejected at once, is held
    (invalidate returns False, the same token is served); 31 s later it is dropped."""
    async with managed(fake, wire) as manager:
        first = await manager.get_token()
        assert await manager.invalidate(first) is True
        second = await manager.get_token()
        assert await manager.invalidate(second) is False  # held
        assert await manager.get_token() == second
        fake.assert_token_fetches(2)
        fake.advance(31)
        assert await manager.invalidate(second) is True
        assert await manager.get_token() not in (first, second)
    fake.assert_token_fetches(3)


# -- sources ----------------------------------------------------------------------------------


def forces(wire: Wire) -> list[bool]:
    """The force_refresh flag of each stable_token request, in order."""
    return [bool(json.loads(s.content)["force_refresh"]) for s in wire.to("/cgi-bin/stable_token")]


async def test_stable_source_asks_normal_mode_first(fake: FakeWeChat, wire: Wire) -> None:
    """After a real retirement, normal mode already hands out a new token: no force."""
    async with managed(fake, wire, source="stable") as manager:
        first = await manager.get_token()
        fake.retire_all()
        assert await manager.invalidate(first)
        assert await manager.get_token() != first
    assert forces(wire) == [False, False]
    assert all(SECRET not in str(s.url) for s in wire.sent)


async def test_stable_source_escalates_to_force_refresh(fake: FakeWeChat, wire: Wire) -> None:
    """When normal mode hands back the very token that was rejected, the source asks
    again with force_refresh."""
    async with managed(fake, wire, source="stable") as manager:
        first = await manager.get_token()
        assert await manager.invalidate(first)  # WeChat still calls it current
        second = await manager.get_token()
    assert second != first
    assert forces(wire) == [False, False, True]


async def test_wecom_source_keeps_one_token_per_application(fake: FakeWeChat, wire: Wire) -> None:
    """Two WeCom applications of one corp get, cache and invalidate separate tokens,
    under keys that hold no corpsecret."""
    async with (
        managed(fake, wire, CORPID, CORP_SECRET_A, source="wecom") as a,
        managed(fake, wire, CORPID, CORP_SECRET_B, source="wecom") as b,
    ):
        token_a, token_b = await a.get_token(), await b.get_token()
        assert token_a != token_b
        assert a.key != b.key
        assert not leaks(a.key + b.key, [CORP_SECRET_A, CORP_SECRET_B])
        fake.retire(token_a)
        assert await a.invalidate(token_a)
        assert await a.get_token() not in (token_a, token_b)
        assert await b.get_token() == token_b
    assert {s.path for s in wire.sent} == {"/cgi-bin/gettoken"}
    assert {s.url.host for s in wire.sent} == {"qyapi.weixin.qq.com"}
    fake.assert_token_fetches(3)


async def test_wecom_refusals_are_credential_errors(fake: FakeWeChat) -> None:
    """A wrong corpsecret is CredentialError 40001; a caller IP not trusted is 60020
    with .ip naming it."""
    fake.add_wecom_app("wwguarded", "guarded-corp-secret-0123", ip_allowlist=["10.0.0.1"])
    async with managed(fake, Wire(fake), CORPID, "not-the-corp-secret-x", source="wecom") as m:
        with pytest.raises(wxauth.CredentialError) as wrong:
            await m.get_token()
    assert wrong.value.errcode == 40001
    assert "not-the-corp-secret-x" not in str(wrong.value)
    outsider = Wire(fake, client_ip="10.9.8.7")
    async with managed(
        fake, outsider, "wwguarded", "guarded-corp-secret-0123", source="wecom"
    ) as m:
        with pytest.raises(wxauth.CredentialError) as refused:
            await m.get_token()
    assert refused.value.errcode == 60020
    assert refused.value.ip == "10.9.8.7"


@pytest.mark.parametrize("kind", ["def", "async def"])
async def test_callable_source(fake: FakeWeChat, kind: str) -> None:
    """A callable returning (token, expires_in) is a source, called once per token
    however many tasks ask; a plain function runs in a worker thread (it may block: the
    loop runs on meanwhile), an ``async def`` one is awaited on the loop."""
    threads: list[int] = []
    go = threading.Event()
    async_go = anyio.Event()

    def central() -> tuple[str, float]:
        threads.append(threading.get_ident())
        # Blocks until a task of the loop sets it: on the loop thread this would hang.
        assert go.wait(5), "the callable blocked the event loop"
        return f"central-token-{len(threads)}", 7200

    async def acentral() -> tuple[str, float]:
        threads.append(threading.get_ident())
        await async_go.wait()
        return f"central-token-{len(threads)}", 7200

    source: Callable[[], Any] = central if kind == "def" else acentral
    results: list[str] = []
    async with wxauth.AsyncTokenManager("wxcentral", source=source, clock=fake.clock) as manager:

        async def get() -> None:
            results.append(await manager.get_token())

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(get)
            await anyio.wait_all_tasks_blocked()
            go.set()
            async_go.set()
        assert results == ["central-token-1"] * 20
        fake.advance(7200)
        assert await manager.get_token() == "central-token-2"
    loop_thread = threading.get_ident()
    if kind == "def":
        assert loop_thread not in threads
    else:
        assert threads == [loop_thread] * 2


@pytest.mark.parametrize("kind", ["def", "async def"])
async def test_a_failing_callable_is_a_fetch_error_without_its_message(kind: str) -> None:
    """What a callable raises becomes TokenFetchError naming only the exception type."""

    def broken() -> tuple[str, float]:
        raise RuntimeError("password=hunter2 in a connection string")

    async def abroken() -> tuple[str, float]:
        raise RuntimeError("password=hunter2 in a connection string")

    source: Callable[[], Any] = broken if kind == "def" else abroken
    async with wxauth.AsyncTokenManager("wxcentral", source=source) as manager:
        with pytest.raises(wxauth.TokenFetchError) as caught:
            await manager.get_token()
    assert "hunter2" not in str(caught.value)
    assert "RuntimeError" in str(caught.value)


# -- errors -----------------------------------------------------------------------------------


async def test_a_wrong_secret_is_a_credential_error(fake: FakeWeChat, wire: Wire) -> None:
    """40125 invalid appsecret: CredentialError, the secret nowhere in it, not cached."""
    async with managed(fake, wire, secret="0123456789abcdef0123456789abcdef") as manager:
        with pytest.raises(wxauth.CredentialError) as caught:
            await manager.get_token()
        assert caught.value.errcode == 40125
        assert not leaks(str(caught.value) + repr(caught.value), [SECRET, "0123456789abcdef01"])
        assert await manager.peek() is None


async def test_an_ip_outside_the_whitelist_is_a_credential_error_naming_it(
    fake: FakeWeChat,
) -> None:
    """40164: CredentialError whose .ip is the caller's address."""
    fake.add_app("wxguarded000001", SECRET, ip_allowlist=["10.0.0.1"])
    async with managed(fake, Wire(fake, client_ip="10.9.8.7"), "wxguarded000001") as manager:
        with pytest.raises(wxauth.CredentialError) as caught:
            await manager.get_token()
    assert caught.value.errcode == 40164
    assert caught.value.ip == "10.9.8.7"
    assert "10.9.8.7" in str(caught.value)


FAULTS: dict[str, dict[str, Any]] = {
    "html": {"html": True},
    "timeout": {"hang": 10},
    "http502": {"status": 502},
    "system-busy": {"errcode": -1},
}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_broken_answer_is_a_token_fetch_error(
    fake: FakeWeChat, wire: Wire, fault: str
) -> None:
    """An HTML page, a timeout, HTTP 5xx or -1 busy: TokenFetchError (not a subclass),
    with no secret in it; the next call fetches again."""
    fake.fail_next(on="token", **FAULTS[fault])
    async with managed(fake, wire, retries=0, timeout=1) as manager:
        with pytest.raises(wxauth.WxAuthError) as caught:
            await manager.get_token()
        assert type(caught.value) is wxauth.TokenFetchError
        assert not leaks(str(caught.value) + repr(caught.value), [SECRET])
        assert await manager.get_token() == fake.latest_token()


async def test_retryable_failures_are_retried_within_one_fetch(
    fake: FakeWeChat, wire: Wire
) -> None:
    """retries=2: two -1 system busy answers, then the token, in one get_token()."""
    fake.fail_next(2, on="token", errcode=-1)
    async with managed(fake, wire, retries=2) as manager:
        assert await manager.get_token() == fake.latest_token()
    fake.assert_token_fetches(3)


SAME_AS_SYNC: dict[str, dict[str, Any]] = {
    "40013-invalid-appid": {"errcode": 40013},
    "40125-invalid-appsecret": {"errcode": 40125},
    "45009-quota": {"errcode": 45009},
    "-1-busy": {"errcode": -1},
    "http502": {"status": 502},
    "html": {"html": True},
    "timeout": {"hang": 10},
}


@pytest.mark.parametrize("fault", list(SAME_AS_SYNC))
async def test_async_raises_what_sync_raises(fake: FakeWeChat, wire: Wire, fault: str) -> None:
    """For each way a fetch fails, the async manager raises the sync manager's exception
    type with its errcode."""
    sync = sync_manager(fake, wire, retries=0, store=wxauth.MemoryStore())
    fake.fail_next(on="token", **SAME_AS_SYNC[fault])
    with pytest.raises(wxauth.WxAuthError) as sync_error:
        sync.get_token()
    fake.fail_next(on="token", **SAME_AS_SYNC[fault])
    async with managed(fake, wire, retries=0, store=wxauth.MemoryStore()) as manager:
        with pytest.raises(wxauth.WxAuthError) as async_error:
            await manager.get_token()
    assert type(async_error.value) is type(sync_error.value)
    assert getattr(async_error.value, "errcode", None) == getattr(sync_error.value, "errcode", None)


BAD_OPTIONS: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {
    "empty-appid": (("", SECRET), {}),
    "no-secret": ((APPID, None), {}),
    "empty-secret": ((APPID, ""), {}),
    "negative-margin": ((APPID, SECRET), {"refresh_margin": -1}),
    "zero-timeout": ((APPID, SECRET), {"timeout": 0}),
    "negative-retries": ((APPID, SECRET), {"retries": -1}),
    "unknown-source": ((APPID, SECRET), {"source": "stabel"}),
    "source-type": ((APPID, SECRET), {"source": 42}),
    "zero-budget": ((APPID, SECRET), {"max_fetches_per_minute": 0}),
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
async def test_bad_input_is_refused_as_the_sync_manager_refuses_it(case: str) -> None:
    """Every bad argument raises the exception type TokenManager raises for it, and the
    message shows no secret."""
    args, options = BAD_OPTIONS[case]
    with pytest.raises(Exception) as sync_error:
        wxauth.TokenManager(*args, **options)
    with pytest.raises(Exception) as async_error:
        wxauth.AsyncTokenManager(*args, **options)
    assert type(async_error.value) is type(sync_error.value)
    assert isinstance(async_error.value, (TypeError, ValueError))
    assert not leaks(str(async_error.value), [SECRET])


async def test_client_and_transport_are_exclusive(fake: FakeWeChat) -> None:
    async with httpx.AsyncClient(transport=Wire(fake)) as client:
        from wxauth.httpx import AsyncHttpxTransport

        with pytest.raises(ValueError, match="client"):
            wxauth.AsyncTokenManager(
                APPID, SECRET, client=client, transport=AsyncHttpxTransport(client)
            )


# -- cancellation -----------------------------------------------------------------------------


async def test_a_cancelled_waiter_does_not_cancel_the_fetch_for_the_others(
    fake: FakeWeChat, wire: Wire
) -> None:
    """A waiter cancelled while the fetch is in flight goes; the fetch goes on, and the
    leader and the other waiter get its token."""
    results: dict[str, str] = {}
    async with managed(fake, wire) as manager:

        async def get(name: str) -> None:
            results[name] = await manager.get_token()

        waiter_scope = anyio.CancelScope()

        async def cancelled_waiter() -> None:
            with waiter_scope:
                results["cancelled"] = await manager.get_token()

        wire.hold()
        async with anyio.create_task_group() as tg:
            tg.start_soon(get, "leader")
            await wire.wait_arrived()
            tg.start_soon(cancelled_waiter)
            tg.start_soon(get, "waiter")
            await anyio.wait_all_tasks_blocked()
            waiter_scope.cancel()
            await anyio.wait_all_tasks_blocked()
            wire.release()
    assert waiter_scope.cancelled_caught
    (token,) = fake.issued_tokens
    assert results == {"leader": token, "waiter": token}
    fake.assert_token_fetches(1)


async def test_a_cancelled_leader_leaves_no_flight_behind(fake: FakeWeChat, wire: Wire) -> None:
    """The fetching task is cancelled (its request held): the next caller fetches at
    once, neither stuck on the flight nor on the store lock."""
    async with managed(fake, wire) as manager:
        wire.hold()
        with anyio.move_on_after(5) as leader_scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(manager.get_token)
                await wire.wait_arrived()
                tg.cancel_scope.cancel()
        assert not leader_scope.cancelled_caught
        fake.assert_token_fetches(0)  # the held request never reached the emulator
        with anyio.fail_after(3):
            token = await manager.get_token()
    assert fake.issued_tokens == [token]


async def test_waiters_of_a_cancelled_leader_fetch_for_themselves(
    fake: FakeWeChat, wire: Wire
) -> None:
    """Tasks waiting on a leader that is cancelled are not cancelled with it: one of them
    fetches, and they all get that token."""
    results: list[str] = []
    async with managed(fake, wire) as manager:
        leader_scope = anyio.CancelScope()

        async def leader() -> None:
            with leader_scope:
                await manager.get_token()

        async def waiter() -> None:
            results.append(await manager.get_token())

        wire.hold()
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(leader)
                await wire.wait_arrived()
                for _ in range(3):
                    tg.start_soon(waiter)
                await anyio.wait_all_tasks_blocked()
                leader_scope.cancel()
    assert leader_scope.cancelled_caught
    (token,) = fake.issued_tokens
    assert results == [token] * 3
    fake.assert_token_fetches(1)


@pytest.mark.parametrize(
    "anyio_backend",
    [pytest.param(("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)}), id="trio")],
)
async def test_a_waiter_that_gives_up_raises_token_fetch_error() -> None:
    """A fetch that outlasts lock_timeout + lease gives up, for its leader and for every
    waiter, with the sync side's TokenFetchError, not a bare TimeoutError (virtual
    time: trio's MockClock)."""

    async def stuck() -> tuple[str, float]:
        await anyio.sleep(3600)
        return "never-" * 4, 7200

    manager = wxauth.AsyncTokenManager(
        "wxcentral", source=stuck, timeout=0.1, retries=0, lock_timeout=0.1
    )
    led: list[BaseException] = []

    async def lead() -> None:
        try:
            await manager.get_token()
        except wxauth.TokenFetchError as exc:
            led.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(lead)
        await anyio.wait_all_tasks_blocked()
        try:
            with pytest.raises(wxauth.TokenFetchError, match="gave up"):
                await manager.get_token()
        finally:
            tg.cancel_scope.cancel()
    assert len(led) == 1
    assert "gave up" in str(led[0])


async def test_managers_in_two_event_loops_share_a_fetch(
    fake: FakeWeChat, anyio_backend: str
) -> None:
    """A manager in another thread's event loop (as async views run by async_to_sync
    do) that waits for this loop's fetch of the same token is woken when it completes."""
    started, release, waiting = threading.Event(), threading.Event(), threading.Event()
    calls: list[int] = []
    outcome: dict[str, Any] = {}

    async def central() -> tuple[str, float]:  # one function: one key, one slot
        calls.append(1)
        started.set()
        assert await anyio.to_thread.run_sync(release.wait, 5)
        return f"central-token-{len(calls)}", 7200

    def other_loop() -> None:
        async def main() -> None:
            manager = wxauth.AsyncTokenManager("wxcentral", source=central, clock=fake.clock)

            async def get() -> None:
                try:
                    outcome["token"] = await manager.get_token()
                except BaseException as exc:
                    outcome["token"] = exc
                    raise
                outcome["at"] = time.monotonic()

            with anyio.move_on_after(1.5):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(get)
                    await anyio.wait_all_tasks_blocked()
                    waiting.set()

        try:
            anyio.run(main, backend=anyio_backend)
        finally:
            waiting.set()

    manager = wxauth.AsyncTokenManager("wxcentral", source=central, clock=fake.clock)
    thread = threading.Thread(target=other_loop)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(manager.get_token)
            assert await anyio.to_thread.run_sync(started.wait, 5)
            thread.start()
            assert await anyio.to_thread.run_sync(waiting.wait, 5)
            released_at = time.monotonic()
            release.set()
    finally:
        release.set()
        await anyio.to_thread.run_sync(thread.join, 10)
    assert outcome.get("token") == "central-token-1"
    assert outcome["at"] - released_at < 1.0
    assert calls == [1]


async def test_a_sync_fetch_in_flight_is_waited_for_off_the_loop(
    fake: FakeWeChat, wire: Wire
) -> None:
    """A TokenManager fetching in a thread holds the shared store's lock: an async
    manager of the same app waits for it without blocking the loop, then serves its
    token; one fetch."""
    started, release = threading.Event(), threading.Event()

    class HeldTokenRequests(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.path == "/cgi-bin/token":
                started.set()
                assert release.wait(5)
            return wire.handle_request(request)

    sync = wxauth.TokenManager(
        APPID,
        SECRET,
        clock=fake.clock,
        transport=HttpxTransport(httpx.Client(transport=HeldTokenRequests())),
    )
    results: list[str] = []
    async with managed(fake, wire) as manager:

        async def get() -> None:
            results.append(await manager.get_token())

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(anyio.to_thread.run_sync, sync.get_token)
                assert await anyio.to_thread.run_sync(started.wait, 5)
                tg.start_soon(get)
                await anyio.wait_all_tasks_blocked()
                assert results == []  # waiting, and this task runs meanwhile
                release.set()
        finally:
            release.set()
    assert results == fake.issued_tokens
    fake.assert_token_fetches(1)


# -- background refresh and lifecycle ----------------------------------------------------------


async def test_background_refresh_renews_before_the_margin(fake: FakeWeChat, wire: Wire) -> None:
    """Inside ``async with``, the background task fetches the first token and renews it
    ahead of the foreground margin, with no caller asking; it stops on exit."""
    async with managed(fake, wire, background_refresh=True, poll_interval=0.01) as manager:

        async def has_token() -> bool:
            return await manager.peek() is not None

        await eventually(has_token, what="the first background fetch")
        first = await manager.peek()
        assert first is not None
        # Past the background point (margin + lead), before the foreground margin.
        fake.advance(first.lifetime - manager.refresh_margin - 60)

        async def renewed() -> bool:
            current = await manager.peek()
            return current is not None and current.value != first.value

        await eventually(renewed, what="the background renewal")
        assert not first.needs_refresh(fake.clock(), manager.refresh_margin)
        assert manager.stats.background_fetches == 2
    assert fake.token_fetches == 2
    assert manager._task_group is None


async def test_aclose_closes_its_own_client_and_not_a_given_one(
    fake: FakeWeChat, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without client=, the manager's private AsyncClient is closed by aclose (and by
    ``async with``); a client passed in stays open."""
    created: list[httpx.AsyncClient] = []

    class Recorded(httpx.AsyncClient):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            created.append(self)

    monkeypatch.setattr(httpx, "AsyncClient", Recorded)
    with fake.serve() as url:
        own = wxauth.AsyncTokenManager(APPID, SECRET, api_base=url, clock=fake.clock)
        assert await own.get_token() == fake.latest_token()
        (private,) = created
        assert not private.is_closed
        await own.aclose()
        assert private.is_closed
        async with Recorded() as given:
            async with wxauth.AsyncTokenManager(
                APPID, SECRET, api_base=url, client=given, store=wxauth.MemoryStore()
            ) as other:
                await other.get_token()
            assert not given.is_closed
    assert len(created) == 2


async def test_sync_and_async_managers_of_one_app_share_one_token(
    fake: FakeWeChat, wire: Wire
) -> None:
    """A TokenManager and an AsyncTokenManager of the same app, neither given store=,
    hold one token: one fetch; a rejection seen by one is seen by the other, and so is
    the rejection streak."""
    sync = sync_manager(fake, wire)
    async with managed(fake, wire) as manager:
        first = await manager.get_token()
        assert sync.get_token() == first
        fake.assert_token_fetches(1)
        assert sync.invalidate(first) is True
        second = await manager.get_token()
        assert second != first
        assert sync.get_token() == second
        # The replacement rejected at once: held, by the streak the sync side started.
        assert await manager.invalidate(second) is False
        fake.advance(301)  # past the hold
        assert await manager.invalidate(second) is True
        third = await anyio.to_thread.run_sync(sync.get_token)
        assert await manager.get_token() == third
    fake.assert_token_fetches(3)


@pytest.mark.redis
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_async_redis_store_and_sync_redis_store_share_one_token(
    fake: FakeWeChat, wire: Wire, redis_url: str
) -> None:
    """AsyncRedisStore and RedisStore on one Redis (one prefix): one token, one fetch,
    and compare-and-invalidate across them."""
    from wxauth.stores import AsyncRedisStore

    sync = sync_manager(fake, wire, store=wxauth.RedisStore.from_url(redis_url))
    async_store = AsyncRedisStore.from_url(redis_url)
    try:
        async with managed(fake, wire, store=async_store) as manager:
            first = await manager.get_token()
            assert sync.get_token() == first
            assert manager.key == sync.key
            fake.assert_token_fetches(1)
            assert sync.invalidate(first) is True
            assert await manager.invalidate(first) is False
            second = await manager.get_token()
            assert sync.get_token() == second != first
    finally:
        await async_store.aclose()
    fake.assert_token_fetches(2)


# -- secrets ----------------------------------------------------------------------------------


async def round_trip(fake: FakeWeChat, wire: Wire) -> list[str]:
    """Fetch, a rejection, a refetch with a retried 502, a failed forced refresh and a
    stable fetch; return every token issued."""
    async with managed(fake, wire, retries=1) as manager:
        first = await manager.get_token()
        assert await manager.invalidate(first)
        fake.fail_next(on="token", status=502)
        await manager.get_token()
        fake.fail_next(2, on="token", status=502)
        with pytest.raises(wxauth.TokenFetchError):
            await manager.refresh()
    async with managed(fake, wire, source="stable") as stable:
        await stable.get_token()
    return fake.issued_tokens


def all_log_text(caplog: pytest.LogCaptureFixture, names: tuple[str, ...] | None = None) -> str:
    records = [r for r in caplog.records if names is None or r.name.split(".")[0] in names]
    return "\n".join(f"{r.getMessage()} | {r.msg!s} | {r.args!r}" for r in records)


async def test_no_secret_or_token_in_wxauths_debug_logs(
    fake: FakeWeChat, wire: Wire, caplog: pytest.LogCaptureFixture
) -> None:
    """What the ``wxauth`` logger says at DEBUG about fetches, rejections and failures
    names the appid and shows no secret and no whole token."""
    caplog.set_level(logging.DEBUG)
    tokens = await round_trip(fake, wire)
    text = all_log_text(caplog, ("wxauth",))
    assert APPID in text
    assert not leaks(text, [SECRET, *tokens])


async def test_no_secret_or_token_in_any_debug_log_line(
    fake: FakeWeChat, wire: Wire, caplog: pytest.LogCaptureFixture
) -> None:
    """Every log record at DEBUG, httpx's request lines included, shows no secret and no
    whole token."""
    caplog.set_level(logging.DEBUG)
    tokens = await round_trip(fake, wire)
    assert not leaks(all_log_text(caplog) + caplog.text, [SECRET, *tokens])


async def test_reprs_and_keys_hide_the_secret_and_the_token(fake: FakeWeChat, wire: Wire) -> None:
    """The manager, its source, its store, its key and the Token show no secret and no
    whole token."""
    async with managed(fake, wire) as manager:
        token = await manager.get()
        shown = " ".join(
            [
                repr(manager),
                str(manager),
                repr(manager.source),
                repr(manager.store),
                manager.key,
                repr(token),
                str(token),
            ]
        )
    assert APPID in repr(manager)
    assert not leaks(shown, [SECRET, token.value])


def chain(exc: BaseException) -> list[BaseException]:
    todo, seen = [exc], []
    while todo:
        current = todo.pop()
        if all(current is not s for s in seen):
            seen.append(current)
            todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return seen


@pytest.mark.parametrize("source", ["classic", "stable"])
@pytest.mark.parametrize("fault", ["timeout", "http502", "html", "errcode40164", "errcode40013"])
async def test_no_secret_in_the_locals_of_a_failed_fetch(
    fake: FakeWeChat, wire: Wire, source: str, fault: str
) -> None:
    """traceback.TracebackException(capture_locals=True), as error trackers record it,
    of what a failed fetch raises (causes and contexts included), and the message and
    repr of each, show no secret; nor does what a waiter on that fetch gets."""
    if fault.startswith("errcode"):
        fake.fail_next(2, on="token", errcode=int(fault.removeprefix("errcode")))
    else:
        fake.fail_next(2, on="token", **FAULTS[fault])
    errors: list[BaseException] = []
    async with managed(fake, wire, source=source, retries=1, timeout=1) as manager:

        async def get() -> None:
            try:
                await manager.get_token()
            except wxauth.WxAuthError as exc:
                errors.append(exc)

        wire.hold()
        async with anyio.create_task_group() as tg:
            tg.start_soon(get)
            await wire.wait_arrived()
            tg.start_soon(get)
            await anyio.wait_all_tasks_blocked()
            wire.release()
    assert len(errors) == 2
    for error in errors:
        for link in chain(error):
            text = "".join(
                traceback.TracebackException(
                    type(link), link, link.__traceback__, capture_locals=True
                ).format()
            )
            assert not leaks(text + str(link) + repr(link), [SECRET]), text


@pytest.mark.parametrize("source", ["classic", "wecom"])
async def test_no_secret_in_the_locals_of_a_fetch_cut_by_a_deadline(
    fake: FakeWeChat, wire: Wire, source: str
) -> None:
    """A caller's deadline (anyio.fail_after) cuts a token request in flight: the
    TimeoutError and the cancellation it came from (traceback.TracebackException with
    capture_locals=True) show no secret."""
    # No local of this frame (which is on the traceback) holds the secret.
    async with managed(fake, wire, *CREDENTIALS[source], source=source) as manager:
        wire.hold()
        with pytest.raises(TimeoutError) as caught, anyio.fail_after(0.05):
            await manager.get_token()  # held until after the deadline
        wire.release()
    links = chain(caught.value)
    assert len(links) > 1  # the cancellation is on the chain
    for link in links:
        text = "".join(
            traceback.TracebackException(
                type(link), link, link.__traceback__, capture_locals=True
            ).format()
        )
        assert not leaks(text, [CREDENTIALS[source][1]]), text
