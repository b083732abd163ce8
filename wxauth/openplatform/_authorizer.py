"""Authorizers: the accounts that authorized a platform, their refresh tokens, and the
source of their access tokens.

An authorizer's access token (``authorizer_access_token``) is fetched with the
platform's component token and the authorizer's ``authorizer_refresh_token``. The
refresh token cannot be fetched again like a token: it comes once, from the exchange
of an authorization code, and stays valid until the account re-authorizes or cancels.
So it is kept as a durable record (:meth:`~wxauth.stores.TokenStore.put_record`: no
expiry, no eviction) in the platform's store, and when it is lost or refused (61023),
the platform re-reads every authorizer's from ``api_get_authorizer_list``, once,
and the fetch is tried once more.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .._errors import StoreError, WxAuthError
from .._fetch import FetchContext
from .._protocol import parse_token_answer
from .._secret import Secret
from ..sources import TokenSource
from ..stores._base import TokenStore
from ._errors import AuthorizerNotAuthorizedError, RefreshTokenError
from ._protocol import (
    AUTHORIZER_TOKEN,
    HiddenText,
    StoredRefresh,
    parse_refresh_record,
    refresh_record,
    take_secret,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._recovery import RefreshTokenRecovery

__all__ = ["CAS_ATTEMPTS", "AuthorizerTokenSource", "RefreshTokens", "not_authorized"]

logger = logging.getLogger("wxauth")

#: Compare-and-set attempts of one write of a durable record (an authorization, a
#: cancellation, a ticket) before it gives up (each failed one means another writer
#: changed the record meanwhile).
CAS_ATTEMPTS = 8


def not_authorized(component_appid: str, authorizer_appid: str) -> AuthorizerNotAuthorizedError:
    """The error for an authorizer whose refresh token wxauth does not have, even after
    re-reading the authorizer list."""
    return AuthorizerNotAuthorizedError(
        61003,
        f"wxauth holds no authorizer_refresh_token for authorizer appid={authorizer_appid} "
        f"of component appid={component_appid}, and api_get_authorizer_list lists none: the "
        "account never authorized this platform, cancelled it, or its code was never "
        "exchanged (query_auth)",
    )


class RefreshTokens:
    """The refresh tokens of one platform's authorizers: a table of durable records in
    ``store``, by authorizer appid (see :class:`~wxauth.openplatform._protocol.StoredRefresh`).

    Every change that depends on what was read is a compare-and-set, so a refresh
    token written by one process is never overwritten by another's stale view.
    """

    def __init__(self, store: TokenStore, table: str, clock: Callable[[], float]) -> None:
        self.store = store
        self.table = table
        self._clock = clock

    def get(self, appid: str) -> StoredRefresh | None:
        """The record of ``appid``, or ``None``."""
        return parse_refresh_record(self.store.get_record(self.table, appid))

    def put(self, appid: str, token: Secret, *, event_time: int | None = None) -> None:
        """Write ``appid``'s refresh token, whatever was there (for tools and tests: an
        authorization goes through :meth:`authorize`, which keeps later events)."""
        record = refresh_record(token, event_time=event_time, at=self._clock())
        self.store.put_record(self.table, appid, record)

    def replace(
        self,
        appid: str,
        old: StoredRefresh | None,
        token: Secret | None,
        *,
        event_time: int | None = None,
    ) -> bool:
        """Write ``token`` (``None``: delete the record) only if the record is still
        ``old`` (``None``: absent); say whether it did."""
        new = None
        if token is not None:
            new = refresh_record(token, event_time=event_time, at=self._clock())
        previous = None if old is None else HiddenText(old.raw.get_secret_value())
        return self.store.replace_record(self.table, appid, previous, new)

    def authorize(self, appid: str, token: Secret, *, event_time: int | None, since: float) -> bool:
        """Store ``token``, brought by an authorization whose push has ``event_time``
        (``None``: a code from the merchant's redirect) and whose code exchange started
        at ``since`` (this host's clock), unless the record holds a later event: a
        cancellation pushed later (without a push time: written after the exchange
        started), or the token of a later authorization push. Say whether it stored."""
        for _ in range(CAS_ATTEMPTS):
            current = self.get(appid)
            if current is not None and _supersedes(current, event_time, since):
                return False
            if self.replace(appid, current, token, event_time=event_time):
                return True
        raise StoreError(_contended(appid))

    def superseded(self, appid: str, *, event_time: int | None, since: float) -> bool:
        """Whether the record holds an event later than that authorization (see
        :meth:`authorize`)."""
        current = self.get(appid)
        return current is not None and _supersedes(current, event_time, since)

    def cancel(self, appid: str, *, event_time: int) -> bool:
        """Mark ``appid`` cancelled by an ``unauthorized`` push of ``event_time``,
        unless the record came from a later push; say whether it did. The mark is a
        record (no refresh token), so an exchange in flight cannot store one after it."""
        for _ in range(CAS_ATTEMPTS):
            current = self.get(appid)
            if (
                current is not None
                and current.event_time is not None
                and current.event_time > event_time
            ):
                return False
            record = refresh_record(None, event_time=event_time, at=self._clock())
            previous = None if current is None else HiddenText(current.raw.get_secret_value())
            if self.store.replace_record(self.table, appid, previous, record):
                return True
        raise StoreError(_contended(appid))

    def snapshot(self) -> dict[str, StoredRefresh]:
        """Every record, by authorizer appid."""
        parsed = {}
        for appid, raw in self.store.records(self.table).items():
            record = parse_refresh_record(raw)
            if record is not None:
                parsed[appid] = record
        return parsed

    def appids(self) -> list[str]:
        """The appids of the authorizers with a refresh token, sorted."""
        return sorted(appid for appid, stored in self.snapshot().items() if stored.token)

    def __repr__(self) -> str:
        return f"RefreshTokens(table={self.table!r}, store={self.store!r})"


def _supersedes(current: StoredRefresh, event_time: int | None, since: float) -> bool:
    """Whether ``current`` records an event later than an authorization of
    ``event_time`` whose code exchange started at ``since``."""
    if current.event_time is not None and event_time is not None:
        if current.cancelled:
            return current.event_time >= event_time  # same second: the cancellation wins
        return current.event_time > event_time
    return current.cancelled and current.at is not None and current.at >= since


def _contended(appid: str) -> str:
    return (
        f"the refresh token record of authorizer appid={appid} changed under each of "
        f"{CAS_ATTEMPTS} compare-and-set attempts; not written"
    )


class AuthorizerTokenSource(TokenSource):
    """Fetches an authorizer's access token through its platform:
    ``POST /cgi-bin/component/api_authorizer_token?component_access_token=T`` with the
    stored ``authorizer_refresh_token``.

    - No refresh token stored: the platform re-reads the authorizer list once; still
      none: :class:`~wxauth.openplatform.AuthorizerNotAuthorizedError`.
    - 61023 (refresh token refused): the platform re-reads the list (one pass at a
      time, at most one a minute) and, if that brought a different refresh token, the
      fetch is tried once more; else :class:`~wxauth.openplatform.RefreshTokenError`.
    - 61003 (not authorized): the stored refresh token is forgotten.
    - The component token rejected (40001/42001): invalidated, refetched, and the
      request sent once more.
    - An answer with a different refresh token replaces the stored one, if the stored
      one is still the one sent.

    The store key is ``token:authorizer:<component appid>:<authorizer appid>``. Only
    :meth:`fetch` (sync) exists: an async manager runs it in a worker thread.
    """

    name = "authorizer"
    path = AUTHORIZER_TOKEN

    def __init__(self, platform: RefreshTokenRecovery, authorizer_appid: str) -> None:
        self.platform = platform
        self.appid = authorizer_appid
        self.component_appid = platform.component_appid
        self.api_base = platform.api_base
        self._key = platform.keys.authorizer_token(authorizer_appid)

    @property
    def key(self) -> str:
        return self._key

    def fetch(self, ctx: FetchContext) -> tuple[str, float]:
        platform, appid = self.platform, self.appid
        # The platform's session as of now: a manager built before an os.fork holds the
        # parent's, whose pooled connections the parent (and every sibling) uses too.
        ctx = replace(ctx, session=platform.tokens.session)
        refresh = platform.refresh_tokens
        stored = refresh.get(appid)
        recovered = False
        if stored is None or stored.token is None:
            platform.recover_refresh_tokens(reason=f"no refresh token for appid={appid}")
            recovered = True
            stored = refresh.get(appid)
            if stored is None or stored.token is None:
                raise not_authorized(self.component_appid, appid)
        refused: RefreshTokenError | None = None
        try:
            answer = platform._call(ctx, self.path, self._body(stored.token), (stored.token,))
        except RefreshTokenError as exc:
            if recovered:
                raise
            refused = exc
        except AuthorizerNotAuthorizedError:
            # 61003: no longer authorized (an unauthorized push that never came).
            if refresh.replace(appid, stored, None):
                logger.warning(
                    "authorizer appid=%s of component appid=%s is no longer authorized "
                    "(61003); forgot its refresh token",
                    appid,
                    self.component_appid,
                )
            raise
        if refused is not None:
            answer, stored = self._after_refusal(ctx, stored, refused)
        return self._accept(answer, stored)

    def _after_refusal(
        self, ctx: FetchContext, stored: StoredRefresh, refused: RefreshTokenError
    ) -> tuple[dict[str, Any], StoredRefresh]:
        """61023: re-read the list, and try once more with a different refresh token."""
        platform, appid = self.platform, self.appid
        logger.warning(
            "api_authorizer_token refused the refresh token of authorizer appid=%s (61023); "
            "re-reading the authorizer list of component appid=%s",
            appid,
            self.component_appid,
        )
        platform.recover_refresh_tokens(reason=f"61023 for appid={appid}")
        fresh = platform.refresh_tokens.get(appid)
        if fresh is None or fresh.token is None:
            raise not_authorized(self.component_appid, appid)
        if fresh.token == stored.token:
            raise refused  # the list holds the same one: trying it again cannot help
        answer = platform._call(ctx, self.path, self._body(fresh.token), (fresh.token,))
        return answer, fresh

    def _body(self, refresh_token: Secret) -> dict[str, str | Secret]:
        return {
            "component_appid": self.component_appid,
            "authorizer_appid": self.appid,
            "authorizer_refresh_token": refresh_token,
        }

    def _accept(self, answer: dict[str, Any], sent: StoredRefresh) -> tuple[str, float]:
        """The access token of an answer; a different refresh token in it replaces the
        stored one, if that is still the one sent."""
        rotated = take_secret(answer, "authorizer_refresh_token")
        token, expires_in = parse_token_answer(answer, self.path, field="authorizer_access_token")
        if rotated is not None and sent.token is not None and rotated != sent.token:
            self._rotate(sent, rotated)
        return token, expires_in

    def _rotate(self, sent: StoredRefresh, rotated: Secret) -> None:
        try:
            replaced = self.platform.refresh_tokens.replace(
                self.appid, sent, rotated, event_time=sent.event_time
            )
        except WxAuthError as exc:  # the token is good; the next fetch tries again
            logger.warning(
                "could not store the new refresh token of authorizer appid=%s: %s",
                self.appid,
                exc,
            )
            return
        logger.info(
            "WeChat answered a new refresh token for authorizer appid=%s; %s",
            self.appid,
            "stored it" if replaced else "another process changed the stored one first, kept",
        )

    def __repr__(self) -> str:
        return (
            f"AuthorizerTokenSource(appid={self.appid!r}, component_appid={self.component_appid!r})"
        )
