"""``SyncStoreAdapter``: any synchronous :class:`~wxauth.stores.TokenStore` as an
:class:`~wxauth.stores.AsyncTokenStore` (what :func:`~wxauth.stores.as_async` returns).

Where each operation runs:

- A :class:`~wxauth.stores.MemoryStore` is used on the event loop itself: its
  operations are a dict lookup, or a mutex held for microseconds, and never wait.
  Only waiting for a held lock leaves the loop (below).
- Every other store (a :class:`~wxauth.stores.FileStore`'s files and ``flock``, a
  :class:`~wxauth.stores.RedisStore`'s socket, your own) runs each operation in a
  worker thread (``anyio.to_thread.run_sync``), so the loop never waits on I/O.

Waiting for a lock, and cancellation. A blocking :meth:`acquire` that cannot take the
lock at once waits in a worker thread, in slices of :data:`WAIT_SLICE` seconds (each a
synchronous ``acquire`` with that timeout), and the task awaits that thread so that a
cancellation ends the wait at once. The thread stops after its current slice; if that
slice took the lock after its task gave up, the thread releases it on the spot, and if
the lock was taken just as the task was cancelled, the task releases it before the
cancellation propagates. Either way a cancelled waiter never holds the lock. A wait
does not take one of anyio's default worker-thread tokens, so waiters never starve the
store's reads and writes. :meth:`release` is shielded from cancellation: a
``finally: await lock.release()`` in a cancelled task still releases.

With ``timeout=None`` the slices repeat until the lock is taken; a
:class:`~wxauth.stores.FileStore` mutex stuck for longer than its ``MUTEX_WAIT``, which
a synchronous ``acquire(timeout=None)`` reports as :class:`~wxauth.StoreError`, then
just makes the wait longer. Pass a timeout (the manager does).
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread

from .._token import Token
from ._async import AsyncStoreLock, AsyncTokenStore
from ._base import StoreLock, TokenStore
from ._memory import MemoryStore

__all__ = ["WAIT_SLICE", "SyncStoreAdapter"]

logger = logging.getLogger("wxauth")

_T = TypeVar("_T")

#: Longest single synchronous wait for a lock in a worker thread, in seconds: how long
#: a thread outlives the task that gave up waiting.
WAIT_SLICE = 0.5


class _Wait:
    """One wait for a synchronous lock in a worker thread, and who owns its outcome:
    the task awaiting it, or (once that task gave up) the thread, which then releases
    whatever it took."""

    def __init__(self, lock: StoreLock) -> None:
        self._lock = lock
        self._guard = threading.Lock()
        self._abandoned = False
        self._taken = False

    def run(self, blocking: bool, timeout: float | None) -> bool:
        """In the worker thread: try until the lock is taken, ``timeout`` passes, or
        the task gives up."""
        lock = self._lock
        if not blocking:
            return self._settle(lock.acquire(False))
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            taken = lock.acquire(True, max(0.0, min(left, WAIT_SLICE)))
            if taken or left <= WAIT_SLICE or self._abandoned:
                return self._settle(taken)

    def _settle(self, taken: bool) -> bool:
        with self._guard:
            if not self._abandoned:
                self._taken = taken
                return taken
        if taken:
            try:
                self._lock.release()
            except Exception as exc:
                logger.warning(
                    "could not release a store lock its cancelled waiter took: %s: %s",
                    type(exc).__name__,
                    exc,
                )
        return False

    def abandon(self) -> bool:
        """On the loop, when the task stops awaiting: from now on the thread releases
        what it takes. Returns whether it had already taken the lock for the task, which
        must then release it."""
        with self._guard:
            self._abandoned = True
            taken, self._taken = self._taken, False
        return taken


class _AdaptedLock:
    """A synchronous :class:`~wxauth.stores.StoreLock` behind the
    :class:`~wxauth.stores.AsyncStoreLock` interface (see the module docstring)."""

    __slots__ = ("_direct", "_lock")

    def __init__(self, lock: StoreLock, *, direct: bool) -> None:
        self._lock = lock
        self._direct = direct

    @property
    def fence(self) -> int:
        """The fence of the synchronous lock's current acquisition."""
        return self._lock.fence

    async def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take the lock; wait (in a worker thread) at most ``timeout`` seconds."""
        if self._direct:
            if self._lock.acquire(False):
                return True
            if not blocking:
                return False
        wait = _Wait(self._lock)
        try:
            return await anyio.to_thread.run_sync(
                wait.run,
                blocking,
                timeout,
                abandon_on_cancel=True,
                # Its own token: a long wait never holds one the store's I/O needs.
                limiter=anyio.CapacityLimiter(1),
            )
        except BaseException:
            if wait.abandon():
                await self.release()
            raise

    async def release(self) -> None:
        """Release the lock, even from a cancelled task."""
        if self._direct:
            self._lock.release()
            return
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._lock.release)

    async def held(self) -> bool:
        """Whether this holder still owns the lock."""
        if self._direct:
            return self._lock.held()
        return await anyio.to_thread.run_sync(self._lock.held)

    def __repr__(self) -> str:
        return f"<async {self._lock!r}>"


class SyncStoreAdapter(AsyncTokenStore):
    """A synchronous store, awaited: ``SyncStoreAdapter(store)``, usually built by
    :func:`~wxauth.stores.as_async`.

    Sync and async managers on the same ``store`` share one token (``sync_store`` is
    ``store``). :meth:`aclose` closes ``store`` (its ``close()``, in a worker thread),
    as closing a wrapper closes what it wraps; managers never close a store they were
    given, so call it only when nothing else uses ``store``.
    """

    def __init__(self, store: TokenStore) -> None:
        self.sync_store = self._store = store
        self.shared = store.shared
        self._direct = isinstance(store, MemoryStore)

    async def _run(self, op: Callable[[], _T]) -> _T:
        if self._direct:
            return op()
        return await anyio.to_thread.run_sync(op)

    async def get(self, key: str) -> Token | None:
        """As :meth:`wxauth.stores.TokenStore.get`."""
        return await self._run(functools.partial(self._store.get, key))

    async def set(self, key: str, token: Token) -> bool:
        """As :meth:`wxauth.stores.TokenStore.set`."""
        return await self._run(functools.partial(self._store.set, key, token))

    async def delete_if(self, key: str, value: str) -> bool:
        """As :meth:`wxauth.stores.TokenStore.delete_if`."""
        return await self._run(functools.partial(self._store.delete_if, key, value))

    def lock(self, key: str, *, lease: float) -> AsyncStoreLock:
        """The store's lock of ``key``, awaited (see the module docstring)."""
        return _AdaptedLock(self._store.lock(key, lease=lease), direct=self._direct)

    async def get_meta(self, key: str) -> str | None:
        """As :meth:`wxauth.stores.TokenStore.get_meta`."""
        return await self._run(functools.partial(self._store.get_meta, key))

    async def set_meta(self, key: str, value: str, *, ttl: float) -> None:
        """As :meth:`wxauth.stores.TokenStore.set_meta`."""
        await self._run(functools.partial(self._store.set_meta, key, value, ttl=ttl))

    async def aclose(self) -> None:
        """Close the wrapped store (see the class docstring), even from a cancelled
        task."""
        with anyio.CancelScope(shield=True):
            await self._run(self._store.close)

    def peek_local(self, key: str) -> Token | None:
        """A :class:`~wxauth.stores.MemoryStore`'s token (no I/O); ``None`` for other
        stores."""
        return self._store.get(key) if self._direct else None

    def __repr__(self) -> str:
        return f"SyncStoreAdapter({self._store!r})"
