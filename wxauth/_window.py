"""Window counters over a store's meta record: how many times something happened lately,
shared by every process that shares the store.

A :class:`StoreWindow` reads and writes one small record (the text a store keeps under
``key`` with :meth:`~wxauth.stores.TokenStore.set_meta`): the recent event stamps, for
limits over a sliding window ("10 a minute", "one per 30 s"), and a count per WeChat
day, for limits that reset at midnight China time as WeChat's own quotas do ("500 a
day"). The rules are pure functions of that text and the time; the caller does the
store I/O (synchronously, or awaited from async code), as the holder of the store lock,
so the read-count-write needs no atomicity of its own. A damaged or missing record only
costs the bookkeeping: it reads as "nothing happened".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "CHINA_UTC_OFFSET",
    "DAY",
    "RECORD_TTL",
    "StoreWindow",
    "china_day",
    "next_china_midnight",
]

#: WeChat's quotas reset at midnight China Standard Time (UTC+8).
CHINA_UTC_OFFSET = 8 * 3600
#: Seconds in a day.
DAY = 86400.0
#: How long a window record is kept in the store (seconds).
RECORD_TTL = 2 * DAY


def china_day(now: float) -> int:
    """The number of the China-time calendar day that epoch second ``now`` falls in."""
    return int((now + CHINA_UTC_OFFSET) // DAY)


def next_china_midnight(now: float) -> float:
    """The epoch second at which the next China-time day starts."""
    return (china_day(now) + 1) * DAY - CHINA_UTC_OFFSET


@dataclass(frozen=True)
class StoreWindow:
    """Counts events in the record under ``key`` and says when a limit is reached.

    ``sliding`` holds ``(limit, seconds)`` pairs: at most ``limit`` events in any
    ``seconds``; ``per_day`` at most that many per China-time day (``None``: no daily
    limit).
    """

    key: str
    sliding: Sequence[tuple[int, float]] = ()
    per_day: int | None = None

    def _read(self, raw: str | None, now: float) -> tuple[list[float], int]:
        """The stamps still inside the longest sliding window, and today's count."""
        stamps: list[float] = []
        count = 0
        if raw:
            try:
                record = json.loads(raw)
                stamps = [float(t) for t in record.get("stamps", ())]
                if int(record.get("day", -1)) == china_day(now):
                    count = int(record.get("count", 0))
            except (ValueError, TypeError, AttributeError):
                stamps, count = [], 0
        horizon = max((seconds for _, seconds in self.sliding), default=0.0)
        # A stamp "from the future" (a clock stepped back) is dropped, not honoured for
        # as long as the step: it would lock the limit for that long.
        return [t for t in stamps if now - horizon < t <= now], count

    def retry_after(self, raw: str | None, now: float) -> float | None:
        """Seconds until one more event is allowed, or ``None`` if it is allowed now."""
        stamps, count = self._read(raw, now)
        waits = [
            min(inside) + seconds - now
            for limit, seconds in self.sliding
            if len(inside := [t for t in stamps if now - seconds < t]) >= limit
        ]
        if self.per_day is not None and count >= self.per_day:
            waits.append(next_china_midnight(now) - now)
        return max(waits) if waits else None

    def count_today(self, raw: str | None, now: float) -> int:
        """How many events the record counts in the current China-time day."""
        return self._read(raw, now)[1]

    def recorded(self, raw: str | None, now: float) -> str:
        """The record with one more event at ``now``: write it back under :attr:`key`
        (for :data:`RECORD_TTL` seconds)."""
        stamps, count = self._read(raw, now)
        stamps.append(now)
        record = {"stamps": stamps, "day": china_day(now), "count": count + 1}
        return json.dumps(record, separators=(",", ":"))
