"""The token value: what a store keeps and the manager hands out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ._redact import redact_token

__all__ = ["Token"]


@dataclass(frozen=True)
class Token:
    """An access token with its wall-clock lifetime.

    ``fetched_at`` and ``expires_at`` are epoch seconds (comparable across processes and
    hosts); ``expires_at - fetched_at`` is the ``expires_in`` WeChat granted. ``repr``
    and ``str`` show only the first characters and the length of ``value``.

    ``fence`` orders tokens without trusting any clock: it is the fencing number of the
    store lock under which the token's fetch started (:attr:`StoreLock.fence`), so a
    fetch that started later always has the larger one, whatever the hosts' clocks say.
    ``0`` means "not fetched under a store lock" (a token written by hand); such tokens
    are ordered by ``fetched_at``.
    """

    value: str
    expires_at: float
    fetched_at: float
    fence: int = 0

    @classmethod
    def issued(cls, value: str, expires_in: float, now: float, *, fence: int = 0) -> Token:
        """Build a token that WeChat granted at ``now`` for ``expires_in`` seconds."""
        return cls(value=value, expires_at=now + float(expires_in), fetched_at=now, fence=fence)

    def is_older_than(self, other: Token) -> bool:
        """Whether ``self`` was fetched before ``other``: by fence when they differ (a
        fetch that started later under the store lock wins, whatever the clocks say),
        else by ``fetched_at``. Stores refuse to replace a token by an older one."""
        if self.fence != other.fence:
            return self.fence < other.fence
        return self.fetched_at < other.fetched_at

    @property
    def lifetime(self) -> float:
        """The ``expires_in`` this token was issued with, in seconds."""
        return self.expires_at - self.fetched_at

    def refresh_at(self, margin: float) -> float:
        """When a caller should start fetching a successor: ``margin`` seconds before
        expiry, but never more than half of the token's lifetime before it, so a token
        issued for 60 s is not refetched on every call."""
        return self.expires_at - min(margin, self.lifetime / 2)

    def is_expired(self, now: float) -> bool:
        """Whether the token is past its ``expires_at``."""
        return now >= self.expires_at

    def needs_refresh(self, now: float, margin: float) -> bool:
        """Whether ``now`` is at or past :meth:`refresh_at`."""
        # refresh_at() and lifetime spelled out: this runs on every request, and the two
        # calls cost more than the arithmetic.
        expires_at = self.expires_at
        return now >= expires_at - min(margin, (expires_at - self.fetched_at) / 2)

    def to_json(self) -> str:
        """Serialise for a store shared between processes."""
        return json.dumps(
            {
                "value": self.value,
                "expires_at": self.expires_at,
                "fetched_at": self.fetched_at,
                "fence": self.fence,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, data: str | bytes) -> Token:
        """Inverse of :meth:`to_json`. Raises ``ValueError`` on a malformed record."""
        raw: Any = json.loads(data)
        try:
            return cls(
                value=str(raw["value"]),
                expires_at=float(raw["expires_at"]),
                fetched_at=float(raw["fetched_at"]),
                fence=int(raw.get("fence", 0)),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed token record: {type(exc).__name__}") from None

    def __repr__(self) -> str:
        return (
            f"Token(value={redact_token(self.value)!r}, "
            f"expires_at={self.expires_at!r}, fetched_at={self.fetched_at!r}, fence={self.fence!r})"
        )

    __str__ = __repr__
