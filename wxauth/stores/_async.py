"""The store interface for ``async`` code: :class:`AsyncTokenStore` and its lock.

The operations and guarantees are those of :class:`~wxauth.stores.TokenStore`
(write-unless-newer by fence, compare-and-delete, a lease lock with a fence, small
records with a TTL); only the calls are awaited, so an
:class:`~wxauth.AsyncTokenManager` never blocks its event loop on a store.

:func:`as_async` turns any store into one: a :class:`~wxauth.stores.MemoryStore` is
used in place (its operations never wait); any other synchronous store (a
:class:`~wxauth.stores.FileStore`, your own) runs each operation in a worker thread.
:class:`~wxauth.stores.AsyncRedisStore` speaks to ``redis.asyncio`` natively, with the
same keys and Lua scripts as :class:`~wxauth.stores.RedisStore`, so sync and async
services share one token in one Redis; a ``RedisStore`` given a ``redis.asyncio`` client
becomes one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol

from .._token import Token
from ._base import TokenStore

__all__ = ["AsyncStoreLock", "AsyncTokenStore", "as_async"]


class AsyncStoreLock(Protocol):
    """The single-flight lock an :class:`AsyncTokenStore` hands out for one key."""

    @property
    def fence(self) -> int:
        """As :attr:`wxauth.stores.StoreLock.fence`."""
        ...

    async def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take the lock without blocking the event loop; as
        :meth:`wxauth.stores.StoreLock.acquire`."""
        ...

    async def release(self) -> None:
        """As :meth:`wxauth.stores.StoreLock.release`."""
        ...

    async def held(self) -> bool:
        """As :meth:`wxauth.stores.StoreLock.held`."""
        ...


class AsyncTokenStore(ABC):
    """:class:`~wxauth.stores.TokenStore`, awaited. Implementations must be safe to
    share between the tasks of one event loop."""

    #: Whether other processes (or hosts) see this store.
    shared: bool = False
    #: The synchronous store this one wraps, if any: a sync manager on it shares the
    #: same token (``None`` for a natively async store).
    sync_store: TokenStore | None = None

    @abstractmethod
    async def get(self, key: str) -> Token | None:
        """As :meth:`wxauth.stores.TokenStore.get`."""

    @abstractmethod
    async def set(self, key: str, token: Token) -> bool:
        """As :meth:`wxauth.stores.TokenStore.set`."""

    @abstractmethod
    async def delete_if(self, key: str, value: str) -> bool:
        """As :meth:`wxauth.stores.TokenStore.delete_if`."""

    @abstractmethod
    def lock(self, key: str, *, lease: float) -> AsyncStoreLock:
        """As :meth:`wxauth.stores.TokenStore.lock` (creating the lock does no I/O)."""

    @abstractmethod
    async def get_meta(self, key: str) -> str | None:
        """As :meth:`wxauth.stores.TokenStore.get_meta`."""

    @abstractmethod
    async def set_meta(self, key: str, value: str, *, ttl: float) -> None:
        """As :meth:`wxauth.stores.TokenStore.set_meta`."""

    def peek_local(self, key: str) -> Token | None:
        """The token under ``key`` if it can be read without I/O (an in-memory store),
        else ``None``: the warm path of ``get_token`` on the event loop."""
        return None

    async def aclose(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release connections or file handles. The default does nothing."""


def as_async(store: TokenStore | AsyncTokenStore) -> AsyncTokenStore:
    """``store`` itself if it is an :class:`AsyncTokenStore`, else an async view of it
    (see the module docstring)."""
    if isinstance(store, AsyncTokenStore):
        return store
    from ._redis import RedisStore

    if isinstance(store, RedisStore) and store.speaks_asyncio:
        return store.async_view()
    from ._async_adapter import SyncStoreAdapter

    return SyncStoreAdapter(store)
