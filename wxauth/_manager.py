"""The token manager: when to fetch, single flight, compare-and-invalidate."""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import requests

from ._errors import RefreshBudgetError, TokenFetchError, WxAuthError
from ._redact import redact_token
from ._sources import (
    DEFAULT_API_BASE,
    DEFAULT_BACKOFF,
    DEFAULT_RETRIES,
    FetchContext,
    TokenSource,
    make_source,
)
from ._store import MemoryStore, TokenStore
from ._token import Token

__all__ = [
    "AHEAD_RETRY_DELAY",
    "BACKGROUND_LEAD",
    "DEFAULT_MAX_FETCHES_PER_MINUTE",
    "DEFAULT_REFRESH_MARGIN",
    "DEFAULT_TIMEOUT",
    "ManagerStats",
    "TokenManager",
]

logger = logging.getLogger("wxauth")

#: Seconds before expiry at which a token is refreshed ahead (capped at half its life).
DEFAULT_REFRESH_MARGIN = 300.0
#: Seconds for one HTTP request to a token endpoint.
DEFAULT_TIMEOUT = 10.0
#: After a refresh ahead of expiry fails, serve the still-valid token for this many
#: seconds before trying again, so a failing endpoint is not called on every request.
AHEAD_RETRY_DELAY = 30.0
#: Token fetches allowed per app per minute before wxauth refuses locally
#: (:class:`~wxauth.RefreshBudgetError`); counted in the store, so shared by processes.
DEFAULT_MAX_FETCHES_PER_MINUTE = 10
_BUDGET_WINDOW = 60.0
#: The background refresher renews this many seconds before the foreground margin,
#: so that in steady state no request finds the token inside the margin.
BACKGROUND_LEAD = 120.0
#: How long (seconds) a rejected token is remembered in the store, so the process that
#: fetches next knows it even if another process saw the rejection.
REJECTED_MEMORY = 600.0
#: Longest pause of the background refresher between two looks at the store (seconds).
DEFAULT_POLL_INTERVAL = 5.0


@dataclass
class ManagerStats:
    """Counters of one manager, for monitoring and tests."""

    #: Token fetches this manager made (each one a call to the token source).
    fetches: int = 0
    #: Of those, the ones the background refresher made.
    background_fetches: int = 0
    #: Tokens this manager dropped through :meth:`TokenManager.invalidate`.
    invalidations: int = 0
    #: Fetches that raised.
    failures: int = 0

    @property
    def foreground_fetches(self) -> int:
        """Fetches made inside a caller's :meth:`TokenManager.get_token`."""
        return self.fetches - self.background_fetches


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
            # Each waiter raises its own copy: re-raising the one object from many
            # threads would pile every thread's frames onto one shared traceback.
            try:
                error = copy.copy(self.error).with_traceback(None)
            except Exception:  # an exception class that cannot be copied
                raise self.error from None
            raise error from None
        assert self.token is not None
        return self.token


class _FlightSlot:
    """The single-flight state shared by every manager of one token in one store.

    Managers of the same app that share a store share a slot, so at most one fetch per
    app is in flight in the process however many managers there are."""

    __slots__ = ("__weakref__", "flight", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.flight: _Flight | None = None

    def reset(self) -> None:
        self.lock = threading.Lock()
        self.flight = None


_REGISTRY_LOCK = threading.Lock()
# Slots are held weakly: a slot lives exactly as long as some manager uses it.
_SLOTS: weakref.WeakValueDictionary[tuple[int, str], _FlightSlot] = weakref.WeakValueDictionary()


def _flight_slot(store: TokenStore, key: str) -> _FlightSlot:
    with _REGISTRY_LOCK:
        slot = _SLOTS.get((id(store), key))
        if slot is None:
            slot = _SLOTS[(id(store), key)] = _FlightSlot()
        return slot


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
        secret: str | None = None,
        *,
        api_base: str = DEFAULT_API_BASE,
        store: TokenStore | None = None,
        session: requests.Session | None = None,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] | None = None,
        source: TokenSource | Callable[[], tuple[str, float]] | str | None = None,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        lock_timeout: float | None = None,
        max_fetches_per_minute: int | None = DEFAULT_MAX_FETCHES_PER_MINUTE,
        background_refresh: bool = False,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        self.appid = _check_credential("appid", appid)
        if secret is not None or source is None or isinstance(source, str):
            _check_credential("secret", secret)
        if refresh_margin < 0:
            raise ValueError("refresh_margin must be >= 0")
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        if retries < 0 or backoff < 0:
            raise ValueError("retries and backoff must be >= 0")
        if max_fetches_per_minute is not None and max_fetches_per_minute < 1:
            raise ValueError("max_fetches_per_minute must be >= 1, or None for no limit")
        if poll_interval <= 0:
            raise ValueError("poll_interval must be > 0")
        self.source: TokenSource = make_source(
            source, appid, secret, None if api_base == DEFAULT_API_BASE else api_base
        )
        # Read on every get_token(); a source's key never changes (the classic source
        # builds it anew on each read, and a new string must be hashed again).
        self._key = self.source.key
        if store is None:
            store = MemoryStore()
        self.store: TokenStore = store
        self.refresh_margin = float(refresh_margin)
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.max_fetches_per_minute = max_fetches_per_minute
        self.poll_interval = float(poll_interval)
        self.stats = ManagerStats()
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
        self._background = background_refresh
        self._refresher: _Refresher | None = None
        self._slot = _flight_slot(self.store, self.key)
        self._refresher_lock = threading.Lock()
        _LIVE_MANAGERS.add(self)

    def _reset_locks(self) -> None:
        """Re-create the locks in a forked child (none may be inherited held)."""
        self._slot.reset()
        self._refresher_lock = threading.Lock()

    @property
    def key(self) -> str:
        """The store key of this manager's token (never contains the secret)."""
        return self._key

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
        # The warm path of get(), inlined: it is on every request's way.
        current = self.store.get(self._key)
        if (
            current is not None
            and not current.needs_refresh(self._clock(), self.refresh_margin)
            and (self._refresher is not None or not self._background)
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
            # Whichever process wins the lock next must know which token was rejected
            # (the stable source escalates only if WeChat hands that one back).
            self.store.set_meta(f"{self.key}:rejected", token, ttl=REJECTED_MEMORY)
            self.stats.invalidations += 1
            logger.info("invalidated the token of appid=%s (%s)", self.appid, redact_token(token))
        return dropped

    def refresh(self) -> str:
        """Fetch a new token now, whatever the cache holds, and return it."""
        current = self.store.get(self.key)
        return self._refresh(current, force=True).value

    # -- internals -----------------------------------------------------------------

    def _refresh(
        self,
        current: Token | None,
        *,
        force: bool = False,
        margin: float | None = None,
        background: bool = False,
    ) -> Token:
        now = self._clock()
        usable = current if current is not None and not current.is_expired(now) else None
        slot = self._slot
        with slot.lock:
            flight = slot.flight
            leader = flight is None
            if flight is None:
                flight = slot.flight = _Flight()
        if not leader:
            if usable is not None and not force:
                return usable  # a refresh-ahead is running: the old token still works
            return flight.wait(self.lock_timeout + self.lease)
        try:
            token = self._fetch_under_store_lock(
                usable,
                force=force,
                margin=self.refresh_margin if margin is None else margin,
                background=background,
            )
        except BaseException as exc:
            flight.error = exc
            raise
        else:
            flight.token = token
            return token
        finally:
            with slot.lock:
                slot.flight = None
            flight.done.set()

    def _fetch_under_store_lock(
        self, usable: Token | None, *, force: bool, margin: float, background: bool
    ) -> Token:
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
                and not stored.needs_refresh(now, margin)
                and (not force or (usable is not None and stored.value != usable.value))
            ):
                return stored  # someone refreshed while we waited for the lock
            try:
                return self._fetch(now, background=background)
            except WxAuthError as exc:
                if background or force:
                    raise  # the refresher logs it and backs off; refresh() must say
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

    def _spend_budget(self, now: float) -> None:
        """Count one fetch against ``max_fetches_per_minute``, or refuse it."""
        limit = self.max_fetches_per_minute
        if limit is None:
            return
        meta_key = f"{self.key}:budget"
        stamps: list[float] = []
        raw = self.store.get_meta(meta_key)
        if raw:
            try:
                stamps = [float(t) for t in json.loads(raw)]
            except (ValueError, TypeError):
                stamps = []  # a damaged record only costs us the bookkeeping
        stamps = [t for t in stamps if now - _BUDGET_WINDOW < t <= now]
        if len(stamps) >= limit:
            retry_after = min(stamps) + _BUDGET_WINDOW - now
            raise RefreshBudgetError(self.appid, limit, _BUDGET_WINDOW, retry_after)
        stamps.append(now)
        self.store.set_meta(meta_key, json.dumps(stamps), ttl=2 * _BUDGET_WINDOW)

    def _fetch(self, now: float, *, background: bool = False) -> Token:
        self._spend_budget(now)
        ctx = FetchContext(
            session=self.session,
            timeout=self.timeout,
            clock=self._clock,
            store=self.store,
            rejected=self._rejected or self.store.get_meta(f"{self.key}:rejected"),
            retries=self.retries,
            backoff=self.backoff,
        )
        self.stats.fetches += 1
        if background:
            self.stats.background_fetches += 1
        try:
            value, expires_in = self.source.fetch(ctx)
        except BaseException:
            self.stats.failures += 1
            raise
        token = Token.issued(value, expires_in, self._clock())
        self.store.set(self.key, token)
        self._rejected = None
        logger.info(
            "fetched a token for appid=%s via %s (expires_in=%d%s)",
            self.appid,
            self.source.name,
            int(expires_in),
            ", in the background" if background else "",
        )
        return token

    # -- background refresh ---------------------------------------------------------

    def background_margin(self, token: Token) -> float:
        """How far before expiry the background refresher renews ``token``: the refresh
        margin plus :data:`BACKGROUND_LEAD`, but at most three quarters of its life."""
        return min(self.refresh_margin + BACKGROUND_LEAD, token.lifetime * 0.75)

    def _background_step(self) -> float:
        """One look by the refresher; return the seconds until the next one is due."""
        current = self.store.get(self.key)
        now = self._clock()
        if current is not None and not current.is_expired(now):
            due = current.expires_at - self.background_margin(current)
            if now < due:
                return due - now
        margin = 0.0 if current is None else self.background_margin(current)
        token = self._refresh(current, margin=margin, background=True)
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
                self._refresher = _Refresher(self)
                self._refresher.start()

    def sync_background(self, timeout: float = 5.0) -> bool:
        """Wake the background refresher and wait until it has looked at the token once
        more since this call. For tests that move a fake clock; returns ``False`` on
        timeout or when no refresher runs."""
        refresher = self._refresher
        return refresher.sync(timeout) if refresher is not None else False

    def close(self) -> None:
        """Stop the background refresher and close the private HTTP session."""
        refresher, self._refresher = self._refresher, None
        self._background = False
        if refresher is not None:
            refresher.stop()
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


class _Refresher:
    """The background thread of one manager. It holds the manager weakly, so a manager
    that is dropped without :meth:`TokenManager.close` still lets the thread end."""

    def __init__(self, manager: TokenManager) -> None:
        self._manager = weakref.ref(manager)
        self._appid = manager.appid
        self._poll = manager.poll_interval
        self._backoff = max(manager.backoff, 1.0)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._cond = threading.Condition()
        self._started = 0
        self._completed = 0
        self._thread = threading.Thread(
            target=self._run, name=f"wxauth-refresh-{self._appid}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def sync(self, timeout: float) -> bool:
        with self._cond:
            target = self._started + 1
            self._wake.set()
            return (
                self._cond.wait_for(
                    lambda: self._completed >= target or self._stop.is_set(), timeout
                )
                and not self._stop.is_set()
            )

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            with self._cond:
                self._started += 1
                self._wake.clear()
            delay, failed = self._poll, False
            try:
                manager = self._manager()
                if manager is None:
                    return
                try:
                    delay = manager._background_step()
                    failures = 0
                except Exception as exc:
                    failures += 1
                    failed = True
                    delay = min(self._backoff * 2 ** (failures - 1), 60.0)
                    logger.warning(
                        "background refresh for appid=%s failed (%s); retrying in %.0fs",
                        self._appid,
                        exc,
                        delay,
                    )
                finally:
                    del manager
            finally:
                with self._cond:
                    self._completed += 1
                    self._cond.notify_all()
            # A due time is re-checked at least every poll interval (the clock may be
            # moved by a test or jump); a backoff after a failure is waited out in full.
            self._wake.wait(delay if failed else min(delay, self._poll))


def _reset_managers_after_fork() -> None:
    global _REGISTRY_LOCK
    _REGISTRY_LOCK = threading.Lock()
    for manager in list(_LIVE_MANAGERS):
        manager._reset_locks()
        # The parent's refresher thread does not exist here: start a new one lazily.
        manager._refresher = None
        # A requests.Session's pooled connections belong to the parent.
        manager._own_session = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_managers_after_fork)
