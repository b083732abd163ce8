"""Who may ask the token service for what: client keys, their hashes, and the per-client
limit on invalidations.

A client key is 32 random bytes (URL-safe base64, with a ``wxk_`` prefix so scanners
and log filters can spot one). The service keeps only its sha256: a stolen config file
or memory dump gives no key. A presented key is hashed and compared with *every*
client's hash by :func:`hmac.compare_digest`, with no early exit, so the time an
answer takes says nothing about which client, or which prefix of a hash, came close.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from ._config import ClientConfig

__all__ = [
    "DAY",
    "KEY_PREFIX",
    "MAX_KEY_LENGTH",
    "ClientDirectory",
    "InvalidationLimiter",
    "hash_key",
    "new_key",
]

KEY_PREFIX = "wxk_"
#: The window of the daily invalidation cap (seconds).
DAY = 86400.0
#: Longer presented keys are refused unhashed (a real one is 47 characters).
MAX_KEY_LENGTH = 256


def new_key() -> str:
    """A new random client key: ``wxk_`` and 32 random bytes, URL-safe base64."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The hex sha256 of a client key: what the config's ``key_sha256`` holds."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class ClientDirectory:
    """The configured clients, found by key in constant time."""

    def __init__(self, clients: Iterable[ClientConfig]) -> None:
        self._clients = tuple((bytes.fromhex(c.key_sha256), c) for c in clients)

    def authenticate(self, authorization: str | None) -> ClientConfig | None:
        """The client whose key an ``Authorization: Bearer KEY`` header carries, or
        ``None`` (no header, another scheme, an unknown key)."""
        if not authorization:
            return None
        scheme, _, key = authorization.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key or len(key) > MAX_KEY_LENGTH:
            return None
        presented = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
        found: ClientConfig | None = None
        for digest, client in self._clients:
            # Every hash is compared, whatever matched before: no early exit.
            if hmac.compare_digest(digest, presented):
                found = client
        return found


class InvalidationLimiter:
    """Per (client, resource): a token bucket (``burst`` drops at once, then
    ``per_minute`` a minute) and at most ``per_day`` drops in any 24 hours. Only
    invalidations that dropped a token are charged (a report of a token already replaced
    changes nothing and costs nothing), so a thousand workers of one client reporting
    the same token pass, and a client that keeps reporting each new token is refused.

    The daily cap is what bounds the quota a client can spend: the per-minute rate
    alone allows 2880 drops a day, and the manager's rejection-streak hold lets a
    client that reports each token either at once or once it is five minutes old,
    alternately, cause about 490 fetches a day (the default fetch budget is 500).

    Per process: N replicas allow N times as much (each drop still needs the reported
    token to be the current one, and the manager's rejection streak holds repeats).
    """

    def __init__(
        self,
        per_minute: float,
        burst: int,
        per_day: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_second = per_minute / 60.0
        self.burst = float(burst)
        self.per_day = per_day
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}
        self._days: dict[tuple[str, str], deque[float]] = {}

    def _level(self, key: tuple[str, str], now: float) -> float:
        level, at = self._buckets.get(key, (self.burst, now))
        return min(self.burst, level + (now - at) * self.per_second)

    def wait(self, client: str, resource: str) -> float:
        """Seconds until ``client`` may drop ``resource``'s token again (0: now)."""
        key = (client, resource)
        with self._lock:
            now = self._clock()
            level = self._level(key, now)
            drops = self._days.get(key)
            day = 0.0
            if self.per_day is not None and drops is not None and len(drops) >= self.per_day:
                day = max(drops[0] + DAY - now, 0.0)
        minute = 0.0 if level >= 1.0 else (1.0 - level) / self.per_second
        return max(minute, day)

    def charge(self, client: str, resource: str) -> None:
        """``client`` dropped ``resource``'s token: take one from its bucket and count
        it in its day."""
        key = (client, resource)
        with self._lock:
            now = self._clock()
            # Concurrent drops may take the level below zero: the debt is paid in time.
            self._buckets[key] = (self._level(key, now) - 1.0, now)
            if self.per_day is not None:
                drops = self._days.setdefault(key, deque(maxlen=self.per_day))
                while drops and drops[0] <= now - DAY:
                    drops.popleft()
                drops.append(now)
