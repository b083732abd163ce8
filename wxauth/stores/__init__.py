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

Write your own by subclassing :class:`TokenStore`; give its locks the
:class:`StoreLock` shape (:class:`LockContext` supplies ``with``), and run the contract
suite in ``tests/test_store_contract.py`` against it.
"""

from ._base import LockContext, StoreLock, TokenStore, poll_until
from ._file import FileStore
from ._memory import MemoryStore, default_store, reset_default_store
from ._redis import RedisStore

__all__ = [
    "FileStore",
    "LockContext",
    "MemoryStore",
    "RedisStore",
    "StoreLock",
    "TokenStore",
    "default_store",
    "poll_until",
    "reset_default_store",
]
