"""The fleet's schedule on any store but Redis (a :class:`~wxauth.stores.MemoryStore`,
a :class:`~wxauth.stores.FileStore`...): a heap in this process, so each process's
fleet looks at every authorizer (each refresh is still under the store lock).
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Mapping, Sequence

__all__ = ["MemorySchedule"]


class MemorySchedule:
    """The schedule in this process: a heap of ``(due, appid)`` with lazy deletion
    (an entry whose due time is not the member's current one is skipped)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dues: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._failures: dict[str, int] = {}
        self._seeded = False
        self._seeding = False

    def _set(self, member: str, due: float) -> None:
        self._dues[member] = due
        heapq.heappush(self._heap, (due, member))

    def add(self, dues: Mapping[str, float], *, only_new: bool) -> int:
        added = 0
        with self._lock:
            for member, due in dues.items():
                new = member not in self._dues
                if new or not only_new:
                    self._set(member, float(due))
                added += new
        return added

    def remove(self, members: Sequence[str]) -> None:
        with self._lock:
            for member in members:
                self._dues.pop(member, None)
                self._failures.pop(member, None)

    def score(self, member: str) -> float | None:
        with self._lock:
            return self._dues.get(member)

    def size(self) -> int:
        with self._lock:
            return len(self._dues)

    def members(self) -> list[str]:
        with self._lock:
            return list(self._dues)

    def _top(self) -> tuple[float, str] | None:
        heap = self._heap
        while heap:
            due, member = heap[0]
            if self._dues.get(member) == due:
                return heap[0]
            heapq.heappop(heap)
        return None

    def next_due(self) -> float | None:
        with self._lock:
            top = self._top()
            return None if top is None else top[0]

    def claim(self, now: float, until: float, batch: int) -> list[tuple[str, float]]:
        claimed: list[tuple[str, float]] = []
        with self._lock:
            while len(claimed) < batch:
                top = self._top()
                if top is None or top[0] > now:
                    break
                heapq.heappop(self._heap)
                claimed.append((top[1], top[0]))
            for member, _ in claimed:
                self._set(member, until)
        return claimed

    def count_failures(self, members: Sequence[str]) -> list[int]:
        with self._lock:
            counts = []
            for member in members:
                self._failures[member] = count = self._failures.get(member, 0) + 1
                counts.append(count)
            return counts

    def finish(self, dues: Mapping[str, float], succeeded: Sequence[str]) -> None:
        with self._lock:
            for member, due in dues.items():
                if member in self._dues:
                    self._set(member, due)
            for member in succeeded:
                self._failures.pop(member, None)

    def seeded(self) -> bool:
        return self._seeded

    def begin_seed(self) -> str | None:
        with self._lock:
            if self._seeding:
                return None
            self._seeding = True
            return "local"

    def end_seed(self, owner: str) -> None:
        with self._lock:
            self._seeded, self._seeding = True, False

    def abort_seed(self, owner: str) -> None:
        with self._lock:
            self._seeding = False

    def __repr__(self) -> str:
        return "MemorySchedule()"
