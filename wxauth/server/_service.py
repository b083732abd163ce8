"""What the token service serves, without HTTP: one :class:`~wxauth.TokenManager` per
configured app (and one :class:`~wxauth.TicketManager` per enabled ticket kind), all on
one store, each refreshed by its own background thread.

A :class:`Resource` is one thing handed out (an app's access token, or one kind of its
tickets). Its :meth:`Resource.cached` answers without I/O, on the event loop; the
rest runs in a worker thread. When the store cannot be reached, a resource answers the
token it last handed out while that token is still valid (WeChat honours it until it
expires): a Redis outage shorter than the token's remaining life costs no client
anything. Past that, :class:`~wxauth.StoreError`.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import StoreError
from .._manager import TokenManager
from .._redact import redact_url_passwords
from .._secret import Secret
from .._token import Token
from ..stores import MemoryStore, TokenStore
from ..tickets import TicketManager
from ._config import AppConfig, ServerConfig

__all__ = [
    "ACCESS_TOKEN",
    "PROBE_KEY",
    "REDIS_OPTIONS",
    "Readiness",
    "Resource",
    "TokenService",
    "open_store",
]

logger = logging.getLogger("wxauth.server")

#: The ``kind`` of an app's access token (tickets use their own kind: jsapi, wx_card).
ACCESS_TOKEN = "access_token"  # noqa: S105 - a name
#: The meta key read to see whether the store answers.
PROBE_KEY = "wxauth-server:probe"
#: redis-py options for the service's Redis: answer within a second or fail, so that a
#: Redis outage turns into quick 503s (or the remembered token), not hung requests;
#: one retry on a fresh connection after Redis restarts. A URL's own query wins.
REDIS_OPTIONS: dict[str, Any] = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}


def open_store(spec: str) -> TokenStore:
    """The store a checked ``[server] store`` value names (``memory``, ``file:DIR``,
    ``redis://...``)."""
    if spec == "memory":
        return MemoryStore()
    if spec.startswith("file:"):
        from ..stores import FileStore

        return FileStore(Path(spec[len("file:") :]))
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from ..stores import RedisStore

    try:
        return RedisStore.from_url(spec, retry=Retry(NoBackoff(), 1), **REDIS_OPTIONS)
    except ValueError as exc:
        raise StoreError(f"bad Redis URL: {redact_url_passwords(str(exc))}") from None


class Resource:
    """One token the service hands out: ``kind`` is :data:`ACCESS_TOKEN` or a ticket
    kind; ``manager`` fetches, stores and refreshes it.

    It remembers the token it last handed out (:meth:`remembered`): while that one is
    valid, a read need not wait for the store or WeChat when neither answers at once.
    A token a client reported rejected is never remembered again.
    """

    def __init__(self, app_id: str, kind: str, manager: TokenManager) -> None:
        self.app_id = app_id
        self.kind = kind
        self.manager = manager
        #: The token last handed out (for :meth:`cached` and store outages).
        self._last: Token | None = None
        # The last tokens clients reported rejected (and that were served or stored).
        self._reported: deque[str] = deque(maxlen=8)
        #: Whether the last :meth:`get` reached the store (``False``: it answered the
        #: remembered token because the store failed).
        self.store_ok = True

    @property
    def label(self) -> str:
        """``app_id`` for a token, ``app_id/kind`` for a ticket (limiter and logs)."""
        return self.app_id if self.kind == ACCESS_TOKEN else f"{self.app_id}/{self.kind}"

    def cached(self) -> Token | None:
        """The token, if the manager has it fresh without I/O; never blocks."""
        value = self.manager.cached_token()
        last = self._last
        if value is not None and last is not None and last.value == value:
            return last
        return None

    def remembered(self) -> Token | None:
        """The token last handed out, while it is valid (no I/O; may be inside its
        refresh margin, or older than the store's)."""
        last = self._last
        if last is None or last.is_expired(self.manager.clock()):
            return None
        return last

    def _remember(self, token: Token) -> None:
        self._last = token
        # A get() that read the store just before an invalidate() dropped this token must
        # not keep it: invalidate() records first and forgets second, get() remembers
        # first and checks second, so one of the two sees the other.
        if token.value in self._reported and self._last is token:
            self._last = None

    def get(self) -> Token:
        """A valid token (worker thread: may read the store or wait for a fetch)."""
        try:
            token = self.manager.get()
        except StoreError as exc:
            self.store_ok = False
            last = self.remembered()
            if last is None:
                raise
            logger.warning(
                "%s: the store is unavailable (%s); serving the token this process last "
                "handed out, valid for %.0fs more",
                self.label,
                exc,
                last.expires_at - self.manager.clock(),
            )
            return last
        self.store_ok = True
        self._remember(token)
        return token

    def invalidate(self, value: Secret) -> bool:
        """Drop the token if it is still ``value`` (compare-and-invalidate); say
        whether it did (worker thread). :meth:`get` then fetches the next one."""
        dropped = self.manager.invalidate(value.get_secret_value())
        last = self._last
        if dropped or (last is not None and last.value == value.get_secret_value()):
            # Reported rejected: never hand it out from memory again (a held token is
            # still answered, from the store).
            self._reported.append(value.get_secret_value())
            last = self._last
            if last is not None and last.value == value.get_secret_value():
                self._last = None
        return dropped

    def is_current(self, value: Secret) -> bool:
        """Whether ``value`` is the stored token (worker thread)."""
        stored = self.manager.peek()
        return stored is not None and stored.value == value.get_secret_value()

    def peek(self) -> Token | None:
        """The stored token, without fetching (worker thread; may be expired)."""
        return self.manager.peek()


@dataclass(frozen=True)
class Readiness:
    """What ``/readyz`` found: whether the store answered and how many apps have a
    valid access token."""

    store_ok: bool
    apps_ready: int
    apps: int

    @property
    def ready(self) -> bool:
        """Store reachable and every app's token valid."""
        return self.store_ok and self.apps_ready == self.apps


class TokenService:
    """The managers of every configured app on one store. :meth:`start` starts their
    background refreshers, :meth:`close` stops them and closes the store."""

    def __init__(self, config: ServerConfig, *, clock: Callable[[], float] | None = None) -> None:
        self.config = config
        self.store = open_store(config.store)
        self._clock = clock
        self._resources: dict[tuple[str, str], Resource] = {}
        self._tickets: list[TicketManager] = []
        try:
            for app in config.apps:
                self._add_app(app)
        except BaseException:
            self.close()
            raise

    def _add_app(self, app: AppConfig) -> None:
        options: dict[str, Any] = dict(app.options)
        if self._clock is not None:
            options["clock"] = self._clock
        tokens = TokenManager(
            app.appid, app.secret, store=self.store, background_refresh=True, **options
        )
        self._resources[app.id, ACCESS_TOKEN] = Resource(app.id, ACCESS_TOKEN, tokens)
        for kind in app.tickets:
            ticket_options = {k: v for k, v in options.items() if k not in ("source", "api_base")}
            tickets = TicketManager(tokens, kind, background_refresh=True, **ticket_options)
            self._tickets.append(tickets)
            self._resources[app.id, kind] = Resource(app.id, kind, tickets.manager)

    def resource(self, app_id: str, kind: str = ACCESS_TOKEN) -> Resource | None:
        """The resource of ``app_id`` and ``kind``, or ``None`` (unknown or not enabled)."""
        return self._resources.get((app_id, kind))

    def resources(self) -> Iterator[Resource]:
        """Every resource: each app's token, then its tickets."""
        return iter(list(self._resources.values()))

    def start(self) -> None:
        """Start every background refresher: the first tokens are fetched at once."""
        for resource in self._resources.values():
            resource.manager.start_background()
        if isinstance(self.store, MemoryStore):
            logger.warning(
                "the token service keeps its tokens in memory: run ONE process only "
                "(several would each fetch and retire each other's tokens); use a "
                "file: or redis:// store for more"
            )

    def close(self) -> None:
        """Stop the refreshers and close the store.

        The managers are closed all at once: each may wait up to half a second for a
        refresher in the middle of a fetch, and with 100 apps one after the other a
        SIGTERM during a WeChat hang would take most of a minute."""
        # A ticket's resource holds its TicketManager's manager: closing it closes both.
        closers = [
            threading.Thread(target=r.manager.close, name=f"wxauth-close-{r.label}", daemon=True)
            for r in self._resources.values()
        ]
        for closer in closers:
            closer.start()
        for closer in closers:
            closer.join()
        self.store.close()

    def readiness(self) -> Readiness:
        """Probe the store and every app's token (worker thread)."""
        try:
            self.store.get_meta(PROBE_KEY)
        except StoreError as exc:
            logger.warning("readiness: the store is unavailable (%s)", exc)
            apps = sum(1 for r in self._resources.values() if r.kind == ACCESS_TOKEN)
            return Readiness(False, 0, apps)
        ready = apps = 0
        for resource in self._resources.values():
            if resource.kind != ACCESS_TOKEN:
                continue
            apps += 1
            try:
                token = resource.peek()
            except StoreError:
                return Readiness(False, ready, len(self.config.apps))
            if token is not None and not token.is_expired(resource.manager.clock()):
                ready += 1
            else:
                # Wake its refresher, which may be in a long backoff after a store
                # outage (a Redis that restarted empty); the manager's own failure
                # backoff still paces the requests to WeChat.
                resource.manager.sync_background(0)
                logger.info("readiness: app %s has no valid token yet", resource.app_id)
        return Readiness(True, ready, apps)
