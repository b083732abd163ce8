"""Token sources: how a token is fetched.

A source knows one endpoint and one set of credentials. It is called by the
:class:`~wxauth.TokenManager` only while the manager holds the single-flight lock, and
returns ``(access_token, expires_in)``. Every error it raises is a
:class:`~wxauth.WxAuthError` whose message and cause chain hold neither the secret nor
a token.

Credentials are held as :class:`~wxauth._secret.Secret` values, whose repr is a mask,
and unwrapped only in :func:`_prepare`, which builds the request and returns before
anything is sent: no frame that an exception's traceback keeps (and that error trackers
and ``capture_locals`` record) holds the secret in clear.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias
from urllib.parse import urlsplit

import requests

from ._errors import (
    RETRYABLE_ERRCODES,
    TokenFetchError,
    WxAuthError,
    error_for_token_endpoint,
)
from ._redact import redact_url_text
from ._secret import Secret, reveal
from .stores._base import TokenStore

__all__ = [
    "DEFAULT_API_BASE",
    "DEFAULT_BACKOFF",
    "DEFAULT_RETRIES",
    "MAX_ANSWER_BYTES",
    "MAX_EXPIRES_IN",
    "SOURCE_NAMES",
    "STABLE_FORCE_DAILY_LIMIT",
    "STABLE_FORCE_SPACING",
    "WECOM_API_BASE",
    "AppSecretSource",
    "CallableTokenSource",
    "ClassicTokenSource",
    "FetchContext",
    "StableTokenSource",
    "TokenSource",
    "WeComTokenSource",
    "call_token_endpoint",
    "make_source",
    "parse_token_answer",
    "secret_digest",
]

logger = logging.getLogger("wxauth")

#: Where the Official Account / Mini Program APIs live.
DEFAULT_API_BASE = "https://api.weixin.qq.com"
#: How many times a token fetch is retried after ``-1 system busy``, an HTTP 5xx or a
#: connection error (timeouts are not retried: the caller already waited ``timeout``).
DEFAULT_RETRIES = 2
#: First backoff between those retries, in seconds; it doubles each time.
DEFAULT_BACKOFF = 0.5

#: The most bytes of a token answer that are read (one is about 200 bytes long); a
#: longer answer is an error, a longer 5xx page is cut there.
MAX_ANSWER_BYTES = 64 * 1024
#: The longest token lifetime accepted from a token endpoint, in seconds (one day;
#: WeChat's tokens live 7200). A longer, infinite or NaN ``expires_in`` is refused.
MAX_EXPIRES_IN = 86400.0

_EXCERPT = 80


def secret_digest(secret: str | Secret) -> str:
    """A short, stable, one-way tag of a secret, for store keys that must tell apps
    apart by secret (WeCom) without ever containing it."""
    return hashlib.sha256(reveal(secret).encode("utf-8")).hexdigest()[:16]


@dataclass
class FetchContext:
    """What a source may use while it fetches (handed in by the manager)."""

    #: The HTTP session to send the token request with.
    session: requests.Session
    #: Seconds one HTTP request may take in all: connect, headers and body.
    timeout: float
    #: Epoch-seconds clock of the manager.
    clock: Callable[[], float]
    #: The manager's store, for bookkeeping a source shares across processes.
    store: TokenStore
    #: The token a caller last reported as rejected (40001/40014/42001), if any.
    rejected: str | None = field(default=None, repr=False)
    #: Retries after a transient failure, and the first backoff in seconds.
    retries: int = DEFAULT_RETRIES
    backoff: float = DEFAULT_BACKOFF
    #: Sleep function (tests pass a no-op or a fake).
    sleep: Callable[[float], None] = field(default=time.sleep)


class TokenSource(ABC):
    """How a token is fetched. Subclass it for another endpoint or an internal service.

    ``appid`` names the app in logs and reprs; ``key`` is the store key, unique per
    credentials and never containing the secret.
    """

    #: Short name used in reprs and logs (``"classic"``, ``"stable"``, ...).
    name: str = "custom"
    appid: str

    @property
    @abstractmethod
    def key(self) -> str:
        """The store key of this source's token."""

    @abstractmethod
    def fetch(self, ctx: FetchContext) -> tuple[str, float]:
        """Fetch a new token; return ``(access_token, expires_in)``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(appid={self.appid!r})"


def _endpoint_tag(api_base: str, default: str) -> str:
    """``""`` for WeChat's own endpoint, else ``"@<digest>"``: tokens of an emulator or a
    proxy must not be served as WeChat's from a store both use."""
    if api_base == default.rstrip("/"):
        return ""
    return "@" + hashlib.sha256(api_base.encode("utf-8")).hexdigest()[:12]


def _require(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty str")
    return value


def _require_secret(name: str, value: object) -> Secret:
    if isinstance(value, str):
        value = Secret(value)
    if not isinstance(value, Secret) or not value.get_secret_value().strip():
        raise ValueError(f"{name} must be a non-empty str")
    return value


#: The literal secrets to scrub from a message.
_Secrets: TypeAlias = "tuple[str | Secret, ...]"


def _scrub(text: str, secrets: _Secrets) -> str:
    """:func:`redact_url_text` with the literal secrets unwrapped in this short frame."""
    return redact_url_text(text, *(reveal(secret) for secret in secrets))


def _excerpt(body: bytes, secrets: _Secrets) -> str:
    # Redact the whole body before cutting it: a secret or token straddling the cut
    # would no longer match the patterns.
    text = _scrub(body.decode("utf-8", "replace"), secrets)
    text = " ".join(text.split())
    return text[:_EXCERPT] + ("…" if len(text) > _EXCERPT else "")


def _decode_token_answer(
    status: int, content_type: str, body: bytes, path: str, secrets: _Secrets
) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise TokenFetchError(
            f"{path} answered HTTP {status} with Content-Type "
            f"{content_type or 'none'!r} and a body that is not a JSON object: "
            f"{_excerpt(body, secrets)!r}"
        )
    return data


def _parse_errcode(data: Mapping[str, Any], path: str) -> int:
    raw = data.get("errcode", 0)
    try:
        return int(raw or 0)
    except (TypeError, ValueError):
        raise TokenFetchError(f"{path} answered a non-numeric errcode {raw!r}") from None


def call_token_endpoint(
    ctx: FetchContext,
    method: str,
    url: str,
    *,
    path: str,
    secrets: _Secrets,
    params: Mapping[str, str | Secret] | None = None,
    json_body: Mapping[str, Any] | None = None,
    retryable_errcodes: frozenset[int] = RETRYABLE_ERRCODES,
) -> dict[str, Any]:
    """Send one token request with a bounded retry, and return the decoded answer.

    Retries ``-1``/``-1000`` (system busy), HTTP 5xx and connection errors up to
    ``ctx.retries`` times with doubling backoff. Raises :class:`TokenFetchError` for
    transport failures and unexpected bodies, and the class
    :func:`error_for_token_endpoint` picks for a non-zero errcode. ``secrets`` are
    scrubbed from every message; no requests exception is chained.

    Pass credentials in ``params``, ``json_body`` and ``secrets`` as :class:`Secret`
    values: they are unwrapped only while the request is built, in a frame that is gone
    before anything is sent, so no frame on the traceback of what this raises holds
    them in clear.
    """
    attempt = 0
    while True:
        data, failure, retryable = _attempt(
            ctx,
            method,
            url,
            path=path,
            secrets=secrets,
            params=params,
            json_body=json_body,
            retryable_errcodes=retryable_errcodes,
        )
        if failure is None:
            assert data is not None
            return data
        if not retryable or attempt >= ctx.retries:
            raise failure
        delay = ctx.backoff * (2**attempt)
        logger.warning("%s; retrying in %.2fs", failure, delay)
        ctx.sleep(delay)
        attempt += 1


def _attempt(
    ctx: FetchContext,
    method: str,
    url: str,
    *,
    path: str,
    secrets: _Secrets,
    params: Mapping[str, str | Secret] | None,
    json_body: Mapping[str, Any] | None,
    retryable_errcodes: frozenset[int],
) -> tuple[dict[str, Any] | None, WxAuthError | None, bool]:
    """One request: ``(data, None, _)`` on success, else ``(None, error, retryable)``.

    Errors are returned, not raised, so that the requests exception (whose text holds
    the URL, and the secret with it, and whose traceback holds frames with the secret
    in their locals) never becomes the ``__context__`` of ours.

    The whole request (connect, headers and body) must finish within ``ctx.timeout``
    seconds: requests' own timeout bounds each read, which a server trickling its
    answer a byte at a time never trips."""
    deadline = time.monotonic() + ctx.timeout
    prepared, problem = _prepare(ctx.session, method, url, params, json_body, secrets)
    if prepared is None:
        return None, TokenFetchError(f"{path}: the request could not be built: {problem}"), False
    try:
        response = _send(ctx.session, prepared, ctx.timeout)
    except _RedirectError as exc:
        return None, _redirect_error(path, exc.status, exc.location, secrets), False
    except requests.Timeout as exc:
        message = _scrub(str(exc), secrets)
        return None, TokenFetchError(f"{path} timed out after {ctx.timeout}s: {message}"), False
    except requests.RequestException as exc:
        message = _scrub(str(exc), secrets)
        return None, TokenFetchError(f"{path} could not be reached: {message}"), True
    except Exception as exc:  # anything else from the HTTP stack: its frames hold the URL
        message = _scrub(f"{type(exc).__name__}: {exc}", secrets)
        return None, TokenFetchError(f"{path} could not be sent: {message}"), False
    with response:
        if 300 <= response.status_code < 400:  # a session whose send() skips our hook
            location = _shown_location(response.headers.get("Location", ""))
            return None, _redirect_error(path, response.status_code, location, secrets), False
        body, problem = _read_body(response, deadline)
        if problem == _LATE:
            return None, TokenFetchError(f"{path} did not finish within {ctx.timeout}s"), False
        if problem:
            message = _scrub(problem, secrets)
            return None, TokenFetchError(f"{path} answer broke off: {message}"), True
        if response.status_code >= 500:
            error = TokenFetchError(
                f"{path} answered HTTP {response.status_code}: {_excerpt(body, secrets)!r}"
            )
            return None, error, True
        if len(body) > MAX_ANSWER_BYTES:
            error = TokenFetchError(
                f"{path} answered HTTP {response.status_code} with more than "
                f"{MAX_ANSWER_BYTES} bytes; a token answer is about 200"
            )
            return None, error, False
        try:
            content_type = response.headers.get("Content-Type", "")
            data = _decode_token_answer(response.status_code, content_type, body, path, secrets)
            errcode = _parse_errcode(data, path)
        except TokenFetchError as exc:
            # Drop the traceback of this frame: it holds the prepared request.
            return None, exc.with_traceback(None), False
    if errcode == 0:
        return data, None, False
    errmsg = _scrub(str(data.get("errmsg", "")), secrets)
    if errcode in retryable_errcodes:
        busy = TokenFetchError(
            f"{path} answered errcode {errcode} (busy, retried): {errmsg}", errcode=errcode
        )
        return None, busy, True
    return None, error_for_token_endpoint(errcode, errmsg, url_path=path), False


def _prepare(
    session: requests.Session,
    method: str,
    url: str,
    params: Mapping[str, str | Secret] | None,
    json_body: Mapping[str, Any] | None,
    secrets: _Secrets,
) -> tuple[requests.PreparedRequest | None, str]:
    """Build the request with the session's defaults: ``(prepared, "")``, or ``(None,
    why)`` with the reason scrubbed.

    The only frame of wxauth where the credentials are in clear. It returns before the
    request is sent, so it (and the frames of requests below it) is on no traceback of
    a failure to send or of an error raised later. A ``PreparedRequest`` shows only
    its method in its repr (``<PreparedRequest [GET]>``)."""
    try:
        prepared = session.prepare_request(
            requests.Request(method, url, params=reveal(params), json=reveal(json_body))
        )
    except Exception as exc:  # an invalid api_base, a body that is not JSON...
        return None, _scrub(f"{type(exc).__name__}: {exc}", secrets)
    prepared.hooks["response"].append(_refuse_redirect)  # after the session's own hooks
    return prepared, ""


def _send(
    session: requests.Session, prepared: requests.PreparedRequest, timeout: float
) -> requests.Response:
    """Send ``prepared`` as ``session.request()`` would, with the environment's proxy
    and certificate settings, but never following a redirect: it would carry the
    secret (in the query, or in the body of a 307/308) to wherever it points."""
    settings = session.merge_environment_settings(prepared.url, {}, True, None, None)
    return session.send(prepared, timeout=timeout, allow_redirects=False, **settings)


#: :func:`_read_body`'s verdict for a body that was not complete by the deadline.
_LATE = "late"
#: A read timeout may fire this much before the deadline (clock granularity).
_SLACK = 0.05


def _read_body(response: requests.Response, deadline: float) -> tuple[bytes, str]:
    """Read the (streamed) body by ``deadline`` (``time.monotonic()``), decoded like
    ``response.content``, and at most ``MAX_ANSWER_BYTES + 1`` bytes of it.

    Returns ``(body, "")``; ``(partial, _LATE)`` when the deadline passed; or
    ``(partial, why)`` when the connection broke off. The body is read a byte at a
    time: a buffered read of n bytes waits until n bytes came, however late, while a
    1-byte read returns as soon as the server sent anything, so the deadline is
    looked at after every byte (0.5 ms for a 200-byte answer, 0.17 s for 64 KiB on
    loopback). Each wait for the server is cut to what is left of the deadline by
    shortening the socket's timeout; urllib3 sets it afresh for the next request on
    that connection.
    """
    sock = getattr(getattr(response.raw, "connection", None), "sock", None)
    settimeout = getattr(sock, "settimeout", None)
    applied = math.inf
    body = bytearray()
    try:
        chunks = response.iter_content(chunk_size=1)
        while len(body) <= MAX_ANSWER_BYTES:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return bytes(body), _LATE
            if settimeout is not None and remaining < applied - 0.01:
                settimeout(remaining)
                applied = remaining
            chunk = next(chunks, None)
            if chunk is None:
                break
            body += chunk
    except Exception as exc:  # ChunkedEncodingError, ConnectionError(ReadTimeoutError)...
        if time.monotonic() >= deadline - _SLACK:
            return bytes(body), _LATE
        return bytes(body), f"{type(exc).__name__}: {exc}"
    return bytes(body), ""


class _RedirectError(Exception):
    """Raised by :func:`_refuse_redirect` out of ``Session.send``; never leaves this module."""

    def __init__(self, status: int, location: str) -> None:
        super().__init__(status)
        self.status = status
        self.location = location


def _refuse_redirect(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    """Response hook: refuse a 3xx on its headers. Even with ``allow_redirects=False``,
    ``Session.send`` reads a redirect's whole body before it returns, and no deadline
    would bound that read."""
    if 300 <= response.status_code < 400:
        status, location = response.status_code, response.headers.get("Location", "")
        response.close()
        raise _RedirectError(status, _shown_location(location))


def _shown_location(location: str) -> str:
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


def _redirect_error(path: str, status: int, location: str, secrets: _Secrets) -> TokenFetchError:
    return TokenFetchError(
        f"{path} answered HTTP {status}, a redirect to {_scrub(location, secrets)!r}; it was "
        "not followed, as it would send the credentials there too. Point api_base at the "
        "final URL"
    )


def parse_token_answer(data: Mapping[str, Any], path: str) -> tuple[str, float]:
    """Read ``access_token`` and ``expires_in`` from a successful token answer.

    Raises :class:`TokenFetchError` (never showing the token) for a missing or blank
    token, and for an ``expires_in`` that is not a finite number of seconds in
    ``(0, MAX_EXPIRES_IN]``: Python's json reads ``NaN``, ``Infinity`` and ``1e400``,
    and a token cached "for ever" would never be refreshed.
    """
    token = data.get("access_token")
    expires_in = data.get("expires_in")
    if not isinstance(token, str):
        raise TokenFetchError(f"{path} answered without an access_token (keys: {sorted(data)})")
    if not token.strip():
        raise TokenFetchError(f"{path} answered a blank access_token ({len(token)} characters)")
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


def _seconds(value: float | str) -> float | None:
    """``float(value)``; ``inf`` for an integer too large for a float, ``None`` for text
    that is not a number."""
    try:
        return float(value)
    except OverflowError:  # float(10**400)
        return math.inf
    except ValueError:
        return None


class AppSecretSource(TokenSource):
    """Base of the sources that fetch with an appid and an AppSecret from an endpoint
    under ``api_base``. The store key is ``token:<name>:<appid>``."""

    path: str = ""

    def __init__(
        self, appid: str, secret: str | Secret, *, api_base: str = DEFAULT_API_BASE
    ) -> None:
        secret = _require_secret("secret", secret)  # no clear local, should a line raise
        self.appid = _require("appid", appid)
        self._secret: Secret = secret
        self.api_base = api_base.rstrip("/")

    @property
    def key(self) -> str:
        return f"token:{self.name}:{self.appid}{_endpoint_tag(self.api_base, DEFAULT_API_BASE)}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(appid={self.appid!r}, api_base={self.api_base!r})"


class ClassicTokenSource(AppSecretSource):
    """``GET /cgi-bin/token?grant_type=client_credential&appid=...&secret=...``.

    Every fetch retires the app's previous classic token (it keeps working about five
    minutes). The secret travels in the URL; wxauth scrubs it from urllib3's logs and
    from every error it raises.
    """

    name = "classic"
    path = "/cgi-bin/token"

    def fetch(self, ctx: FetchContext) -> tuple[str, float]:
        data = call_token_endpoint(
            ctx,
            "GET",
            self.api_base + self.path,
            path=self.path,
            secrets=(self._secret,),
            params={"grant_type": "client_credential", "appid": self.appid, "secret": self._secret},
        )
        return parse_token_answer(data, self.path)


#: WeChat allows a force refresh of a stable token at most this often (seconds)...
STABLE_FORCE_SPACING = 30.0
#: ...and at most this many times a day.
STABLE_FORCE_DAILY_LIMIT = 20
_CHINA_UTC_OFFSET = 8 * 3600


class StableTokenSource(AppSecretSource):
    """``POST /cgi-bin/stable_token`` with the secret in the JSON body, not the URL.

    Normal mode returns the app's current stable token (the same one to every caller,
    renewed by WeChat in its last five minutes), so separate services no longer retire
    each other's tokens. Stable tokens are a family of their own: they neither retire
    nor are retired by classic ``/cgi-bin/token`` fetches.

    When a token this source served is rejected, it asks again in normal mode first;
    only if WeChat hands back that same rejected token does it escalate to
    ``force_refresh``, at most once per :data:`STABLE_FORCE_SPACING` seconds and
    :data:`STABLE_FORCE_DAILY_LIMIT` times a (China-time) day. That bookkeeping lives in
    the manager's store, so every process sharing the store shares the budget. With no
    force left, the token WeChat called current is returned and a warning logged.
    """

    name = "stable"
    path = "/cgi-bin/stable_token"

    def _request(self, ctx: FetchContext, *, force: bool) -> tuple[str, float]:
        data = call_token_endpoint(
            ctx,
            "POST",
            self.api_base + self.path,
            path=self.path,
            secrets=(self._secret,),
            json_body={
                "grant_type": "client_credential",
                "appid": self.appid,
                "secret": self._secret,
                "force_refresh": force,
            },
        )
        return parse_token_answer(data, self.path)

    def fetch(self, ctx: FetchContext) -> tuple[str, float]:
        token, expires_in = self._request(ctx, force=False)
        if ctx.rejected is None or token != ctx.rejected:
            return token, expires_in
        if not self._take_force(ctx):
            logger.warning(
                "stable_token handed back the rejected token of appid=%s and the force "
                "refresh budget (one per %.0fs, %d a day) is spent; using it as is",
                self.appid,
                STABLE_FORCE_SPACING,
                STABLE_FORCE_DAILY_LIMIT,
            )
            return token, expires_in
        logger.warning(
            "stable_token handed back the rejected token of appid=%s; forcing a refresh",
            self.appid,
        )
        return self._request(ctx, force=True)

    def _take_force(self, ctx: FetchContext) -> bool:
        """Spend one force refresh if the spacing and the daily budget allow it."""
        now = ctx.clock()
        day = int((now + _CHINA_UTC_OFFSET) // 86400)
        meta_key = f"{self.key}:force"
        raw = ctx.store.get_meta(meta_key)
        last, count, on_day = float("-inf"), 0, day
        if raw:
            try:
                record = json.loads(raw)
                last, count, on_day = (
                    float(record["last"]),
                    int(record["count"]),
                    int(record["day"]),
                )
            except (ValueError, KeyError, TypeError):
                pass  # a damaged record only costs us the bookkeeping
        if on_day != day:
            count = 0
        if now - last < STABLE_FORCE_SPACING or count >= STABLE_FORCE_DAILY_LIMIT:
            return False
        record_text = json.dumps({"last": now, "count": count + 1, "day": day})
        ctx.store.set_meta(meta_key, record_text, ttl=2 * 86400)
        return True


#: Where the WeCom (企业微信) APIs live.
WECOM_API_BASE = "https://qyapi.weixin.qq.com"
#: WeCom's "too many concurrent calls": worth the same bounded retry as system busy.
_WECOM_RETRYABLE = RETRYABLE_ERRCODES | {45033}


class WeComTokenSource(TokenSource):
    """WeCom ``GET /cgi-bin/gettoken?corpid=...&corpsecret=...``.

    Each application (each corpsecret) has its own token, so the store key holds the
    corpid and a one-way digest of the corpsecret. ``appid`` is the corpid.
    """

    name = "wecom"
    path = "/cgi-bin/gettoken"

    def __init__(
        self, corpid: str, corpsecret: str | Secret, *, api_base: str = WECOM_API_BASE
    ) -> None:
        corpsecret = _require_secret("corpsecret", corpsecret)  # no clear local from here
        self.appid = _require("corpid", corpid)
        self._secret: Secret = corpsecret
        self.api_base = api_base.rstrip("/")
        self._key = (
            f"token:{self.name}:{corpid}:{secret_digest(corpsecret)}"
            f"{_endpoint_tag(self.api_base, WECOM_API_BASE)}"
        )

    @property
    def corpid(self) -> str:
        """The WeCom corp id."""
        return self.appid

    @property
    def key(self) -> str:
        return self._key

    def fetch(self, ctx: FetchContext) -> tuple[str, float]:
        data = call_token_endpoint(
            ctx,
            "GET",
            self.api_base + self.path,
            path=self.path,
            secrets=(self._secret,),
            params={"corpid": self.appid, "corpsecret": self._secret},
            retryable_errcodes=_WECOM_RETRYABLE,
        )
        return parse_token_answer(data, self.path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(corpid={self.appid!r}, api_base={self.api_base!r})"


class CallableTokenSource(TokenSource):
    """Tokens from your own code: ``func()`` returns ``(access_token, expires_in)``.

    For companies whose tokens come from an internal central token service. Whatever
    ``func`` raises that is not a :class:`~wxauth.WxAuthError` is reported as a
    :class:`~wxauth.TokenFetchError` naming the exception type (its message is not
    copied, as it might hold a credential).
    """

    name = "custom"

    def __init__(
        self, appid: str, func: Callable[[], tuple[str, float]], *, key: str | None = None
    ) -> None:
        if not callable(func):
            raise TypeError("CallableTokenSource needs a callable returning (token, expires_in)")
        self.appid = _require("appid", appid)
        self.func = func
        self._key = key or f"token:{self.name}:{appid}"

    @property
    def key(self) -> str:
        return self._key

    def fetch(self, ctx: FetchContext) -> tuple[str, float]:
        failure: TokenFetchError | None = None
        try:
            result = self.func()
        except WxAuthError:
            raise
        except Exception as exc:
            failure = TokenFetchError(
                f"the token callable for appid={self.appid} raised {type(exc).__name__}"
            )
        if failure is not None:
            raise failure
        try:
            token, expires_in = result
        except (TypeError, ValueError):
            raise TokenFetchError(
                "the token callable must return (access_token, expires_in), "
                f"not {type(result).__name__}"
            ) from None
        return parse_token_answer({"access_token": token, "expires_in": expires_in}, "callable")


#: The names ``TokenManager(source=...)`` accepts.
SOURCE_NAMES = ("classic", "stable", "wecom")


def make_source(
    spec: TokenSource | Callable[[], tuple[str, float]] | str | None,
    appid: str,
    secret: str | Secret | None,
    api_base: str | None,
) -> TokenSource:
    """Build the source a ``TokenManager(source=...)`` argument names."""
    if isinstance(secret, str):
        secret = Secret(secret)  # no clear local, should a line below raise
    if isinstance(spec, TokenSource):
        return spec
    if spec is None or isinstance(spec, str):
        name = spec or "classic"
        if secret is None:
            raise ValueError(f"source={name!r} needs a secret")
        if name == "classic":
            return ClassicTokenSource(appid, secret, api_base=api_base or DEFAULT_API_BASE)
        if name == "stable":
            return StableTokenSource(appid, secret, api_base=api_base or DEFAULT_API_BASE)
        if name == "wecom":
            return WeComTokenSource(appid, secret, api_base=api_base or WECOM_API_BASE)
        raise ValueError(f"source must be one of {SOURCE_NAMES}, a TokenSource or a callable")
    if callable(spec):
        return CallableTokenSource(appid, spec)
    raise TypeError(f"source must be a name, a TokenSource or a callable, not {type(spec)!r}")
