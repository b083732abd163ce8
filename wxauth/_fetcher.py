"""How a :class:`~wxauth.TokenManager` fetches once it has decided to: a layer of it.

One fetch at a time: first single flight in this process (:mod:`wxauth._flight`; a
caller that holds a still-valid token does not wait for a refresh ahead, the others
share its outcome), then the store's lease lock across processes (the same rule), a
re-read under that lock (someone may have refreshed meanwhile), the source's fetch
behind the failure backoff and the fetch budget, and the write of the new token and its
bookkeeping (not over a lock that ran out, not after :meth:`~wxauth.TokenManager.close`
stopped the refresher that fetched it). When to fetch is the manager's
(:mod:`wxauth._manager`); the decisions taken here with a token in hand are
:class:`~wxauth._core.ManagerCore`'s.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._core import ManagerCore
from ._errors import StoreError, TokenFetchError, WxAuthError
from ._flight import FlightSlot, fetching
from ._guards import RECORD_TTL, FailureBackoff
from ._token import Token
from .sources import FetchContext
from .stores._base import StoreLock, TokenStore
from .transport import Transport

if TYPE_CHECKING:
    import requests

__all__ = ["TokenFetcher"]

logger = logging.getLogger("wxauth")


class TokenFetcher(ManagerCore):
    """The fetch of :class:`~wxauth.TokenManager`'s token (see the module doc): a layer
    of it, which sets the attributes below."""

    #: Where the token is kept.
    store: TokenStore
    #: The single-flight slot of the token in that store (one per store and key).
    _slot: FlightSlot
    #: What sends token requests (``None``: a ``RequestsTransport`` on the session).
    _transport: Transport | None
    #: Held while a fetched token is written: ``close()`` takes it to stop writes.
    _write_lock: threading.Lock

    if TYPE_CHECKING:

        @property
        def session(self) -> requests.Session:
            """The session used for token fetches (the manager's property)."""

    def _refresh(
        self,
        current: Token | None,
        *,
        force: bool = False,
        margin: float | None = None,
        stopped: Callable[[], bool] | None = None,
    ) -> Token:
        now = self._clock()
        usable = current if current is not None and not current.is_expired(now) else None
        with fetching(self._key, self.appid):
            flight, leader = self._slot.begin()
            if not leader:
                if usable is not None and not force:
                    return usable  # a refresh-ahead is running: the old token still works
                return flight.wait(self.lock_timeout + self.lease)
            try:
                token = self._fetch_under_store_lock(
                    usable,
                    force=force,
                    margin=self.refresh_margin if margin is None else margin,
                    stopped=stopped,
                )
            except BaseException as exc:
                flight.error = exc
                raise
            else:
                flight.token = token
                return token
            finally:
                self._slot.end(flight)

    def _fetch_under_store_lock(
        self,
        usable: Token | None,
        *,
        force: bool,
        margin: float,
        stopped: Callable[[], bool] | None,
    ) -> Token:
        lock = self.store.lock(self._key, lease=self.lease)
        if usable is not None and not force:
            # Refresh-ahead: if another process is already refreshing, keep serving the
            # still-valid token instead of waiting for it.
            if not lock.acquire(blocking=False):
                return usable
        elif not lock.acquire(timeout=self.lock_timeout):
            raise TokenFetchError(
                f"gave up after {self.lock_timeout:.1f}s waiting for the token lock of "
                f"appid={self.appid} held by another process"
            )
        try:
            stored = self.store.get(self._key)
            if self._settled_by_another(stored, usable, force=force, margin=margin):
                assert stored is not None
                self._keep(stored)
                return stored  # someone refreshed while we waited for the lock
            try:
                return self._fetch(lock, self._clock(), stopped=stopped)
            except WxAuthError as exc:
                if stopped is not None or force:
                    raise  # the refresher logs it and backs off; refresh() must say
                if usable is not None and not usable.is_expired(self._clock()):
                    return self._ahead_failed(usable, exc)
                raise
        finally:
            try:
                lock.release()
            except StoreError as exc:
                # The caller has its token (or its error); the lock frees itself when
                # the lease runs out.
                logger.warning("%s; the token lock will expire after its lease", exc)

    def _fetch(self, lock: StoreLock, now: float, *, stopped: Callable[[], bool] | None) -> Token:
        store = self.store
        # Raises while a failure backoff runs, or past the budget.
        failures = self._failures.check(store.get_meta(self._failures.key))
        self._budget.check(store.get_meta(self._budget.key), now)
        ctx = FetchContext(
            session=self.session,
            timeout=self.timeout,
            clock=self._clock,
            store=self.store,
            rejected=self._rejected or self.store.get_meta(f"{self._key}:rejected"),
            # In an outage, one request per try: the failure backoff paces them.
            retries=self.retries if failures == 0 else 0,
            backoff=self.backoff,
            transport=self._transport,
        )
        self.stats.fetches += 1
        if stopped is not None:
            self.stats.background_fetches += 1
        try:
            value, expires_in = self.source.fetch(ctx)
        except WxAuthError as exc:
            self.stats.failures += 1
            store.set_meta(self._failures.key, self._failures.failed(failures, exc), ttl=RECORD_TTL)
            raise
        except BaseException:
            self.stats.failures += 1
            raise
        token = Token.issued(value, expires_in, self._clock(), fence=lock.fence)
        self._fetched(expires_in, background=stopped is not None)
        self._store_fetched(token, lock, failures, stopped)
        return token

    def _store_fetched(
        self,
        token: Token,
        lock: StoreLock,
        failures: int,
        stopped: Callable[[], bool] | None,
    ) -> None:
        """Write a fresh token and its bookkeeping. A token that cannot be written is
        still valid: the caller gets it and this process keeps it."""
        with self._write_lock:
            if stopped is not None and stopped():
                logger.info("appid=%s: closed during a background fetch; not stored", self.appid)
                return
            try:
                budget = self._budget
                spent = budget.spent(self.store.get_meta(budget.key), token.fetched_at)
                self.store.set_meta(budget.key, spent, ttl=RECORD_TTL)
                if failures:
                    self.store.set_meta(
                        self._failures.key, FailureBackoff.RECOVERED, ttl=RECORD_TTL
                    )
                if lock.held():
                    self.store.set(self._key, token)
                else:
                    logger.warning(
                        "the token lock of appid=%s ran out during the fetch and may have "
                        "been taken over; not writing this token over the store's",
                        self.appid,
                    )
            except StoreError as exc:
                logger.warning(
                    "fetched a token for appid=%s but could not store it (%s); using it "
                    "in this process",
                    self.appid,
                    exc,
                )
                self._local.keep(token, token.refresh_at(self.refresh_margin))
                return
        self._keep(token)
