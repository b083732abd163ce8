"""What the sync and the async token manager share that is not I/O: checking their
options, building the source, the settings and derived timings, the guards, the local
copy, and the decisions they take with a token in hand. Each manager adds its own I/O
(threads and a ``TokenStore``, or an event loop and an ``AsyncTokenStore``) around it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ._config import (
    AHEAD_RETRY_DELAY,
    ManagerStats,
    check_credential,
    check_options,
    lease_for,
)
from ._guards import FailureBackoff, FetchBudget, RejectionStreak
from ._local import LocalCopy
from ._secret import Secret
from ._token import Token
from .sources import DEFAULT_API_BASE, TokenSource, make_source

__all__ = ["ManagerCore"]

logger = logging.getLogger("wxauth")


class ManagerCore:
    """The settings, guards and token decisions of a manager (see the module doc)."""

    appid: str
    source: TokenSource
    refresh_margin: float
    _key: str

    def _setup(
        self,
        appid: str,
        secret: str | Secret | None,
        *,
        api_base: str,
        source: TokenSource | Callable[[], Any] | str | None,
        refresh_margin: float,
        timeout: float,
        clock: Callable[[], float] | None,
        retries: int,
        backoff: float,
        lock_timeout: float | None,
        max_fetches_per_minute: int | None,
        max_fetches_per_day: int | None,
        poll_interval: float,
    ) -> None:
        """Check the options and set everything but the store and its key."""
        if isinstance(secret, str):
            secret = Secret(secret)  # no clear local, should a line below raise
        self.appid = check_credential("appid", appid)
        if secret is not None or source is None or isinstance(source, str):
            check_credential("secret", secret)
        check_options(
            refresh_margin=refresh_margin,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            max_fetches_per_minute=max_fetches_per_minute,
            max_fetches_per_day=max_fetches_per_day,
            poll_interval=poll_interval,
        )
        self.source = make_source(
            source, appid, secret, None if api_base == DEFAULT_API_BASE else api_base
        )
        self.refresh_margin = float(refresh_margin)
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.max_fetches_per_minute = max_fetches_per_minute
        self.max_fetches_per_day = max_fetches_per_day
        self.poll_interval = float(poll_interval)
        self.stats = ManagerStats()
        self._clock: Callable[[], float] = clock or time.time
        #: How long the store lock is leased to a fetcher (then another may take over).
        self.lease, default_lock_timeout = lease_for(self.timeout, self.retries, self.backoff)
        self.lock_timeout: float = (
            float(lock_timeout) if lock_timeout is not None else default_lock_timeout
        )
        self._rejected: str | None = None
        self._ahead_retry_at = float("-inf")
        self._local = LocalCopy()
        self._local_copy = False

    def _use_key(self, key: str, *, shared: bool) -> None:
        """Set the store key, and the guards and local copy that depend on it."""
        self._key = key
        self._budget = FetchBudget(
            f"{key}:fetches",
            self.appid,
            per_minute=self.max_fetches_per_minute,
            per_day=self.max_fetches_per_day,
        )
        self._failures = FailureBackoff(f"{key}:failures", self._clock)
        self._streak = RejectionStreak(f"{key}:rejections", self.appid)
        # A shared store is read on every request otherwise: keep the token in this
        # process until its refresh point (a rejection of it re-reads the store).
        self._local_copy = shared

    def _settings(self) -> dict[str, Any]:
        """The options a twin (sync or async) on the same store and key repeats."""
        return {
            "source": self.source,
            "refresh_margin": self.refresh_margin,
            "timeout": self.timeout,
            "clock": self._clock,
            "retries": self.retries,
            "backoff": self.backoff,
            "lock_timeout": self.lock_timeout,
            "max_fetches_per_minute": self.max_fetches_per_minute,
            "max_fetches_per_day": self.max_fetches_per_day,
            "poll_interval": self.poll_interval,
        }

    @property
    def key(self) -> str:
        """The store key of this manager's token (never contains the secret)."""
        return self._key

    @property
    def clock(self) -> Callable[[], float]:
        """The epoch-seconds clock this manager judges expiry with."""
        return self._clock

    def _keep(self, token: Token) -> None:
        """Remember ``token`` in this process until its refresh point (shared stores)."""
        if self._local_copy:
            self._local.keep(token, token.refresh_at(self.refresh_margin))

    def _settled_by_another(
        self, stored: Token | None, usable: Token | None, *, force: bool, margin: float
    ) -> bool:
        """Under the store lock: whether ``stored`` (re-read) makes a fetch needless,
        because someone refreshed while this caller waited for the lock."""
        return (
            stored is not None
            and not stored.needs_refresh(self._clock(), margin)
            and (not force or (usable is not None and stored.value != usable.value))
        )

    def _fetched(self, expires_in: float, background: bool) -> None:
        """Log a fetch (the token itself never)."""
        self._rejected = None
        logger.info(
            "fetched a token for appid=%s via %s (expires_in=%d%s)",
            self.appid,
            self.source.name,
            int(expires_in),
            ", in the background" if background else "",
        )

    def _ahead_failed(self, usable: Token, error: Exception) -> Token:
        """A refresh ahead of expiry failed: serve ``usable`` and wait a while."""
        self._ahead_retry_at = self._clock() + AHEAD_RETRY_DELAY
        logger.warning(
            "refresh ahead for appid=%s failed (%s); serving the current token until it expires",
            self.appid,
            error,
        )
        return usable

    def __repr__(self) -> str:
        # getattr: a crash reporter may render a manager whose __init__ raised half-way.
        source = getattr(self, "source", None)
        return (
            f"{type(self).__name__}(appid={getattr(self, 'appid', None)!r}, "
            f"source={getattr(source, 'name', None)!r}, "
            f"store={getattr(self, 'store', None)!r}, "
            f"refresh_margin={getattr(self, 'refresh_margin', None)!r})"
        )
