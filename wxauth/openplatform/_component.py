"""The component token of a third-party platform, the pushes that feed it, and the
managers of its authorizers' tokens.

A platform (``component_appid``) gets its ``component_access_token`` by POSTing its
secret and the newest ``component_verify_ticket``, which WeChat pushes to the
platform's URL every ten minutes. :class:`ComponentTokenManager` keeps that ticket in
the store (for its 12 hours, the newest by ``CreateTime`` winning), fetches the
component token with a :class:`~wxauth.TokenManager` on a :class:`ComponentTokenSource`
(so single flight, the store's lease lock, compare-and-invalidate, refresh ahead,
budgets and background refresh are the access token's), and hands out one
:class:`~wxauth.TokenManager` per authorizer
(:class:`~wxauth.openplatform.AuthorizerTokenSource`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cachetools import LRUCache

from .._config import ManagerStats
from .._errors import (
    EXPIRED_ERRCODES,
    StoreError,
    TokenFetchError,
    WeChatAPIError,
    WxAuthError,
)
from .._fetch import FetchContext, fetch_token_answer
from .._manager import TokenManager
from .._protocol import TokenRequest, parse_token_answer
from .._redact import redact_token
from .._secret import Secret
from .._token import Token
from ..sources import DEFAULT_API_BASE, TokenSource, _require_secret
from ..stores._base import TokenStore
from ..stores._memory import default_store
from ._authorizer import AuthorizerTokenSource, RefreshTokens
from ._crypto import MessageCrypto
from ._errors import (
    AuthorizationCodeError,
    AuthorizerNotAuthorizedError,
    ComponentTicketError,
    PushAppIdError,
    PushFormatError,
    PushReplayError,
    PushSignatureError,
)
from ._protocol import (
    AUTHORIZER_LIST,
    COMPONENT_TOKEN,
    LIST_PAGE_SIZE,
    QUERY_AUTH,
    TICKET_TTL,
    PlatformKeys,
    StoredTicket,
    check_appid,
    component_api_request,
    component_error,
    component_token_request,
    parse_list_page,
    parse_recovery_record,
    parse_ticket_record,
    recovery_record,
    refused_push_hint,
    refused_push_record,
    start_push_ticket_request,
    take_secret,
    ticket_record,
)
from ._pushes import push_fields

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

#: A push signed more than this many seconds before (or after) this host's clock is
#: refused as a replay (:class:`PushReplayError`), and a push is remembered as handled
#: for twice as long.
PUSH_MAX_AGE = 300.0
#: After a re-read of the authorizer list, the next one waits at least this many
#: seconds (a storm of 61023 answers makes one pass, not one per authorizer).
RECOVERY_SPACING = 60.0
#: After a re-read that failed, the next one waits at least this many seconds; callers
#: meanwhile get a :class:`~wxauth.TokenFetchError` naming the failure.
RECOVERY_RETRY = 10.0
#: How many authorizer managers a platform keeps built (least recently used first out):
#: 100,000 authorizers never mean 100,000 live managers. A manager dropped from here
#: keeps working for whoever holds it; the token lives in the store either way.
DEFAULT_MAX_AUTHORIZER_MANAGERS = 1024
#: Pushes refused for their signing time log one WARNING per this many seconds.
REFUSAL_LOG_INTERVAL = 60.0
#: The longest a push waits for another push's ticket write, or an authorization's
#: token write waits for a fetch of that authorizer's token, in seconds.
PUSH_LOCK_WAIT = 5.0
#: The lease of the lock that keeps two re-reads of the authorizer list apart.
RECOVERY_LEASE = 120.0
#: The most pages one re-read of the authorizer list asks for.
MAX_LIST_PAGES = 10_000

_AUTHORIZED = frozenset({"authorized", "updateauthorized"})
_QUERY_FIELDS = ("msg_signature", "timestamp", "nonce")


@dataclass(frozen=True)
class PushEvent:
    """What :meth:`ComponentTokenManager.handle_push` made of a push.

    ``fields`` holds every field of the decrypted push; the ticket, the authorization
    code and the pre-auth code in it are :class:`~wxauth.Secret` values. ``repr`` shows
    neither them nor any other field's value.
    """

    #: ``component_verify_ticket``, ``authorized``, ``updateauthorized``,
    #: ``unauthorized``, or another ``InfoType`` (handled as nothing).
    info_type: str
    #: The platform's appid (the push's ``AppId``).
    component_appid: str
    #: The authorizer an authorization notice is about; ``None`` for a ticket.
    authorizer_appid: str | None
    #: The push's ``CreateTime`` (epoch seconds, WeChat's clock).
    create_time: int
    fields: Mapping[str, str | Secret] = field(repr=False, compare=False)

    def __repr__(self) -> str:
        return (
            f"PushEvent(info_type={self.info_type!r}, component_appid={self.component_appid!r}, "
            f"authorizer_appid={self.authorizer_appid!r}, create_time={self.create_time!r})"
        )


@dataclass(frozen=True)
class Authorization:
    """An authorization code exchanged (:meth:`ComponentTokenManager.query_auth`): the
    authorizer and the permission sets (``func_info`` ids) it granted. The tokens are
    in the store, not here."""

    authorizer_appid: str
    permissions: tuple[int, ...] = ()


def _no_ticket(component_appid: str, hint: str) -> ComponentTicketError:
    return ComponentTicketError(
        61006,
        f"wxauth: no component_verify_ticket stored for component appid={component_appid}: "
        "wait for WeChat's next push to the platform's URL (every 10 minutes, handled by "
        f"handle_push) or call start_push_ticket(){hint}",
    )


class ComponentTokenSource(TokenSource):
    """``POST /cgi-bin/component/api_component_token`` with the component secret and
    the newest stored ``component_verify_ticket`` (a meta record of the store, written
    by :meth:`ComponentTokenManager.handle_push`).

    No ticket stored, 61005 (expired) or 61006 (invalid):
    :class:`~wxauth.openplatform.ComponentTicketError`. The store key is
    ``token:component:<component appid>``. There is no stable variant for component
    tokens. Only :meth:`fetch` (sync) exists: an async manager runs it in a worker
    thread.
    """

    name = "component"
    path = COMPONENT_TOKEN

    def __init__(
        self,
        component_appid: str,
        component_secret: str | Secret,
        *,
        api_base: str = DEFAULT_API_BASE,
    ) -> None:
        secret = _require_secret("component_secret", component_secret)  # no clear local
        self.appid = check_appid("component_appid", component_appid)
        self._secret: Secret = secret
        self.api_base = api_base.rstrip("/")
        self.keys = PlatformKeys(self.appid, self.api_base)

    @property
    def key(self) -> str:
        return self.keys.component_token

    def fetch(self, ctx: FetchContext) -> tuple[str, float]:
        # Read here rather than as a flow's ReadMeta step: the driver's frame would keep
        # the record (the ticket in clear) as a local on the traceback of a failure.
        stored = parse_ticket_record(ctx.store.get_meta(self.keys.ticket))
        if stored is None:
            raise _no_ticket(self.appid, self._hint(ctx, stored))
        request = component_token_request(self.appid, self._secret, stored.ticket, self.api_base)
        failure: WeChatAPIError | None = None
        try:
            answer = fetch_token_answer(ctx, request)
        except WeChatAPIError as exc:
            failure = component_error(exc)
            if failure is None:
                raise
        else:
            return parse_token_answer(answer, self.path, field="component_access_token")
        if isinstance(failure, ComponentTicketError):
            hint = self._hint(ctx, stored)
            if hint:
                failure = ComponentTicketError(
                    failure.errcode, failure.errmsg + hint, url_path=failure.url_path
                )
        raise failure  # outside the except block: the plain error is not chained

    def _hint(self, ctx: FetchContext, stored: StoredTicket | None) -> str:
        """Why no newer ticket came, if a push was refused for this host's clock."""
        try:
            return refused_push_hint(ctx.store.get_meta(self.keys.refused_push), stored)
        except StoreError:
            return ""

    def __repr__(self) -> str:
        return f"ComponentTokenSource(appid={self.appid!r}, api_base={self.api_base!r})"


_LIVE_PLATFORMS: weakref.WeakSet[ComponentTokenManager] = weakref.WeakSet()


class ComponentTokenManager:
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
        self.store: TokenStore = store
        self.push_max_age = float(push_max_age)
        #: The component token's manager.
        self.tokens = TokenManager(self.source.appid, source=self.source, store=store, **options)
        self.keys = self.source.keys
        #: The authorizers' refresh tokens (durable records of the store).
        self.refresh_tokens = RefreshTokens(store, self.keys.refresh_table, self.tokens.clock)
        self._transport = options.get("transport")
        shared = dict(options)
        shared.pop("background_refresh", None)  # no thread per authorizer
        shared.setdefault("session", self.tokens.session)
        self._authorizer_options = shared
        self._managers: LRUCache[str, TokenManager] = LRUCache(maxsize=max_authorizer_managers)
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
        self._refusal_logged_at = float("-inf")
        self._managers_lock = threading.Lock()
        self._recovery_lock = threading.Lock()

    # -- the component token ----------------------------------------------------------

    @property
    def component_appid(self) -> str:
        """The platform's appid."""
        return self.source.appid

    @property
    def api_base(self) -> str:
        """Scheme and host of the WeChat API this platform talks to."""
        return self.source.api_base

    @property
    def clock(self) -> Callable[[], float]:
        """The epoch-seconds clock (the component token manager's)."""
        return self.tokens.clock

    @property
    def key(self) -> str:
        """The store key of the component token."""
        return self.tokens.key

    @property
    def stats(self) -> ManagerStats:
        """The component token fetches' counters (:class:`~wxauth.ManagerStats`)."""
        return self.tokens.stats

    def get_token(self) -> str:
        """Return a valid ``component_access_token`` (fetched at most once at a time,
        with the stored ticket; see :meth:`wxauth.TokenManager.get_token`)."""
        return self.tokens.get_token()

    def get(self) -> Token:
        """Like :meth:`get_token`, with the token's expiry."""
        return self.tokens.get()

    def peek(self) -> Token | None:
        """The stored component token, if any, without fetching."""
        return self.tokens.peek()

    def invalidate(self, token: str) -> bool:
        """Drop the stored component token only if it is still ``token``."""
        return self.tokens.invalidate(token)

    def refresh(self) -> str:
        """Fetch a new component token now."""
        return self.tokens.refresh()

    # -- pushes -----------------------------------------------------------------------

    def handle_push(self, query: Mapping[str, str], body: bytes | str) -> PushEvent:
        """Handle one push to the platform's authorization-event URL; answer the
        request with ``success`` when it returns.

        ``query`` is the request's query parameters (``msg_signature``, ``timestamp``,
        ``nonce``), ``body`` its raw body. A ``component_verify_ticket`` is stored
        unless a newer one (by ``CreateTime``) is; ``authorized`` and
        ``updateauthorized`` exchange their code (:meth:`query_auth`);
        ``unauthorized`` forgets that authorizer's tokens. Other ``InfoType`` values are
        logged and returned.

        Raises a :class:`~wxauth.openplatform.PushError` (a ``ValueError``: answer 4xx)
        for a push that is forged, altered, not for this platform, malformed, signed
        too long ago or already handled (:class:`PushReplayError`); nothing stored
        changes then. The code exchange may raise what :meth:`query_auth` raises.
        """
        event = self._open(query, body)
        seen = self.keys.push(query["msg_signature"])
        if self.store.get_meta(seen) is not None:
            raise PushReplayError("this push (its msg_signature) was already handled")
        if event.info_type == "component_verify_ticket":
            self._take_ticket(event)
        elif event.info_type in _AUTHORIZED:
            self._take_authorization(event)
        elif event.info_type == "unauthorized":
            assert event.authorizer_appid is not None
            self._forget(event.authorizer_appid, event.create_time)
        else:
            logger.info(
                "ignored a push with InfoType %r for component appid=%s",
                event.info_type[:40],
                self.component_appid,
            )
        self.store.set_meta(seen, "1", ttl=2 * self.push_max_age)
        return event

    def _open(self, query: Mapping[str, str], body: bytes | str) -> PushEvent:
        """Verify, decrypt and read a push (the ticket and codes wrapped at once)."""
        missing = [name for name in _QUERY_FIELDS if not query.get(name)]
        if missing:
            raise PushSignatureError(f"the push's query has no {', '.join(missing)}")
        # Read at once from the decrypted text, which no local of this frame holds.
        fields = push_fields(
            self.crypto.decrypt_message(
                body, query["msg_signature"], query["timestamp"], query["nonce"]
            )
        )
        if isinstance(fields, PushFormatError):
            raise fields
        try:
            signed_at = int(query["timestamp"])
        except ValueError:
            raise PushFormatError("the push's timestamp is not a number") from None
        age = self.clock() - signed_at
        if abs(age) > self.push_max_age:
            self._refused_for_age(signed_at, age)
            raise PushReplayError(
                f"the push was signed {age:.0f}s from this host's clock, more than "
                f"push_max_age={self.push_max_age:g}s: replayed, or this host's clock is off"
            )
        if fields.get("AppId") != self.component_appid:
            raise PushAppIdError("the push's AppId is not this platform's component appid")
        info_type = fields.get("InfoType")
        create_time = fields.get("CreateTime")
        if not isinstance(info_type, str) or not info_type:
            raise PushFormatError("the push has no InfoType")
        if (
            not isinstance(create_time, str)
            or not create_time.isascii()
            or not create_time.isdigit()
        ):
            raise PushFormatError("the push has no numeric CreateTime")
        authorizer = None
        if info_type in _AUTHORIZED or info_type == "unauthorized":
            try:
                authorizer = check_appid("AuthorizerAppid", fields.get("AuthorizerAppid"))
            except ValueError:
                raise PushFormatError("the push has no valid AuthorizerAppid") from None
        return PushEvent(
            info_type, self.component_appid, authorizer, int(create_time), MappingProxyType(fields)
        )

    def _refused_for_age(self, signed_at: int, age: float) -> None:
        """Say loudly that a push signed right was refused for its time: if this host's
        clock is off, every push is, and the component token stops 12 hours later.
        Once a minute at most (a replay flood must not flood the log): DEBUG between."""
        now = time.monotonic()
        if now - self._refusal_logged_at < REFUSAL_LOG_INTERVAL:
            logger.debug(
                "refused a push to component appid=%s signed %+.0fs from this host's clock",
                self.component_appid,
                age,
            )
            return
        self._refusal_logged_at = now
        logger.warning(
            "refused a push to component appid=%s: signed %+.0fs from this host's clock, "
            "past push_max_age=%gs. A replayed push, or this host's clock is off: then "
            "every push is refused and no new ticket is stored (the component token "
            "stops when the last one expires). Fix the clock (NTP) or raise push_max_age",
            self.component_appid,
            age,
            self.push_max_age,
        )
        record = refused_push_record(signed_at, age, self.push_max_age)
        try:
            self.store.set_meta(self.keys.refused_push, record, ttl=TICKET_TTL)
        except StoreError as exc:
            logger.warning("could not record the refused push: %s", exc)

    def _take_ticket(self, event: PushEvent) -> None:
        ticket = event.fields.get("ComponentVerifyTicket")
        if not isinstance(ticket, Secret) or not ticket.get_secret_value().strip():
            raise PushFormatError("the ticket push has no ComponentVerifyTicket")
        key = self.keys.ticket
        lock = self.store.lock(key, lease=PUSH_LOCK_WAIT * 2)
        if not lock.acquire(timeout=PUSH_LOCK_WAIT):
            raise StoreError(
                f"gave up after {PUSH_LOCK_WAIT:g}s waiting for the ticket lock of component "
                f"appid={self.component_appid}"
            )
        try:
            stored = parse_ticket_record(self.store.get_meta(key))
            if stored is not None and stored.create_time > event.create_time:
                logger.info(
                    "kept the stored component_verify_ticket of component appid=%s: it is "
                    "newer (CreateTime %d) than the pushed one (%d)",
                    self.component_appid,
                    stored.create_time,
                    event.create_time,
                )
                return
            self.store.set_meta(key, ticket_record(ticket, event.create_time), ttl=TICKET_TTL)
        finally:
            _release(lock)
        logger.info(
            "stored the component_verify_ticket of component appid=%s (CreateTime %d)",
            self.component_appid,
            event.create_time,
        )

    def _take_authorization(self, event: PushEvent) -> None:
        code = event.fields.get("AuthorizationCode")
        if not isinstance(code, Secret) or not code.get_secret_value().strip():
            raise PushFormatError("the authorization push has no AuthorizationCode")
        try:
            result, _ = self._exchange(code, event_time=event.create_time)
        except AuthorizationCodeError as exc:
            # Used (the merchant's redirect exchanged it first) or expired: a push again
            # cannot help. The refresh token, if missing, comes from the list.
            logger.warning(
                "the %s push for authorizer appid=%s of component appid=%s: its code was "
                "refused (%d: %s); taking the push as handled",
                event.info_type,
                event.authorizer_appid,
                self.component_appid,
                exc.errcode,
                "used or invalid: exchanged already by query_auth?"
                if exc.errcode == 61009
                else "expired",
            )
            return
        if result.authorizer_appid != event.authorizer_appid:
            logger.warning(
                "the %s push named authorizer appid=%s but its code is authorizer appid=%s's",
                event.info_type,
                event.authorizer_appid,
                result.authorizer_appid,
            )

    def _forget(self, authorizer_appid: str, event_time: int) -> None:
        """An authorizer cancelled: mark its refresh token cancelled and drop its
        cached token, unless the stored record came from a later push."""
        if not self.refresh_tokens.cancel(authorizer_appid, event_time=event_time):
            logger.info(
                "ignored an unauthorized push for authorizer appid=%s older than the "
                "authorization stored (CreateTime %d)",
                authorizer_appid,
                event_time,
            )
            return
        key = self.keys.authorizer_token(authorizer_appid)
        cached = self.store.get(key)
        if cached is not None:
            self.store.delete_if(key, cached.value)
        with self._managers_lock:
            manager = self._managers.pop(authorizer_appid, None)
        if manager is not None:
            manager._local.clear()
        logger.info(
            "authorizer appid=%s cancelled its authorization of component appid=%s; "
            "forgot its tokens",
            authorizer_appid,
            self.component_appid,
        )

    # -- authorizers --------------------------------------------------------------------

    def query_auth(self, authorization_code: str | Secret) -> Authorization:
        """Exchange an authorization code (``api_query_auth``): the authorizer's refresh
        token is stored durably, its access token in the store. Returns the authorizer
        and the permission sets it granted.

        Raises :class:`~wxauth.openplatform.AuthorizationCodeError` for a code that is
        invalid or expired (61009/61010), and
        :class:`~wxauth.openplatform.AuthorizerNotAuthorizedError` when the account's
        cancellation (an ``unauthorized`` push) was handled while the code was being
        exchanged: nothing is stored then."""
        if isinstance(authorization_code, str):
            authorization_code = Secret(authorization_code)
        if not isinstance(authorization_code, Secret) or not authorization_code:
            raise ValueError("authorization_code must be a non-empty str")
        result, stored = self._exchange(authorization_code, event_time=None)
        if not stored:
            raise AuthorizerNotAuthorizedError(
                61003,
                f"authorizer appid={result.authorizer_appid} cancelled its authorization "
                f"of component appid={self.component_appid} while its code was being "
                "exchanged; nothing stored",
                url_path=QUERY_AUTH,
            )
        return result

    def _exchange(self, code: Secret, *, event_time: int | None) -> tuple[Authorization, bool]:
        """Exchange a code; store the tokens unless the authorizer's record holds a
        later event (a cancellation, a later authorization push). Returns the
        authorization and whether its tokens were stored."""
        since = self.clock()
        body = {"component_appid": self.component_appid, "authorization_code": code}
        answer = self._call(self._context(), QUERY_AUTH, body, (code,))
        info = answer.get("authorization_info")
        if not isinstance(info, dict):
            raise TokenFetchError(f"{QUERY_AUTH} answered without authorization_info")
        refresh = take_secret(info, "authorizer_refresh_token")
        access = take_secret(info, "authorizer_access_token")
        appid = info.get("authorizer_appid")
        try:
            appid = check_appid("authorizer_appid", appid)
        except ValueError:
            raise TokenFetchError(f"{QUERY_AUTH} answered no valid authorizer_appid") from None
        result = Authorization(appid, _permissions(info.get("func_info")))
        if refresh is not None:
            stored = self.refresh_tokens.authorize(
                appid, refresh, event_time=event_time, since=since
            )
        else:
            logger.warning(
                "%s answered no authorizer_refresh_token for authorizer appid=%s (it granted "
                "no API permission?): its access token cannot be refreshed",
                QUERY_AUTH,
                appid,
            )
            stored = not self.refresh_tokens.superseded(appid, event_time=event_time, since=since)
        if not stored:
            logger.info(
                "authorizer appid=%s of component appid=%s: a later event (a cancellation "
                "or another authorization) was stored while its code was exchanged; kept it",
                appid,
                self.component_appid,
            )
            return result, False
        self._keep_authorizer_token(appid, access, info.get("expires_in"))
        logger.info(
            "authorizer appid=%s authorized component appid=%s; stored its refresh token",
            appid,
            self.component_appid,
        )
        return result, True

    def _keep_authorizer_token(self, appid: str, access: Secret | None, expires: object) -> None:
        """Store the access token a code exchange brought (a re-authorization retires
        the previous one), or drop the cached one if it brought none usable."""
        manager = self.authorizer(appid)
        store, key = manager.store, manager.key
        manager._local.clear()
        expires_in = None
        if access is not None:
            # The answer's checks on a stand-in value: no local holds the token in clear.
            answer = {"access_token": "-", "expires_in": expires}
            try:
                _, expires_in = parse_token_answer(answer, QUERY_AUTH)
            except TokenFetchError as exc:
                logger.warning("authorizer appid=%s: %s", appid, exc)
        if access is None or expires_in is None:
            cached = store.get(key)
            if cached is not None:
                store.delete_if(key, cached.value)
            return
        lock = store.lock(key, lease=manager.lease)
        if not lock.acquire(timeout=PUSH_LOCK_WAIT):
            logger.info(
                "authorizer appid=%s: its token is being fetched; not storing the one "
                "api_query_auth answered",
                appid,
            )
            return
        try:
            store.set(
                key,
                Token.issued(access.get_secret_value(), expires_in, self.clock(), fence=lock.fence),
            )
        finally:
            _release(lock)

    def authorizer(self, authorizer_appid: str) -> TokenManager:
        """The :class:`~wxauth.TokenManager` of an authorizer's access token, usable
        wherever one is (``WxAuth(manager=...)``, ``with_access_token``, the httpx
        auth). Same store and options as the platform, no background thread; built
        once and kept (the least recently used dropped past
        ``max_authorizer_managers``).

        Its ``get_token()`` raises
        :class:`~wxauth.openplatform.AuthorizerNotAuthorizedError` for an account that
        never authorized the platform (or cancelled)."""
        appid = check_appid("authorizer_appid", authorizer_appid)
        with self._managers_lock:
            manager = self._managers.get(appid)
            if manager is None:
                manager = TokenManager(
                    appid,
                    source=AuthorizerTokenSource(self, appid),
                    store=self.store,
                    **self._authorizer_options,
                )
                self._managers[appid] = manager
        return manager

    def authorizer_appids(self) -> list[str]:
        """The appids of the authorizers whose refresh token is stored, sorted."""
        return self.refresh_tokens.appids()

    def has_authorizer(self, authorizer_appid: str) -> bool:
        """Whether a refresh token of ``authorizer_appid`` is stored (one record read)."""
        stored = self.refresh_tokens.get(authorizer_appid)
        return stored is not None and stored.token is not None

    def recover_authorizers(self) -> list[str]:
        """Re-read the authorizer list (:meth:`recover_refresh_tokens`) and return the
        appids with a stored refresh token: for a fleet whose schedule was lost."""
        self.recover_refresh_tokens(reason="the authorizer registry was empty")
        return self.authorizer_appids()

    def start_push_ticket(self) -> None:
        """Ask WeChat to (re)start pushing ``component_verify_ticket``
        (``api_start_push_ticket``): after a platform is approved, or when no ticket
        came for a while."""
        request = start_push_ticket_request(
            self.component_appid, self.source._secret, self.api_base
        )
        _, error = _send(self._context(), request)
        if error is not None:
            raise error
        logger.info(
            "asked WeChat to push component_verify_ticket to component appid=%s",
            self.component_appid,
        )

    def recover_refresh_tokens(self, *, reason: str = "asked for") -> int | None:
        """Re-read every authorizer's refresh token from ``api_get_authorizer_list``
        (pages of :data:`~wxauth.openplatform._protocol.LIST_PAGE_SIZE`) and store the
        ones that differ. One pass at a time per platform (across processes sharing
        the store) and at most one per :data:`RECOVERY_SPACING` seconds.

        Returns how many authorizers the list gave a refresh token for, or ``None``
        when a pass ran moments ago (its result is in the store). Raises
        :class:`~wxauth.TokenFetchError` when the list cannot be read now: another
        pass held it past ``lock_timeout``, or one failed less than
        :data:`RECOVERY_RETRY` seconds ago. Without a component token (no ticket
        yet) no pass is made, and none is counted: that error is raised as it is."""
        wait = self.tokens.lock_timeout
        if not self._recovery_lock.acquire(timeout=wait):
            raise self._recovery_busy(wait)
        try:
            lock = self.store.lock(self.keys.recovery, lease=RECOVERY_LEASE)
            if not lock.acquire(timeout=wait):
                raise self._recovery_busy(wait)
            try:
                return self._recover_once(reason)
            finally:
                _release(lock)
        finally:
            self._recovery_lock.release()

    def _recover_once(self, reason: str) -> int | None:
        """A pass over the list, unless one ran (or failed) moments ago; under the
        recovery locks."""
        key = self.keys.recovery
        last = parse_recovery_record(self.store.get_meta(key))
        if last is not None:
            ago = abs(self.clock() - last.at)
            if last.failure is None and ago < RECOVERY_SPACING:
                return None
            if last.failure is not None and ago < RECOVERY_RETRY:
                raise TokenFetchError(
                    f"the authorizer list of component appid={self.component_appid} could "
                    f"not be read {ago:.0f}s ago ({last.failure}); it is read again "
                    f"{RECOVERY_RETRY:g}s after a failure"
                )
        # The component token first: without one (no ticket yet, say) no pass is made,
        # and none is counted, so the pass runs as soon as a ticket comes.
        self.get_token()
        self.store.set_meta(key, recovery_record(self.clock()), ttl=RECOVERY_SPACING)
        try:
            return self._read_authorizer_list(reason)
        except WxAuthError as exc:
            failure = f"{type(exc).__name__}: {exc}"
            record = recovery_record(self.clock(), failure=failure)
            self.store.set_meta(key, record, ttl=RECOVERY_RETRY)
            raise

    def _recovery_busy(self, waited: float) -> TokenFetchError:
        return TokenFetchError(
            f"gave up after {waited:.1f}s waiting for another thread's or process's "
            f"re-read of the authorizer list of component appid={self.component_appid}; "
            "try again shortly"
        )

    def _read_authorizer_list(self, reason: str) -> int:
        ctx = self._context()
        stored = self.refresh_tokens.snapshot()
        offset = listed = changed = without = pages = 0
        while pages < MAX_LIST_PAGES:
            body = {
                "component_appid": self.component_appid,
                "offset": offset,
                "count": LIST_PAGE_SIZE,
            }
            page = parse_list_page(self._call(ctx, AUTHORIZER_LIST, body))
            if isinstance(page, TokenFetchError):
                raise page
            pages += 1
            for appid, (token, auth_time) in page.tokens.items():
                current = stored.get(appid)
                if current is not None and current.token == token:
                    continue
                if self.refresh_tokens.replace(appid, current, token, event_time=auth_time):
                    changed += 1
            listed += len(page.tokens)
            without += page.without_token
            offset += page.entries
            if page.entries == 0 or offset >= page.total:
                break
        logger.warning(
            "re-read the authorizer list of component appid=%s (%s): %d refresh tokens in "
            "%d pages, %d of them new or changed%s",
            self.component_appid,
            reason,
            listed,
            pages,
            changed,
            f"; {without} authorizers without one (their code was never exchanged)"
            if without
            else "",
        )
        return listed

    # -- calls to the component endpoints ------------------------------------------------

    def _context(self) -> FetchContext:
        tokens = self.tokens
        return FetchContext(
            session=tokens.session,
            timeout=tokens.timeout,
            clock=tokens.clock,
            store=self.store,
            retries=tokens.retries,
            backoff=tokens.backoff,
            transport=self._transport,
        )

    def _call(
        self,
        ctx: FetchContext,
        path: str,
        body: Mapping[str, Any],
        secrets: tuple[Secret, ...] = (),
    ) -> dict[str, Any]:
        """POST ``body`` to a component endpoint with the component token; when that
        token is rejected (40001/40014/42001), invalidate it, fetch another and send
        once more. Errcodes come back as Open Platform errors."""
        token = self.get_token()
        answer, error = _send(
            ctx, component_api_request(self.api_base, path, token, body, secrets=secrets)
        )
        if error is None:
            assert answer is not None
            return answer
        if error.errcode not in EXPIRED_ERRCODES:
            raise error
        logger.warning(
            "%s rejected the component token of component appid=%s (%s); refreshing it and "
            "sending once more",
            path,
            self.component_appid,
            redact_token(token),
        )
        self.tokens.invalidate(token)
        token = self.get_token()
        answer, error = _send(
            ctx, component_api_request(self.api_base, path, token, body, secrets=secrets)
        )
        if error is not None:
            raise error
        assert answer is not None
        return answer

    # -- life cycle ---------------------------------------------------------------------

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


def _permissions(func_info: object) -> tuple[int, ...]:
    ids = []
    if isinstance(func_info, list):
        for item in func_info:
            category = item.get("funcscope_category") if isinstance(item, Mapping) else None
            value = category.get("id") if isinstance(category, Mapping) else None
            if type(value) is int:
                ids.append(value)
    return tuple(ids)


def _send(
    ctx: FetchContext, request: TokenRequest
) -> tuple[dict[str, Any] | None, WeChatAPIError | None]:
    """Send a component request: ``(answer, None)`` or ``(None, the Open Platform
    error)``, returned so the caller raises it outside any except block. Transport
    failures (:class:`~wxauth.TokenFetchError`) are raised."""
    try:
        return fetch_token_answer(ctx, request), None
    except WeChatAPIError as exc:
        return None, component_error(exc) or exc


def _release(lock: Any) -> None:
    try:
        lock.release()
    except StoreError as exc:
        logger.warning("%s; the lock will expire after its lease", exc)


def _reset_platforms_after_fork() -> None:
    for platform in list(_LIVE_PLATFORMS):
        platform._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_platforms_after_fork)
