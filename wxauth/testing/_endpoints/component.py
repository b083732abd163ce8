"""The Open Platform (第三方平台): component and authorizer tokens, and what feeds them.

A third-party platform (a *component*) gets a ``component_verify_ticket`` pushed to it
every 10 minutes, trades it with its secret for a ``component_access_token``, and with
that token trades each authorizer's ``authorizer_refresh_token`` for an
``authorizer_access_token``, which works on the authorizer's ordinary API paths (judged
by :mod:`.api` like any access token). The rules come from ``open-platform.md``; where
WeChat's behaviour is undocumented the choice made here is named in ``docs/testing.md``.

All endpoints are ``POST`` with a JSON body under ``/cgi-bin/component/``:

- ``api_component_token`` (appid, secret, latest ticket): a new component token per
  call; the previous one keeps working for the fake's ``grace``.
- ``api_start_push_ticket`` (appid and secret, no token): answers ``ok``.
- ``?component_access_token=`` (or ``access_token=``): ``api_create_preauthcode``,
  ``api_query_auth`` (authorization code → authorizer token and refresh token),
  ``api_authorizer_token`` (refresh token → authorizer token), ``api_get_authorizer_list``,
  ``api_get_authorizer_info``, ``clear_quota``; ``clear_quota/v2`` takes the secret.
  Any other ``/cgi-bin/component/`` path: the token check, then an ``add_api`` answer.

The tests' side of the platform is here too: registering a component, issuing tickets,
authorizing and unauthorizing accounts (one at a time with a code, or 100,000 at once),
and reading back refresh tokens. Pushes (encrypted XML) are built in
:mod:`.._component_push`.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._errmsg import clientip_not_registered
from .._state import IssuedToken, QuotaHolder, Usage
from .._wire import WECHAT_JSON, CallKind, Outcome, Reply, Request, TokenStatus, dumps, ok_body
from .quota import CLEAR_QUOTA_MONTHLY_LIMIT, QuotaEndpoints

__all__ = [
    "AUTHORIZATION_CODE_EXPIRES_IN",
    "AUTHORIZER_INFO_PATH",
    "AUTHORIZER_LIST_MAX_COUNT",
    "AUTHORIZER_LIST_PATH",
    "AUTHORIZER_TOKEN_PATH",
    "COMPONENT_CLEAR_QUOTA_PATH",
    "COMPONENT_CLEAR_QUOTA_V2_PATH",
    "COMPONENT_KIND_BY_PATH",
    "COMPONENT_PREFIX",
    "COMPONENT_TOKEN_DAILY_QUOTA",
    "COMPONENT_TOKEN_PATH",
    "DEFAULT_FUNC_INFO",
    "PRE_AUTH_CODE_EXPIRES_IN",
    "PRE_AUTH_CODE_PATH",
    "QUERY_AUTH_PATH",
    "START_PUSH_TICKET_PATH",
    "VERIFY_TICKET_OVERLAP",
    "VERIFY_TICKET_TTL",
    "Authorization",
    "AuthorizationCode",
    "Component",
    "ComponentEndpoints",
    "VerifyTicket",
    "component_kind",
]

#: Every Open Platform endpoint lives under this path.
COMPONENT_PREFIX = "/cgi-bin/component/"
#: ticket + secret → component_access_token (no token in the query).
COMPONENT_TOKEN_PATH = "/cgi-bin/component/api_component_token"  # noqa: S105 - a URL path
#: component token → pre_auth_code.
PRE_AUTH_CODE_PATH = "/cgi-bin/component/api_create_preauthcode"
#: authorization code → authorizer_access_token + authorizer_refresh_token.
QUERY_AUTH_PATH = "/cgi-bin/component/api_query_auth"
#: authorizer_refresh_token → authorizer_access_token.
AUTHORIZER_TOKEN_PATH = "/cgi-bin/component/api_authorizer_token"  # noqa: S105 - a URL path
#: A page of the authorized accounts and their refresh tokens.
AUTHORIZER_LIST_PATH = "/cgi-bin/component/api_get_authorizer_list"
#: One authorized account's details and refresh token.
AUTHORIZER_INFO_PATH = "/cgi-bin/component/api_get_authorizer_info"
#: Ask WeChat to resume the ticket pushes (appid and secret, no token).
START_PUSH_TICKET_PATH = "/cgi-bin/component/api_start_push_ticket"
#: Reset the component's daily quotas with its token.
COMPONENT_CLEAR_QUOTA_PATH = "/cgi-bin/component/clear_quota"
#: Reset the component's (or one authorizer's) daily quotas with the component secret.
COMPONENT_CLEAR_QUOTA_V2_PATH = "/cgi-bin/component/clear_quota/v2"

#: The call kind of each modelled component path (any other one is ``component_api``).
COMPONENT_KIND_BY_PATH: Mapping[str, CallKind] = {
    COMPONENT_TOKEN_PATH: "component_token",
    AUTHORIZER_TOKEN_PATH: "authorizer_token",
    PRE_AUTH_CODE_PATH: "component_api",
    QUERY_AUTH_PATH: "component_api",
    AUTHORIZER_LIST_PATH: "component_api",
    AUTHORIZER_INFO_PATH: "component_api",
    START_PUSH_TICKET_PATH: "component_api",
    COMPONENT_CLEAR_QUOTA_PATH: "component_api",
    COMPONENT_CLEAR_QUOTA_V2_PATH: "component_api",
}

#: A verify ticket is accepted for 12 hours after it was pushed.
VERIFY_TICKET_TTL = 43200.0
#: Seconds a ticket is still accepted after a newer one was issued (undocumented: one
#: push interval, so a reader one push behind still works, two behind gets 61006).
VERIFY_TICKET_OVERLAP = 600.0
#: Lifetime of an authorization code (``AuthorizationCodeExpiredTime``).
AUTHORIZATION_CODE_EXPIRES_IN = 600
#: ``expires_in`` of a pre_auth_code (every sample answer says 600).
PRE_AUTH_CODE_EXPIRES_IN = 600
#: api_get_authorizer_list returns at most this many accounts a page (more: 40170).
AUTHORIZER_LIST_MAX_COUNT = 500
#: api_component_token calls a component may make a day (one report of 10000; unconfirmed).
COMPONENT_TOKEN_DAILY_QUOTA = 10000
#: The permission sets (``funcscope_category`` ids) an authorization grants by default.
DEFAULT_FUNC_INFO: tuple[int, ...] = (1, 2, 3)

_APPID = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_AES_KEY = re.compile(r"[A-Za-z0-9]{43}")


def component_kind(path: str) -> CallKind | None:
    """The call kind of a (normalized) path if it is an Open Platform endpoint."""
    kind = COMPONENT_KIND_BY_PATH.get(path)
    if kind is None and path.startswith(COMPONENT_PREFIX):
        return "component_api"
    return kind


def _check_appid(appid: object, what: str) -> str:
    if not isinstance(appid, str) or not _APPID.fullmatch(appid):
        raise ValueError(f"{what} must be 1-64 letters, digits, '_' or '-'")
    return appid


@dataclass(slots=True, eq=False)
class VerifyTicket:
    """A ``component_verify_ticket``: when it was issued, expires, and was superseded."""

    value: str = field(repr=False)
    issued_at: float
    expires_at: float
    superseded_at: float | None = None

    def status(self, now: float, overlap: float) -> TokenStatus:
        """``"valid"``, ``"retired"`` (superseded: 61006) or ``"expired"`` (61005)."""
        if self.superseded_at is not None:
            refused_at = self.superseded_at + overlap
            if refused_at < self.expires_at and now >= refused_at:
                return "retired"
        return "expired" if now >= self.expires_at else "valid"


@dataclass(slots=True, eq=False)
class Authorization:
    """One account's authorization of a component: its refresh token and live tokens.

    ``generation`` counts (re-)authorizations, so an older authorization code is refused.
    """

    appid: str
    refresh_token: str = field(repr=False)
    auth_time: int
    generation: int
    func_info: tuple[int, ...] = DEFAULT_FUNC_INFO
    authorized: bool = True
    old_refresh_token: str | None = field(default=None, repr=False)
    old_refresh_until: float = 0.0
    token: IssuedToken | None = field(default=None, repr=False)
    previous: IssuedToken | None = field(default=None, repr=False)


@dataclass(slots=True, eq=False)
class AuthorizationCode:
    """A single-use authorization code of one authorization (generation)."""

    value: str = field(repr=False)
    authorizer: str
    generation: int
    expires_at: float


@dataclass(eq=False)
class Component:
    """A third-party platform: credentials, push crypto keys, tickets, tokens, authorizers."""

    appid: str
    secret: str = field(repr=False)
    token: str = field(repr=False)
    encoding_aes_key: str = field(repr=False)
    ip_allowlist: frozenset[str] | None
    quotas: dict[str, int]
    usage: dict[str, Usage] = field(default_factory=dict, repr=False)
    clear_usage: Usage = field(default_factory=Usage, repr=False)
    tickets: dict[str, VerifyTicket] = field(default_factory=dict, repr=False)
    latest_ticket: VerifyTicket | None = field(default=None, repr=False)
    current_token: IssuedToken | None = field(default=None, repr=False)
    authorizations: dict[str, Authorization] = field(default_factory=dict, repr=False)
    #: The authorized appids in the order they were authorized: the list endpoint's pages.
    order: list[str] = field(default_factory=list, repr=False)
    codes: dict[str, AuthorizationCode] = field(default_factory=dict, repr=False)
    #: Pre-authorization codes not used yet, and when each expires.
    pre_auth_codes: dict[str, float] = field(default_factory=dict, repr=False)
    generations: int = field(default=0, repr=False)


class ComponentEndpoints(QuotaEndpoints):
    """The Open Platform endpoints, and the test controls that play the WeChat side."""

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

    def _issue_authorizer_token(self, auth: Authorization, now: float) -> IssuedToken:
        # A new authorizer token retires the previous one after the grace period.
        if auth.token is not None:
            auth.token.retire(now + self.grace)
        auth.previous = auth.token
        auth.token = self._issue("authorizer_token", auth.appid, now)
        return auth.token

    # -- the endpoints ---------------------------------------------------------------------

    def _component(self, path: str, request: Request, now: float) -> Outcome:
        """Answer one request to a ``/cgi-bin/component/`` path."""
        if path == COMPONENT_TOKEN_PATH:
            return self._component_token(request, now)
        if path == START_PUSH_TICKET_PATH:
            return self._start_push_ticket(request, now)
        if path == COMPONENT_CLEAR_QUOTA_V2_PATH:
            return self._component_clear_quota_v2(request, now)
        handler = _HANDLERS.get(path)
        if handler is None:
            # An unmodelled component API: the token check, then an add_api answer.
            checked = self._component_token_check(request, now)
            if isinstance(checked, Outcome):
                return checked
            component, value = checked
            if not self._quota_ok(component, path, now):
                return self._cfail(45009, now, component.appid, value)
            return self._canned_answer(path, component.appid, value)
        if request.method != "POST":
            return self._fail(43002, now)
        checked = self._component_token_check(request, now)
        if isinstance(checked, Outcome):
            return checked
        component, value = checked
        body = self._component_body(request, now, component, value)
        if isinstance(body, Outcome):
            return body
        return handler(self, component, value, body, path, now)

    def _cfail(
        self,
        errcode: int,
        now: float,
        owner: str | None,
        token: str | None = None,
        text: str | None = None,
    ) -> Outcome:
        return Outcome(self._error(errcode, now, text), errcode, owner, token)

    def _component_token_check(
        self, request: Request, now: float
    ) -> tuple[Component, str] | Outcome:
        """The component and token of ``?component_access_token=`` (or ``access_token=``),
        or the answer refusing them (41001, 40001, 42001, 61004)."""
        value = request.query.get("component_access_token") or request.query.get("access_token")
        if not value:
            return self._fail(41001, now)
        token = self._tokens.get(value)
        # An unknown token, or an account's / authorizer's token, is no component token.
        if token is None or token.kind != "component_token":
            return self._cfail(40001, now, None, value)
        status = token.status(now)
        if status == "expired":
            return self._cfail(42001, now, token.owner, value)
        if status == "retired":
            return self._cfail(40001, now, token.owner, value)
        component = self._components[token.owner]
        if not self._ip_allowed(component.ip_allowlist, request.client_ip):
            text = clientip_not_registered(request.client_ip)
            return self._cfail(61004, now, component.appid, value, text)
        return component, value

    def _component_body(
        self, request: Request, now: float, component: Component, token: str
    ) -> dict[str, Any] | Outcome:
        """The JSON body, after its ``component_appid`` was checked against the token's."""
        body = self._json_post(request, now, component.appid)
        if isinstance(body, Outcome):
            return Outcome(body.reply, body.errcode, component.appid, token)
        appid = body.get("component_appid")
        if not appid:
            return self._cfail(41002, now, component.appid, token)
        if appid != component.appid:
            return self._cfail(61011, now, component.appid, token)
        return body

    def _credentials(
        self, request: Request, now: float, secret_key: str
    ) -> tuple[Component, dict[str, Any]] | Outcome:
        """The checks of the endpoints that take the component secret instead of a token."""
        body = self._json_post(request, now)
        if isinstance(body, Outcome):
            return body
        appid, secret = body.get("component_appid"), body.get(secret_key)
        if not isinstance(appid, str) or not appid:
            return self._fail(41002, now)
        if not isinstance(secret, str) or not secret:
            return self._fail(41004, now, appid)
        component = self._components.get(appid)
        if component is None:
            return self._fail(61011, now, appid)
        if secret != component.secret:
            return self._fail(self.component_wrong_secret_errcode, now, appid)
        if not self._ip_allowed(component.ip_allowlist, request.client_ip):
            return self._fail(61004, now, appid, clientip_not_registered(request.client_ip))
        return component, body

    def _component_token(self, request: Request, now: float) -> Outcome:
        checked = self._credentials(request, now, "component_appsecret")
        if isinstance(checked, Outcome):
            return checked
        component, body = checked
        appid = component.appid
        value = body.get("component_verify_ticket")
        ticket = component.tickets.get(value) if isinstance(value, str) else None
        if ticket is None:
            return self._fail(61006, now, appid)
        status = ticket.status(now, self.verify_ticket_overlap)
        if status != "valid":
            return self._fail(61005 if status == "expired" else 61006, now, appid)
        if not self._quota_ok(component, COMPONENT_TOKEN_PATH, now):
            return self._fail(45009, now, appid)
        # Every call issues a new token; the previous one works for the grace period.
        if component.current_token is not None:
            component.current_token.retire(now + self.grace)
        token = component.current_token = self._issue("component_token", appid, now)
        payload = {"component_access_token": token.value, "expires_in": self.expires_in}
        return Outcome(Reply(200, WECHAT_JSON, dumps(payload)), 0, appid, token.value)

    def _start_push_ticket(self, request: Request, now: float) -> Outcome:
        checked = self._credentials(request, now, "component_secret")
        if isinstance(checked, Outcome):
            return checked
        component = checked[0]
        if not self._quota_ok(component, START_PUSH_TICKET_PATH, now):
            return self._fail(45009, now, component.appid)
        return Outcome(Reply(200, WECHAT_JSON, ok_body()), 0, component.appid)

    def _pre_auth_code(
        self, component: Component, token: str, body: dict[str, Any], path: str, now: float
    ) -> Outcome:
        if not self._quota_ok(component, path, now):
            return self._cfail(45009, now, component.appid, token)
        code = self._random_text("preauthcode@@@")
        expired = [c for c, until in component.pre_auth_codes.items() if until <= now]
        for stale in expired:
            del component.pre_auth_codes[stale]
        component.pre_auth_codes[code] = now + PRE_AUTH_CODE_EXPIRES_IN
        payload = {"pre_auth_code": code, "expires_in": PRE_AUTH_CODE_EXPIRES_IN}
        return Outcome(Reply(200, WECHAT_JSON, dumps(payload)), 0, component.appid, token)

    def _query_auth(
        self, component: Component, token: str, body: dict[str, Any], path: str, now: float
    ) -> Outcome:
        value = body.get("authorization_code")
        code = component.codes.get(value) if isinstance(value, str) else None
        if code is None:
            return self._cfail(61009, now, component.appid, token)
        if now >= code.expires_at:
            return self._cfail(61010, now, component.appid, token)
        auth = component.authorizations.get(code.authorizer)
        if auth is None or not auth.authorized or auth.generation != code.generation:
            # A code of an authorization that was since replaced or cancelled.
            return self._cfail(61009, now, component.appid, token)
        if not self._quota_ok(component, path, now):
            return self._cfail(45009, now, component.appid, token)
        del component.codes[code.value]  # single use
        issued = self._issue_authorizer_token(auth, now)
        info = {
            "authorizer_appid": auth.appid,
            "authorizer_access_token": issued.value,
            "expires_in": self.expires_in,
            "authorizer_refresh_token": auth.refresh_token,
            "func_info": _func_info(auth),
        }
        payload = {"authorization_info": info}
        return Outcome(Reply(200, WECHAT_JSON, dumps(payload)), 0, component.appid, token)

    def _authorizer_token(
        self, component: Component, token: str, body: dict[str, Any], path: str, now: float
    ) -> Outcome:
        appid = body.get("authorizer_appid")
        if not isinstance(appid, str) or not appid:
            return self._cfail(41002, now, component.appid, token)
        auth = component.authorizations.get(appid)
        if auth is None or not auth.authorized:
            return self._cfail(61003, now, appid, token)
        refresh = body.get("authorizer_refresh_token")
        current = refresh == auth.refresh_token
        in_grace = (
            auth.old_refresh_token is not None
            and refresh == auth.old_refresh_token
            and now < auth.old_refresh_until
        )
        if not isinstance(refresh, str) or not (current or in_grace):
            return self._cfail(61023, now, appid, token)
        if not self._quota_ok(component, path, now):
            return self._cfail(45009, now, appid, token)
        issued = self._issue_authorizer_token(auth, now)
        if self.rotate_refresh_tokens and current:
            auth.old_refresh_token, auth.old_refresh_until = auth.refresh_token, now + self.grace
            auth.refresh_token = self._random_text("refreshtoken@@@")
        payload = {
            "authorizer_access_token": issued.value,
            "expires_in": self.expires_in,
            "authorizer_refresh_token": auth.refresh_token,
        }
        return Outcome(Reply(200, WECHAT_JSON, dumps(payload)), 0, appid, issued.value)

    def _authorizer_list(
        self, component: Component, token: str, body: dict[str, Any], path: str, now: float
    ) -> Outcome:
        offset, count = _count(body.get("offset")), _count(body.get("count"))
        if offset is None or count is None:
            return self._cfail(47001, now, component.appid, token)
        if count > AUTHORIZER_LIST_MAX_COUNT:
            return self._cfail(40170, now, component.appid, token)
        if not self._quota_ok(component, path, now):
            return self._cfail(45009, now, component.appid, token)
        page = [
            {
                "authorizer_appid": appid,
                "refresh_token": (auth := component.authorizations[appid]).refresh_token,
                "auth_time": auth.auth_time,
            }
            for appid in component.order[offset : offset + count]
        ]
        payload = {"total_count": len(component.order), "list": page}
        return Outcome(Reply(200, WECHAT_JSON, dumps(payload)), 0, component.appid, token)

    def _authorizer_info(
        self, component: Component, token: str, body: dict[str, Any], path: str, now: float
    ) -> Outcome:
        appid = body.get("authorizer_appid")
        if not isinstance(appid, str) or not appid:
            return self._cfail(41002, now, component.appid, token)
        auth = component.authorizations.get(appid)
        if auth is None or not auth.authorized:
            return self._cfail(61003, now, component.appid, token)
        if not self._quota_ok(component, path, now):
            return self._cfail(45009, now, component.appid, token)
        digest = hashlib.sha1(appid.encode()).hexdigest()  # noqa: S324 - a stable fake id
        payload = {
            "authorizer_info": {
                "nick_name": f"authorizer {appid}",
                "head_img": "",
                "service_type_info": {"id": 2},
                "verify_type_info": {"id": 0},
                "user_name": f"gh_{digest[:12]}",
                "principal_name": "wxauth emulator",
                "alias": "",
                "business_info": {
                    "open_store": 0,
                    "open_scan": 0,
                    "open_pay": 0,
                    "open_card": 0,
                    "open_shake": 0,
                },
                "qrcode_url": "",
            },
            "authorization_info": {
                "authorizer_appid": appid,
                "authorizer_refresh_token": auth.refresh_token,
                "func_info": _func_info(auth),
            },
        }
        return Outcome(Reply(200, WECHAT_JSON, dumps(payload)), 0, component.appid, token)

    def _component_clear_quota(
        self, component: Component, token: str, body: dict[str, Any], path: str, now: float
    ) -> Outcome:
        outcome = self._reset_component_quotas(component, now)
        return Outcome(outcome.reply, outcome.errcode, component.appid, token)

    def _component_clear_quota_v2(self, request: Request, now: float) -> Outcome:
        checked = self._credentials(request, now, "appsecret")
        if isinstance(checked, Outcome):
            return checked
        component, body = checked
        authorizer = body.get("appid")
        if authorizer is None:
            return self._reset_component_quotas(component, now)
        auth = component.authorizations.get(authorizer) if isinstance(authorizer, str) else None
        if auth is None or not auth.authorized:
            return self._fail(61003, now, component.appid)
        app = self._apps.get(auth.appid)
        if app is None:
            # The authorizer's own quotas are modelled only for a registered app.
            return Outcome(Reply(200, WECHAT_JSON, ok_body()), 0, component.appid)
        return self._reset_quotas(app, now)

    def _reset_component_quotas(self, component: Component, now: float) -> Outcome:
        month = self._month(now)
        if component.clear_usage.current(month) >= CLEAR_QUOTA_MONTHLY_LIMIT:
            return self._fail(48006, now, component.appid)
        component.clear_usage.add(month)
        component.usage.clear()
        return Outcome(Reply(200, WECHAT_JSON, ok_body()), 0, component.appid)

    def _component_quota_get(self, token: IssuedToken, request: Request, now: float) -> Outcome:
        """``openapi/quota/get`` with a component token: the component's own quotas."""
        body = self._json_post(request, now, token.owner)
        if isinstance(body, Outcome):
            return Outcome(body.reply, body.errcode, token.owner, token.value)
        cgi_path = body.get("cgi_path")
        if not isinstance(cgi_path, str) or not cgi_path:
            return self._cfail(47001, now, token.owner, token.value)
        component = self._components[token.owner]
        cgi_path = "/" + cgi_path.lstrip("/")
        limit = component.quotas.get(cgi_path)
        if limit is None:
            return self._cfail(76021, now, token.owner, token.value)
        usage = component.usage.get(cgi_path)
        used = 0 if usage is None else usage.current(self._day(now))
        payload = {
            "errcode": 0,
            "errmsg": "ok",
            "quota": {"daily_limit": limit, "used": used, "remain": max(0, limit - used)},
        }
        return Outcome(Reply(200, WECHAT_JSON, dumps(payload)), 0, token.owner, token.value)

    def _component_on_classic(self, request: Request, now: float) -> Outcome | None:
        """``/cgi-bin/token`` with a component's appid answers 61024."""
        appid = request.query.get("appid")
        if appid and appid in self._components and appid not in self._apps:
            return self._fail(61024, now, appid)
        return None


def _count(value: object) -> int | None:
    """``value`` if it is a JSON number of things (an int, not a bool, not negative)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _func_info(auth: Authorization) -> list[dict[str, Any]]:
    return [{"funcscope_category": {"id": scope}} for scope in auth.func_info]


_Handler = Callable[[ComponentEndpoints, Component, str, dict[str, Any], str, float], Outcome]
_HANDLERS: Mapping[str, _Handler] = {
    PRE_AUTH_CODE_PATH: ComponentEndpoints._pre_auth_code,
    QUERY_AUTH_PATH: ComponentEndpoints._query_auth,
    AUTHORIZER_TOKEN_PATH: ComponentEndpoints._authorizer_token,
    AUTHORIZER_LIST_PATH: ComponentEndpoints._authorizer_list,
    AUTHORIZER_INFO_PATH: ComponentEndpoints._authorizer_info,
    COMPONENT_CLEAR_QUOTA_PATH: ComponentEndpoints._component_clear_quota,
}
