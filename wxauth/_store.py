"""Where tokens are kept: the store interface and the default in-memory store.

A store keeps one :class:`~wxauth.Token` per key (a token source's ``key``, never the
secret) and offers the few atomic operations single-flight refreshing needs across
threads, processes or hosts:

- :meth:`TokenStore.get` / :meth:`TokenStore.set`: read, and write-unless-newer (a slow
  writer never overwrites a newer token with an older one);
- :meth:`TokenStore.delete_if`: compare-and-delete (drop a token only if it is still the
  one a caller saw rejected);
- :meth:`TokenStore.lock`: a lock with a lease, held while one caller fetches. A holder
  that dies loses the lock when the lease runs out;
- :meth:`TokenStore.get_meta` / :meth:`TokenStore.set_meta`: small records with a
  time-to-live (refresh budgets, force-refresh bookkeeping), read and written by the
  lock holder only.

Expiry inside a token is wall-clock epoch seconds, comparable across processes; the
manager decides freshness with its own clock. Stores evict a token ``lifetime`` seconds
(real time) after it was written, or later.
"""

from __future__ import annotations

import os
import random
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable
from types import TracebackType
from typing import Protocol, TypeVar

from cachetools import TLRUCache

from ._token import Token

__all__ = ["LockContext", "MemoryStore", "StoreLock", "TokenStore", "poll_until"]


class StoreLock(Protocol):
    """A lock that a store hands out for one key."""

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take the lock; with ``blocking=False`` or a ``timeout``, say whether it was
        taken. ``timeout=None`` waits as long as it takes."""
        ...

    def release(self) -> None:
        """Give the lock up. Releasing a lock whose lease ran out (and that another
        holder may have taken since) must not release that other holder's lock."""
        ...

    @property
    def fence(self) -> int:
        """The fencing number of the current acquisition: after each successful
        :meth:`acquire`, a number greater than that of every earlier acquisition of the
        same key in the same store (``0`` before the first). Tokens carry it
        (:attr:`Token.fence`) so a store orders them without trusting any clock."""
        ...

    def held(self) -> bool:
        """Whether this lock is still held by this holder: ``False`` once its lease ran
        out and another holder may have taken it over. Checked before a write."""
        ...

    def __enter__(self) -> StoreLock: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class TokenStore(ABC):
    """The interface every store implements (memory, file, Redis, your own).

    Implementations must be safe to share between threads. ``shared`` says whether the
    store is seen by other processes; the manager uses it to decide how long to wait
    for a lock another process holds.
    """

    #: Whether other processes (or hosts) see this store.
    shared: bool = False

    @abstractmethod
    def get(self, key: str) -> Token | None:
        """Return the token stored under ``key``, or ``None``. May return an expired
        token: freshness is the caller's decision."""

    @abstractmethod
    def set(self, key: str, token: Token) -> bool:
        """Store ``token`` unless the stored one is newer (``stored.is_older_than(token)``
        is false and they differ: see :meth:`Token.is_older_than`, fence first, then
        ``fetched_at``); return whether ``token`` was written. Atomic."""

    @abstractmethod
    def delete_if(self, key: str, value: str) -> bool:
        """Delete the token under ``key`` only if its value is ``value``; return whether
        it did. Atomic (compare-and-delete)."""

    @abstractmethod
    def lock(self, key: str, *, lease: float) -> StoreLock:
        """Return the single-flight lock for ``key``. Once acquired it is held for at
        most ``lease`` seconds, after which another caller may take it over."""

    @abstractmethod
    def get_meta(self, key: str) -> str | None:
        """Return the small record stored under ``key``, or ``None`` if it has expired
        or was never written. Meta keys live beside token keys, never collide with them."""

    @abstractmethod
    def set_meta(self, key: str, value: str, *, ttl: float) -> None:
        """Store a small record for ``ttl`` seconds (real time)."""

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release connections or file handles. The default does nothing."""


_L = TypeVar("_L", bound="LockContext")


def poll_until(
    attempt: Callable[[], bool], timeout: float | None, *, first: float, cap: float
) -> bool:
    """Call ``attempt`` until it returns ``True`` or ``timeout`` seconds pass
    (``None``: no limit), sleeping ``first`` seconds and doubling up to ``cap`` between
    tries, with jitter so waiters in many processes do not poll in step. For locks
    whose holder lives in another process, where no in-process wake-up exists."""
    # The clock starts before the first try: a slow first try counts against timeout.
    deadline = None if timeout is None else time.monotonic() + timeout
    if attempt():
        return True
    pause = first
    while True:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            pause = min(pause, left)
        time.sleep(pause * random.uniform(0.5, 1.0))
        if attempt():
            return True
        pause = min(pause * 2, cap)


class LockContext:
    """Mixin giving a :class:`StoreLock` implementation its ``with`` statement:
    ``__enter__`` acquires (waiting as long as it takes), ``__exit__`` releases."""

    __slots__ = ()

    @property
    def fence(self) -> int:
        """See :attr:`StoreLock.fence`; ``0``: this lock does not hand out fences."""
        return 0

    def held(self) -> bool:
        """See :meth:`StoreLock.held`; by default a lock cannot tell, so ``True``."""
        return True

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def __enter__(self: _L) -> _L:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class _ThreadLock(LockContext):
    """A process-local lock with the :class:`StoreLock` shape; leases are moot in one
    process, because a thread that dies holding a lock takes the process with it only
    in the sense that matters: the ``with`` block releases it on any exception."""

    __slots__ = ("_fence", "_key", "_lock", "_store")

    def __init__(self, store: MemoryStore, key: str, lock: threading.Lock) -> None:
        self._store = store
        self._key = key
        self._lock = lock
        self._fence = 0

    @property
    def fence(self) -> int:
        return self._fence

    def held(self) -> bool:
        return self._fence != 0

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        if not blocking:
            taken = self._lock.acquire(False)
        else:
            taken = self._lock.acquire(True, -1 if timeout is None else timeout)
        if taken:
            self._fence = self._store._next_fence(self._key)
        return taken

    def release(self) -> None:
        self._fence = 0
        self._lock.release()


_LIVE_STORES: weakref.WeakSet[MemoryStore] = weakref.WeakSet()


class MemoryStore(TokenStore):
    """The default store: a dict in this process's memory.

    Each token is kept for its own ``expires_in`` (real time from when it was written;
    the manager judges freshness with its own, possibly fake, clock) and then reads as
    missing; past ``maxsize`` tokens, expired ones and then the one written longest ago
    are dropped. Reads take no lock, because they run on every request and one dict
    lookup is atomic; writes, compare-and-delete and the small records (a cachetools
    ``TLRUCache``, not thread-safe) take an internal lock. The per-key single-flight
    locks are separate, so a fetch in progress never blocks readers. Locks are
    re-created in a child after ``os.fork``, so no lock is inherited in a held state.
    """

    shared = False

    def __init__(self, maxsize: int = 1024) -> None:
        self._maxsize = maxsize
        self._reset()
        _LIVE_STORES.add(self)

    def _reset(self) -> None:
        self._mutex = threading.Lock()
        # key -> (token, time.monotonic() at which it stops being returned)
        self._tokens: dict[str, tuple[Token, float]] = {}
        self._meta: TLRUCache[str, tuple[str, float]] = TLRUCache(
            maxsize=self._maxsize, ttu=lambda _k, v, now: now + v[1], timer=time.monotonic
        )
        self._locks: dict[str, threading.Lock] = {}
        self._fences: dict[str, int] = {}

    def _next_fence(self, key: str) -> int:
        with self._mutex:
            stored = self.get(key)
            floor = stored.fence if stored is not None else 0
            fence = self._fences[key] = max(self._fences.get(key, 0), floor) + 1
            return fence

    def _after_fork(self) -> None:
        # Only the locks can come over held (by a parent thread that does not exist
        # here). The caches stay as they are: rebuilding them lost the small records
        # (refresh budget, force-refresh bookkeeping), and copying them item by item
        # could raise KeyError for an entry expiring mid-copy.
        self._mutex = threading.Lock()
        self._locks = {}

    def clear(self) -> None:
        """Forget every token and record (fences keep counting up)."""
        with self._mutex:
            self._tokens.clear()
            self._meta.clear()

    def get(self, key: str) -> Token | None:
        entry = self._tokens.get(key)
        if entry is None or time.monotonic() >= entry[1]:
            return None
        return entry[0]

    def set(self, key: str, token: Token) -> bool:
        with self._mutex:
            current = self.get(key)
            if current is not None and token.is_older_than(current):
                return False
            now = time.monotonic()
            tokens = self._tokens
            tokens.pop(key, None)
            if len(tokens) >= self._maxsize:
                for stale in [k for k, (_, until) in tokens.items() if now >= until]:
                    del tokens[stale]
                while tokens and len(tokens) >= self._maxsize:
                    del tokens[next(iter(tokens))]  # the one written longest ago
            tokens[key] = (token, now + max(token.lifetime, 0.0))
            return True

    def delete_if(self, key: str, value: str) -> bool:
        with self._mutex:
            current = self.get(key)
            if current is None or current.value != value:
                return False
            del self._tokens[key]
            return True

    def lock(self, key: str, *, lease: float) -> StoreLock:
        with self._mutex:
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = threading.Lock()
        return _ThreadLock(self, key, lock)

    def get_meta(self, key: str) -> str | None:
        with self._mutex:
            entry = self._meta.get(key)
        return None if entry is None else entry[0]

    def set_meta(self, key: str, value: str, *, ttl: float) -> None:
        with self._mutex:
            self._meta[key] = (value, float(ttl))

    def __repr__(self) -> str:
        return f"MemoryStore(maxsize={self._maxsize})"


def _reset_stores_after_fork() -> None:
    for store in list(_LIVE_STORES):
        store._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_stores_after_fork)
