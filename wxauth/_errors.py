"""The exception tree of wxauth, and helpers that read WeChat's ``errcode``.

::

    WxAuthError                      root: catch this to catch everything wxauth raises
    ├── WeChatAPIError               WeChat answered with a non-zero errcode
    │   ├── CredentialError          the appid/secret/IP/account is refused: never retried
    │   └── QuotaError               45009 daily quota, 45011 minute quota
    │       └── RefreshBudgetError   wxauth's own fetches-per-minute guard tripped
    ├── TokenFetchError              transport failure, HTTP 5xx, -1 system busy, bad body
    └── StoreError                   the token store (file, Redis) cannot be used

No exception raised by wxauth carries the appsecret or a whole access token, neither in
its message nor in its ``__cause__``/``__context__`` chain.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import requests

__all__ = [
    "CREDENTIAL_ERRCODES",
    "EXPIRED_ERRCODES",
    "QUOTA_ERRCODES",
    "RETRYABLE_ERRCODES",
    "CredentialError",
    "QuotaError",
    "RefreshBudgetError",
    "StoreError",
    "TokenFetchError",
    "WeChatAPIError",
    "WxAuthError",
    "error_for_token_endpoint",
    "raise_for_errcode",
    "register_errcode_class",
]

#: Errcodes of ordinary APIs that mean "this access_token is no longer good":
#: invalidate it, fetch a new one and re-send once.
EXPIRED_ERRCODES: frozenset[int] = frozenset({40001, 40014, 42001})

#: Errcodes of the token endpoints that mean the credentials, the caller's IP or the
#: account are refused. Retrying cannot help; a human has to act.
CREDENTIAL_ERRCODES: frozenset[int] = frozenset(
    {
        40001,  # on the token endpoint: the AppSecret is wrong
        40002,  # invalid grant_type
        40013,  # invalid appid
        40125,  # invalid appsecret
        41002,  # appid missing
        41004,  # appsecret missing
        40164,  # caller IP not in the whitelist
        40243,  # AppSecret frozen
        89503,  # risky call: the admin must confirm this IP
        89506,  # the admin refused (24 h)
        89507,  # the admin refused (1 h)
        40091,  # WeCom: invalid secret
        60020,  # WeCom: IP not in whitelist
    }
)

#: Errcodes that say a quota is used up.
QUOTA_ERRCODES: frozenset[int] = frozenset({45009, 45011})

#: Errcodes of the token endpoints that are worth a bounded retry with backoff.
RETRYABLE_ERRCODES: frozenset[int] = frozenset({-1, -1000})

_RID_RE = re.compile(r"\brid:\s*([0-9A-Za-z]+(?:-[0-9A-Za-z]+)+)")
_HINT_RE = re.compile(r"\bhint:\s*\[([^\]]+)\]")
_IP_ERRCODES = frozenset({40164, 60020})
_IP_RE = re.compile(r"(?:invalid ip|from ip:)\s*([0-9A-Fa-f.:]+[0-9A-Fa-f])")


class WxAuthError(Exception):
    """Root of every exception wxauth raises."""


class WeChatAPIError(WxAuthError):
    """WeChat answered with a non-zero ``errcode``.

    ``errcode`` and ``errmsg`` are WeChat's own; ``rid`` is the request id parsed from
    the errmsg suffix (``rid: ...`` or the older ``hint: [...]``), the value WeChat
    support asks for, or ``None`` when the message carries none.
    """

    def __init__(self, errcode: int, errmsg: str = "", *, url_path: str | None = None) -> None:
        self.errcode: int = int(errcode)
        self.errmsg: str = str(errmsg)
        self.rid: str | None = parse_rid(self.errmsg)
        self.url_path: str | None = url_path
        super().__init__(self.errcode, self.errmsg)

    def __str__(self) -> str:
        where = f" from {self.url_path}" if self.url_path else ""
        return f"WeChat errcode {self.errcode}{where}: {self.errmsg}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(errcode={self.errcode!r}, errmsg={self.errmsg!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_api_error, (type(self), self.errcode, self.errmsg, self.url_path))


def _rebuild_api_error(
    cls: type[WeChatAPIError], errcode: int, errmsg: str, url_path: str | None
) -> WeChatAPIError:
    return cls(errcode, errmsg, url_path=url_path)


class CredentialError(WeChatAPIError):
    """The token endpoint refused the appid, the secret, the caller's IP or the account.

    Never retried automatically. For 40164 (and WeCom's 60020) ``ip`` names the address
    to add to the account's IP whitelist, when WeChat said it.
    """

    @property
    def ip(self) -> str | None:
        """The caller IP WeChat reported as not whitelisted (40164, WeCom 60020)."""
        if self.errcode not in _IP_ERRCODES:
            return None  # WeCom appends "from ip: ..." to every errmsg
        match = _IP_RE.search(self.errmsg)
        return match.group(1) if match else None

    def __str__(self) -> str:
        text = super().__str__()
        ip = self.ip
        if ip:
            text += f" (add {ip} to the account's IP whitelist)"
        return text


class QuotaError(WeChatAPIError):
    """A quota is used up: WeChat's daily (45009) or minute (45011) quota, or wxauth's
    own local refresh budget (``errcode`` is then that of the minute quota, 45011)."""


class RefreshBudgetError(QuotaError):
    """wxauth refused to call WeChat: this app already fetched ``limit`` tokens within
    the last ``window`` seconds (the manager's ``max_fetches_per_minute``), or, when
    ``window`` is a day, within the current China-time day (``max_fetches_per_day``).
    A guard so that a bug or a misconfigured peer cannot burn the 2000-a-day quota.
    ``errcode`` is 45011, WeChat's own "minute quota" code, because the remedy is the
    same: wait ``retry_after`` seconds."""

    def __init__(self, appid: str, limit: int, window: float, retry_after: float) -> None:
        self.appid = appid
        self.limit = limit
        self.window = window
        self.retry_after = retry_after
        span = "today (China time)" if window >= 86400 else f"in the last {window:.0f}s"
        super().__init__(
            45011,
            f"local refresh budget spent: {limit} token fetches for appid={appid} {span}; "
            f"not calling WeChat for another {retry_after:.0f}s",
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.appid, self.limit, self.window, self.retry_after))


class TokenFetchError(WxAuthError):
    """A token could not be fetched for a reason that is not a WeChat errcode verdict:
    connection error, timeout, HTTP 5xx, a body that is not the JSON expected (an HTML
    error page, a missing ``access_token``), or ``-1 system busy`` that outlasted the
    bounded retry. ``errcode`` is set in that last case, else ``None``."""

    def __init__(self, message: str, *, errcode: int | None = None) -> None:
        self.errcode: int | None = errcode
        super().__init__(message)


class StoreError(WxAuthError):
    """The token store could not be read or written (a Redis server down, a file that
    cannot be locked). wxauth never falls back to a private fetch on its own: that would
    retire the token every other process is using."""


def parse_rid(errmsg: str) -> str | None:
    """Return the request id in a WeChat errmsg (``rid: ...`` or ``hint: [...]``)."""
    match = _RID_RE.search(errmsg) or _HINT_RE.search(errmsg)
    return match.group(1) if match else None


#: Classes that optional parts of wxauth give their own errcodes (the Open Platform its
#: 61xxx), so that every path that rebuilds an error from its errcode (the failure
#: backoff re-raising a stored failure, say) raises the same type as the first time.
_REGISTERED_CLASSES: dict[int, type[WeChatAPIError]] = {}


def register_errcode_class(errcode: int, cls: type[WeChatAPIError]) -> None:
    """Make :func:`error_for_token_endpoint` raise ``cls`` for ``errcode`` (for a part
    of wxauth with errcodes of its own; ``cls`` takes ``(errcode, errmsg, *,
    url_path=None)``)."""
    if not (isinstance(cls, type) and issubclass(cls, WeChatAPIError)):
        raise TypeError("cls must be a subclass of WeChatAPIError")
    _REGISTERED_CLASSES[int(errcode)] = cls


def error_for_token_endpoint(
    errcode: int, errmsg: str, *, url_path: str | None = None
) -> WeChatAPIError:
    """Map an errcode returned *by a token endpoint* onto the exception tree."""
    cls: type[WeChatAPIError]
    registered = _REGISTERED_CLASSES.get(errcode)
    if registered is not None:
        cls = registered
    elif errcode in CREDENTIAL_ERRCODES:
        cls = CredentialError
    elif errcode in QUOTA_ERRCODES:
        cls = QuotaError
    else:
        cls = WeChatAPIError
    return cls(errcode, errmsg, url_path=url_path)


def _decode(obj: Mapping[str, Any] | requests.Response) -> dict[str, Any]:
    if isinstance(obj, requests.Response):
        try:
            data = json.loads(obj.content)
        except ValueError:
            content_type = obj.headers.get("Content-Type", "?")
            message = (
                f"expected a JSON object from WeChat, got HTTP {obj.status_code} "
                f"with Content-Type {content_type!r} that does not decode as JSON"
            )
            raise WxAuthError(message) from None
        if not isinstance(data, dict):
            raise WxAuthError(f"expected a JSON object from WeChat, got {type(data).__name__}")
        return data
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"raise_for_errcode() takes a dict or a requests.Response, not {type(obj)!r}")


def raise_for_errcode(obj: Mapping[str, Any] | requests.Response) -> dict[str, Any]:
    """Raise :class:`WeChatAPIError` if ``obj`` carries a non-zero ``errcode``.

    ``obj`` is a decoded WeChat answer or a :class:`requests.Response`. Returns the
    decoded dict when there is no error (a missing ``errcode`` counts as success, as
    most WeChat APIs omit it on success). 45009 and 45011 raise :class:`QuotaError`.
    """
    data = _decode(obj)
    errcode = data.get("errcode", 0)
    try:
        code = int(errcode or 0)
    except (TypeError, ValueError):
        raise WxAuthError(f"WeChat answered a non-numeric errcode {errcode!r}") from None
    if code != 0:
        errmsg = str(data.get("errmsg", ""))
        cls = QuotaError if code in QUOTA_ERRCODES else WeChatAPIError
        raise cls(code, errmsg)
    return data
