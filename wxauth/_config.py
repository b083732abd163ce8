"""The manager's settings: defaults, validation, derived timings and counters."""

from __future__ import annotations

from dataclasses import dataclass

from ._secret import Secret, reveal
from .sources import CallableTokenSource, TokenSource, secret_digest
from .stores._base import TokenStore
from .stores._memory import default_store

__all__ = [
    "AHEAD_RETRY_DELAY",
    "BACKGROUND_LEAD",
    "DEFAULT_MAX_FETCHES_PER_DAY",
    "DEFAULT_MAX_FETCHES_PER_MINUTE",
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_REFRESH_MARGIN",
    "DEFAULT_TIMEOUT",
    "REJECTED_MEMORY",
    "ManagerStats",
    "background_margin",
    "check_credential",
    "check_options",
    "lease_for",
    "store_and_key",
]

#: Seconds before expiry at which a token is refreshed ahead (capped at half its life).
DEFAULT_REFRESH_MARGIN = 300.0
#: Seconds for one HTTP request to a token endpoint, start to last byte.
DEFAULT_TIMEOUT = 10.0
#: After a refresh ahead of expiry fails, serve the still-valid token for this many
#: seconds before trying again, so a failing endpoint is not called on every request.
AHEAD_RETRY_DELAY = 30.0
#: Tokens fetched per app per minute before wxauth refuses locally
#: (:class:`~wxauth.RefreshBudgetError`); counted in the store, so shared by processes.
#: Only fetches that got a token count: a failed one is paced by the failure backoff.
DEFAULT_MAX_FETCHES_PER_MINUTE = 10
#: Tokens fetched per app per China-time day before wxauth refuses locally: a quarter of
#: WeChat's 2000, leaving the rest for whatever else uses the app. The floor is ~13.
DEFAULT_MAX_FETCHES_PER_DAY = 500
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


def check_credential(name: str, value: object) -> str:
    """``value`` if it is a non-blank ``str`` (a :class:`~wxauth.Secret` passes too, and
    ``name`` is returned in its place); else ``ValueError`` naming ``name`` only."""
    if not isinstance(value, (str, Secret)):
        raise ValueError(f"{name} must be a non-empty str, not {type(value).__name__}")
    if not reveal(value).strip():
        raise ValueError(f"{name} must be a non-empty str")
    return value if isinstance(value, str) else name


def check_options(
    *,
    refresh_margin: float,
    timeout: float,
    retries: int,
    backoff: float,
    max_fetches_per_minute: int | None,
    max_fetches_per_day: int | None,
    poll_interval: float,
) -> None:
    """Raise ``ValueError`` for an option out of its range."""
    if refresh_margin < 0:
        raise ValueError("refresh_margin must be >= 0")
    if not 0 < timeout < float("inf"):
        raise ValueError("timeout must be a finite number > 0")
    if retries < 0 or backoff < 0:
        raise ValueError("retries and backoff must be >= 0")
    for name, limit in (
        ("max_fetches_per_minute", max_fetches_per_minute),
        ("max_fetches_per_day", max_fetches_per_day),
    ):
        if limit is not None and limit < 1:
            raise ValueError(f"{name} must be >= 1, or None for no limit")
    if poll_interval <= 0:
        raise ValueError("poll_interval must be > 0")


def lease_for(timeout: float, retries: int, backoff: float) -> tuple[float, float]:
    """``(lease, default lock_timeout)``: the store lock is leased for the longest one
    fetch can take (every attempt running out its deadline, plus the backoffs between
    them) and 5 s more; a waiter waits for that lease and one more fetch."""
    worst_fetch = timeout * (retries + 1) + backoff * (2 ** (retries + 1))
    lease = worst_fetch + 5.0
    return lease, lease + worst_fetch + 5.0


def store_and_key(store: TokenStore | None, source: TokenSource) -> tuple[TokenStore, str]:
    """The store a manager keeps its token in, and the key there.

    Without ``store=``, managers share the process-wide default store, under the
    source's key plus a digest of its secret (or, for a callable, the callable's
    identity): managers of the same app (appid, secret, endpoint) share one token,
    whether sync or async, and a manager with a wrong secret never gets the right
    one's."""
    if store is None:
        store = default_store()
    key = source.key
    if store is default_store():
        secret = getattr(source, "_secret", None)
        if isinstance(secret, Secret):
            key = f"{key}#{secret_digest(secret)}"
        elif isinstance(source, CallableTokenSource):
            key = f"{key}#fn{id(source.func):x}"
    return store, key


def background_margin(refresh_margin: float, lifetime: float) -> float:
    """How far before expiry a background refresher renews a token of ``lifetime``
    seconds: the refresh margin plus :data:`BACKGROUND_LEAD`, but at most three
    quarters of its life."""
    return min(refresh_margin + BACKGROUND_LEAD, lifetime * 0.75)
