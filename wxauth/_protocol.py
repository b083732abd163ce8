"""The rules of WeChat's token protocol, with no I/O: functions on URLs, headers and bytes.

Like h11, which speaks HTTP without a socket, this module never sends anything. It
builds each source's token request (:class:`TokenRequest`), reads a token endpoint's
answer into a decoded dict or a typed error (:func:`read_token_answer`), takes the token
and its lifetime out of that dict (:func:`parse_token_answer`), sets the token in an API
URL (:func:`set_access_token`), and decides from a Content-Type and the first bytes of a
body whether an API answer reports an expired or invalid token
(:func:`expired_errcode_in`). The requests transport and auth, the decorator and any
future transport call these; none repeats them.

Credentials travel as :class:`~wxauth.Secret` values inside a :class:`TokenRequest`;
a transport unwraps them only while it builds the request for its HTTP library.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from ._errors import (
    EXPIRED_ERRCODES,
    RETRYABLE_ERRCODES,
    TokenFetchError,
    WeChatAPIError,
    WxAuthError,
    error_for_token_endpoint,
)
from ._redact import redact_url_text
from ._secret import Secret, reveal

__all__ = [
    "MAX_ANSWER_BYTES",
    "MAX_EXPIRES_IN",
    "Failure",
    "TokenRequest",
    "body_may_report_expired",
    "classic_token_request",
    "expired_errcode_in",
    "is_textual",
    "mapping_expired_errcode",
    "parse_token_answer",
    "read_token_answer",
    "scrub",
    "set_access_token",
    "shown_location",
    "stable_token_request",
    "ticket_request",
    "wecom_token_request",
]

#: The most bytes of a token answer that are read (one is about 200 bytes long); a
#: longer answer is an error, a longer 5xx page is cut there.
MAX_ANSWER_BYTES = 64 * 1024
#: The longest token lifetime accepted from a token endpoint, in seconds (one day;
#: WeChat's tokens live 7200). A longer, infinite or NaN ``expires_in`` is refused.
MAX_EXPIRES_IN = 86400.0
#: WeCom's "too many concurrent calls": worth the same bounded retry as system busy.
WECOM_RETRYABLE_ERRCODES = RETRYABLE_ERRCODES | {45033}

_EXCERPT = 80


# -- token requests -----------------------------------------------------------------


@dataclass(frozen=True)
class TokenRequest:
    """One request to a token endpoint, as data: what a transport sends.

    ``params`` go in the query string, ``headers`` are added to the request's, and
    ``json`` (if any) is the body; any of them may hold :class:`~wxauth.Secret` values
    (an ``Authorization`` header, say), which a transport unwraps at the last moment.
    ``secrets`` are scrubbed from every message about this request. ``path`` names the
    endpoint in messages (never the whole URL, whose query may hold the secret).
    """

    method: str
    url: str
    path: str
    params: Mapping[str, str | Secret] = field(default_factory=dict)
    json: Mapping[str, Any] | None = None
    headers: Mapping[str, str | Secret] = field(default_factory=dict)
    secrets: tuple[Secret, ...] = ()
    retryable_errcodes: frozenset[int] = RETRYABLE_ERRCODES
    #: Errcodes that judge the access token the request carries (a ticket request's):
    #: raised as a plain :class:`~wxauth.WeChatAPIError`, for the caller to heal, never
    #: as the :class:`~wxauth.CredentialError` a token endpoint's 40001 means.
    token_errcodes: frozenset[int] = frozenset()
    #: The largest answer body read (a transport reads at most one byte more, then
    #: stops): a token answer is about 200 bytes; a page of a list can be more.
    max_bytes: int = MAX_ANSWER_BYTES

    def __repr__(self) -> str:
        return f"TokenRequest({self.method} {self.path})"


def classic_token_request(appid: str, secret: Secret, api_base: str) -> TokenRequest:
    """``GET /cgi-bin/token?grant_type=client_credential&appid=...&secret=...``."""
    path = "/cgi-bin/token"
    return TokenRequest(
        "GET",
        api_base + path,
        path,
        params={"grant_type": "client_credential", "appid": appid, "secret": secret},
        secrets=(secret,),
    )


def stable_token_request(appid: str, secret: Secret, api_base: str, *, force: bool) -> TokenRequest:
    """``POST /cgi-bin/stable_token`` with the secret in the JSON body."""
    path = "/cgi-bin/stable_token"
    body = {
        "grant_type": "client_credential",
        "appid": appid,
        "secret": secret,
        "force_refresh": force,
    }
    return TokenRequest("POST", api_base + path, path, json=body, secrets=(secret,))


def wecom_token_request(corpid: str, corpsecret: Secret, api_base: str) -> TokenRequest:
    """WeCom ``GET /cgi-bin/gettoken?corpid=...&corpsecret=...``."""
    path = "/cgi-bin/gettoken"
    return TokenRequest(
        "GET",
        api_base + path,
        path,
        params={"corpid": corpid, "corpsecret": corpsecret},
        secrets=(corpsecret,),
        retryable_errcodes=WECOM_RETRYABLE_ERRCODES,
    )


def ticket_request(api_base: str, path: str, access_token: str, kind: str | None) -> TokenRequest:
    """A ticket request: ``GET <path>?access_token=T[&type=kind]``. The access token's
    own errcodes (40001/40014/42001) come back as plain errors, to heal the token."""
    params: dict[str, str | Secret] = {"access_token": access_token}
    if kind is not None:
        params["type"] = kind
    return TokenRequest(
        "GET", api_base + path, path, params=params, token_errcodes=EXPIRED_ERRCODES
    )


# -- token answers --------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """A token request that did not yield a token: the error to raise, and whether a
    bounded retry may help (``-1 system busy``, HTTP 5xx, a connection error)."""

    error: WxAuthError
    retryable: bool


def scrub(text: str, secrets: tuple[Secret, ...]) -> str:
    """``text`` without the secrets, tokens and credential query values it may hold."""
    return redact_url_text(text, *(reveal(secret) for secret in secrets))


def _excerpt(body: bytes, secrets: tuple[Secret, ...]) -> str:
    # Redact the whole body before cutting it: a secret or token straddling the cut
    # would no longer match the patterns.
    text = " ".join(scrub(body.decode("utf-8", "replace"), secrets).split())
    return text[:_EXCERPT] + ("…" if len(text) > _EXCERPT else "")


def shown_location(location: str) -> str:
    """Where a redirect points, as far as it is safe to show: scheme, host, port and
    path; no user info, query or fragment, which could carry the secret."""
    try:
        parts = urlsplit(location.strip())
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return "an unparsable Location"
    host = f"{parts.scheme}://{parts.hostname}{port}" if parts.hostname else ""
    shown = host + parts.path
    if parts.query:
        shown += "?…"
    return shown[:200] or "no Location"


def read_token_answer(
    request: TokenRequest, status: int, headers: Mapping[str, str], body: bytes
) -> dict[str, Any] | Failure:
    """Read a token endpoint's answer: the decoded JSON object of a success, or a
    :class:`Failure` (a redirect, HTTP 5xx, an oversized or non-JSON body, a non-zero
    errcode). ``headers`` is looked up by the exact names ``Content-Type`` and
    ``Location``, so pass a case-insensitive mapping. Every message is scrubbed."""
    path, secrets = request.path, request.secrets
    if 300 <= status < 400:
        where = scrub(shown_location(headers.get("Location", "")), secrets)
        return Failure(
            TokenFetchError(
                f"{path} answered HTTP {status}, a redirect to {where!r}; it was not "
                "followed, as it would send the credentials there too. Point api_base "
                "at the final URL"
            ),
            retryable=False,
        )
    if status >= 500:
        excerpt = _excerpt(body[: request.max_bytes], secrets)
        return Failure(TokenFetchError(f"{path} answered HTTP {status}: {excerpt!r}"), True)
    if len(body) > request.max_bytes:
        return Failure(
            TokenFetchError(
                f"{path} answered HTTP {status} with more than {request.max_bytes} bytes, "
                "more than such an answer can be"
            ),
            retryable=False,
        )
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        content_type = headers.get("Content-Type", "")
        return Failure(
            TokenFetchError(
                f"{path} answered HTTP {status} with Content-Type "
                f"{content_type or 'none'!r} and a body that is not a JSON object: "
                f"{_excerpt(body, secrets)!r}"
            ),
            retryable=False,
        )
    raw = data.get("errcode", 0)
    try:
        errcode = int(raw or 0)
    except (TypeError, ValueError):
        message = f"{path} answered a non-numeric errcode {raw!r}"
        return Failure(TokenFetchError(message), retryable=False)
    if errcode == 0:
        return data
    errmsg = scrub(str(data.get("errmsg", "")), secrets)
    if errcode in request.retryable_errcodes:
        busy = f"{path} answered errcode {errcode} (busy, retried): {errmsg}"
        return Failure(TokenFetchError(busy, errcode=errcode), retryable=True)
    if errcode in request.token_errcodes:
        return Failure(WeChatAPIError(errcode, errmsg, url_path=path), retryable=False)
    return Failure(error_for_token_endpoint(errcode, errmsg, url_path=path), retryable=False)


def _seconds(value: float | str) -> float | None:
    """``float(value)``; ``inf`` for an integer too large for a float, ``None`` for text
    that is not a number."""
    try:
        return float(value)
    except OverflowError:  # float(10**400)
        return math.inf
    except ValueError:
        return None


def _a(field: str) -> str:
    return f"an {field}" if field[0] in "aeiou" else f"a {field}"


def parse_token_answer(
    data: Mapping[str, Any], path: str, *, field: str = "access_token"
) -> tuple[str, float]:
    """Read ``access_token`` (or ``field``: ``"ticket"`` for a ticket answer) and
    ``expires_in`` from a successful token answer.

    Raises :class:`TokenFetchError` (never showing the token) for a missing or blank
    token, and for an ``expires_in`` that is not a finite number of seconds in
    ``(0, MAX_EXPIRES_IN]``: Python's json reads ``NaN``, ``Infinity`` and ``1e400``,
    and a token cached "for ever" would never be refreshed.
    """
    token = data.get(field)
    expires_in = data.get("expires_in")
    if not isinstance(token, str):
        raise TokenFetchError(f"{path} answered without {_a(field)} (keys: {sorted(data)})")
    if not token.strip():
        raise TokenFetchError(f"{path} answered a blank {field} ({len(token)} characters)")
    if isinstance(expires_in, bool) or not isinstance(expires_in, (int, float, str)):
        raise TokenFetchError(f"{path} answered without a numeric expires_in")
    seconds = _seconds(expires_in)
    if seconds is None:
        raise TokenFetchError(f"{path} answered a non-numeric expires_in")
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_EXPIRES_IN):
        raise TokenFetchError(
            f"{path} answered expires_in={seconds:.6g}; a token lifetime must be more than "
            f"0 and at most {MAX_EXPIRES_IN:.0f} seconds"
        )
    return token, seconds


# -- API requests and answers ------------------------------------------------------------

_PARAM = "access_token"


@functools.lru_cache(maxsize=16)
def _quoted(token: str) -> str:
    # Percent-encoding a ~150-character token was most of set_access_token's time, and
    # every request encodes one of the same few tokens.
    return quote(token, safe="")


def set_access_token(url: str, token: str, param: str = _PARAM) -> str:
    """Return ``url`` with exactly one ``param`` query parameter, set to ``token``."""
    value = f"{param}={_quoted(token)}"
    if "#" in url:
        parts = urlsplit(url)
        return urlunsplit(parts._replace(query=_replace_in_query(parts.query, param, value)))
    base, sep, query = url.partition("?")
    return f"{base}?{_replace_in_query(query, param, value)}" if sep else f"{url}?{value}"


def _replace_in_query(query: str, param: str, value: str) -> str:
    if not query:
        return value
    if param + "=" not in query and not query.startswith(param) and "&" + param not in query:
        return f"{query}&{value}"
    kept = [part for part in query.split("&") if part and part.split("=", 1)[0] != param]
    kept.append(value)
    return "&".join(kept)


# WeChat error bodies are tiny and start with the errcode. A body larger than this is
# only searched at its start, so a 1 MB success answer costs a 1 KB look, not a parse.
FULL_SCAN_LIMIT = 64 * 1024
HEAD_BYTES = 1024
_ERRCODE_RE = re.compile(rb'"errcode"\s*:\s*(-?\d+)')
_TEXTUAL = ("application/json", "text/json", "text/plain", "text/javascript")


def is_textual(content_type: str) -> bool:
    """Whether a Content-Type can carry a WeChat JSON error (JSON or plain text)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media in _TEXTUAL or media.endswith("+json")


def body_may_report_expired(head: bytes) -> bool:
    """Whether the first bytes of a body name one of ``EXPIRED_ERRCODES`` as an
    ``"errcode"`` (a byte search: no decoding)."""
    return any(int(m.group(1)) in EXPIRED_ERRCODES for m in _ERRCODE_RE.finditer(head))


def mapping_expired_errcode(data: Mapping[str, Any]) -> int | None:
    """The ``errcode`` of a decoded answer if it is one of ``EXPIRED_ERRCODES``."""
    raw = data.get("errcode")
    if raw is None or isinstance(raw, bool):
        return None
    try:
        code = int(raw)
    except (TypeError, ValueError):
        return None
    return code if code in EXPIRED_ERRCODES else None


def expired_errcode_in(content_type: str, body: bytes) -> int | None:
    """The expired/invalid-token errcode an API answer reports, or ``None``.

    Only JSON or text answers count; a body over :data:`FULL_SCAN_LIMIT` is searched in
    its first :data:`HEAD_BYTES` only, and the JSON is decoded only when that byte
    search finds one of ``EXPIRED_ERRCODES``."""
    if not body or not is_textual(content_type):
        return None
    head = body if len(body) <= FULL_SCAN_LIMIT else body[:HEAD_BYTES]
    if not body_may_report_expired(head):
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return mapping_expired_errcode(data) if isinstance(data, dict) else None
