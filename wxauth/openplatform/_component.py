"""The Open Platform's manager: the component token of a third-party platform, the
pushes that feed it, and the managers of its authorizers' tokens.

A platform (``component_appid``) gets its ``component_access_token`` by POSTing its
secret and the newest ``component_verify_ticket``, which WeChat pushes to the
platform's URL every ten minutes. :class:`ComponentTokenManager` keeps that ticket in
the store (for its 12 hours, the newest by ``CreateTime`` winning), fetches the
component token with a :class:`~wxauth.TokenManager` on a :class:`ComponentTokenSource`
(so single flight, the store's lease lock, compare-and-invalidate, refresh ahead,
budgets and background refresh are the access token's), and hands out one
:class:`~wxauth.TokenManager` per authorizer
(:class:`~wxauth.openplatform.AuthorizerTokenSource`).

The manager is built in layers, one module each, every layer using only those below:

- :mod:`._component_token`: the component token and the calls made with it;
- :mod:`._recovery`: the re-read of every refresh token from the authorizer list;
- :mod:`._authorizations`: authorizer managers, code exchanges, cancellations;
- :mod:`._pushes`: the pushes (tickets, authorization notices, anything else);
- here: construction and life cycle.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import Any

from cachetools import LRUCache

from .._manager import TokenManager
from .._secret import Secret
from ..sources import DEFAULT_API_BASE
from ..stores._base import TokenStore
from ..stores._memory import default_store
from ._authorizations import DEFAULT_MAX_AUTHORIZER_MANAGERS, Authorization
from ._authorizer import RefreshTokens
from ._component_token import ComponentTokenSource
from ._crypto import MessageCrypto
from ._errors import PushReplayError
from ._protocol import TICKET_TTL
from ._pushes import PUSH_MAX_AGE, PushEvent, PushHandling
from ._recovery import RECOVERY_RETRY, RECOVERY_SPACING

__all__ = [
    "DEFAULT_MAX_AUTHORIZER_MANAGERS",
    "PUSH_MAX_AGE",
    "RECOVERY_RETRY",
    "RECOVERY_SPACING",
    "Authorization",
    "ComponentTokenManager",
    "ComponentTokenSource",
    "PushEvent",
    "PushReplayError",
]

logger = logging.getLogger("wxauth")

_LIVE_PLATFORMS: weakref.WeakSet[ComponentTokenManager] = weakref.WeakSet()


class ComponentTokenManager(PushHandling):
    """The component token of one third-party platform, its pushes, and its
    authorizers' tokens.

    :param component_appid: the platform's appid.
    :param component_secret: its secret (a ``str`` or a :class:`~wxauth.Secret`; held
        masked, never logged).
    :param token: the message-check token of the platform's push URL.
    :param encoding_aes_key: the 43-character EncodingAESKey of the push URL.
    :param store: where the ticket, the tokens and the authorizers' refresh tokens are
        kept. Refresh tokens cannot be fetched again like a token, so use a durable,
        shared store (:class:`~wxauth.FileStore`, :class:`~wxauth.RedisStore`); on a
        :class:`~wxauth.MemoryStore` (the default) a warning is logged.
    :param push_max_age: seconds a push's signed timestamp may be away from this host's
        clock before it is refused as a replay.
    :param max_authorizer_managers: how many authorizer managers are kept built.
    :param options: the :class:`~wxauth.TokenManager` options (``api_base``, ``clock``,
        ``refresh_margin``, ``timeout``, ``session``, ``transport``, ``retries``,
        ``backoff``, ``lock_timeout``, budgets, ``background_refresh``,
        ``poll_interval``), for the component token and, except the background
        refresh, for every authorizer's.

    ``get_token()``, ``invalidate(token)`` and ``refresh()`` are the component token's,
    so the platform is a :class:`~wxauth.sources.TokenProvider` of it.
    """

    def __init__(
        self,
        component_appid: str,
        component_secret: str | Secret,
        *,
        token: str | Secret,
        encoding_aes_key: str | Secret,
        store: TokenStore | None = None,
        push_max_age: float = PUSH_MAX_AGE,
        max_authorizer_managers: int = DEFAULT_MAX_AUTHORIZER_MANAGERS,
        **options: Any,
    ) -> None:
        # No clear local from here, should a line below raise.
        if isinstance(component_secret, str):
            component_secret = Secret(component_secret)
        if isinstance(token, str):
            token = Secret(token)
        if isinstance(encoding_aes_key, str):
            encoding_aes_key = Secret(encoding_aes_key)
        if "source" in options:
            raise TypeError("ComponentTokenManager takes no source=: it is the component token's")
        if not 0 < push_max_age <= TICKET_TTL:  # NaN too
            raise ValueError(
                f"push_max_age must be > 0 and at most a ticket's life ({TICKET_TTL:g} s)"
            )
        if max_authorizer_managers < 1:
            raise ValueError("max_authorizer_managers must be >= 1")
        api_base = str(options.pop("api_base", DEFAULT_API_BASE)).rstrip("/")
        self.source = ComponentTokenSource(component_appid, component_secret, api_base=api_base)
        self.crypto = MessageCrypto(token, encoding_aes_key, self.source.appid)
        if store is None:
            store = default_store()
        if not type(store).keeps_records():
            raise TypeError(
                f"{type(store).__name__} keeps no durable records, which an Open Platform "
                "needs for its authorizers' refresh tokens: use FileStore or RedisStore"
            )
        self.store = store
        self.push_max_age = float(push_max_age)
        self.tokens = TokenManager(self.source.appid, source=self.source, store=store, **options)
        self.keys = self.source.keys
        self.refresh_tokens = RefreshTokens(store, self.keys.refresh_table, self.tokens.clock)
        self._transport = options.get("transport")
        shared = dict(options)
        shared.pop("background_refresh", None)  # no thread per authorizer
        shared.setdefault("session", self.tokens.session)
        self._authorizer_options = shared
        self._managers = LRUCache(maxsize=max_authorizer_managers)
        self._refusal_logged_at = float("-inf")
        self._reset_after_fork()
        _LIVE_PLATFORMS.add(self)
        if not store.durable:
            logger.warning(
                "ComponentTokenManager(component_appid=%s) keeps its authorizers' refresh "
                "tokens in %r, which is not durable: they are lost when this process ends, "
                "and each authorizer then needs the authorizer list re-read from WeChat (or "
                "a new authorization). Give it a FileStore or a RedisStore",
                self.component_appid,
                store,
            )

    def _reset_after_fork(self) -> None:
        """New locks (in a forked child none may be inherited held)."""
        self._managers_lock = threading.Lock()
        self._recovery_lock = threading.Lock()

    def close(self) -> None:
        """Stop the background refresh (if any) and close the private HTTP session."""
        with self._managers_lock:
            managers = list(self._managers.values())
            self._managers.clear()
        for manager in managers:
            manager.close()
        self.tokens.close()

    def __enter__(self) -> ComponentTokenManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        source = getattr(self, "source", None)
        return (
            f"ComponentTokenManager(component_appid={getattr(source, 'appid', None)!r}, "
            f"store={getattr(self, 'store', None)!r})"
        )


def _reset_platforms_after_fork() -> None:
    for platform in list(_LIVE_PLATFORMS):
        platform._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_platforms_after_fork)
