"""``RemoteSource``: tokens read from a wxauth token service (``wxauth serve``).

The service holds the app's secret and fetches from WeChat; its clients hold only a
client key. A client's :class:`~wxauth.TokenManager` caches what the service hands out
like any other token, and a token WeChat rejected travels back to the service with the
next fetch, so the service refetches at most once however many clients report it.

The wire format (``/v1``)::

    GET  {url}/v1/apps/{appid}/token              Authorization: Bearer <key>
      -> 200 {"access_token": str, "expires_in": int, "expires_at": int}
    POST {url}/v1/apps/{appid}/token/invalidate   {"access_token": "<rejected>"}
      -> 200 the same, with the fresh token and "invalidated": bool
    errors: {"error": code, "message": text}
      401 unauthorized, 403 forbidden, 404 unknown_app, 400 bad_request,
      429 too_many_invalidations, 503 store_unavailable / wechat_unavailable

Several URLs (replicas of one service) are tried in turn within one fetch: a
connection error, a timeout, an HTTP 5xx or an answer that is not the service's go to
the next; a 401, 403 or 404 from the service is its verdict, raised at once.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from ._errors import CredentialError, TokenFetchError, WxAuthError
from ._fetch import FetchContext
from ._protocol import MAX_ANSWER_BYTES, TokenRequest, parse_token_answer, scrub, shown_location
from ._secret import Secret
from .sources import TokenSource, _require, _require_secret
from .transport import HTTPAnswer, RequestsTransport, Transport, TransportError

__all__ = [
    "DEFAULT_REMOTE_TIMEOUT",
    "FORBIDDEN_ERRCODE",
    "UNAUTHORIZED_ERRCODE",
    "RemoteSource",
    "key_fingerprint",
]

logger = logging.getLogger("wxauth")

#: Seconds one request to one of the service's URLs may take (connect, headers and
#: body) before the next URL is tried; the manager's ``timeout`` caps it too.
DEFAULT_REMOTE_TIMEOUT = 5.0
#: The ``errcode`` of the :class:`~wxauth.CredentialError` raised when the service
#: refuses the client key (HTTP 401): WeChat's "invalid credential" of a token endpoint.
UNAUTHORIZED_ERRCODE = 40125
#: The ``errcode`` when the service will not hand this client this app's token (HTTP
#: 403 ``forbidden``, 404 ``unknown_app``): WeChat's "invalid appid".
FORBIDDEN_ERRCODE = 40013

_API = "/v1/apps/"
_MESSAGE_CHARS = 200


def key_fingerprint(key: str | Secret) -> str:
    """``sha256:`` and the first 12 hex digits of the key's SHA-256: what names a client
    key in messages (a service's configuration lists each client's full SHA-256)."""
    text = key.get_secret_value() if isinstance(key, Secret) else key
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _check_urls(url: str | Sequence[str]) -> tuple[str, ...]:
    """The service's base URLs, checked: http or https, a host, no user info, query
    or fragment; a trailing slash dropped, duplicates dropped, order kept."""
    given = [url] if isinstance(url, str) else list(url)
    if not given:
        raise ValueError("RemoteSource needs at least one URL")
    urls: list[str] = []
    for item in given:
        if not isinstance(item, str):
            raise TypeError(f"RemoteSource URLs must be str, not {type(item).__name__}")
        text = item.strip().rstrip("/")
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            raise ValueError(f"not a token service URL: {shown_location(text)!r}") from None
        if "@" in parts.netloc:
            raise ValueError("a token service URL must not hold user info; pass key=")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"a token service URL is http:// or https:// and a host, "
                f"not {shown_location(text)!r}"
            )
        if parts.query or parts.fragment:
            raise ValueError(f"a token service URL has no query or fragment: {parts.path!r}")
        if text not in urls:
            urls.append(text)
    return tuple(urls)


def _check_timeout(timeout: float) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError("timeout must be a number of seconds")
    if not 0 < timeout < math.inf:
        raise ValueError("timeout must be a finite number > 0")
    return float(timeout)


@dataclass(frozen=True)
class _Failed:
    """One URL did not give a token: why (free of secrets), and what that means."""

    reason: str
    #: Another pass over the URLs may help (a refused connection, HTTP 5xx).
    retryable: bool = False
    #: The service refused to invalidate (HTTP 429): read the token instead.
    read_instead: bool = False


class RemoteSource(TokenSource):
    """Tokens from a wxauth token service (``wxauth serve``), for a
    :class:`~wxauth.TokenManager` or :class:`~wxauth.AsyncTokenManager` that holds no
    AppSecret::

        tokens = wxauth.TokenManager(
            "wx1234567890", source=wxauth.RemoteSource("http://tokens:8700", key=KEY)
        )

    :param url: the service's base URL, or a list of them (replicas), tried in turn.
    :param key: this client's key (a ``str`` or a :class:`~wxauth.Secret`), sent as
        ``Authorization: Bearer``; never logged or shown (messages name it by
        :func:`key_fingerprint`).
    :param timeout: seconds for one request to one URL before the next is tried.

    The manager binds the source to its appid (:meth:`for_app`). A fetch asks the URL
    that answered last, then the others in order; a connection error, a timeout, an
    HTTP 5xx (``store_unavailable``, ``wechat_unavailable``) or an answer that is not
    the service's moves on to the next URL. When every URL failed, the pass is repeated
    after the manager's backoff (``retries`` times, unless one of them timed out), then
    :class:`~wxauth.TokenFetchError` names each URL's failure. HTTP 401 (the key is
    unknown), 403 (this client may not read the app) and 404 (the service does not
    serve the app) raise :class:`~wxauth.CredentialError` at once.

    When a caller reported a token rejected (``manager.invalidate(token)``, which
    :class:`~wxauth.WxAuth` and :func:`~wxauth.with_access_token` do on 40001), the
    next fetch posts it to the service's invalidate endpoint and takes the fresh token
    from the answer. ``invalidate`` alone sends nothing: the report travels with that
    fetch. If the service answers 429 (too many invalidations), the token is read
    instead.

    The token's lifetime is the service's ``expires_in`` (relative, so a client whose
    clock is off still refreshes in time); the manager's ``refresh_margin`` applies to
    it, never more than half of what was left, so a token handed out near its end is
    not refetched on every call.
    """

    name = "remote"

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        key: str | Secret,
        timeout: float = DEFAULT_REMOTE_TIMEOUT,
    ) -> None:
        key = _require_secret("key", key)  # no clear local, should a line raise
        self.urls: tuple[str, ...] = _check_urls(url)
        self.timeout = _check_timeout(timeout)
        self._secret: Secret = key
        self._authorization = Secret("Bearer " + key.get_secret_value())
        #: Empty until bound to an app (:meth:`for_app`).
        self.appid = ""
        self._start = 0  # the index of the URL that answered last

    def for_app(self, appid: str) -> RemoteSource:
        """This source bound to ``appid``: a copy, or itself if it is bound to it
        already (``TokenManager(appid, source=...)`` calls this)."""
        appid = _require("appid", appid)
        if self.appid:
            if self.appid != appid:
                raise ValueError(f"this RemoteSource serves appid={self.appid!r}, not {appid!r}")
            return self
        bound = copy.copy(self)
        bound.appid = appid
        return bound

    @property
    def key(self) -> str:
        """``token:remote:<appid>@<digest of the URLs>``: replicas of one service share
        a key, whatever order they are listed in."""
        self._check_bound()
        digest = hashlib.sha256("\n".join(sorted(self.urls)).encode("utf-8")).hexdigest()
        return f"token:{self.name}:{self.appid}@{digest[:12]}"

    def _check_bound(self) -> None:
        if not self.appid:
            raise ValueError(
                "RemoteSource is not bound to an app: pass it to TokenManager(appid, "
                "source=...) or call for_app(appid)"
            )

    # -- the fetch ---------------------------------------------------------------------

    def fetch(self, ctx: FetchContext) -> tuple[str, float]:
        """Read the token (or report ``ctx.rejected`` and take the fresh one), trying
        the URLs in turn; see the class docstring."""
        self._check_bound()
        transport = ctx.transport if ctx.transport is not None else RequestsTransport(ctx.session)
        timeout = min(self.timeout, ctx.timeout)
        # The first pass asks every URL; another pass starts only within what the
        # manager's lock lease allows for one fetch.
        give_up = time.monotonic() + ctx.timeout * (ctx.retries + 1)
        rejected = ctx.rejected
        failures: dict[str, str] = {}
        for attempt in range(ctx.retries + 1):
            if attempt:
                delay = ctx.backoff * 2 ** (attempt - 1)
                logger.warning(
                    "appid=%s: no URL of the token service answered; trying again in %.2fs",
                    self.appid,
                    delay,
                )
                ctx.sleep(delay)
            retryable = True
            count = len(self.urls)
            for step in range(count):
                if attempt and time.monotonic() >= give_up:
                    retryable = False
                    break
                index = (self._start + step) % count
                url = self.urls[index]
                outcome = self._ask(transport, url, rejected, timeout)
                if isinstance(outcome, _Failed) and outcome.read_instead:
                    logger.warning(
                        "appid=%s: %s; reading the token instead", self.appid, outcome.reason
                    )
                    rejected = None
                    outcome = self._ask(transport, url, None, timeout)
                if not isinstance(outcome, _Failed):
                    self._start = index
                    return outcome
                failures[url] = outcome.reason
                retryable = retryable and outcome.retryable
                if step + 1 < count:
                    logger.warning(
                        "appid=%s: %s; trying %s", self.appid, outcome.reason, self._next(index)
                    )
            if not retryable:
                break
        reasons = "; ".join(failures.values())
        raise TokenFetchError(
            f"appid={self.appid}: no URL of the token service gave a token: {reasons}"
        )

    def _next(self, index: int) -> str:
        return self.urls[(index + 1) % len(self.urls)]

    def _request(self, url: str, rejected: str | None) -> TokenRequest:
        path = f"{_API}{quote(self.appid, safe='')}/token"
        headers = {"Authorization": self._authorization}
        if rejected is None:
            return TokenRequest("GET", url + path, path, headers=headers, secrets=(self._secret,))
        reported = Secret(rejected)
        path += "/invalidate"
        return TokenRequest(
            "POST",
            url + path,
            path,
            json={"access_token": reported},
            headers=headers,
            secrets=(self._secret, reported),
        )

    def _ask(
        self, transport: Transport, url: str, rejected: str | None, timeout: float
    ) -> tuple[str, float] | _Failed:
        """One request to one URL: the token and its lifetime, or why not. Raises only
        a verdict of the service (401, 403, 404, 400)."""
        request = self._request(url, rejected)
        where = url + request.path
        answer: HTTPAnswer | None = None
        failure: _Failed | None = None
        try:
            answer = transport.send(request, timeout=timeout)
        except TransportError as exc:
            failure = _Failed(f"{where} {exc.message}", retryable=exc.retryable)
        if failure is not None:
            return failure  # outside the except block: nothing chained, nothing kept
        assert answer is not None
        outcome = self._read(answer, where, request.secrets, posted=rejected is not None)
        if isinstance(outcome, WxAuthError):
            raise outcome
        return outcome

    def _read(
        self, answer: HTTPAnswer, where: str, secrets: tuple[Secret, ...], *, posted: bool
    ) -> tuple[str, float] | _Failed | WxAuthError:
        """What the service's answer means: a token, a failure worth another URL, or
        a verdict (an error to raise)."""
        status, body = answer.status, answer.body
        if 300 <= status < 400:
            shown = scrub(shown_location(answer.headers.get("Location", "")), secrets)
            return _Failed(
                f"{where} answered HTTP {status}, a redirect to {shown!r} (not followed)"
            )
        if len(body) > MAX_ANSWER_BYTES:
            return _Failed(
                f"{where} answered HTTP {status} with more than {MAX_ANSWER_BYTES} bytes"
            )
        data = _json_object(body)
        if data is None or (status != 200 and not isinstance(data.get("error"), str)):
            # Not the service's answer (a proxy's page?): another URL may do better.
            content_type = answer.headers.get("Content-Type", "") or "none"
            return _Failed(
                f"{where} answered HTTP {status} with Content-Type {content_type!r} and a "
                "body that is not the token service's JSON",
                retryable=status >= 500,
            )
        if status == 200:
            failure: TokenFetchError | None = None
            try:
                return parse_token_answer(data, where)
            except TokenFetchError as exc:
                failure = exc
            return _Failed(str(failure))
        code = str(data["error"])[:40]
        message = scrub(" ".join(str(data.get("message", "")).split()), secrets)
        said = f"answered HTTP {status} {code}: {message[:_MESSAGE_CHARS]}"
        retry_after = answer.headers.get("Retry-After")
        if retry_after:
            said += f" (Retry-After: {retry_after[:20]})"
        if status >= 500:
            return _Failed(f"{where} {said}", retryable=True)
        if status == 429 and posted:
            return _Failed(f"{where} {said}", read_instead=True)
        client = f"client key {key_fingerprint(self._secret)}"
        if status == 401:
            return CredentialError(
                UNAUTHORIZED_ERRCODE,
                f"the token service {said}; it does not know this {client}",
                url_path=where,
            )
        if status in (403, 404):
            return CredentialError(
                FORBIDDEN_ERRCODE,
                f"the token service {said}; it hands the {client} no token of appid={self.appid}",
                url_path=where,
            )
        return TokenFetchError(f"{where} {said}")

    def __repr__(self) -> str:
        return f"RemoteSource(appid={self.appid or None!r}, urls={list(self.urls)!r})"


def _json_object(body: bytes) -> Mapping[str, Any] | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
