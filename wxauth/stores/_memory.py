"""``MemoryStore``: tokens in this process's memory, and the process-wide default store
that managers built without ``store=`` share."""

from __future__ import annotations

import os
import threading
import time
import weakref

from cachetools import TLRUCache

from .._token import Token
from ._base import LockContext, StoreLock, TokenStore

__all__ = ["MemoryStore", "default_store", "reset_default_store"]


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

    Durable records (:meth:`put_record`) are kept in a plain dict, never evicted, but
    they die with the process: ``durable`` is ``False``.
    """

    shared = False
    durable = False

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
        self._records: dict[str, dict[str, str]] = {}

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
            self._records.clear()

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

    def get_record(self, table: str, name: str) -> str | None:
        rows = self._records.get(table)
        return None if rows is None else rows.get(name)

    def put_record(self, table: str, name: str, value: str) -> None:
        with self._mutex:
            self._records.setdefault(table, {})[name] = str(value)

    def replace_record(self, table: str, name: str, old: str | None, new: str | None) -> bool:
        with self._mutex:
            rows = self._records.setdefault(table, {})
            if rows.get(name) != old:
                return False
            if new is None:
                rows.pop(name, None)
            else:
                rows[name] = str(new)
            return True

    def records(self, table: str) -> dict[str, str]:
        with self._mutex:
            return dict(self._records.get(table, {}))

    def __repr__(self) -> str:
        return f"MemoryStore(maxsize={self._maxsize})"


def _reset_stores_after_fork() -> None:
    for store in list(_LIVE_STORES):
        store._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_stores_after_fork)


# One process-wide store for every manager built without store=: managers of the same
# app (appid, secret, endpoint) share one token, one budget and one fetch however many
# of them a process builds (one per module, one per request). The manager adds a
# digest of the secret to its key there, so a manager with a wrong secret never gets
# the right one's token.
_DEFAULT_STORE = MemoryStore(maxsize=10_000)


def default_store() -> MemoryStore:
    """The in-memory store that managers built without ``store=`` share."""
    return _DEFAULT_STORE


def reset_default_store() -> None:
    """Forget every token, budget and record in the shared default store.

    For tests: each test that builds ``TokenManager``/``WxAuth`` objects without
    ``store=`` starts from an empty cache (the ``fake_wechat`` fixture and every new
    :class:`~wxauth.testing.FakeWeChat` call it). Managers already built keep working
    and fetch again on their next call."""
    _DEFAULT_STORE.clear()
