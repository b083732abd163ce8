"""The Open Platform's state in the emulator, and the paths and limits of its endpoints.

The records a :class:`~wxauth.testing.FakeWeChat` keeps for each third-party platform:
:class:`Component` (credentials, push keys, tickets, tokens, authorizers),
:class:`VerifyTicket`, :class:`Authorization` and :class:`AuthorizationCode`; the
``/cgi-bin/component/`` paths with their call kinds; and the lifetimes and limits the
endpoints of :mod:`.component` and the controls of :mod:`.component_controls` apply.
Everything here is re-exported by :mod:`.component`, where it was defined before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .._state import IssuedToken, Usage
from .._wire import CallKind, TokenStatus

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


def component_kind(path: str) -> CallKind | None:
    """The call kind of a (normalized) path if it is an Open Platform endpoint."""
    kind = COMPONENT_KIND_BY_PATH.get(path)
    if kind is None and path.startswith(COMPONENT_PREFIX):
        return "component_api"
    return kind


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
