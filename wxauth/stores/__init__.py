"""Where tokens are kept: the store interface and the three stores wxauth ships.

A store keeps one :class:`~wxauth.Token` per key (a token source's ``key``, never the
secret) and offers the few atomic operations single-flight refreshing needs across
threads, processes or hosts:

- :meth:`TokenStore.get` / :meth:`TokenStore.set`: read, and write-unless-newer (a
  token whose fetch started later, by the lock's fence, is never replaced by an older
  one);
- :meth:`TokenStore.delete_if`: compare-and-delete (drop a token only if it is still the
  one a caller saw rejected);
- :meth:`TokenStore.lock`: a lock with a lease and a fence, held while one caller
  fetches. A holder that dies loses the lock when the lease runs out;
- :meth:`TokenStore.get_meta` / :meth:`TokenStore.set_meta`: small records with a
  time-to-live (budgets, backoffs, force-refresh bookkeeping).

Which one to use:

- :class:`MemoryStore`: one process (threads are fine). Managers built without
  ``store=`` share one process-wide instance, :func:`default_store`.
- :class:`FileStore`: several processes on one host; ``fcntl.flock``, no server.
- :class:`RedisStore`: several hosts (``pip install 'wxauth[redis]'``).

For ``async`` code (an :class:`~wxauth.AsyncTokenManager`), the same operations are
awaited on an :class:`AsyncTokenStore`, whose locks are :class:`AsyncStoreLock`:

- :func:`as_async`: any store above, awaited. A :class:`MemoryStore` is used on the
  event loop (it never waits); other stores run each operation in a worker thread, and
  a sync manager on the same store shares the token;
- :class:`AsyncRedisStore`: :class:`RedisStore` on a ``redis.asyncio`` client, with
  the same keys and Lua scripts, so sync and async services share one token in one
  Redis (asyncio only; under trio use ``as_async(RedisStore(...))``).

The async parts need ``anyio`` (``pip install 'wxauth[httpx]'``), imported only when
they are used.

Write your own by subclassing :class:`TokenStore`; give its locks the
:class:`StoreLock` shape (:class:`LockContext` supplies ``with``), and run the contract
suite in ``tests/test_store_contract.py`` against it.
"""

from typing import TYPE_CHECKING, Any

from ._async import AsyncStoreLock, AsyncTokenStore, as_async
from ._base import LockContext, StoreLock, TokenStore, poll_until
from ._file import FileStore
from ._memory import MemoryStore, default_store, reset_default_store
from ._redis import RedisStore

if TYPE_CHECKING:
    from ._async_redis import AsyncRedisStore

__all__ = [
    "AsyncRedisStore",
    "AsyncStoreLock",
    "AsyncTokenStore",
    "FileStore",
    "LockContext",
    "MemoryStore",
    "RedisStore",
    "StoreLock",
    "TokenStore",
    "as_async",
    "default_store",
    "poll_until",
    "reset_default_store",
]


def __getattr__(name: str) -> Any:
    # AsyncRedisStore needs anyio, which only async users install: load it on first use.
    if name == "AsyncRedisStore":
        from ._async_redis import AsyncRedisStore

        globals()[name] = AsyncRedisStore
        return AsyncRedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
