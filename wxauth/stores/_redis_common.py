"""What :class:`~wxauth.stores.RedisStore` and :class:`~wxauth.stores.AsyncRedisStore`
share, so that a sync and an async service on one Redis share one token: the key
layout, the Lua scripts, the lock's polling pace, and how a redis-py error becomes a
:class:`~wxauth.StoreError`. Pure: no I/O, and redis-py is imported only on use.

The layout and the reasons for each script are described in
:mod:`wxauth.stores._redis`.
"""

from __future__ import annotations

import math
import secrets
from types import ModuleType
from typing import Any

from .._token import Token

__all__ = [
    "ACQUIRE",
    "DELETE_IF",
    "POLL_FIRST",
    "POLL_MAX",
    "RELEASE",
    "REPLACE_RECORD",
    "SET_UNLESS_NEWER",
    "RedisKeys",
    "RedisLockState",
    "as_text",
    "check_lease",
    "error_message",
    "import_redis",
    "ms",
    "new_owner",
    "parse_token",
    "set_args",
]

#: First and longest pause between two tries of a contended lock, in seconds.
POLL_FIRST = 0.002
POLL_MAX = 0.05

# KEYS[1] token key; ARGV[1] token JSON, ARGV[2] its fetched_at, ARGV[3] TTL in ms,
# ARGV[4] its fence. Refuses when the stored token is newer: a larger fence, or the
# same fence and a later fetched_at (Token.is_older_than).
SET_UNLESS_NEWER = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, record = pcall(cjson.decode, current)
  if ok and type(record) == 'table' then
    local fence = tonumber(record['fence']) or 0
    local new_fence = tonumber(ARGV[4])
    local stored = tonumber(record['fetched_at'])
    if fence > new_fence then
      return 0
    end
    if fence == new_fence and stored and stored > tonumber(ARGV[2]) then
      return 0
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
"""

# KEYS[1] lock key, KEYS[2] fence counter, KEYS[3] token key; ARGV[1] owner id,
# ARGV[2] lease in ms. Takes the lock and returns the new fence, or 0 when it is held.
# The fence never falls below the stored token's: an evicted or lost counter (a Redis
# restart without persistence, maxmemory eviction) cannot hand out an old number.
ACQUIRE = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 0
end
local fence = redis.call('INCR', KEYS[2])
local current = redis.call('GET', KEYS[3])
if current then
  local ok, record = pcall(cjson.decode, current)
  if ok and type(record) == 'table' then
    local stored = tonumber(record['fence']) or 0
    if stored >= fence then
      fence = stored + 1
      redis.call('SET', KEYS[2], fence)
    end
  end
end
return fence
"""

# KEYS[1] token key; ARGV[1] the value the caller saw rejected.
DELETE_IF = """
local current = redis.call('GET', KEYS[1])
if not current then
  return 0
end
local ok, record = pcall(cjson.decode, current)
if ok and type(record) == 'table' and record['value'] == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

# KEYS[1] lock key; ARGV[1] the owner id of the releasing holder.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


# KEYS[1] records hash; ARGV[1] the record's name, ARGV[2] "1" if it must be absent,
# ARGV[3] the value it must have otherwise, ARGV[4] "1" to delete it, ARGV[5] the new
# value otherwise. Compare-and-set of one durable record.
REPLACE_RECORD = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '1' then
  if current then
    return 0
  end
elseif current ~= ARGV[3] then
  return 0
end
if ARGV[4] == '1' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[5])
end
return 1
"""


def import_redis(user: str = "RedisStore") -> ModuleType:
    """redis-py, or an ``ImportError`` saying which extra to install."""
    try:
        import redis
    except ImportError:
        raise ImportError(f"{user} needs redis-py: pip install 'wxauth[redis]'") from None
    return redis


def ms(seconds: float) -> int:
    """``seconds`` as whole milliseconds for ``PX``, rounded up, at least 1."""
    return max(1, math.ceil(seconds * 1000))


def new_owner() -> str:
    """A random owner id for one acquisition of a lock."""
    return secrets.token_hex(16)


def as_text(data: bytes | str) -> str:
    """A reply as ``str``, whether the client decodes responses or not."""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)


def parse_token(data: bytes | str | None) -> Token | None:
    """The token in a ``GET`` reply; ``None`` for a missing or unreadable record (a
    cache: an unreadable entry is a missing one, and the next write replaces it)."""
    if data is None:
        return None
    try:
        return Token.from_json(data)
    except ValueError:
        return None


def set_args(token: Token) -> list[str | int]:
    """``ARGV`` of :data:`SET_UNLESS_NEWER` for ``token``."""
    return [token.to_json(), repr(token.fetched_at), ms(token.lifetime), token.fence]


def error_message(what: str, key: str, exc: Exception) -> str:
    """The message of the :class:`~wxauth.StoreError` for a failed operation: the
    operation, the key and redis-py's own message (an address or a server error,
    never a command's arguments)."""
    return f"Redis store failed to {what} for key {key!r}: {type(exc).__name__}: {exc}"


def check_lease(lease: float) -> float:
    """``lease`` as a float, or ``ValueError`` if it is not positive."""
    if lease <= 0:
        raise ValueError("lease must be > 0")
    return float(lease)


class RedisKeys:
    """The key layout under ``prefix``, the client, and each Redis command of a store
    (a mixin of both Redis stores). A command returns the client's reply, or with
    ``redis.asyncio`` an awaitable of it: the stores run it, each in its own way."""

    prefix: str
    client: Any

    def _bind(self, client: Any, prefix: str, user: str) -> None:
        """Keep ``client`` and ``prefix``, and register the Lua scripts on ``client``."""
        self._redis_error: type[Exception] = import_redis(user).exceptions.RedisError
        self.client = client
        self.prefix = prefix
        self._set_unless_newer = client.register_script(SET_UNLESS_NEWER)
        self._delete_if = client.register_script(DELETE_IF)
        self._release = client.register_script(RELEASE)
        self._acquire = client.register_script(ACQUIRE)
        self._replace_record = client.register_script(REPLACE_RECORD)

    def _token_key(self, key: str) -> str:
        return f"{self.prefix}token:{key}"

    def _meta_key(self, key: str) -> str:
        return f"{self.prefix}meta:{key}"

    def _lock_key(self, key: str) -> str:
        return f"{self.prefix}lock:{key}"

    def _fence_key(self, key: str) -> str:
        return f"{self.prefix}fence:{key}"

    def _records_key(self, table: str) -> str:
        return f"{self.prefix}records:{table}"

    # -- the commands ----------------------------------------------------------------

    def _read_token(self, key: str) -> Any:
        return self.client.get(self._token_key(key))

    def _write_token(self, key: str, token: Token) -> Any:
        return self._set_unless_newer(keys=[self._token_key(key)], args=set_args(token))

    def _drop_token(self, key: str, value: str) -> Any:
        return self._delete_if(keys=[self._token_key(key)], args=[value])

    def _read_meta(self, key: str) -> Any:
        return self.client.get(self._meta_key(key))

    def _write_meta(self, key: str, value: str, ttl: float) -> Any:
        return self.client.set(self._meta_key(key), value, px=ms(ttl))

    def _read_record(self, table: str, name: str) -> Any:
        return self.client.hget(self._records_key(table), name)

    def _write_record(self, table: str, name: str, value: str) -> Any:
        return self.client.hset(self._records_key(table), name, value)

    def _swap_record(self, table: str, name: str, old: str | None, new: str | None) -> Any:
        absent, delete = "1" if old is None else "0", "1" if new is None else "0"
        args = [name, absent, old or "", delete, new or ""]
        return self._replace_record(keys=[self._records_key(table)], args=args)

    def _read_lock(self, key: str) -> Any:
        return self.client.get(self._lock_key(key))

    def _take_lock(self, key: str, owner: str, lease_ms: int) -> Any:
        keys = [self._lock_key(key), self._fence_key(key), self._token_key(key)]
        return self._acquire(keys=keys, args=[owner, lease_ms])

    def _release_lock(self, key: str, owner: str) -> Any:
        return self._release(keys=[self._lock_key(key)], args=[owner])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(prefix={self.prefix!r})"


class RedisLockState:
    """What the lease lock of one key keeps, in both Redis stores: the key, the lease,
    and the owner id and fence of the current acquisition (one acquisition at a time
    per object; make one object per caller, as the manager does)."""

    def __init__(self, store: RedisKeys, key: str, lease: float) -> None:
        self._label = type(store).__name__
        self._key = key
        self._lease = lease
        self._lease_ms = ms(lease)
        self._owner: str | None = None
        self._fence = 0

    @property
    def fence(self) -> int:
        """The fence of the current acquisition (``INCR`` of a per-key counter)."""
        return self._fence

    def _check_free(self) -> None:
        if self._owner is not None:
            raise RuntimeError(f"this {self._label} lock is already held by its owner")

    def _took(self, owner: str, fence: Any) -> bool:
        """Record the reply of :data:`ACQUIRE` (the new fence, ``0``: held by another)."""
        if fence:
            self._owner, self._fence = owner, int(fence)
            return True
        return False

    def _give_up(self) -> str:
        """Forget the current acquisition before releasing it; return its owner id."""
        owner = self._owner
        if owner is None:
            raise RuntimeError(f"release of a {self._label} lock that is not held")
        self._owner = None
        self._fence = 0
        return owner

    def _is_owner(self, current: bytes | str | None) -> bool:
        """Whether the lock key's value names this holder."""
        return current is not None and as_text(current) == self._owner

    def __repr__(self) -> str:
        return f"<{self._label} lock key={self._key!r} held={self._owner is not None}>"
