"""The token manager: when to fetch, single flight, compare-and-invalidate."""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable

import requests

from ._errors import TokenFetchError, WxAuthError
from ._redact import redact_token
from ._sources import (
    DEFAULT_API_BASE,
    DEFAULT_BACKOFF,
    DEFAULT_RETRIES,
    ClassicTokenSource,
    FetchContext,
    TokenSource,
)
from ._store import MemoryStore, TokenStore
from ._token import Token

__all__ = ["AHEAD_RETRY_DELAY", "DEFAULT_REFRESH_MARGIN", "DEFAULT_TIMEOUT", "TokenManager"]

logger = logging.getLogger("wxauth")

#: Seconds before expiry at which a token is refreshed ahead (capped at half its life).
DEFAULT_REFRESH_MARGIN = 300.0
#: Seconds for one HTTP request to a token endpoint.
DEFAULT_TIMEOUT = 10.0
#: After a refresh ahead of expiry fails, serve the still-valid token for this many
#: seconds before trying again, so a failing endpoint is not called on every request.
AHEAD_RETRY_DELAY = 30.0


class _Flight:
    """One fetch in progress; the callers that arrive meanwhile wait for its outcome."""

    __slots__ = ("done", "error", "token")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.token: Token | None = None
        self.error: BaseException | None = None

    def wait(self, timeout: float) -> Token:
        if not self.done.wait(timeout):
            raise TokenFetchError(f"gave up after {timeout:.1f}s waiting for a token fetch")
        if self.error is not None:
            raise self.error
        assert self.token is not None
        return self.token


def _check_credential(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a non-empty str, not {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must be a non-empty str")
    return value


_LIVE_MANAGERS: weakref.WeakSet[TokenManager] = weakref.WeakSet()


class TokenManager:
    """Fetches, caches and refreshes the access token of one app.

    :param appid: the AppID (``wx...``).
    :param secret: the AppSecret. Never logged, never shown in a repr or an error.
    :param api_base: scheme and host of the WeChat API (point it at the emulator in tests).
    :param store: where the token is kept; default a private :class:`MemoryStore`. Pass a
        shared store (file, Redis) so many processes or hosts share one token.
    :param session: the :class:`requests.Session` used for token fetches (default: a
        private one).
    :param refresh_margin: fetch a successor this many seconds before expiry; never more
        than half of a token's lifetime.
    :param timeout: seconds for one token request.
    :param clock: zero-argument callable returning epoch seconds (default ``time.time``).
    :param source: how the token is fetched: a :class:`TokenSource`; default the classic
        ``/cgi-bin/token`` endpoint of ``api_base``.
    :param retries: retries of a fetch after ``-1 system busy``, HTTP 5xx or a connection
        error.
    :param backoff: first delay between those retries (seconds, doubling).
    :param lock_timeout: how long a caller with no valid token waits for a fetch that
        another thread or process is making. Default: long enough for that fetch and
        its retries to finish or its lease to run out.

    ``get_token`` is safe to call from many threads; at most one fetch per manager is in
    flight at a time, and with a shared store at most one per store. Safe across
    ``os.fork``: a child re-creates its locks.
    """

    def __init__(
        self,
        appid: str,
        secret: str,
        *,
        api_base: str = DEFAULT_API_BASE,
        store: TokenStore | None = None,
        session: requests.Session | None = None,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] | None = None,
        source: TokenSource | None = None,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        lock_timeout: float | None = None,
    ) -> None:
        self.appid = _check_credential("appid", appid)
        _check_credential("secret", secret)
        if refresh_margin < 0:
            raise ValueError("refresh_margin must be >= 0")
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        if retries < 0 or backoff < 0:
            raise ValueError("retries and backoff must be >= 0")
        self.source: TokenSource = source or ClassicTokenSource(appid, secret, api_base=api_base)
        self.store: TokenStore = store if store is not None else MemoryStore()
        self.refresh_margin = float(refresh_margin)
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self._clock: Callable[[], float] = clock or time.time
        self._session = session
        self._own_session: requests.Session | None = None
        # The longest one fetch can take: every attempt timing out plus the backoffs.
        worst_fetch = self.timeout * (self.retries + 1) + self.backoff * (2 ** (self.retries + 1))
        #: How long the store lock is leased to a fetcher (then another may take over).
        self.lease: float = worst_fetch + 5.0
        self.lock_timeout: float = (
            float(lock_timeout) if lock_timeout is not None else self.lease + worst_fetch + 5.0
        )
        self._rejected: str | None = None
        self._ahead_retry_at = float("-inf")
        self._reset_locks()
        _LIVE_MANAGERS.add(self)

    def _reset_locks(self) -> None:
        self._flight_lock = threading.Lock()
        self._flight: _Flight | None = None

    @property
    def key(self) -> str:
        """The store key of this manager's token (never contains the secret)."""
        return self.source.key

    @property
    def clock(self) -> Callable[[], float]:
        """The epoch-seconds clock this manager judges expiry with."""
        return self._clock

    @property
    def session(self) -> requests.Session:
        """The session used for token fetches."""
        if self._session is not None:
            return self._session
        if self._own_session is None:
            self._own_session = requests.Session()
        return self._own_session

    def peek(self) -> Token | None:
        """The stored token, if any, without fetching (may be expired)."""
        return self.store.get(self.key)

    def get_token(self) -> str:
        """Return a valid access token, fetching one only when none is cached or the
        cached one is within ``refresh_margin`` of expiry.

        While another caller refreshes ahead of expiry, callers get the still-valid
        token at once. Raises :class:`~wxauth.WxAuthError` subclasses on failure.
        """
        return self.get().value

    def get(self) -> Token:
        """Like :meth:`get_token`, but return the :class:`~wxauth.Token` with its expiry."""
        current = self.store.get(self.key)
        if current is not None:
            now = self._clock()
            if not current.needs_refresh(now, self.refresh_margin):
                return current
            if now < self._ahead_retry_at and not current.is_expired(now):
                return current  # a refresh ahead failed moments ago: do not hammer
        return self._refresh(current)

    def cached_token(self) -> str | None:
        """The cached token if it is fresh and the store is in this process's memory;
        else ``None``. Never fetches and never does I/O, so ``async`` code may call it
        on the event loop."""
        if self.store.shared:
            return None
        current = self.store.get(self.key)
        if current is None or current.needs_refresh(self._clock(), self.refresh_margin):
            return None
        return current.value

    def invalidate(self, token: str) -> bool:
        """Drop the cached token, but only if it is still ``token``; say whether it did.

        Call it with the token WeChat rejected (40001/40014/42001). When many callers
        report the same token, one drop happens and the next :meth:`get_token` fetches
        once; a caller reporting a token that was already replaced changes nothing.
        """
        self._rejected = token
        dropped = self.store.delete_if(self.key, token)
        if dropped:
            logger.info(
                "invalidated the token of appid=%s (%s)", self.appid, redact_token(token)
            )
        return dropped

    def refresh(self) -> str:
        """Fetch a new token now, whatever the cache holds, and return it."""
        current = self.store.get(self.key)
        return self._refresh(current, force=True).value

    # -- internals -----------------------------------------------------------------

    def _refresh(self, current: Token | None, *, force: bool = False) -> Token:
        now = self._clock()
        usable = current if current is not None and not current.is_expired(now) else None
        with self._flight_lock:
            flight = self._flight
            leader = flight is None
            if flight is None:
                flight = self._flight = _Flight()
        if not leader:
            if usable is not None and not force:
                return usable  # a refresh-ahead is running: the old token still works
            return flight.wait(self.lock_timeout + self.lease)
        try:
            token = self._fetch_under_store_lock(usable, force=force)
        except BaseException as exc:
            flight.error = exc
            raise
        else:
            flight.token = token
            return token
        finally:
            with self._flight_lock:
                self._flight = None
            flight.done.set()

    def _fetch_under_store_lock(self, usable: Token | None, *, force: bool) -> Token:
        lock = self.store.lock(self.key, lease=self.lease)
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
            stored = self.store.get(self.key)
            now = self._clock()
            if (
                stored is not None
                and not stored.needs_refresh(now, self.refresh_margin)
                and (not force or (usable is not None and stored.value != usable.value))
            ):
                return stored  # someone refreshed while we waited for the lock
            try:
                return self._fetch(now)
            except WxAuthError as exc:
                if usable is not None and not usable.is_expired(self._clock()):
                    self._ahead_retry_at = self._clock() + AHEAD_RETRY_DELAY
                    logger.warning(
                        "refresh ahead for appid=%s failed (%s); serving the "
                        "current token until it expires",
                        self.appid,
                        exc,
                    )
                    return usable
                raise
        finally:
            lock.release()

    def _fetch(self, now: float) -> Token:
        ctx = FetchContext(
            session=self.session,
            timeout=self.timeout,
            clock=self._clock,
            store=self.store,
            rejected=self._rejected,
            retries=self.retries,
            backoff=self.backoff,
        )
        value, expires_in = self.source.fetch(ctx)
        token = Token.issued(value, expires_in, self._clock())
        self.store.set(self.key, token)
        self._rejected = None
        logger.info(
            "fetched a token for appid=%s via %s (expires_in=%d)",
            self.appid,
            self.source.name,
            int(expires_in),
        )
        return token

    def close(self) -> None:
        """Close the private HTTP session, if one was opened."""
        if self._own_session is not None:
            self._own_session.close()
            self._own_session = None

    def __enter__(self) -> TokenManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"TokenManager(appid={self.appid!r}, source={self.source.name!r}, "
            f"store={self.store!r}, refresh_margin={self.refresh_margin!r})"
        )


def _reset_managers_after_fork() -> None:
    for manager in list(_LIVE_MANAGERS):
        manager._reset_locks()
        # A requests.Session's pooled connections belong to the parent.
        manager._own_session = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_managers_after_fork)
