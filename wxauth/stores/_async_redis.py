"""``AsyncRedisStore``: :class:`~wxauth.stores.RedisStore` for asyncio code, on a
``redis.asyncio`` client.

The keys, the Lua scripts (write-unless-newer, compare-and-delete, the lease lock and
its fence, release by owner) and the polling pace are :class:`RedisStore`'s, taken
from one place (``_redis_common``): a sync service on :class:`RedisStore` and an async
one on :class:`AsyncRedisStore`, on one Redis with one prefix, share one token, one
lock and one fence counter. See :mod:`wxauth.stores._redis` for the layout and why
waiters poll.

``redis.asyncio`` speaks asyncio only, so :class:`AsyncRedisStore` does too: under trio
every operation raises ``RuntimeError``. There, use ``as_async(RedisStore(...))``,
which runs the synchronous client in worker threads, on the same keys.

Cancellation: taking the lock and releasing it are shielded from cancellation, so a
cancelled waiter never ends up holding a lock it does not know about, and a
``finally: await lock.release()`` in a cancelled task still reaches Redis. The shield
lasts at most the lock's lease (a lock taken by a reply that never came frees itself
when the lease runs out); past it the call raises :class:`~wxauth.StoreError`. Give
the client a ``socket_timeout`` all the same.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from .._errors import StoreError
from .._token import Token
from . import _redis_common as common
from ._async import AsyncStoreLock, AsyncTokenStore

if TYPE_CHECKING:
    import redis.asyncio

__all__ = ["AsyncRedisStore"]

logger = logging.getLogger("wxauth")

_T = TypeVar("_T")


def _import_redis_asyncio() -> ModuleType:
    common.import_redis("AsyncRedisStore")  # the ImportError that names the extra to install
    import redis.asyncio

    return redis.asyncio


def _require_asyncio() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "AsyncRedisStore (and a RedisStore on a redis.asyncio client) runs on asyncio "
            "only, as redis.asyncio does; under another event loop (trio) give RedisStore a "
            "redis.Redis client: as_async(RedisStore(redis.Redis(...))) shares the keys"
        ) from None


async def _poll_until(
    attempt: Callable[[], Awaitable[bool]], timeout: float | None, *, first: float, cap: float
) -> bool:
    """Await ``attempt`` until it returns ``True`` or ``timeout`` seconds pass (``None``:
    no limit), pausing ``first`` seconds and doubling up to ``cap`` between tries, with
    jitter: :func:`~wxauth.stores.poll_until` for the event loop. The timeout ends a
    pause, never an attempt in flight."""
    with anyio.move_on_after(timeout):
        pause = first
        while not await attempt():
            await anyio.sleep(pause * random.uniform(0.5, 1.0))
            pause = min(pause * 2, cap)
        return True
    return False


class AsyncRedisStore(common.RedisKeys, AsyncTokenStore):
    """Keep tokens in Redis from asyncio code, shared with every :class:`RedisStore`.

    ``AsyncRedisStore(redis.asyncio.Redis(...), prefix="wxauth:")`` (install
    ``wxauth[redis]``), or :meth:`from_url`. Same keys and Lua scripts as
    :class:`RedisStore`, so sync and async services share one token in one Redis.
    Every operation is one awaited round trip; the lock is the same lease lock, polled
    with ``anyio.sleep`` (2 ms doubling to 50 ms) so the event loop never waits.

    When Redis cannot be reached, or answers with an error, every method raises
    :class:`~wxauth.StoreError` naming the operation and the key (never a command's
    arguments, never chained). Works with ``decode_responses`` on or off. asyncio
    only: under trio use ``as_async(RedisStore(...))``.
    """

    shared = True
    client: redis.asyncio.Redis

    def __init__(self, client: redis.asyncio.Redis, *, prefix: str = "wxauth:") -> None:
        self._bind(client, prefix, "AsyncRedisStore")

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "wxauth:", **options: Any) -> AsyncRedisStore:
        """Build a store on ``redis.asyncio.Redis.from_url(url, **options)``."""
        return cls(_import_redis_asyncio().Redis.from_url(url, **options), prefix=prefix)

    async def _call(self, what: str, key: str, op: Callable[[], Awaitable[_T]]) -> _T:
        """Await one Redis operation, turning redis-py's errors into StoreError (the
        message of :class:`RedisStore`'s; the redis-py exception is not chained)."""
        _require_asyncio()
        try:
            return await op()
        except self._redis_error as exc:
            message = common.error_message(what, key, exc)
        raise StoreError(message)

    async def get(self, key: str) -> Token | None:
        """Return the stored token, or ``None``."""
        return common.parse_token(
            await self._call("read the token", key, lambda: self._read_token(key))
        )

    async def set(self, key: str, token: Token) -> bool:
        """Write ``token`` unless the stored one is newer (fence first, then
        ``fetched_at``; atomic, Lua); the key expires after the token's lifetime."""
        return bool(await self._call("write the token", key, lambda: self._write_token(key, token)))

    async def delete_if(self, key: str, value: str) -> bool:
        """Delete the token only if its value is ``value`` (atomic, Lua)."""
        return bool(
            await self._call("invalidate the token", key, lambda: self._drop_token(key, value))
        )

    def lock(self, key: str, *, lease: float) -> AsyncStoreLock:
        """Return the lease lock of ``key`` (``SET NX PX lease``, released by owner)."""
        return _AsyncRedisLock(self, key, common.check_lease(lease))

    async def get_meta(self, key: str) -> str | None:
        """Return the meta record of ``key``, or ``None`` once its TTL has run out."""
        data = await self._call("read a meta record", key, lambda: self._read_meta(key))
        return None if data is None else common.as_text(data)

    async def set_meta(self, key: str, value: str, *, ttl: float) -> None:
        """Store a meta record with a TTL of ``ttl`` seconds."""
        await self._call("write a meta record", key, lambda: self._write_meta(key, value, ttl))

    async def aclose(self) -> None:
        """Close the client's connections."""
        close = getattr(self.client, "aclose", None)  # redis-py >= 5; close() before
        await (close() if close is not None else self.client.close())


class _AsyncRedisLock(common.RedisLockState):
    """The lease lock of one key in an :class:`AsyncRedisStore`."""

    def __init__(self, store: AsyncRedisStore, key: str, lease: float) -> None:
        super().__init__(store, key, lease)
        self._store = store

    async def held(self) -> bool:
        """Whether Redis still names this holder as the lock's owner (one ``GET``)."""
        if self._owner is None:
            return False
        key = self._key
        return self._is_owner(
            await self._store._call(
                "check the token lock", key, lambda: self._store._read_lock(key)
            )
        )

    async def _shielded(self, what: str, op: Callable[[], Awaitable[_T]]) -> _T:
        """Await ``op`` shielded from cancellation for at most the lease (see the module
        docstring); a reply that takes longer is a StoreError."""
        with anyio.CancelScope(shield=True) as scope:
            scope.deadline = anyio.current_time() + self._lease
            return await self._store._call(what, self._key, op)
        overdue = TimeoutError(f"no reply within the lock's lease ({self._lease:g} s)")
        raise StoreError(common.error_message(what, self._key, overdue))

    async def _try_acquire(self) -> bool:
        owner = common.new_owner()
        key, lease_ms = self._key, self._lease_ms
        fence = await self._shielded(
            "take the token lock", lambda: self._store._take_lock(key, owner, lease_ms)
        )
        return self._took(owner, fence)

    async def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take the lock; poll (2 ms doubling to 50 ms, ``anyio.sleep``) while another
        holder has it."""
        self._check_free()
        if not blocking:
            return await self._try_acquire()
        return await _poll_until(
            self._try_acquire, timeout, first=common.POLL_FIRST, cap=common.POLL_MAX
        )

    async def release(self) -> None:
        """Release the lock if this holder still owns it (even from a cancelled task); a
        holder whose lease ran out and was taken over releases nothing."""
        owner, key = self._give_up(), self._key
        try:
            await self._shielded(
                "release the token lock", lambda: self._store._release_lock(key, owner)
            )
        except StoreError as exc:
            # As RedisStore: the lock frees itself when the lease runs out.
            logger.warning("%s; the lock will expire after its lease", exc)
