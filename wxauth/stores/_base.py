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
  lock holder only;
- :meth:`TokenStore.get_record`, :meth:`~TokenStore.put_record`,
  :meth:`~TokenStore.replace_record` and :meth:`~TokenStore.records`: durable records
  that never expire, grouped in tables (an Open Platform's authorizer refresh tokens:
  state that cannot be fetched again like a token). A store says with
  :attr:`TokenStore.durable` whether they outlive the process.

Expiry inside a token is wall-clock epoch seconds, comparable across processes; the
manager decides freshness with its own clock. Stores evict a token ``lifetime`` seconds
(real time) after it was written, or later.
"""

from __future__ import annotations

import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from types import TracebackType
from typing import Protocol, TypeVar

from .._token import Token

__all__ = ["LockContext", "StoreLock", "TokenStore", "poll_until"]


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
    #: Whether records (:meth:`put_record`) outlive this process: ``False`` for a
    #: store that is a cache of this process only (:class:`~wxauth.stores.MemoryStore`),
    #: and for a store that keeps no records at all (the default).
    durable: bool = False

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

    # -- durable records -----------------------------------------------------------
    # Optional: a store that keeps none raises NotImplementedError, and whatever needs
    # them (wxauth.ComponentTokenManager) says so when it is built on it.

    def get_record(self, table: str, name: str) -> str | None:
        """Return the durable record ``name`` of ``table``, or ``None``."""
        raise NotImplementedError(f"{type(self).__name__} keeps no durable records")

    def put_record(self, table: str, name: str, value: str) -> None:
        """Write the durable record ``name`` of ``table``: no expiry, no eviction."""
        raise NotImplementedError(f"{type(self).__name__} keeps no durable records")

    def replace_record(self, table: str, name: str, old: str | None, new: str | None) -> bool:
        """Compare-and-set: if the record ``name`` of ``table`` is ``old`` (``None``:
        absent), make it ``new`` (``None``: delete it); return whether it did. Atomic
        against every other writer of the record, in any process sharing the store."""
        raise NotImplementedError(f"{type(self).__name__} keeps no durable records")

    def records(self, table: str) -> dict[str, str]:
        """Every record of ``table``, ``{name: value}`` (a snapshot; writers that run
        meanwhile may or may not be in it)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no durable records")

    @classmethod
    def keeps_records(cls) -> bool:
        """Whether this store class implements the durable records."""
        return cls.get_record is not TokenStore.get_record

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
