"""The Open Platform's side of WeChat's token protocol, with no I/O: the store keys and
records of a platform, the requests to the component endpoints, and the reading of
their answers.

Like :mod:`wxauth._protocol`, this module never sends anything. Credentials (the
component secret, the ``component_verify_ticket``, an authorization code, a refresh
token, the component token) travel as :class:`~wxauth.Secret` values inside a
:class:`~wxauth._protocol.TokenRequest` and are named in its ``secrets``, so every
message about the request is scrubbed of them.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._errors import EXPIRED_ERRCODES, TokenFetchError, WeChatAPIError
from .._protocol import TokenRequest
from .._secret import Secret
from ..sources import DEFAULT_API_BASE, _endpoint_tag
from ._errors import error_for_component_errcode

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

#: The name of the ticket's record in its table (:attr:`PlatformKeys.ticket`).
TICKET_RECORD = "latest"
#: How long a ``component_verify_ticket`` is kept after it arrived (seconds): WeChat
#: says it is valid 12 hours, and pushes a new one every 10 minutes.
TICKET_TTL = 12 * 3600.0
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


@dataclass(frozen=True)
class PlatformKeys:
    """Where one platform keeps its state in a store (every key names the component
    appid, so two platforms never share one; an emulator's or a proxy's ``api_base``
    adds a tag, so its state is never taken for WeChat's)."""

    component_appid: str
    api_base: str = DEFAULT_API_BASE

    @property
    def _tag(self) -> str:
        return _endpoint_tag(self.api_base, DEFAULT_API_BASE)

    @property
    def _base(self) -> str:
        return f"openplatform:{self.component_appid}{self._tag}"

    @property
    def ticket(self) -> str:
        """Record table of the newest ``component_verify_ticket`` (one record,
        :data:`TICKET_RECORD`): durable, never evicted, like the refresh tokens, since
        a ticket lost cannot be fetched again, only waited for."""
        return f"{self._base}:ticket"

    @property
    def refresh_table(self) -> str:
        """Record table of the authorizers' refresh tokens, by authorizer appid."""
        return f"{self._base}:refresh"

    @property
    def refused_push(self) -> str:
        """Meta record of the last push refused for its signing time (a hint for the
        ticket errors that follow)."""
        return f"{self._base}:refused-push"

    @property
    def recovery(self) -> str:
        """Meta record (and lock) of the last re-read of the authorizer list."""
        return f"{self._base}:recovery"

    def push(self, msg_signature: str) -> str:
        """Meta record of a push already handled (by its signature)."""
        return f"{self._base}:push:{msg_signature}"

    @property
    def component_token(self) -> str:
        """Store key of the component token."""
        return f"token:component:{self.component_appid}{self._tag}"

    def authorizer_token(self, authorizer_appid: str) -> str:
        """Store key of an authorizer's access token."""
        return f"token:authorizer:{self.component_appid}:{authorizer_appid}{self._tag}"


# -- records ----------------------------------------------------------------------------


class HiddenText(str):
    """A ``str`` whose ``repr`` hides it: a record that holds a ticket or a refresh
    token, on its way into a store. Stores take ``str`` values; should a write fail,
    a crash reporter rendering the locals of the frames on the traceback (the store's
    own included) shows ``<hidden: N characters>``, not the record."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<hidden: {len(self)} characters>"


@dataclass(frozen=True, repr=False)
class StoredTicket:
    """The ``component_verify_ticket`` record a store holds: the ticket, its push's
    ``CreateTime`` (WeChat's clock), when it was stored (``at``, this host's clock) and
    the record's exact text (``raw``, for compare-and-set). A damaged record has a
    blank ticket."""

    ticket: Secret
    create_time: int
    at: float | None = None
    raw: Secret | None = None

    def usable(self, now: float) -> bool:
        """Whether it holds a ticket stored less than :data:`TICKET_TTL` ago."""
        return (
            bool(self.ticket.get_secret_value().strip())
            and self.at is not None
            and now - self.at < TICKET_TTL
        )

    def __repr__(self) -> str:
        return f"StoredTicket(create_time={self.create_time}, at={self.at})"


def ticket_record(ticket: Secret, create_time: int, *, at: float) -> HiddenText:
    """The durable record of a ticket pushed with ``create_time`` and stored at ``at``."""
    record = {"create_time": create_time, "at": at, "ticket": ticket.get_secret_value()}
    return HiddenText(json.dumps(record))


def parse_ticket_record(raw: str | None) -> StoredTicket | None:
    """The ticket record ``raw`` (``None``: none stored; a damaged one reads as a
    :class:`StoredTicket` that is not :meth:`~StoredTicket.usable`)."""
    if raw is None:
        return None
    damaged = StoredTicket(Secret(""), -1, None, Secret(raw))
    try:
        data = json.loads(raw)
        ticket, create_time, at = data["ticket"], data["create_time"], data["at"]
    except (ValueError, KeyError, TypeError):
        return damaged
    if not isinstance(ticket, str) or type(create_time) is not int:
        return damaged
    if not isinstance(at, (int, float)) or isinstance(at, bool):
        return damaged
    return StoredTicket(Secret(ticket), create_time, float(at), Secret(raw))


def refused_push_record(signed_at: int, offset: float, max_age: float) -> str:
    """The meta record of a push refused because it was signed ``offset`` seconds from
    this host's clock (``signed_at``: its timestamp, WeChat's clock)."""
    return json.dumps({"signed_at": signed_at, "offset": round(offset), "max_age": max_age})


def refused_push_hint(raw: str | None, stored: StoredTicket | None) -> str:
    """What a ticket error adds about a refused push: nothing if none is recorded, or a
    ticket signed later than it is stored (the clock was fixed since)."""
    try:
        data = json.loads(raw) if raw else None
        if not isinstance(data, dict):
            return ""
        signed_at, offset, max_age = int(data["signed_at"]), data["offset"], data["max_age"]
        offset, max_age = float(offset), float(max_age)
    except (ValueError, KeyError, TypeError):
        return ""
    if stored is not None and stored.create_time >= signed_at:
        return ""
    return (
        f"; the last push WeChat sent was refused: it was signed {offset:+.0f}s from this "
        f"host's clock, past push_max_age={max_age:g}s. Fix this host's clock (NTP), or "
        "raise push_max_age"
    )


@dataclass(frozen=True, repr=False)
class StoredRefresh:
    """An authorizer's refresh-token record as a store holds it.

    ``raw`` is the record's exact text (compare-and-set writes over it); ``token`` is
    ``None`` when the record is damaged or marks a cancellation (either way the
    authorizer counts as unknown). ``event_time`` is the ``CreateTime`` of the push
    that wrote it (an authorization, a cancellation) or the list's ``auth_time``, if
    known: events older than it are stale. ``at`` is when it was written (this host's
    clock, epoch s).
    """

    raw: Secret
    token: Secret | None
    event_time: int | None
    cancelled: bool = False
    at: float | None = None

    def __repr__(self) -> str:
        return (
            f"StoredRefresh(event_time={self.event_time}, cancelled={self.cancelled}, at={self.at})"
        )


def refresh_record(token: Secret | None, *, event_time: int | None, at: float) -> HiddenText:
    """The durable record of a refresh token (``at``: when it was written, epoch s);
    with ``token=None``, the record of a cancellation (an ``unauthorized`` push), kept
    so that a code exchange answered before it and read after it stores nothing."""
    record: dict[str, Any] = {"refresh_token": None, "event_time": event_time, "at": at}
    if token is None:
        record["cancelled"] = True
    else:
        record["refresh_token"] = token.get_secret_value()
    return HiddenText(json.dumps(record))


def parse_refresh_record(raw: str | None) -> StoredRefresh | None:
    """Read a refresh-token record (``None``: no record)."""
    if raw is None:
        return None
    token: Secret | None = None
    event_time: int | None = None
    at: float | None = None
    cancelled = False
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if isinstance(data, dict):
        value, when, written = data.get("refresh_token"), data.get("event_time"), data.get("at")
        if isinstance(value, str) and value.strip():
            token = Secret(value)
        if type(when) is int:
            event_time = when
        if isinstance(written, (int, float)) and not isinstance(written, bool):
            at = float(written)
        cancelled = token is None and data.get("cancelled") is True
    return StoredRefresh(Secret(raw), token, event_time, cancelled, at)


@dataclass(frozen=True)
class RecoveryRecord:
    """The last re-read of the authorizer list: when it started (epoch s), and what
    made it fail (``None``: it did not, or has not yet)."""

    at: float
    failure: str | None = None


def recovery_record(at: float, *, failure: str | None = None) -> str:
    """The meta record of a re-read of the authorizer list."""
    record: dict[str, Any] = {"at": at}
    if failure is not None:
        record["failed"] = failure[:300]
    return json.dumps(record)


def parse_recovery_record(raw: str | None) -> RecoveryRecord | None:
    """Read the meta record of the last re-read (``None``: none, or damaged)."""
    try:
        data = json.loads(raw) if raw else None
        if not isinstance(data, dict):
            return None
        at = float(data["at"])
    except (ValueError, KeyError, TypeError):
        return None
    failure = data.get("failed")
    return RecoveryRecord(at, failure if isinstance(failure, str) else None)


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
    check_appid("component_appid", component_appid)
    if isinstance(pre_auth_code, PreAuthCode):
        pre_auth_code = pre_auth_code.code
    code = pre_auth_code.get_secret_value() if isinstance(pre_auth_code, Secret) else pre_auth_code
    if not isinstance(code, str) or not code:
        raise ValueError("pre_auth_code must be a non-empty str")
    target = urllib.parse.urlsplit(redirect_uri) if isinstance(redirect_uri, str) else None
    if target is None or target.scheme not in ("http", "https") or not target.netloc:
        raise ValueError("redirect_uri must be an http(s) URL")
    if isinstance(auth_type, bool) or not isinstance(auth_type, int) or auth_type < 1:
        raise ValueError("auth_type must be a positive int (1, 2, 3, ...)")
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
        query.append(("biz_appid", check_appid("biz_appid", biz_appid)))
    page = AUTHORIZATION_PAGE_MOBILE if mobile else AUTHORIZATION_PAGE
    url = f"{page}?{urllib.parse.urlencode(query)}"
    return url + "#wechat_redirect" if mobile else url
