"""The store contract for async stores, and what only async code can get wrong.

The cases of ``tests/test_store_contract.py`` run here unchanged (imported below, so
pytest collects them with this module's fixtures) against ``as_async(MemoryStore())``,
``as_async(FileStore(...))``, :class:`AsyncRedisStore` and ``as_async(RedisStore(...))``,
each under asyncio and trio: :class:`BlockingStore` drives the async store on an event
loop in a blocking portal, so the cases' threads become tasks racing on that loop.
``redis.asyncio`` speaks asyncio only, so :class:`AsyncRedisStore` runs under asyncio,
and trio reaches Redis through ``as_async(RedisStore(...))``.

The tests below those run on the loop itself (anyio's pytest plugin): a lock wait never
blocks the loop, a cancelled waiter never holds the lock, a release from a cancelled
task still releases, and sync and async services on one store share one token, lock
and fence.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import pytest
import test_store_contract as contract
from _store_contract_helpers import KEY, OTHER, StoreFactory, token
from anyio.from_thread import BlockingPortal, start_blocking_portal
from test_store_contract import (  # noqa: F401 - collected here, with the fixtures below
    test_a_later_fence_wins_whatever_the_clocks_say,
    test_delete_if_only_deletes_the_value_seen,
    test_fences_grow_with_every_acquisition,
    test_get_missing_is_none,
    test_held_is_false_after_a_takeover,
    test_held_until_released,
    test_keys_are_independent,
    test_lease_overrun_is_taken_over_without_freeing_the_successor,
    test_lock_as_context_manager,
    test_lock_is_exclusive_until_released,
    test_lock_of_a_killed_holder_is_taken_over_within_the_lease,
    test_meta_expires_after_its_ttl,
    test_meta_never_collides_with_tokens,
    test_meta_round_trip_and_overwrite,
    test_racing_invalidations_drop_once,
    test_racing_lock_holders_never_overlap,
    test_racing_writers_leave_the_newest_token,
    test_release_of_a_lock_not_held_raises,
    test_set_then_get_round_trips_exactly,
    test_set_unless_newer_keeps_the_newer_token,
    test_set_with_equal_fetched_at_overwrites,
    test_waiter_picks_up_the_token_the_holder_wrote,
)

import wxauth.stores
from wxauth import FileStore, MemoryStore, RedisStore, StoreError, StoreLock, Token, TokenStore
from wxauth.stores import AsyncRedisStore, AsyncStoreLock, AsyncTokenStore, LockContext, as_async

_T = TypeVar("_T")

PREFIX = "wxauth-contract:"

#: The (event loop, store) pairs the contract runs on.
COMBINATIONS = [
    ("asyncio", "memory"),
    ("trio", "memory"),
    ("asyncio", "file"),
    ("trio", "file"),
    ("asyncio", "redis"),
    ("asyncio", "redis-threads"),
    ("trio", "redis-threads"),
]


class BlockingLock(LockContext):
    """An :class:`AsyncStoreLock` seen through a blocking portal."""

    def __init__(self, lock: AsyncStoreLock, portal: BlockingPortal) -> None:
        self.async_lock = lock
        self._portal = portal

    @property
    def fence(self) -> int:
        return self.async_lock.fence

    def held(self) -> bool:
        return self._portal.call(self.async_lock.held)

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        return self._portal.call(self.async_lock.acquire, blocking, timeout)

    def release(self) -> None:
        self._portal.call(self.async_lock.release)

    def __repr__(self) -> str:
        return repr(self.async_lock)


class BlockingStore(TokenStore):
    """An :class:`AsyncTokenStore` seen through a blocking portal: every call runs as a
    task on the portal's event loop, so the synchronous contract cases drive it."""

    def __init__(self, store: AsyncTokenStore, portal: BlockingPortal) -> None:
        self.async_store = store
        self.shared = store.shared
        self._portal = portal

    def get(self, key: str) -> Token | None:
        return self._portal.call(self.async_store.get, key)

    def set(self, key: str, token: Token) -> bool:
        return self._portal.call(self.async_store.set, key, token)

    def delete_if(self, key: str, value: str) -> bool:
        return self._portal.call(self.async_store.delete_if, key, value)

    def lock(self, key: str, *, lease: float) -> StoreLock:
        return BlockingLock(self.async_store.lock(key, lease=lease), self._portal)

    def get_meta(self, key: str) -> str | None:
        return self._portal.call(self.async_store.get_meta, key)

    def set_meta(self, key: str, value: str, *, ttl: float) -> None:
        self._portal.call(partial(self.async_store.set_meta, key, value, ttl=ttl))

    def close(self) -> None:
        self._portal.call(self.async_store.aclose)

    def __repr__(self) -> str:
        return repr(self.async_store)


def open_async(variant: str, where: str, memory: MemoryStore) -> AsyncTokenStore:
    """One more async handle on the store of ``variant`` at ``where``."""
    if variant == "memory":
        return as_async(memory)
    if variant == "file":
        return as_async(FileStore(where))
    if variant == "redis":
        return AsyncRedisStore.from_url(where, prefix=PREFIX)
    return as_async(RedisStore.from_url(where, prefix=PREFIX))


def open_sync(variant: str, where: str, memory: MemoryStore) -> TokenStore:
    """A synchronous handle on the same store, as a sync service would open it."""
    if variant == "memory":
        return memory
    if variant == "file":
        return FileStore(where)
    return RedisStore.from_url(where, prefix=PREFIX)


def _place(variant: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if variant == "file":
        return str(tmp_path / "tokens")
    if variant.startswith("redis"):
        return str(request.getfixturevalue("redis_url"))
    return ""


# -- the contract, through a blocking portal ---------------------------------------------


@pytest.fixture(
    params=[
        pytest.param(c, id="-".join(c), marks=[pytest.mark.redis] if "redis" in c[1] else [])
        for c in COMBINATIONS
    ]
)
def kind(request: pytest.FixtureRequest) -> tuple[str, str]:
    return tuple(request.param)  # type: ignore[return-value]


@pytest.fixture
def spec(kind: tuple[str, str], tmp_path: Path, request: pytest.FixtureRequest) -> tuple[str, str]:
    """What a child process needs to open the same store synchronously."""
    variant = kind[1]
    return ("redis" if variant.startswith("redis") else variant), _place(variant, tmp_path, request)


@pytest.fixture
def portal(kind: tuple[str, str]) -> Iterator[BlockingPortal]:
    with start_blocking_portal(kind[0]) as portal:
        yield portal


@pytest.fixture
def opener(
    kind: tuple[str, str], spec: tuple[str, str], portal: BlockingPortal
) -> Iterator[StoreFactory]:
    """Opens async handles on one store, each seen through the portal."""
    memory = MemoryStore()
    opened: list[BlockingStore] = []

    def open_store() -> TokenStore:
        opened.append(BlockingStore(open_async(kind[1], spec[1], memory), portal))
        return opened[-1]

    yield open_store
    for store in opened:
        store.close()


# The contract's two handles, opened by the opener above.
store = contract.store
peer = contract.peer


def test_async_stores_say_whether_they_are_shared_and_hide_tokens(
    store: BlockingStore, kind: tuple[str, str]
) -> None:
    """Only the memory store is private; no async store or lock repr shows a token."""
    store.set(KEY, token("SECRET-TOKEN-VALUE"))
    async_store = store.async_store
    assert async_store.shared is (kind[1] != "memory")
    for shown in (async_store, async_store.lock(KEY, lease=1)):
        assert "SECRET-TOKEN-VALUE" not in repr(shown)


# -- on the event loop ---------------------------------------------------------------------

#: Longest pause the event loop may take while a task waits for a lock.
MAX_LOOP_GAP = 0.05


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(
    params=[
        "memory",
        "file",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("redis-threads", marks=pytest.mark.redis),
    ]
)
def variant(request: pytest.FixtureRequest, anyio_backend: str) -> str:
    if request.param == "redis" and anyio_backend != "asyncio":
        pytest.skip("redis.asyncio speaks asyncio only: trio runs redis-threads")
    return str(request.param)


class Pair:
    """An async store and a synchronous handle on the same data, as an async service
    and a sync one (another thread or process) would each open it."""

    def __init__(self, variant: str, where: str) -> None:
        self.variant, self.where = variant, where
        self.memory = MemoryStore()
        self.sync = open_sync(variant, where, self.memory)
        self.opened: list[AsyncTokenStore] = []

    def open(self) -> AsyncTokenStore:
        """One more async handle (each with its own client for Redis)."""
        self.opened.append(open_async(self.variant, self.where, self.memory))
        return self.opened[-1]


@pytest.fixture
async def pair(variant: str, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    pair = Pair(variant, _place(variant, tmp_path, request))
    yield pair
    for store in pair.opened:
        await store.aclose()
    pair.sync.close()


async def in_thread(func: Callable[..., _T], *args: Any) -> _T:
    """Run a synchronous store call off the event loop, as another thread would."""
    return await anyio.to_thread.run_sync(partial(func, *args))


async def held_by_a_thread(sync: TokenStore) -> StoreLock:
    """Take ``sync``'s lock of KEY from a worker thread; return it, held."""
    lock = sync.lock(KEY, lease=30)
    assert await in_thread(lock.acquire, False)
    return lock


@pytest.mark.anyio
async def test_sync_and_async_services_share_one_token_lock_and_fence(pair: Pair) -> None:
    """What either side writes the other reads; a lock either holds the other cannot
    take; fences grow across both; compare-and-delete and meta records cross over."""
    store, sync = pair.open(), pair.sync
    assert await store.set(KEY, token("from-async", 1_800_000_000.0)) is True
    assert await in_thread(sync.get, KEY) == token("from-async", 1_800_000_000.0)
    assert await in_thread(sync.set, KEY, token("from-sync", 1_800_000_100.0)) is True
    assert await store.get(KEY) == token("from-sync", 1_800_000_100.0)
    assert await store.set(KEY, token("older", 1_800_000_050.0)) is False
    await store.set_meta(OTHER, "budget", ttl=60)
    assert await in_thread(sync.get_meta, OTHER) == "budget"
    assert await store.delete_if(KEY, "from-sync") is True
    assert await in_thread(sync.get, KEY) is None

    sync_lock = await held_by_a_thread(sync)
    sync_fence = sync_lock.fence
    async_lock = store.lock(KEY, lease=30)
    assert await async_lock.acquire(blocking=False) is False
    await in_thread(sync_lock.release)
    assert await async_lock.acquire(timeout=5) is True
    assert async_lock.fence > sync_fence > 0
    assert await async_lock.held() is True
    assert await in_thread(sync.lock(KEY, lease=30).acquire, False) is False
    async_fence = async_lock.fence
    await async_lock.release()
    assert await async_lock.held() is False
    again = sync.lock(KEY, lease=30)
    assert await in_thread(again.acquire, True, 5.0) is True
    assert again.fence > async_fence
    await in_thread(again.release)


@pytest.mark.anyio
async def test_a_lock_wait_never_blocks_the_event_loop(pair: Pair) -> None:
    """While another thread holds the lock, acquire(timeout=1) waits its full second
    and a ticker task on the same loop keeps ticking every few milliseconds."""
    holder = await held_by_a_thread(pair.sync)
    lock = pair.open().lock(KEY, lease=30)
    gaps: list[float] = []

    async def tick() -> None:
        last = anyio.current_time()
        while True:
            await anyio.sleep(0.005)
            now = anyio.current_time()
            gaps.append(now - last)
            last = now

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(tick)
        started = anyio.current_time()
        assert await lock.acquire(timeout=1) is False
        waited = anyio.current_time() - started
        tasks.cancel_scope.cancel()
    await in_thread(holder.release)
    assert 0.9 <= waited < 3.0
    assert len(gaps) >= 20
    assert max(gaps) < MAX_LOOP_GAP, f"the loop stalled for {max(gaps) * 1000:.0f} ms"


@pytest.mark.anyio
async def test_a_cancelled_waiter_never_holds_the_lock(pair: Pair) -> None:
    """A waiter cancelled mid-wait returns at once and holds nothing, even after the
    holder lets go: the next caller gets the lock."""
    holder = await held_by_a_thread(pair.sync)
    waiter = pair.open().lock(KEY, lease=30)
    with anyio.move_on_after(0.1) as scope:
        await waiter.acquire()
    assert scope.cancelled_caught
    assert waiter.fence == 0
    assert await waiter.held() is False
    await in_thread(holder.release)
    successor = pair.open().lock(KEY, lease=30)
    assert await successor.acquire(timeout=5) is True
    assert await waiter.held() is False
    await successor.release()


@pytest.mark.anyio
async def test_a_release_from_a_cancelled_task_still_releases(pair: Pair) -> None:
    """``finally: await lock.release()`` in a cancelled task frees the lock."""
    lock = pair.open().lock(KEY, lease=30)
    with anyio.CancelScope() as scope:
        assert await lock.acquire(timeout=5)
        try:
            scope.cancel()
            await anyio.sleep(1)
        finally:
            await lock.release()
    assert scope.cancelled_caught
    other = pair.sync.lock(KEY, lease=30)
    assert await in_thread(other.acquire, False) is True
    await in_thread(other.release)


@pytest.mark.anyio
async def test_racing_tasks_under_the_lock_never_overlap(pair: Pair) -> None:
    """8 tasks on two handles x 5 read-increment-write cycles lose no increment."""
    handles = [pair.open(), pair.open()]
    inside: list[int] = []

    async def work(i: int) -> None:
        handle = handles[i % 2]
        for _ in range(5):
            lock = handle.lock(KEY, lease=30)
            assert await lock.acquire(timeout=20)
            try:
                assert not inside, "two holders at once"
                inside.append(i)
                count = int(await handle.get_meta("counter") or 0)
                await handle.set_meta("counter", str(count + 1), ttl=60)
                inside.pop()
            finally:
                await lock.release()

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tasks:
            for i in range(8):
                tasks.start_soon(work, i)
    assert await handles[0].get_meta("counter") == "40"


# -- the adapter ---------------------------------------------------------------------------


class GatedLock(LockContext):
    """A user store's lock whose acquire waits for ``gate``, then takes the lock."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.taken = 0
        self.released = 0

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        self.entered.set()
        assert self.gate.wait(10)
        self.taken += 1
        return True

    def release(self) -> None:
        self.released += 1


class GatedStore(TokenStore):
    """A user store (not a MemoryStore): the adapter runs it in worker threads."""

    shared = True

    def __init__(self) -> None:
        self.the_lock = GatedLock()
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def get(self, key: str) -> Token | None:
        return None

    def set(self, key: str, token: Token) -> bool:
        return True

    def delete_if(self, key: str, value: str) -> bool:
        return False

    def lock(self, key: str, *, lease: float) -> StoreLock:
        return self.the_lock

    def get_meta(self, key: str) -> str | None:
        return None

    def set_meta(self, key: str, value: str, *, ttl: float) -> None:
        pass


@pytest.mark.anyio
@pytest.mark.parametrize("delay", [0.0, 0.001, 0.005, 0.02])
async def test_a_lock_taken_as_its_waiter_is_cancelled_is_released(delay: float) -> None:
    """Whether the thread takes the lock just before, just after or well after its
    task is cancelled, every acquisition the task does not get is released: exactly
    once, by the adapter."""
    store = GatedStore()
    gated = store.the_lock
    lock = as_async(store).lock(KEY, lease=30)
    got: list[bool] = []

    async def wait() -> None:
        got.append(await lock.acquire())

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(wait)
        assert await in_thread(gated.entered.wait, 5)
        gated.gate.set()
        await anyio.sleep(delay)
        tasks.cancel_scope.cancel()
    if got == [True]:
        await lock.release()  # it won the race: the holder releases, as callers do
    with anyio.fail_after(5):  # the thread may still be on its way to take it
        while gated.taken == 0 or gated.released < gated.taken:
            await anyio.sleep(0.005)
    assert gated.taken == gated.released == 1


@pytest.mark.anyio
async def test_as_async_peeks_only_at_memory() -> None:
    """as_async(memory) reads tokens without I/O and names its sync store; other stores
    peek at nothing; aclose closes the wrapped store; an async store is its own async
    view."""
    memory = MemoryStore()
    memory.set(KEY, token("warm"))
    adapted = as_async(memory)
    assert adapted.sync_store is memory
    assert adapted.shared is False
    assert adapted.peek_local(KEY) == token("warm")
    assert adapted.peek_local(OTHER) is None
    assert await adapted.get(KEY) == token("warm")
    assert as_async(adapted) is adapted
    user_store = GatedStore()
    assert as_async(user_store).peek_local(KEY) is None
    await as_async(user_store).aclose()
    assert user_store.closed


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_async_redis_store_has_no_local_copy(dead_url: str) -> None:
    """AsyncRedisStore wraps no sync store and peeks at nothing; repr shows the prefix."""
    native = AsyncRedisStore.from_url(dead_url)
    assert native.peek_local(KEY) is None
    assert native.sync_store is None
    assert repr(native) == "AsyncRedisStore(prefix='wxauth:')"
    await native.aclose()


# -- AsyncRedisStore -----------------------------------------------------------------------


@pytest.fixture
def dead_url() -> Iterator[str]:
    """A Redis URL on a loopback port bound by a socket that never listens, so every
    connection is refused for as long as the test runs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"redis://127.0.0.1:{sock.getsockname()[1]}/0"


DEAD_REDIS_OPERATIONS: dict[str, Callable[[AsyncRedisStore], Any]] = {
    "read the token": lambda s: s.get(KEY),
    "write the token": lambda s: s.set(KEY, token("NEVER-SHOWN-TOKEN")),
    "invalidate the token": lambda s: s.delete_if(KEY, "NEVER-SHOWN-TOKEN"),
    "take the token lock": lambda s: s.lock(KEY, lease=5).acquire(timeout=1),
    "read a meta record": lambda s: s.get_meta(KEY),
    "write a meta record": lambda s: s.set_meta(KEY, "m", ttl=5),
}


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("what", list(DEAD_REDIS_OPERATIONS))
@pytest.mark.anyio
async def test_async_redis_down_is_a_store_error_naming_the_operation(
    what: str, dead_url: str
) -> None:
    """Each operation raises StoreError with RedisStore's wording: what failed and
    redis-py's message, no token, nothing chained."""
    store = AsyncRedisStore.from_url(dead_url, socket_connect_timeout=0.5)
    with pytest.raises(StoreError) as info:
        await DEAD_REDIS_OPERATIONS[what](store)
    await store.aclose()
    assert f"Redis store failed to {what} for key {KEY!r}: ConnectionError" in str(info.value)
    assert "NEVER-SHOWN-TOKEN" not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__context__ is None


@pytest.mark.redis
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_async_redis_store_works_with_decode_responses(redis_url: str) -> None:
    """A redis.asyncio client with decode_responses=True (str replies) shares the keys
    of a bytes-speaking RedisStore."""
    store = AsyncRedisStore.from_url(redis_url, prefix=PREFIX, decode_responses=True)
    sync = RedisStore.from_url(redis_url, prefix=PREFIX)
    try:
        assert await store.set(KEY, token("decoded")) is True
        assert await in_thread(sync.get, KEY) == token("decoded")
        assert await store.get(KEY) == token("decoded")
        await store.set_meta(KEY, "m", ttl=30)
        assert await store.get_meta(KEY) == "m"
        lock = store.lock(KEY, lease=30)
        assert await lock.acquire(blocking=False)
        assert await lock.held() is True
        await lock.release()
    finally:
        await store.aclose()
        sync.close()


@pytest.mark.redis
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_redis_store_on_an_asyncio_client_serves_async_managers(redis_url: str) -> None:
    """``RedisStore(redis.asyncio.Redis(...))``, as the issue's example writes it: an
    AsyncTokenManager uses it natively (one view per store), shares the token with a
    TokenManager on a redis.Redis client, and a sync caller gets a TypeError."""
    import httpx
    import redis.asyncio

    from wxauth import AsyncTokenManager, TokenManager
    from wxauth.stores import as_async
    from wxauth.testing import FakeWeChat

    appid, secret = "wx00000000000000a1", "a1" * 16
    fake = FakeWeChat()
    fake.add_app(appid, secret)
    store = RedisStore(redis.asyncio.Redis.from_url(redis_url), prefix=PREFIX)
    sync_store = RedisStore.from_url(redis_url, prefix=PREFIX)
    assert store.speaks_asyncio
    assert not sync_store.speaks_asyncio
    view = as_async(store)
    assert isinstance(view, AsyncRedisStore)
    assert as_async(store) is view
    try:
        async with (
            httpx.AsyncClient(transport=fake.httpx_transport()) as client,
            AsyncTokenManager(appid, secret, store=store, client=client) as tokens,
        ):
            first = await tokens.get_token()
            with fake.intercept():
                synced = TokenManager(appid, secret, store=sync_store).get_token()
            assert synced == first
            assert await tokens.invalidate(first) is True
            second = await tokens.get_token()
        assert second != first
        assert fake.token_fetches == 2
        with fake.intercept(), pytest.raises(TypeError, match=r"redis\.asyncio client"):
            TokenManager(appid, secret, store=store).get_token()
    finally:
        await view.aclose()
        sync_store.close()


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.anyio
async def test_async_redis_store_under_trio_says_what_to_use(dead_url: str) -> None:
    """redis.asyncio cannot run under trio: the error names the way that can."""
    store = AsyncRedisStore.from_url(dead_url)
    with pytest.raises(RuntimeError, match=r"as_async\(RedisStore"):
        await store.get(KEY)
    with pytest.raises(RuntimeError, match="asyncio only"):
        await store.lock(KEY, lease=5).acquire(blocking=False)


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.anyio
async def test_a_redis_store_on_redis_asyncio_under_trio_says_what_to_use(dead_url: str) -> None:
    """RedisStore(redis.asyncio client) under trio: the error names the client that works
    there (a redis.Redis), not the store the caller already used."""
    import redis.asyncio

    store = as_async(RedisStore(redis.asyncio.Redis.from_url(dead_url)))
    with pytest.raises(RuntimeError, match=r"give RedisStore a redis\.Redis client"):
        await store.get(KEY)


# -- the package ---------------------------------------------------------------------------


def test_async_store_names_are_exported() -> None:
    """The async interface and stores are part of wxauth.stores."""
    for name in ("AsyncTokenStore", "AsyncStoreLock", "as_async", "AsyncRedisStore"):
        assert name in wxauth.stores.__all__
        assert getattr(wxauth.stores, name) is not None
    assert wxauth.stores.AsyncRedisStore is AsyncRedisStore


def test_the_stores_import_without_anyio_or_redis() -> None:
    """anyio is the [httpx] extra and redis-py the [redis] one: wxauth and its stores
    import without either; the async parts say what is missing only when used."""
    code = """
import sys
sys.modules["anyio"] = None
sys.modules["redis"] = None
import wxauth, wxauth.stores
from wxauth.stores import AsyncStoreLock, AsyncTokenStore, MemoryStore, as_async
try:
    wxauth.stores.AsyncRedisStore
except ImportError:
    print("no anyio: AsyncRedisStore unavailable")
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "no anyio: AsyncRedisStore unavailable"
