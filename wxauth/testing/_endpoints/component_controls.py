"""The Open Platform controls of the emulator: the tests play WeChat's side with them.

:class:`ComponentControls` registers components and issues their verify tickets,
authorizes and unauthorizes accounts (one at a time with a code, from a pre-authorization
code as an administrator would, or 100,000 at once), and reads back refresh tokens,
tokens and tickets. Its private helpers are the state transitions the endpoints of
:mod:`.component` and the pushes of :mod:`.._component_push` share: a new ticket, an
(un)authorization, an authorization code. The records it changes are in
:mod:`.component_state`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable

from .._state import QuotaHolder
from .._wire import TokenStatus
from .component_state import (
    AUTHORIZATION_CODE_EXPIRES_IN,
    COMPONENT_TOKEN_DAILY_QUOTA,
    COMPONENT_TOKEN_PATH,
    Authorization,
    AuthorizationCode,
    Component,
    VerifyTicket,
)
from .quota import QuotaEndpoints

__all__ = ["ComponentControls"]

_APPID = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_AES_KEY = re.compile(r"[A-Za-z0-9]{43}")


def _check_appid(appid: object, what: str) -> str:
    if not isinstance(appid, str) or not _APPID.fullmatch(appid):
        raise ValueError(f"{what} must be 1-64 letters, digits, '_' or '-'")
    return appid


class ComponentControls(QuotaEndpoints):
    """The test controls that play the WeChat side of the Open Platform, and the state
    transitions they share with the endpoints."""

    verify_ticket_ttl: float
    verify_ticket_overlap: float
    rotate_refresh_tokens: bool
    component_wrong_secret_errcode: int
    #: The fake's clock (:meth:`FakeWeChat.clock`).
    clock: Callable[[], float]
    _components: dict[str, Component]

    # -- accounts and controls -------------------------------------------------------------

    def add_component(
        self,
        component_appid: str,
        component_secret: str,
        *,
        token: str,
        encoding_aes_key: str,
        ip_allowlist: Iterable[str] | None = None,
    ) -> None:
        """Register a third-party platform (component).

        :param token: the message-check Token of its push URLs (signs pushes).
        :param encoding_aes_key: its 43-character EncodingAESKey (encrypts pushes).
        :param ip_allowlist: caller IPs allowed on every component endpoint; others get
            61004. ``None`` (default) allows every IP.

        It has no verify ticket yet: issue one with :meth:`new_verify_ticket` or push one
        with :meth:`push_verify_ticket`.
        """
        _check_appid(component_appid, "component_appid")
        if not isinstance(component_secret, str) or not component_secret:
            raise ValueError("component_secret must be a non-empty string")
        if not isinstance(token, str) or not token:
            raise ValueError("token must be a non-empty string")
        if not isinstance(encoding_aes_key, str) or not _AES_KEY.fullmatch(encoding_aes_key):
            raise ValueError("encoding_aes_key must be 43 letters or digits")
        allow = None if ip_allowlist is None else frozenset(ip_allowlist)
        quotas = {COMPONENT_TOKEN_PATH: COMPONENT_TOKEN_DAILY_QUOTA}
        with self._lock:
            if component_appid in self._components or component_appid in self._apps:
                raise ValueError(f"{component_appid!r} is already registered")
            self._components[component_appid] = Component(
                component_appid, component_secret, token, encoding_aes_key, allow, quotas
            )

    def new_verify_ticket(self, component_appid: str) -> str:
        """Issue a new ``component_verify_ticket`` (as a push would) and return it.

        It is the latest from now on and is accepted for ``verify_ticket_ttl`` (12 h);
        the previous one stays accepted ``verify_ticket_overlap`` (600 s) longer, then
        answers 61006. This issues without pushing; :meth:`push_verify_ticket` pushes.
        """
        with self._lock:
            return self._new_ticket(self._component_of(component_appid), self.clock()).value

    def authorize(
        self,
        component_appid: str,
        authorizer_appid: str,
        *,
        func_info: Iterable[int] | None = None,
    ) -> str:
        """Authorize (or re-authorize) an account; returns its new authorization code.

        The code is single use and expires after 600 s (``api_query_auth``: 61009 for an
        unknown or used code, 61010 for an expired one). Re-authorizing gives the account
        a new refresh token (the old one then answers 61023) and retires its authorizer
        tokens at once. ``func_info``: the permission set ids granted (default 1, 2, 3).
        """
        _check_appid(authorizer_appid, "authorizer_appid")
        funcs = None if func_info is None else tuple(int(i) for i in func_info)
        with self._lock:
            now = self.clock()
            component = self._component_of(component_appid)
            auth = self._authorize(component, authorizer_appid, now, funcs)
            return self._new_code(component, auth, now).value

    def approve_authorization(
        self,
        component_appid: str,
        pre_auth_code: str,
        authorizer_appid: str,
        *,
        func_info: Iterable[int] | None = None,
    ) -> str:
        """Play an administrator who opened the authorization page with
        ``pre_auth_code`` (from ``api_create_preauthcode``, as in
        ``authorization_url``) and approved: returns the authorization code WeChat puts
        on the redirect (``auth_code=``), as :meth:`authorize` does.

        Raises ``ValueError`` for a pre-authorization code this component was never
        given, one already used, or one past its ``expires_in`` (600 s): WeChat's page
        shows an error then, and no code comes back."""
        with self._lock:
            now = self.clock()
            component = self._component_of(component_appid)
            expires = component.pre_auth_codes.pop(pre_auth_code, None)
            if expires is None:
                raise ValueError("unknown or already used pre_auth_code")
            if now >= expires:
                raise ValueError("the pre_auth_code has expired")
        return self.authorize(component_appid, authorizer_appid, func_info=func_info)

    def unauthorize(self, component_appid: str, authorizer_appid: str) -> None:
        """Cancel an account's authorization: its tokens retire at once, its refresh
        token answers 61003, and it leaves the authorizer list."""
        with self._lock:
            component = self._component_of(component_appid)
            self._unauthorize(component, authorizer_appid, self.clock())

    def add_authorizers(self, component_appid: str, appids: Iterable[str]) -> dict[str, str]:
        """Authorize many accounts at once, without codes; returns appid → refresh token.

        Fast enough for 100,000 accounts (no code, no token is issued). An appid already
        authorized is re-authorized (a new refresh token, its tokens retired).
        """
        wanted = [_check_appid(appid, "authorizer_appid") for appid in appids]
        refresh: dict[str, str] = {}
        with self._lock:
            now = self.clock()
            component = self._component_of(component_appid)
            for appid in wanted:
                refresh[appid] = self._authorize(component, appid, now, None).refresh_token
        return refresh

    def refresh_token_of(
        self, authorizer_appid: str, component_appid: str | None = None
    ) -> str | None:
        """The current ``authorizer_refresh_token`` of an account (``None`` if it is not
        authorized). ``component_appid`` is needed only when several components have it."""
        with self._lock:
            auth = self._authorization(authorizer_appid, component_appid)
            return None if auth is None else auth.refresh_token

    def authorizer_token_of(
        self, authorizer_appid: str, component_appid: str | None = None
    ) -> str | None:
        """The latest ``authorizer_access_token`` issued to an authorized account, if any
        (whatever its status now)."""
        with self._lock:
            auth = self._authorization(authorizer_appid, component_appid)
            return None if auth is None or auth.token is None else auth.token.value

    def component_token_of(self, component_appid: str) -> str | None:
        """The latest ``component_access_token`` issued to a component, if any."""
        with self._lock:
            current = self._component_of(component_appid).current_token
            return None if current is None else current.value

    def latest_verify_ticket(self, component_appid: str) -> str | None:
        """The component's latest verify ticket, if one was issued."""
        with self._lock:
            latest = self._component_of(component_appid).latest_ticket
            return None if latest is None else latest.value

    def verify_ticket_status(self, component_appid: str, ticket: str) -> TokenStatus:
        """``"valid"``, ``"retired"`` (61006), ``"expired"`` (61005) or ``"unknown"``."""
        with self._lock:
            record = self._component_of(component_appid).tickets.get(ticket)
            if record is None:
                return "unknown"
            return record.status(self.clock(), self.verify_ticket_overlap)

    def authorizer_appids(self, component_appid: str) -> list[str]:
        """The accounts that authorize a component now, in authorization order."""
        with self._lock:
            return list(self._component_of(component_appid).order)

    # Everything below runs with self._lock held.

    def _component_of(self, appid: str) -> Component:
        try:
            return self._components[appid]
        except KeyError:
            raise ValueError(f"no component {appid!r} is registered") from None

    def _quota_holder(self, appid: str) -> QuotaHolder:
        component = self._components.get(appid)
        return component if component is not None else super()._quota_holder(appid)

    def _authorization(
        self, authorizer_appid: str, component_appid: str | None
    ) -> Authorization | None:
        """The current authorization of an account (``None``: not authorized)."""
        if component_appid is not None:
            components = [self._component_of(component_appid)]
        else:
            components = list(self._components.values())
        found = [
            auth
            for component in components
            if (auth := component.authorizations.get(authorizer_appid)) is not None
            and auth.authorized
        ]
        if len(found) > 1:
            raise ValueError(
                f"{authorizer_appid!r} authorizes several components: give component_appid"
            )
        return found[0] if found else None

    def _random_text(self, prefix: str) -> str:
        raw = self._rng.getrandbits(256).to_bytes(32, "big")
        return prefix + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _new_ticket(self, component: Component, now: float) -> VerifyTicket:
        ticket = VerifyTicket(self._random_text("ticket@@@"), now, now + self.verify_ticket_ttl)
        if component.latest_ticket is not None:
            component.latest_ticket.superseded_at = now
        component.tickets[ticket.value] = ticket
        component.latest_ticket = ticket
        return ticket

    def _authorize(
        self,
        component: Component,
        appid: str,
        now: float,
        func_info: tuple[int, ...] | None,
    ) -> Authorization:
        component.generations += 1
        refresh = self._random_text("refreshtoken@@@")
        auth = component.authorizations.get(appid)
        if auth is None:
            auth = Authorization(appid, refresh, int(now), component.generations)
            component.authorizations[appid] = auth
            component.order.append(appid)
        else:
            # Re-authorization: a new refresh token; the old one and the live tokens stop.
            self._retire_authorizer_tokens(auth, now)
            if not auth.authorized:
                component.order.append(appid)
            auth.refresh_token, auth.auth_time = refresh, int(now)
            auth.generation, auth.authorized = component.generations, True
            auth.old_refresh_token = None
        if func_info is not None:
            auth.func_info = func_info
        return auth

    def _unauthorize(self, component: Component, appid: str, now: float) -> None:
        auth = component.authorizations.get(appid)
        if auth is None or not auth.authorized:
            raise ValueError(f"{appid!r} does not authorize {component.appid!r}")
        self._retire_authorizer_tokens(auth, now)
        component.generations += 1
        auth.authorized, auth.generation = False, component.generations
        auth.old_refresh_token = None
        component.order.remove(appid)

    @staticmethod
    def _retire_authorizer_tokens(auth: Authorization, now: float) -> None:
        for token in (auth.token, auth.previous):
            if token is not None:
                token.retire(now)

    def _new_code(self, component: Component, auth: Authorization, now: float) -> AuthorizationCode:
        code = AuthorizationCode(
            self._random_text("queryauthcode@@@"),
            auth.appid,
            auth.generation,
            now + AUTHORIZATION_CODE_EXPIRES_IN,
        )
        component.codes[code.value] = code
        return code
