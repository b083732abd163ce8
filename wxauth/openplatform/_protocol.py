"""The Open Platform's side of WeChat's token protocol, with no I/O: the paths and
limits of the component endpoints, the requests to them, the reading of their answers,
and the start of an authorization (the pre-auth code and the page's URL).

Like :mod:`wxauth._protocol`, this module never sends anything. Credentials (the
component secret, the ``component_verify_ticket``, an authorization code, a refresh
token, the component token) travel as :class:`~wxauth.Secret` values inside a
:class:`~wxauth._protocol.TokenRequest` and are named in its ``secrets``, so every
message about the request is scrubbed of them.

The store keys and durable records of a platform live in
:mod:`wxauth.openplatform._records`; they are re-exported here, so this module still
offers every name it always did.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._errors import EXPIRED_ERRCODES, TokenFetchError, WeChatAPIError
from .._protocol import TokenRequest
from .._secret import Secret
from ._errors import error_for_component_errcode
from ._records import (
    TICKET_RECORD,
    TICKET_TTL,
    HiddenText,
    PlatformKeys,
    RecoveryRecord,
    StoredRefresh,
    StoredTicket,
    parse_recovery_record,
    parse_refresh_record,
    parse_ticket_record,
    recovery_record,
    refresh_record,
    refused_push_hint,
    refused_push_record,
    ticket_record,
)

__all__ = [
    "API_START_PUSH_TICKET",
    "AUTHORIZATION_PAGE",
    "AUTHORIZATION_PAGE_MOBILE",
    "AUTHORIZER_LIST",
    "AUTHORIZER_TOKEN",
    "COMPONENT_TOKEN",
    "LIST_PAGE_SIZE",
    "MAX_EPOCH_SECONDS",
    "MAX_LIST_ANSWER_BYTES",
    "PRE_AUTH_CODE",
    "QUERY_AUTH",
    "TICKET_RECORD",
    "TICKET_TTL",
    "HiddenText",
    "ListPage",
    "PlatformKeys",
    "PreAuthCode",
    "RecoveryRecord",
    "StoredRefresh",
    "StoredTicket",
    "authorization_url",
    "check_appid",
    "check_authorization_options",
    "component_api_request",
    "component_error",
    "component_token_request",
    "parse_list_page",
    "parse_pre_auth_code",
    "parse_recovery_record",
    "parse_refresh_record",
    "parse_ticket_record",
    "recovery_record",
    "refresh_record",
    "refused_push_hint",
    "refused_push_record",
    "start_push_ticket_request",
    "take_secret",
    "ticket_record",
]

COMPONENT_TOKEN = "/cgi-bin/component/api_component_token"  # noqa: S105 - a path
QUERY_AUTH = "/cgi-bin/component/api_query_auth"
AUTHORIZER_TOKEN = "/cgi-bin/component/api_authorizer_token"  # noqa: S105 - a path
AUTHORIZER_LIST = "/cgi-bin/component/api_get_authorizer_list"
API_START_PUSH_TICKET = "/cgi-bin/component/api_start_push_ticket"
PRE_AUTH_CODE = "/cgi-bin/component/api_create_preauthcode"
#: The page where an account's administrator authorizes the platform (a PC browser:
#: a QR code to scan)...
AUTHORIZATION_PAGE = "https://mp.weixin.qq.com/cgi-bin/componentloginpage"
#: ...and its mobile form, opened inside WeChat.
AUTHORIZATION_PAGE_MOBILE = "https://mp.weixin.qq.com/safe/bindcomponent"

#: Authorizers asked for per ``api_get_authorizer_list`` page: WeChat's largest page.
LIST_PAGE_SIZE = 500
#: The largest answer read from a component endpoint: a page of 500 authorizers is
#: about 75 KB (a token answer is read up to :data:`wxauth.sources.MAX_ANSWER_BYTES`).
MAX_LIST_ANSWER_BYTES = 1024 * 1024

#: Larger "epoch seconds" (the year 2286 on) are taken for milliseconds, or garbage.
MAX_EPOCH_SECONDS = 10_000_000_000

# An appid becomes part of store keys and file names; WeChat's look like wx + 16 hex.
_APPID_FORM = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def check_appid(name: str, value: object) -> str:
    """``value`` if it looks like an appid (1 to 64 of ``A-Za-z0-9_.-``), else
    ``ValueError`` naming ``name`` (the value is not echoed: it may be anything)."""
    if not isinstance(value, str) or not _APPID_FORM.fullmatch(value):
        raise ValueError(f"{name} must be an appid: 1 to 64 characters of A-Z, a-z, 0-9, _ . -")
    return value


# -- requests ---------------------------------------------------------------------------


def component_token_request(
    component_appid: str, secret: Secret, ticket: Secret, api_base: str
) -> TokenRequest:
    """``POST /cgi-bin/component/api_component_token`` (secret and ticket in the body)."""
    body = {
        "component_appid": component_appid,
        "component_appsecret": secret,
        "component_verify_ticket": ticket,
    }
    return TokenRequest(
        "POST", api_base + COMPONENT_TOKEN, COMPONENT_TOKEN, json=body, secrets=(secret, ticket)
    )


def component_api_request(
    api_base: str,
    path: str,
    component_token: str,
    body: Mapping[str, Any],
    *,
    secrets: tuple[Secret, ...] = (),
) -> TokenRequest:
    """``POST <path>?component_access_token=T`` with a JSON body. The token's own
    errcodes (40001/40014/42001) come back as plain errors, for the caller to heal."""
    token = Secret(component_token)
    return TokenRequest(
        "POST",
        api_base + path,
        path,
        params={"component_access_token": token},
        json=body,
        secrets=(token, *secrets),
        token_errcodes=EXPIRED_ERRCODES,
        max_bytes=MAX_LIST_ANSWER_BYTES,
    )


def start_push_ticket_request(component_appid: str, secret: Secret, api_base: str) -> TokenRequest:
    """``POST /cgi-bin/component/api_start_push_ticket`` (no token; the secret in the
    body as ``component_secret``)."""
    body = {"component_appid": component_appid, "component_secret": secret}
    path = API_START_PUSH_TICKET
    return TokenRequest("POST", api_base + path, path, json=body, secrets=(secret,))


def component_error(exc: WeChatAPIError) -> WeChatAPIError | None:
    """The Open Platform error for an errcode a component endpoint answered (61xxx:
    :func:`~wxauth.openplatform.error_for_component_errcode`); ``None`` when ``exc``
    is already right (a credential or quota error, or an expired component token)."""
    if type(exc) is not WeChatAPIError or exc.errcode in EXPIRED_ERRCODES:
        return None
    return error_for_component_errcode(exc.errcode, exc.errmsg, url_path=exc.url_path)


# -- answers ----------------------------------------------------------------------------


def take_secret(answer: dict[str, Any], name: str) -> Secret | None:
    """Take ``name`` out of a decoded answer as a :class:`~wxauth.Secret` (``None`` if
    it is missing or blank), so the answer no longer holds it in clear for a frame on a
    traceback to show."""
    value = answer.pop(name, None)
    return Secret(value) if isinstance(value, str) and value.strip() else None


@dataclass(frozen=True, repr=False)
class ListPage:
    """One page of ``api_get_authorizer_list``: ``{authorizer appid: (refresh token,
    auth_time)}`` (entries without a refresh token counted in ``without_token``) and
    the total."""

    tokens: dict[str, tuple[Secret, int | None]]
    entries: int
    without_token: int
    total: int

    def __repr__(self) -> str:
        return f"ListPage(entries={self.entries}, total={self.total})"


def parse_list_page(answer: Mapping[str, Any]) -> ListPage | TokenFetchError:
    """Read a page of ``api_get_authorizer_list`` (``list[].refresh_token``, not
    ``authorizer_refresh_token``). An answer that is not a page gives a
    :class:`~wxauth.TokenFetchError`, returned for the caller to raise from a frame
    that does not hold the answer (its refresh tokens in clear)."""
    entries, total = answer.get("list"), answer.get("total_count")
    if not isinstance(entries, list) or type(total) is not int or total < 0:
        return TokenFetchError(
            f"{AUTHORIZER_LIST} answered without a list and a total_count (keys: {sorted(answer)})"
        )
    tokens: dict[str, tuple[Secret, int | None]] = {}
    without = 0
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        appid, token = entry.get("authorizer_appid"), entry.get("refresh_token")
        auth_time = entry.get("auth_time")
        if not isinstance(appid, str) or not _APPID_FORM.fullmatch(appid):
            continue
        if isinstance(token, str) and token.strip():
            # Epoch seconds, compared with pushes' CreateTime: anything else (ms, say)
            # would make every later push look older than it, so it is dropped.
            plausible = type(auth_time) is int and 0 < auth_time < MAX_EPOCH_SECONDS
            tokens[appid] = (Secret(token), auth_time if plausible else None)
        else:
            without += 1  # authorized, but the code was never exchanged
    return ListPage(tokens, len(entries), without, total)


@dataclass(frozen=True, repr=False)
class PreAuthCode:
    """A pre-authorization code (``api_create_preauthcode``): single use, valid for
    ``expires_in`` seconds (WeChat answers 600). ``code`` is a
    :class:`~wxauth.Secret`: it shows in no repr or log; it goes into the
    authorization page's URL, which :func:`authorization_url` builds."""

    code: Secret
    expires_in: int

    def __repr__(self) -> str:
        return f"PreAuthCode(code={self.code!r}, expires_in={self.expires_in})"


def parse_pre_auth_code(answer: Mapping[str, Any]) -> PreAuthCode:
    """Read an ``api_create_preauthcode`` answer; a malformed one is a
    :class:`~wxauth.TokenFetchError`."""
    code = answer.get("pre_auth_code")
    expires_in = answer.get("expires_in", 600)
    if not isinstance(code, str) or not code or len(code) > 512:
        raise TokenFetchError(f"{PRE_AUTH_CODE} answered no pre_auth_code")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int) or expires_in <= 0:
        raise TokenFetchError(f"{PRE_AUTH_CODE} answered a malformed expires_in")
    return PreAuthCode(Secret(code), expires_in)


def check_authorization_options(
    component_appid: str, redirect_uri: str, auth_type: int, biz_appid: str | None
) -> None:
    """Raise ``ValueError`` unless :func:`authorization_url`'s options are sound (before
    a pre-authorization code is spent on them)."""
    check_appid("component_appid", component_appid)
    target = urllib.parse.urlsplit(redirect_uri) if isinstance(redirect_uri, str) else None
    if target is None or target.scheme not in ("http", "https") or not target.netloc:
        raise ValueError("redirect_uri must be an http(s) URL")
    if isinstance(auth_type, bool) or not isinstance(auth_type, int) or auth_type < 1:
        raise ValueError("auth_type must be a positive int (1, 2, 3, ...)")
    if biz_appid is not None:
        check_appid("biz_appid", biz_appid)


def authorization_url(
    component_appid: str,
    pre_auth_code: PreAuthCode | Secret | str,
    redirect_uri: str,
    *,
    auth_type: int = 3,
    biz_appid: str | None = None,
    mobile: bool = False,
) -> str:
    """The URL of the page where an administrator authorizes the platform; WeChat then
    sends the browser to ``redirect_uri?auth_code=...&expires_in=...`` (give the code to
    ``query_auth``). No I/O.

    ``auth_type``: which accounts the page offers (1 Official Accounts, 2 Mini
    Programs, 3 both; WeChat has added kinds since, so any positive value is sent as it
    is); ``biz_appid``: only that account may; ``mobile``: the page opened
    inside WeChat (``#wechat_redirect``) instead of the PC page with a QR code.
    ``redirect_uri`` must be an http(s) URL on the domain registered for the platform.
    """
    check_authorization_options(component_appid, redirect_uri, auth_type, biz_appid)
    if isinstance(pre_auth_code, PreAuthCode):
        pre_auth_code = pre_auth_code.code
    code = pre_auth_code.get_secret_value() if isinstance(pre_auth_code, Secret) else pre_auth_code
    if not isinstance(code, str) or not code:
        raise ValueError("pre_auth_code must be a non-empty str")
    query: list[tuple[str, str]] = []
    if mobile:
        query += [("action", "bindcomponent"), ("no_scan", "1")]
    query += [
        ("component_appid", component_appid),
        ("pre_auth_code", code),
        ("redirect_uri", redirect_uri),
        ("auth_type", str(auth_type)),
    ]
    if biz_appid is not None:
        query.append(("biz_appid", biz_appid))
    page = AUTHORIZATION_PAGE_MOBILE if mobile else AUTHORIZATION_PAGE
    url = f"{page}?{urllib.parse.urlencode(query)}"
    return url + "#wechat_redirect" if mobile else url
