"""Token sources: how a token is fetched.

A source knows one endpoint and one set of credentials. It is called by the
:class:`~wxauth.TokenManager` only while the manager holds the single-flight lock, and
returns ``(access_token, expires_in)``. Every error it raises is a
:class:`~wxauth.WxAuthError` whose message and cause chain hold neither the secret nor
a token.

A source builds its request with the pure functions of :mod:`wxauth._protocol` and
sends it through the context's :class:`~wxauth.transport.Transport`; it does not know
which HTTP library carries it. Credentials are held as :class:`~wxauth.Secret`
values, whose repr is a mask, and unwrapped only by the transport while it builds the
request, in a frame that is gone before anything is sent: no frame that an exception's
traceback keeps (and that error trackers and ``capture_locals`` record) holds the
secret in clear.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

from ._errors import TokenFetchError, WxAuthError
from ._fetch import (
    DEFAULT_BACKOFF,
    DEFAULT_RETRIES,
    FetchContext,
    FlowStep,
    ReadMeta,
    TokenFlow,
    WriteMeta,
    call_token_endpoint,
    drive,
    fetch_token_answer,
)
from ._protocol import (
    MAX_ANSWER_BYTES,
    MAX_EXPIRES_IN,
    classic_token_request,
    parse_token_answer,
    stable_token_request,
    wecom_token_request,
)
from ._secret import Secret, reveal
from ._window import RECORD_TTL, StoreWindow

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
    "FlowStep",
    "ReadMeta",
    "RemoteSource",
    "StableTokenSource",
    "TokenFlow",
    "TokenProvider",
    "TokenSource",
    "WeComTokenSource",
    "WriteMeta",
    "call_token_endpoint",
    "drive",
    "fetch_token_answer",
    "make_source",
    "parse_token_answer",
    "secret_digest",
]

logger = logging.getLogger("wxauth")

#: Where the Official Account / Mini Program APIs live.
DEFAULT_API_BASE = "https://api.weixin.qq.com"


def secret_digest(secret: str | Secret) -> str:
    """A short, stable, one-way tag of a secret, for store keys that must tell apps
    apart by secret (WeCom) without ever containing it."""
    return hashlib.sha256(reveal(secret).encode("utf-8")).hexdigest()[:16]


@runtime_checkable
class TokenProvider(Protocol):
    """Anything that hands out a token and takes back a rejected one: what
    :func:`~wxauth.with_access_token` accepts (a :class:`~wxauth.TokenManager` is one;
    so is a wrapper around your own token service)."""

    def get_token(self) -> str:
        """Return a valid access token."""
        ...

    def invalidate(self, token: str) -> bool:
        """Drop ``token`` if it is still the current one; say whether it did."""
        ...


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

    def flow(self, *, rejected: str | None, clock: Callable[[], float]) -> TokenFlow | None:
        """The fetch as a generator of steps with no I/O (:data:`FlowStep`), which the
        sync and the async manager both drive; ``None`` (the default) when the source
        only has :meth:`fetch` (the async manager then runs that in a worker thread).
        ``rejected`` is the token a caller last reported rejected, if any."""
        return None

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

    def fetch(self, ctx: FetchContext) -> tuple[str, float]:
        flow = self.flow(rejected=ctx.rejected, clock=ctx.clock)
        assert flow is not None
        return drive(flow, ctx)

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

    def flow(self, *, rejected: str | None, clock: Callable[[], float]) -> TokenFlow:
        answer = yield classic_token_request(self.appid, self._secret, self.api_base)
        return parse_token_answer(answer, self.path)


#: WeChat allows a force refresh of a stable token at most this often (seconds)...
STABLE_FORCE_SPACING = 30.0
#: ...and at most this many times a day.
STABLE_FORCE_DAILY_LIMIT = 20


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

    def flow(self, *, rejected: str | None, clock: Callable[[], float]) -> TokenFlow:
        request = stable_token_request(self.appid, self._secret, self.api_base, force=False)
        token, expires_in = parse_token_answer((yield request), self.path)
        if rejected is None or token != rejected:
            return token, expires_in
        window = StoreWindow(
            f"{self.key}:force",
            sliding=((1, STABLE_FORCE_SPACING),),
            per_day=STABLE_FORCE_DAILY_LIMIT,
        )
        now = clock()
        raw = yield ReadMeta(window.key)
        if window.retry_after(raw, now) is not None:
            logger.warning(
                "stable_token handed back the rejected token of appid=%s and the force "
                "refresh budget (one per %.0fs, %d a day) is spent; using it as is",
                self.appid,
                STABLE_FORCE_SPACING,
                STABLE_FORCE_DAILY_LIMIT,
            )
            return token, expires_in
        yield WriteMeta(window.key, window.recorded(raw, now), RECORD_TTL)
        logger.warning(
            "stable_token handed back the rejected token of appid=%s; forcing a refresh",
            self.appid,
        )
        request = stable_token_request(self.appid, self._secret, self.api_base, force=True)
        return parse_token_answer((yield request), self.path)


#: Where the WeCom (企业微信) APIs live.
WECOM_API_BASE = "https://qyapi.weixin.qq.com"


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
        flow = self.flow(rejected=ctx.rejected, clock=ctx.clock)
        return drive(flow, ctx)

    def flow(self, *, rejected: str | None, clock: Callable[[], float]) -> TokenFlow:
        answer = yield wecom_token_request(self.appid, self._secret, self.api_base)
        return parse_token_answer(answer, self.path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(corpid={self.appid!r}, api_base={self.api_base!r})"


class CallableTokenSource(TokenSource):
    """Tokens from your own code: ``func()`` returns ``(access_token, expires_in)``
    (an ``async def`` function is awaited by :class:`~wxauth.AsyncTokenManager`).

    For companies whose tokens come from an internal central token service. Whatever
    ``func`` raises that is not a :class:`~wxauth.WxAuthError` is reported as a
    :class:`~wxauth.TokenFetchError` naming the exception type (its message is not
    copied, as it might hold a credential).
    """

    name = "custom"

    def __init__(
        self,
        appid: str,
        func: Callable[[], tuple[str, float]] | Callable[[], Awaitable[tuple[str, float]]],
        *,
        key: str | None = None,
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
            failure = self._failure(exc)
        if failure is not None:
            raise failure
        return self._read(result)

    async def afetch(self) -> tuple[str, float]:
        """:meth:`fetch` for ``async`` code: an ``async def`` callable (or one that
        returns an awaitable) is awaited; a plain one runs in a worker thread, since it
        may block (needs anyio, from ``wxauth[httpx]``)."""
        failure: TokenFetchError | None = None
        try:
            if inspect.iscoroutinefunction(self.func):
                result: Any = await self.func()
            else:
                import anyio.to_thread

                result = await anyio.to_thread.run_sync(self.func)
                if inspect.isawaitable(result):
                    result = await result
        except WxAuthError:
            raise
        except Exception as exc:
            failure = self._failure(exc)
        if failure is not None:
            raise failure
        return self._read(result)

    def _failure(self, exc: Exception) -> TokenFetchError:
        # The exception's message is not copied: it might hold a credential.
        return TokenFetchError(
            f"the token callable for appid={self.appid} raised {type(exc).__name__}"
        )

    @staticmethod
    def _read(result: Any) -> tuple[str, float]:
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
    if isinstance(spec, RemoteSource):
        return spec.for_app(appid)  # it has no appid of its own until bound
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


# At the end: RemoteSource subclasses TokenSource, defined above.
from ._remote import RemoteSource  # noqa: E402
