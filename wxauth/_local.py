"""A process's copy of a shared store's token, so a request does not read the store.

A :class:`~wxauth.stores.FileStore` or :class:`~wxauth.stores.RedisStore` read costs
tens to hundreds of microseconds; the copy answers in one attribute read until the
token's refresh point, when the manager reads the store again. A token a caller reports
rejected is dropped from the copy and never taken back into it, so a rejection of the
copy makes the next call read the store (where another process may have put a newer
token) instead of fetching.
"""

from __future__ import annotations

from collections import deque

from ._token import Token

__all__ = ["LocalCopy"]


class LocalCopy:
    """The token and the epoch second (manager's clock) until which it is served."""

    __slots__ = ("_dropped", "entry")

    def __init__(self) -> None:
        #: ``(token, serve_until)``, or ``None``; read without a lock (one attribute).
        self.entry: tuple[Token, float] | None = None
        # The last tokens reported rejected: never taken into the copy.
        self._dropped: deque[str] = deque(maxlen=8)

    def value(self, now: float) -> str | None:
        """The token's value if it may still be served at ``now``."""
        entry = self.entry
        if entry is not None and now < entry[1]:
            return entry[0].value
        return None

    def keep(self, token: Token, until: float) -> None:
        """Serve ``token`` until ``until`` (unless it was reported rejected)."""
        entry = (token, until)
        self.entry = entry
        # A reader that got ``token`` from the store just before another thread dropped
        # it must not keep it: drop() records the value first and clears the copy
        # second, so one of the two always sees the other.
        if token.value in self._dropped and self.entry is entry:
            self.entry = None

    def drop(self, value: str) -> None:
        """``value`` was reported rejected: forget it, now and for later keeps."""
        self._dropped.append(value)
        entry = self.entry
        if entry is not None and entry[0].value == value:
            self.entry = None

    def clear(self) -> None:
        """Forget the copy."""
        self.entry = None
