"""The fleet's schedule on a :class:`~wxauth.stores.RedisStore`, shared by every worker
process on every host.

``{prefix}openplatform:{component_appid}:fleet:due`` is a sorted set (member: the
authorizer appid, score: its due time in epoch seconds), ``:failures`` a hash of each
member's consecutive failed refreshes, ``:seeded`` a marker that the set was filled
(gone with the set when Redis loses its data), ``:seeding`` the short lock one worker
holds while it fills it.

A worker **claims** what is due with one Lua script (:data:`CLAIM`): up to ``batch``
members whose score is at or before now are re-scored to ``now + lease`` and handed to
it, atomically, so two workers never claim the same member at the same time; one that
dies after claiming loses nothing, its members come due again ``lease`` seconds later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from .._errors import StoreError
from ..stores._redis import RedisStore
from ..stores._redis_common import RELEASE, error_message, new_owner

__all__ = ["CLAIM", "END_SEED", "RedisSchedule"]

logger = logging.getLogger("wxauth")

#: How long the seeding lock is held at most (milliseconds, Redis ``PX``): longer than
#: re-reading 100,000 refresh tokens from api_get_authorizer_list takes (about a minute).
_SEED_LEASE_MS = 300_000

_T = TypeVar("_T")

# KEYS[1] the due set; ARGV[1] now, ARGV[2] the claim's end (now + lease), ARGV[3] batch.
# Takes up to `batch` members due at or before now, moves them to the claim's end, and
# returns them with their due scores: one atomic step, so no two workers share one.
CLAIM = """
local due = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0,
                       tonumber(ARGV[3]), 'WITHSCORES')
if #due == 0 then
  return due
end
local args = {}
for i = 1, #due, 2 do
  args[#args + 1] = ARGV[2]
  args[#args + 1] = due[i]
end
redis.call('ZADD', KEYS[1], 'XX', unpack(args))
return due
"""

# KEYS[1] the seeded marker, KEYS[2] the seeding lock; ARGV[1] owner. Sets the marker
# (the members are in: a seeding that outlasted its lock counts too) and frees the
# lock if this owner still holds it.
END_SEED = """
redis.call('SET', KEYS[1], '1')
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return 1
"""


class RedisSchedule:
    """The schedule in Redis: ``{prefix}{name}:due`` (sorted set), ``:failures`` (hash
    of consecutive failures), ``:seeded`` (marker), ``:seeding`` (lock)."""

    def __init__(self, store: RedisStore, name: str) -> None:
        self._store = store
        client: Any = store.client  # redis-py's stubs vary by version: replies are checked
        self._client = client
        base = f"{store.prefix}{name}"
        self._due = f"{base}:due"
        self._failures = f"{base}:failures"
        self._seeded = f"{base}:seeded"
        self._seeding = f"{base}:seeding"
        self._claim = client.register_script(CLAIM)
        self._end_seed = client.register_script(END_SEED)
        # Giving up the seeding lock is a lock release: the stores' own script.
        self._abort_seed = client.register_script(RELEASE)

    def _call(self, what: str, op: Callable[[], _T]) -> _T:
        try:
            return op()
        except self._store._redis_error as exc:
            message = error_message(what, self._due, exc)
        raise StoreError(message)

    def add(self, dues: Mapping[str, float], *, only_new: bool) -> int:
        if not dues:
            return 0
        items = list(dues.items())
        added = 0
        for start in range(0, len(items), 5000):
            chunk = dict(items[start : start + 5000])
            added += int(self._call("schedule authorizers", self._zadd(chunk, nx=only_new)))
        return added

    def _zadd(self, chunk: dict[str, float], *, nx: bool) -> Callable[[], Any]:
        return lambda: self._client.zadd(self._due, chunk, nx=nx)

    def remove(self, members: Sequence[str]) -> None:
        if not members:
            return

        def op() -> Any:
            pipe = self._client.pipeline(transaction=False)
            pipe.zrem(self._due, *members)
            pipe.hdel(self._failures, *members)
            return pipe.execute()

        self._call("unschedule authorizers", op)

    def score(self, member: str) -> float | None:
        value = self._call("read a due time", lambda: self._client.zscore(self._due, member))
        return None if value is None else float(value)

    def size(self) -> int:
        return int(self._call("count the schedule", lambda: self._client.zcard(self._due)))

    def members(self) -> list[str]:
        raw = self._call("list the schedule", lambda: self._client.zrange(self._due, 0, -1))
        return [_text(member) for member in raw]

    def next_due(self) -> float | None:
        first = self._call(
            "read the next due time",
            lambda: self._client.zrange(self._due, 0, 0, withscores=True),
        )
        return float(first[0][1]) if first else None

    def claim(self, now: float, until: float, batch: int) -> list[tuple[str, float]]:
        reply = self._call(
            "claim due authorizers",
            lambda: self._claim(keys=[self._due], args=[repr(now), repr(until), batch]),
        )
        return [(_text(reply[i]), float(reply[i + 1])) for i in range(0, len(reply), 2)]

    def count_failures(self, members: Sequence[str]) -> list[int]:
        def op() -> Any:
            pipe = self._client.pipeline(transaction=False)
            for member in members:
                pipe.hincrby(self._failures, member, 1)
            return pipe.execute()

        return [int(count) for count in self._call("count failed refreshes", op)]

    def finish(self, dues: Mapping[str, float], succeeded: Sequence[str]) -> None:
        if not dues:
            return

        def op() -> Any:
            pipe = self._client.pipeline(transaction=False)
            # XX: a member removed meanwhile (cancelled authorization) stays out.
            pipe.zadd(self._due, dict(dues), xx=True)
            if succeeded:
                pipe.hdel(self._failures, *succeeded)
            return pipe.execute()

        self._call("reschedule authorizers", op)

    def seeded(self) -> bool:
        return bool(self._call("read the seeded marker", lambda: self._client.exists(self._seeded)))

    def begin_seed(self) -> str | None:
        owner = new_owner()
        taken = self._call(
            "take the seeding lock",
            lambda: self._client.set(self._seeding, owner, nx=True, px=_SEED_LEASE_MS),
        )
        return owner if taken else None

    def end_seed(self, owner: str) -> None:
        self._call(
            "mark the schedule seeded",
            lambda: self._end_seed(keys=[self._seeded, self._seeding], args=[owner]),
        )

    def abort_seed(self, owner: str) -> None:
        try:
            self._call(
                "free the seeding lock",
                lambda: self._abort_seed(keys=[self._seeding], args=[owner]),
            )
        except StoreError as exc:
            logger.warning("%s; the seeding lock will expire after %d ms", exc, _SEED_LEASE_MS)

    def __repr__(self) -> str:
        return f"RedisSchedule({self._due!r})"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
