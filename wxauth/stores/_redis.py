"""``RedisStore``: one token shared by every process on every host, kept in Redis.

Keys (``prefix`` defaults to ``"wxauth:"``; the key part is the token source's key,
which never contains the secret):

- ``{prefix}token:{key}``: the token as JSON, with a TTL of the token's lifetime.
- ``{prefix}meta:{key}``: a small record, with the TTL its writer gave.
- ``{prefix}lock:{key}``: the single-flight lease lock: a random owner id, written
  with ``SET ... NX PX lease``.
- ``{prefix}fence:{key}``: a counter ``INCR``-ed on each acquisition of that lock: the
  fence that orders tokens by when their fetch started, whatever the hosts' clocks say.

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

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .._errors import StoreError
from .._token import Token
from ._base import LockContext, StoreLock, TokenStore, poll_until
from ._redis_common import (
    ACQUIRE,
    DELETE_IF,
    POLL_FIRST,
    POLL_MAX,
    RELEASE,
    SET_UNLESS_NEWER,
    RedisKeys,
    as_text,
    error_message,
    import_redis,
    ms,
    new_owner,
    parse_token,
    set_args,
)

if TYPE_CHECKING:
    import redis

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
    """

    shared = True

    def __init__(self, client: redis.Redis, *, prefix: str = "wxauth:") -> None:
        self._redis_error: type[Exception] = import_redis().exceptions.RedisError
        self.client = client
        self.prefix = prefix
        self._set_unless_newer = client.register_script(SET_UNLESS_NEWER)
        self._delete_if = client.register_script(DELETE_IF)
        self._release = client.register_script(RELEASE)
        self._acquire = client.register_script(ACQUIRE)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "wxauth:", **options: Any) -> RedisStore:
        """Build a store on ``redis.Redis.from_url(url, **options)``."""
        return cls(import_redis().Redis.from_url(url, **options), prefix=prefix)

    def _call(self, what: str, key: str, op: Callable[[], _T]) -> _T:
        """Run one Redis operation, turning redis-py's errors into StoreError.

        The message names the operation, the key and redis-py's own message (an
        address or a server error, never a command's arguments); the redis-py
        exception is not chained, so no token can reach a traceback through it."""
        try:
            return op()
        except self._redis_error as exc:
            message = error_message(what, key, exc)
        raise StoreError(message)

    # -- TokenStore ------------------------------------------------------------------

    def get(self, key: str) -> Token | None:
        """Return the stored token, or ``None``."""
        return parse_token(
            self._call("read the token", key, lambda: self.client.get(self._token_key(key)))
        )

    def set(self, key: str, token: Token) -> bool:
        """Write ``token`` unless the stored one is newer (fence first, then
        ``fetched_at``; atomic, Lua); the key expires after the token's lifetime."""
        args = set_args(token)
        written = self._call(
            "write the token",
            key,
            lambda: self._set_unless_newer(keys=[self._token_key(key)], args=args),
        )
        return bool(written)

    def delete_if(self, key: str, value: str) -> bool:
        """Delete the token only if its value is ``value`` (atomic, Lua)."""
        deleted = self._call(
            "invalidate the token",
            key,
            lambda: self._delete_if(keys=[self._token_key(key)], args=[value]),
        )
        return bool(deleted)

    def lock(self, key: str, *, lease: float) -> StoreLock:
        """Return the lease lock of ``key`` (``SET NX PX lease``, released by owner)."""
        if lease <= 0:
            raise ValueError("lease must be > 0")
        return _RedisLock(self, key, float(lease))

    def get_meta(self, key: str) -> str | None:
        """Return the meta record of ``key``, or ``None`` once its TTL has run out."""
        data = self._call("read a meta record", key, lambda: self.client.get(self._meta_key(key)))
        if data is None:
            return None
        return as_text(data)

    def set_meta(self, key: str, value: str, *, ttl: float) -> None:
        """Store a meta record with a TTL of ``ttl`` seconds."""
        self._call(
            "write a meta record",
            key,
            lambda: self.client.set(self._meta_key(key), value, px=ms(ttl)),
        )

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()


class _RedisLock(LockContext):
    """The lease lock of one key in a :class:`RedisStore` (one acquisition at a time
    per object; make one object per caller, as the manager does)."""

    def __init__(self, store: RedisStore, key: str, lease: float) -> None:
        self._store = store
        self._key = key
        self._lease_ms = ms(lease)
        self._owner: str | None = None
        self._fence = 0

    @property
    def fence(self) -> int:
        """The fence of the current acquisition (``INCR`` of a per-key counter)."""
        return self._fence

    def held(self) -> bool:
        """Whether Redis still names this holder as the lock's owner (one ``GET``)."""
        owner = self._owner
        if owner is None:
            return False
        store = self._store
        current = store._call(
            "check the token lock", self._key, lambda: store.client.get(store._lock_key(self._key))
        )
        return current is not None and as_text(current) == owner

    def _try_acquire(self) -> bool:
        owner = new_owner()
        store = self._store
        key = self._key
        fence = store._call(
            "take the token lock",
            key,
            lambda: store._acquire(
                keys=store._acquire_keys(key),
                args=[owner, self._lease_ms],
            ),
        )
        if fence:
            self._owner, self._fence = owner, int(fence)
            return True
        return False

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take the lock; poll (2 ms doubling to 50 ms) while another holder has it."""
        if self._owner is not None:
            raise RuntimeError("this RedisStore lock is already held by its owner")
        if not blocking:
            return self._try_acquire()
        return poll_until(self._try_acquire, timeout, first=POLL_FIRST, cap=POLL_MAX)

    def release(self) -> None:
        """Release the lock if this holder still owns it; a holder whose lease ran out
        and was taken over releases nothing."""
        owner = self._owner
        if owner is None:
            raise RuntimeError("release of a RedisStore lock that is not held")
        self._owner = None
        self._fence = 0
        store = self._store
        try:
            store._call(
                "release the token lock",
                self._key,
                lambda: store._release(keys=[store._lock_key(self._key)], args=[owner]),
            )
        except StoreError as exc:
            # The caller already has its token (or its error); the lock frees itself
            # when the lease runs out, so this is worth a warning, not a failure.
            logger.warning("%s; the lock will expire after its lease", exc)

    def __repr__(self) -> str:
        return f"<RedisStore lock key={self._key!r} held={self._owner is not None}>"
