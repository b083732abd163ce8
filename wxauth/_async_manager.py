"""``AsyncTokenManager``: the token manager for ``async`` code, on anyio.

The rules are the sync manager's, from the same code where they are not I/O: the
token requests and answers (:mod:`wxauth._protocol`), the sources' flows
(:meth:`~wxauth.sources.TokenSource.flow`), the guards (failure backoff, fetch budget,
rejection streak), the settings, the store key, the local copy. What differs is only the
I/O: an :class:`~wxauth.transport.AsyncTransport` (httpx by default), an
:class:`~wxauth.stores.AsyncTokenStore`, and single flight across the tasks of an event
loop. Nothing here blocks the loop: no ``time.sleep``, no blocking socket or lock.
Runs under asyncio and trio alike.

What stays here is the policy (when to fetch, what to drop) and the life cycle; the
fetch itself once decided (single flight, the store lock, the source, the write) is
``_async_fetcher``, the layer :class:`AsyncTokenManager` is built on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio

# _requests_session was defined here before the fetch moved out: still importable here.
from ._async_fetcher import AsyncTokenFetcher
from ._async_fetcher import _requests_session as _requests_session
from ._async_flight import Slot
from ._config import (
    DEFAULT_MAX_FETCHES_PER_DAY,
    DEFAULT_MAX_FETCHES_PER_MINUTE,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_REFRESH_MARGIN,
    DEFAULT_TIMEOUT,
    REJECTED_MEMORY,
    background_margin,
    store_and_key,
)
from ._guards import RECORD_TTL
from ._redact import redact_token
from ._secret import Secret
from ._token import Token
from .sources import DEFAULT_API_BASE, DEFAULT_BACKOFF, DEFAULT_RETRIES, TokenSource
from .stores._async import AsyncTokenStore, as_async
from .stores._base import TokenStore
from .stores._memory import MemoryStore
from .transport import AsyncTransport

if TYPE_CHECKING:
    import httpx

    from ._manager import TokenManager

__all__ = ["AsyncTokenManager"]

logger = logging.getLogger("wxauth")


class AsyncTokenManager(AsyncTokenFetcher):
    """Fetches, caches and refreshes the access token of one app, for ``async`` code.

    The options are those of :class:`~wxauth.TokenManager` that apply, plus ``client``
    (the ``httpx.AsyncClient`` token requests go through; default a private one, closed
    by :meth:`aclose`) or ``transport`` (any :class:`~wxauth.transport.AsyncTransport`).
    ``store`` is any :class:`~wxauth.stores.TokenStore` (used through
    :func:`~wxauth.stores.as_async`: a memory store directly, others in a worker thread)
    or :class:`~wxauth.stores.AsyncTokenStore` (such as
    :class:`~wxauth.stores.AsyncRedisStore`). Without ``store=``, it shares the
    process-wide default store with every sync and async manager of the same app, so a
    service that uses both holds one token.

    ``await get_token()`` is safe from many tasks: one fetch per app is in flight in an
    event loop (1000 tasks starting cold make one fetch), and with a shared store one
    per store. A cancelled waiter does not cancel the fetch for the others; a cancelled
    leader leaves no flight behind (the next caller fetches). ``background_refresh``
    runs inside ``async with manager:`` only, in a task of its own.
    """

    def __init__(
        self,
        appid: str,
        secret: str | Secret | None = None,
        *,
        api_base: str = DEFAULT_API_BASE,
        store: TokenStore | AsyncTokenStore | None = None,
        client: httpx.AsyncClient | None = None,
        transport: AsyncTransport | None = None,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] | None = None,
        source: TokenSource | Callable[[], Any] | str | None = None,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        lock_timeout: float | None = None,
        max_fetches_per_minute: int | None = DEFAULT_MAX_FETCHES_PER_MINUTE,
        max_fetches_per_day: int | None = DEFAULT_MAX_FETCHES_PER_DAY,
        background_refresh: bool = False,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        if isinstance(secret, str):
            secret = Secret(secret)  # no clear local, should a line below raise
        self._setup(
            appid,
            secret,
            api_base=api_base,
            source=source,
            refresh_margin=refresh_margin,
            timeout=timeout,
            clock=clock,
            retries=retries,
            backoff=backoff,
            lock_timeout=lock_timeout,
            max_fetches_per_minute=max_fetches_per_minute,
            max_fetches_per_day=max_fetches_per_day,
            poll_interval=poll_interval,
        )
        if client is not None and transport is not None:
            raise ValueError("pass client= or transport=, not both")
        self.store: AsyncTokenStore
        if isinstance(store, AsyncTokenStore):
            # The key a sync manager on the same data would use (one token for both).
            inner = store.sync_store
            key = self.source.key if inner is None else store_and_key(inner, self.source)[1]
            self.store = store
        else:
            resolved, key = store_and_key(store, self.source)
            self.store = as_async(resolved)
        self._use_key(key, shared=self.store.shared)
        self.background_refresh = background_refresh
        self._client = client
        self._own_client: httpx.AsyncClient | None = None
        self._transport = transport
        self._transport_given = transport is not None
        self._in_memory = isinstance(self.store.sync_store, MemoryStore)
        self._task_group: Any = None
        self._entered_in = -1
        # The flight slot of the thread last seen (the registry takes a lock to look up).
        self._slot_cache: tuple[int, Slot] | None = None
        self._background_scope: anyio.CancelScope | None = None

    @classmethod
    def from_sync(
        cls,
        manager: TokenManager,
        *,
        client: httpx.AsyncClient | None = None,
        transport: AsyncTransport | None = None,
    ) -> AsyncTokenManager:
        """The async twin of ``manager``: the same source, store, key and settings, so
        sync and async code of one service share one token and one budget."""
        return cls(
            manager.appid,
            store=manager.store,
            client=client,
            transport=transport,
            **manager._settings(),
        )

    def to_sync(self, **options: Any) -> TokenManager:
        """The sync twin of this manager (same source, store, key and settings); only
        for a store with a synchronous side (not an ``AsyncRedisStore``: build a
        :class:`~wxauth.TokenManager` on a :class:`~wxauth.stores.RedisStore` of the
        same Redis instead)."""
        sync_store = self.store.sync_store
        if sync_store is None:
            raise TypeError(
                f"{self.store!r} has no synchronous side; give sync code a TokenManager "
                "on a RedisStore of the same Redis (same prefix) to share the token"
            )
        from ._manager import TokenManager

        return TokenManager(self.appid, store=sync_store, **self._settings(), **options)

    # -- the API ----------------------------------------------------------------------

    def cached_token(self) -> str | None:
        """The token if it is fresh and known without I/O; else ``None``."""
        now = self._clock()
        value = self._local.value(now)
        if value is not None:
            return value
        current = self.store.peek_local(self._key)
        if current is None or current.needs_refresh(now, self.refresh_margin):
            return None
        return current.value

    async def get_token(self) -> str:
        """Return a valid access token (see :meth:`wxauth.TokenManager.get_token`)."""
        entry = self._local.entry
        if entry is not None and self._clock() < entry[1]:
            return entry[0].value
        if self._in_memory:  # the warm path of get(), inlined: every call takes it
            current = self.store.peek_local(self._key)
            if current is not None and not current.needs_refresh(
                self._clock(), self.refresh_margin
            ):
                return current.value
        return (await self.get()).value

    async def get(self) -> Token:
        """Like :meth:`get_token`, but return the :class:`~wxauth.Token`."""
        if self._in_memory:  # read without I/O (and without a coroutine per call)
            current = self.store.peek_local(self._key)
        else:
            current = await self.store.get(self._key)
        if current is not None:
            now = self._clock()
            if not current.needs_refresh(now, self.refresh_margin):
                self._keep(current)
                return current
            if now < self._ahead_retry_at and not current.is_expired(now):
                return current  # a refresh ahead failed moments ago: do not hammer
        return await self._refresh(current)

    async def peek(self) -> Token | None:
        """The stored token, if any, without fetching (may be expired)."""
        return await self.store.get(self._key)

    async def invalidate(self, token: str) -> bool:
        """Drop the cached token only if it is still ``token``; say whether it did (see
        :meth:`wxauth.TokenManager.invalidate`, including the hold of a replacement
        token rejected again within minutes)."""
        self._local.drop(token)
        self._rejected = token
        store = self.store
        stored = await store.get(self._key)
        if stored is None or stored.value != token:
            return False
        streak = self._streak
        held, record = streak.hold(await store.get_meta(streak.key), stored, self._clock())
        if record is not None:
            await store.set_meta(streak.key, record, ttl=RECORD_TTL)
        if held:
            return False
        dropped = await store.delete_if(self._key, token)
        if dropped:
            await store.set_meta(f"{self._key}:rejected", token, ttl=REJECTED_MEMORY)
            record = streak.dropped(await store.get_meta(streak.key), stored, self._clock())
            await store.set_meta(streak.key, record, ttl=RECORD_TTL)
            self.stats.invalidations += 1
            logger.info("invalidated the token of appid=%s (%s)", self.appid, redact_token(token))
        return dropped

    async def refresh(self) -> str:
        """Fetch a new token now, whatever the cache holds, and return it."""
        current = await self.store.get(self._key)
        return (await self._refresh(current, force=True)).value

    # -- background refresh and lifecycle ------------------------------------------------

    async def _background_loop(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Renew ahead of the foreground margin until :meth:`aclose` cancels this task's
        own scope (never the scope of the task that opened the manager)."""
        with anyio.CancelScope() as scope:
            self._background_scope = scope
            task_status.started()
            failures = 0
            while True:
                try:
                    delay = min(await self._background_step(), self.poll_interval)
                    failures = 0
                except Exception as exc:
                    failures += 1
                    delay = min(max(self.backoff, 1.0) * 2 ** (failures - 1), 60.0)
                    logger.warning(
                        "background refresh for appid=%s failed (%s); retrying in %.0fs",
                        self.appid,
                        exc,
                        delay,
                    )
                await anyio.sleep(delay)

    async def _background_step(self) -> float:
        """One look: the seconds until the next one is due (the sync manager's rule)."""
        current = await self.store.get(self._key)
        now = self._clock()
        if current is not None and not current.is_expired(now):
            due = current.expires_at - background_margin(self.refresh_margin, current.lifetime)
            if now < due:
                self._keep(current)
                return due - now
        margin = (
            0.0 if current is None else background_margin(self.refresh_margin, current.lifetime)
        )
        token = await self._refresh(current, margin=margin, background=True)
        if current is not None and token.value == current.value:
            return min(self.poll_interval, 1.0)  # another process holds the fetch
        due = token.expires_at - background_margin(self.refresh_margin, token.lifetime)
        return max(due - self._clock(), 0.0)

    async def __aenter__(self) -> AsyncTokenManager:
        if self.background_refresh:
            group = anyio.create_task_group()
            await group.__aenter__()
            self._task_group, self._entered_in = group, anyio.get_current_task().id
            await group.start(self._background_loop)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
        group, self._task_group = self._task_group, None
        if group is not None:  # aclose() ran in another task: exit the group here
            await group.__aexit__(None, None, None)

    async def aclose(self) -> None:
        """Stop the background refresh (if running) and close the private client.

        Safe from any task: the refresh task is cancelled at once through its own
        scope; its task group is left (as anyio requires) by the task that entered it,
        here or in ``__aexit__``."""
        scope, self._background_scope = self._background_scope, None
        if scope is not None:
            scope.cancel()
        group = self._task_group
        if group is not None and anyio.get_current_task().id == self._entered_in:
            self._task_group = None
            await group.__aexit__(None, None, None)
        if not self._transport_given:
            self._transport = None  # made anew, on a new client if need be, on next use
        if self._own_client is not None:
            client, self._own_client = self._own_client, None
            await client.aclose()
