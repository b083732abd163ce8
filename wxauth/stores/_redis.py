"""``RedisStore``: one token shared by every process on every host, kept in Redis.

Keys (``prefix`` defaults to ``"wxauth:"``; the key part is the token source's key,
which never contains the secret):

- ``{prefix}token:{key}``: the token as JSON, with a TTL of the token's lifetime.
- ``{prefix}meta:{key}``: a small record, with the TTL its writer gave.
- ``{prefix}lock:{key}``: the single-flight lease lock: a random owner id, written
  with ``SET ... NX PX lease``.
- ``{prefix}fence:{key}``: a counter ``INCR``-ed on each acquisition of that lock: the
  fence that orders tokens by when their fetch started, whatever the hosts' clocks say.
- ``{prefix}records:{table}``: a hash of durable records (name -> value), with no TTL.
  Under a ``volatile-*`` ``maxmemory-policy`` (or ``noeviction``) Redis never evicts
  it; under ``allkeys-*`` it may, and a Redis without persistence (RDB or AOF) loses
  it on restart. wxauth can rebuild what it keeps there (an Open Platform re-reads its
  authorizers' refresh tokens from WeChat), but configure Redis to keep it.

Write-unless-newer, compare-and-delete and the lock's release are Lua scripts, so each
is one atomic step on the server: a slow writer can never overwrite a newer token with
an older one, and a holder whose lease ran out can never release its successor's lock.

Waiters poll ``SET NX`` with a pause that starts at 2 ms and doubles up to 50 ms (with
jitter), rather than subscribing to a release notification: polling needs no second
connection per waiter, cannot miss a wake-up (a pub/sub message published between a
failed ``SET NX`` and the ``SUBSCRIBE`` is lost), and costs at most 20 small commands
a second per waiting process (the manager lets one thread per process wait; the
others wait in-process). A fetch takes well under a second, so a waiter is woken at
most 50 ms after the holder releases, re-reads, and finds the token the holder wrote.

A holder that dies keeps the lock until its lease runs out (Redis cannot see clients
die); then the next waiter takes it. The manager's lease is its worst-case fetch time
plus 5 seconds, so a live holder is never overtaken.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .._errors import StoreError
from .._token import Token
from ._base import LockContext, StoreLock, TokenStore, poll_until
from ._redis_common import (
    POLL_FIRST,
    POLL_MAX,
    RedisKeys,
    RedisLockState,
    as_text,
    check_lease,
    error_message,
    import_redis,
    new_owner,
    parse_token,
)

if TYPE_CHECKING:
    import redis
    import redis.asyncio

    from ._async_redis import AsyncRedisStore

__all__ = ["RedisStore"]

logger = logging.getLogger("wxauth")

_T = TypeVar("_T")


class RedisStore(RedisKeys, TokenStore):
    """Keep tokens in Redis, shared by every process on every host that uses it.

    ``RedisStore(redis.Redis(...), prefix="wxauth:")`` on redis-py (install
    ``wxauth[redis]``). Every operation is one round trip; write-unless-newer and
    compare-and-delete are atomic Lua scripts. The single-flight lock is a lease lock
    (``SET NX PX``): a holder that dies is taken over when its lease runs out.

    When Redis cannot be reached, or answers with an error, every method raises
    :class:`~wxauth.StoreError`. There is deliberately no fallback to a private
    fetch: a host that fetched on its own would retire the token every other host is
    using, turning a Redis outage into a WeChat outage five minutes later.

    Works with ``decode_responses`` on or off. Keys hold the token source's key, which
    names the app (appid, or a hash of a WeCom secret), never a secret.

    Given a ``redis.asyncio`` client, the store is for async code:
    :class:`~wxauth.AsyncTokenManager` (and ``wxauth.httpx.WxAuth`` in an
    ``AsyncClient``) use it as an :class:`~wxauth.stores.AsyncRedisStore` on that
    client, with the same keys; a synchronous caller gets a ``TypeError`` saying so.
    """

    shared = True
    durable = True
    client: redis.Redis

    def __init__(
        self, client: redis.Redis | redis.asyncio.Redis, *, prefix: str = "wxauth:"
    ) -> None:
        self._bind(client, prefix, "RedisStore")
        #: The client is a ``redis.asyncio`` one: only async code can use this store.
        self.speaks_asyncio = _speaks_asyncio(client)
        self._async_view: AsyncRedisStore | None = None

    def async_view(self) -> AsyncRedisStore:
        """The :class:`~wxauth.stores.AsyncRedisStore` on this store's ``redis.asyncio``
        client (made once, so the async managers sharing this store share one flight);
        what :func:`~wxauth.stores.as_async` returns for it."""
        if not self.speaks_asyncio:
            raise TypeError("async_view() needs a RedisStore on a redis.asyncio client")
        if self._async_view is None:
            from ._async_redis import AsyncRedisStore

            self._async_view = AsyncRedisStore(self.client, prefix=self.prefix)  # type: ignore[arg-type]
        return self._async_view

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "wxauth:", **options: Any) -> RedisStore:
        """Build a store on ``redis.Redis.from_url(url, **options)``."""
        return cls(import_redis().Redis.from_url(url, **options), prefix=prefix)

    def _call(self, what: str, key: str, op: Callable[[], _T]) -> _T:
        """Run one Redis operation, turning redis-py's errors into StoreError.

        The message names the operation, the key and redis-py's own message (an
        address or a server error, never a command's arguments); the redis-py
        exception is not chained, so no token can reach a traceback through it."""
        if self.speaks_asyncio:
            raise TypeError(
                "this RedisStore holds a redis.asyncio client, which only async code can "
                "use (AsyncTokenManager, or wxauth.httpx.WxAuth in an httpx.AsyncClient); "
                "give a TokenManager a RedisStore on a redis.Redis client"
            )
        try:
            return op()
        except self._redis_error as exc:
            message = error_message(what, key, exc)
        raise StoreError(message)

    # -- TokenStore ------------------------------------------------------------------

    def get(self, key: str) -> Token | None:
        """Return the stored token, or ``None``."""
        return parse_token(self._call("read the token", key, lambda: self._read_token(key)))

    def set(self, key: str, token: Token) -> bool:
        """Write ``token`` unless the stored one is newer (fence first, then
        ``fetched_at``; atomic, Lua); the key expires after the token's lifetime."""
        return bool(self._call("write the token", key, lambda: self._write_token(key, token)))

    def delete_if(self, key: str, value: str) -> bool:
        """Delete the token only if its value is ``value`` (atomic, Lua)."""
        return bool(self._call("invalidate the token", key, lambda: self._drop_token(key, value)))

    def lock(self, key: str, *, lease: float) -> StoreLock:
        """Return the lease lock of ``key`` (``SET NX PX lease``, released by owner)."""
        return _RedisLock(self, key, check_lease(lease))

    def get_meta(self, key: str) -> str | None:
        """Return the meta record of ``key``, or ``None`` once its TTL has run out."""
        data = self._call("read a meta record", key, lambda: self._read_meta(key))
        return None if data is None else as_text(data)

    def set_meta(self, key: str, value: str, *, ttl: float) -> None:
        """Store a meta record with a TTL of ``ttl`` seconds."""
        self._call("write a meta record", key, lambda: self._write_meta(key, value, ttl))

    def get_record(self, table: str, name: str) -> str | None:
        """Return the durable record ``name`` of ``table`` (``HGET``)."""
        data = self._call("read a record", table, lambda: self._read_record(table, name))
        return None if data is None else as_text(data)

    def put_record(self, table: str, name: str, value: str) -> None:
        """Write the durable record ``name`` of ``table`` (``HSET``, no TTL)."""
        self._call("write a record", table, lambda: self._write_record(table, name, str(value)))

    def replace_record(self, table: str, name: str, old: str | None, new: str | None) -> bool:
        """Compare-and-set the durable record ``name`` of ``table`` (atomic, Lua)."""
        return bool(
            self._call("replace a record", table, lambda: self._swap_record(table, name, old, new))
        )

    def records(self, table: str) -> dict[str, str]:
        """Every durable record of ``table`` (``HSCAN``, so a large table never
        blocks Redis)."""
        key = self._records_key(table)

        def scan() -> dict[str, str]:
            return {
                as_text(name): as_text(value)
                for name, value in self.client.hscan_iter(key, count=1000)
            }

        return self._call("list the records", table, scan)

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()


def _speaks_asyncio(client: object) -> bool:
    """Whether ``client`` is a ``redis.asyncio`` client (its commands are coroutines)."""
    return inspect.iscoroutinefunction(getattr(type(client), "execute_command", None))


class _RedisLock(RedisLockState, LockContext):
    """The lease lock of one key in a :class:`RedisStore`."""

    def __init__(self, store: RedisStore, key: str, lease: float) -> None:
        super().__init__(store, key, lease)
        self._store = store

    def held(self) -> bool:
        """Whether Redis still names this holder as the lock's owner (one ``GET``)."""
        if self._owner is None:
            return False
        key = self._key
        return self._is_owner(
            self._store._call("check the token lock", key, lambda: self._store._read_lock(key))
        )

    def _try_acquire(self) -> bool:
        owner = new_owner()
        key, lease_ms = self._key, self._lease_ms
        fence = self._store._call(
            "take the token lock", key, lambda: self._store._take_lock(key, owner, lease_ms)
        )
        return self._took(owner, fence)

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take the lock; poll (2 ms doubling to 50 ms) while another holder has it."""
        self._check_free()
        if not blocking:
            return self._try_acquire()
        return poll_until(self._try_acquire, timeout, first=POLL_FIRST, cap=POLL_MAX)

    def release(self) -> None:
        """Release the lock if this holder still owns it; a holder whose lease ran out
        and was taken over releases nothing."""
        owner, key = self._give_up(), self._key
        try:
            self._store._call(
                "release the token lock", key, lambda: self._store._release_lock(key, owner)
            )
        except StoreError as exc:
            # The caller already has its token (or its error); the lock frees itself
            # when the lease runs out, so this is worth a warning, not a failure.
            logger.warning("%s; the lock will expire after its lease", exc)
