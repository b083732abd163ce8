"""The token manager: when to fetch, and what to drop.

The machinery lives beside it: the fetch itself once decided (whom to wait for, the
store lock, the source, the write) in ``_fetcher``, the layer :class:`TokenManager` is
built on; single flight in ``_flight``, the background thread in ``_background``,
store-backed counters in ``_window``, the two outage guards (failure backoff, rejection
streak) in ``_guards``. What stays here is the policy.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable

import requests

from ._background import Refresher
from ._config import (
    DEFAULT_MAX_FETCHES_PER_DAY,
    DEFAULT_MAX_FETCHES_PER_MINUTE,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_REFRESH_MARGIN,
    DEFAULT_TIMEOUT,
    REJECTED_MEMORY,
    background_margin,
    store_and_key,
)
from ._fetcher import TokenFetcher
from ._flight import flight_slot
from ._guards import RECORD_TTL
from ._redact import redact_token
from ._secret import Secret
from ._token import Token
from .sources import DEFAULT_API_BASE, DEFAULT_BACKOFF, DEFAULT_RETRIES, TokenSource
from .stores._base import TokenStore
from .transport import Transport

__all__ = ["TokenManager"]

logger = logging.getLogger("wxauth")

_LIVE_MANAGERS: weakref.WeakSet[TokenManager] = weakref.WeakSet()


class TokenManager(TokenFetcher):
    """Fetches, caches and refreshes the access token of one app.

    :param appid: the AppID (``wx...``).
    :param secret: the AppSecret (a ``str`` or a :class:`~wxauth.Secret`). Held masked:
        never logged, never shown in a repr, an error or a frame's locals.
    :param api_base: scheme and host of the WeChat API (point it at the emulator in tests).
    :param store: where the token is kept. Default: a process-wide in-memory store, so
        every manager of the same app (appid, secret, ``api_base``) in this process
        shares one token. Pass a shared store (file, Redis) so many processes or hosts
        share one token.
    :param session: the :class:`requests.Session` used for token fetches (default: a
        private one).
    :param transport: what sends token requests instead: any
        :class:`~wxauth.transport.Transport` (``wxauth.httpx.HttpxTransport`` for an
        ``httpx.Client``); default a :class:`~wxauth.transport.RequestsTransport` on
        ``session``.
    :param refresh_margin: fetch a successor this many seconds before expiry; never more
        than half of a token's lifetime.
    :param timeout: seconds for one token request, start to last byte.
    :param clock: zero-argument callable returning epoch seconds (default ``time.time``).
    :param source: how the token is fetched: a :class:`TokenSource`; default the classic
        ``/cgi-bin/token`` endpoint of ``api_base``.
    :param retries: retries of a fetch after ``-1 system busy``, HTTP 5xx or a connection
        error.
    :param backoff: first delay between those retries (seconds, doubling).
    :param lock_timeout: how long a caller with no valid token waits for a fetch that
        another thread or process is making. Default: long enough for that fetch and
        its retries to finish or its lease to run out.
    :param max_fetches_per_minute: tokens fetched per minute before
        :class:`~wxauth.RefreshBudgetError` (``None``: no limit).
    :param max_fetches_per_day: tokens fetched per China-time day before
        :class:`~wxauth.RefreshBudgetError` (``None``: no limit).
    :param background_refresh: renew in a daemon thread before the margin.
    :param poll_interval: longest pause of that thread between two looks.

    ``get_token`` is safe to call from many threads; at most one fetch per app is in
    flight at a time per process, and with a shared store at most one per store. Safe
    across ``os.fork``: a child re-creates its locks.
    """

    def __init__(
        self,
        appid: str,
        secret: str | Secret | None = None,
        *,
        api_base: str = DEFAULT_API_BASE,
        store: TokenStore | None = None,
        session: requests.Session | None = None,
        transport: Transport | None = None,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] | None = None,
        source: TokenSource | Callable[[], tuple[str, float]] | str | None = None,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        lock_timeout: float | None = None,
        max_fetches_per_minute: int | None = DEFAULT_MAX_FETCHES_PER_MINUTE,
        max_fetches_per_day: int | None = DEFAULT_MAX_FETCHES_PER_DAY,
        background_refresh: bool = False,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        if isinstance(secret, str):
            secret = Secret(secret)  # no clear local, should a line below raise
        self._setup(
            appid,
            secret,
            api_base=api_base,
            source=source,
            refresh_margin=refresh_margin,
            timeout=timeout,
            clock=clock,
            retries=retries,
            backoff=backoff,
            lock_timeout=lock_timeout,
            max_fetches_per_minute=max_fetches_per_minute,
            max_fetches_per_day=max_fetches_per_day,
            poll_interval=poll_interval,
        )
        store, key = store_and_key(store, self.source)
        self.store: TokenStore = store
        self._use_key(key, shared=store.shared)
        self._session = session
        self._own_session: requests.Session | None = None
        self._transport = transport
        self._background = background_refresh
        self._refresher: Refresher | None = None
        self._slot = flight_slot(self.store, self._key)
        self._refresher_lock = threading.Lock()
        # Held while a fetched token is written: close() takes it to stop writes.
        self._write_lock = threading.Lock()
        _LIVE_MANAGERS.add(self)

    def _reset_after_fork(self) -> None:
        """In a forked child: new locks (none may be inherited held), no refresher (its
        thread does not exist here), no pooled connections of the parent."""
        self._refresher_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._refresher = None
        self._own_session = None

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
        return self.store.get(self._key)

    def get_token(self) -> str:
        """Return a valid access token, fetching one only when none is cached or the
        cached one is within ``refresh_margin`` of expiry.

        While another caller refreshes ahead of expiry, callers get the still-valid
        token at once. Raises :class:`~wxauth.WxAuthError` subclasses on failure.
        """
        # The warm paths of get(), inlined: they are on every request's way.
        if self._refresher is not None or not self._background:
            entry = self._local.entry
            if entry is not None and self._clock() < entry[1]:
                return entry[0].value
            if not self._local_copy:
                current = self.store.get(self._key)
                if current is not None and not current.needs_refresh(
                    self._clock(), self.refresh_margin
                ):
                    return current.value
        return self.get().value

    def get(self) -> Token:
        """Like :meth:`get_token`, but return the :class:`~wxauth.Token` with its expiry."""
        if self._background and self._refresher is None:
            self.start_background()
        current = self.store.get(self._key)
        if current is not None:
            now = self._clock()
            if not current.needs_refresh(now, self.refresh_margin):
                self._keep(current)
                return current
            if now < self._ahead_retry_at and not current.is_expired(now):
                return current  # a refresh ahead failed moments ago: do not hammer
        return self._refresh(current)

    def cached_token(self) -> str | None:
        """The cached token if it is fresh and known without I/O; else ``None``. Never
        fetches and never does I/O, so ``async`` code may call it on the event loop."""
        value = self._local.value(self._clock())
        if value is not None or self.store.shared:
            return value
        current = self.store.get(self._key)
        if current is None or current.needs_refresh(self._clock(), self.refresh_margin):
            return None
        return current.value

    def invalidate(self, token: str) -> bool:
        """Drop the cached token, but only if it is still ``token``; say whether it did.

        Call it with the token WeChat rejected (40001/40014/42001). When many callers
        report the same token, one drop happens and the next :meth:`get_token` fetches
        once; a caller reporting a token that was already replaced changes nothing.

        A token that was itself fetched to replace a rejected one, and is rejected
        again within minutes, is kept for a while (growing delays) instead of being
        refetched at once: WeChat rejecting every new token means something else is
        retiring them, and refetching on every call would burn the day's quota.
        Meanwhile ``invalidate`` returns ``False`` and callers get WeChat's answer.
        """
        self._local.drop(token)
        self._rejected = token
        stored = self.store.get(self._key)
        if stored is None or stored.value != token:
            return False
        streak = self._streak
        held, record = streak.hold(self.store.get_meta(streak.key), stored, self._clock())
        if record is not None:
            self.store.set_meta(streak.key, record, ttl=RECORD_TTL)
        if held:
            return False
        dropped = self.store.delete_if(self._key, token)
        if dropped:
            # Whichever process wins the lock next must know which token was rejected
            # (the stable source escalates only if WeChat hands that one back).
            self.store.set_meta(f"{self._key}:rejected", token, ttl=REJECTED_MEMORY)
            record = streak.dropped(self.store.get_meta(streak.key), stored, self._clock())
            self.store.set_meta(streak.key, record, ttl=RECORD_TTL)
            self.stats.invalidations += 1
            logger.info("invalidated the token of appid=%s (%s)", self.appid, redact_token(token))
        return dropped

    def refresh(self) -> str:
        """Fetch a new token now, whatever the cache holds, and return it."""
        current = self.store.get(self._key)
        return self._refresh(current, force=True).value

    # -- background refresh ---------------------------------------------------------

    def background_margin(self, token: Token) -> float:
        """How far before expiry the background refresher renews ``token``: the refresh
        margin plus :data:`BACKGROUND_LEAD`, but at most three quarters of its life."""
        return background_margin(self.refresh_margin, token.lifetime)

    def _background_step(self, stopped: Callable[[], bool]) -> float:
        """One look by the refresher; return the seconds until the next one is due."""
        current = self.store.get(self._key)
        now = self._clock()
        if current is not None and not current.is_expired(now):
            due = current.expires_at - self.background_margin(current)
            if now < due:
                self._keep(current)
                return due - now
        margin = 0.0 if current is None else self.background_margin(current)
        token = self._refresh(current, margin=margin, stopped=stopped)
        if current is not None and token.value == current.value:
            # Someone else (another thread or process) holds the fetch: look again
            # shortly instead of spinning on the lock.
            return min(self.poll_interval, 1.0)
        return max(token.expires_at - self.background_margin(token) - self._clock(), 0.0)

    def start_background(self) -> None:
        """Start the background refresher (``background_refresh=True`` starts it on the
        first :meth:`get_token`). Idempotent."""
        self._background = True
        with self._refresher_lock:
            if self._refresher is None:
                self._refresher = Refresher(
                    self,
                    "_background_step",
                    name=f"wxauth-refresh-{self.appid}",
                    label=f"appid={self.appid}",
                    poll=self.poll_interval,
                    backoff=self.backoff,
                )
                self._refresher.start()

    def sync_background(self, timeout: float = 5.0) -> bool:
        """Wake the background refresher and wait until it has looked at the token once
        more since this call. For tests that move a fake clock; returns ``False`` on
        timeout or when no refresher runs."""
        refresher = self._refresher
        return refresher.sync(timeout) if refresher is not None else False

    def close(self) -> None:
        """Stop the background refresher and close the private HTTP session.

        Returns promptly even while the refresher is in the middle of a fetch: that
        fetch's token is not written anywhere. The manager stays usable; a later
        :meth:`get_token` fetches in the foreground."""
        refresher, self._refresher = self._refresher, None
        self._background = False
        if refresher is not None:
            with self._write_lock:  # no write of the refresher can start after this
                refresher.stop(timeout=0)
            refresher.stop()
        if self._own_session is not None:
            self._own_session.close()
            self._own_session = None

    def __enter__(self) -> TokenManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _reset_managers_after_fork() -> None:
    for manager in list(_LIVE_MANAGERS):
        manager._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_managers_after_fork)
