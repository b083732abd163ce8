"""The emulator's records, and the helpers every endpoint family shares.

:class:`EmulatorState` declares what a :class:`~wxauth.testing.FakeWeChat` keeps
(accounts, issued tokens, registered answers, the random source) and the steps the
endpoint families in :mod:`._endpoints` have in common: issue a token, count a call
against a quota, check an app's credentials, write an error. The endpoint families,
:mod:`._inspection` and :mod:`._frontends` are mixins on this class; ``FakeWeChat``
inherits them all and creates the state in its ``__init__``. Every helper runs with the
fake's lock held.

The quota calendar lives here too: daily quotas reset at midnight Beijing time, and the
clear_quota budget is counted per calendar month in the same zone.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import random
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from ._errmsg import ip_not_in_whitelist, wechat_errmsg, wecom_errmsg
from ._wire import (
    WECHAT_JSON,
    WECOM_JSON,
    CallKind,
    Outcome,
    Reply,
    Request,
    TokenStatus,
    dumps,
    json_object,
    ok_body,
)

__all__ = [
    "QUOTA_DAY_UTC_OFFSET",
    "Answer",
    "App",
    "EmulatorState",
    "IssuedToken",
    "QuotaHolder",
    "Usage",
    "WeComApp",
]

#: The quota day and month follow this UTC offset (Beijing time): the undocumented reset
#: hour is taken to be midnight in China.
QUOTA_DAY_UTC_OFFSET = 8 * 3600

_DAY = 86400.0
_BEIJING = datetime.timezone(datetime.timedelta(seconds=QUOTA_DAY_UTC_OFFSET))


@dataclass(slots=True)
class IssuedToken:
    """A token the emulator issued: whose it is, and when it expires or was retired.

    Slotted: an Open Platform fleet makes millions of them.
    """

    value: str
    kind: CallKind
    owner: str
    issued_at: float
    expires_at: float
    retired_at: float | None = None

    def status(self, now: float) -> TokenStatus:
        """``"valid"``, ``"retired"`` (40001) or ``"expired"`` (42001) at ``now``."""
        # Whichever happened first decides the answer: retired (40001) or expired (42001).
        retired = self.retired_at is not None and self.retired_at <= self.expires_at
        if retired and self.retired_at is not None and now >= self.retired_at:
            return "retired"
        if now >= self.expires_at:
            return "expired"
        return "valid"

    def retire(self, at: float) -> None:
        """Stop accepting the token from ``at`` on (an earlier retirement stands)."""
        if self.retired_at is None or at < self.retired_at:
            self.retired_at = at


@dataclass
class Usage:
    """Calls counted in one period (a quota day, minute or month)."""

    period: int = -1
    used: int = 0

    def current(self, period: int) -> int:
        """Calls counted in ``period`` (0 once a new period began)."""
        return self.used if period == self.period else 0

    def add(self, period: int) -> None:
        """Count one call in ``period``, starting afresh if it is a new one."""
        if period != self.period:
            self.period, self.used = period, 0
        self.used += 1


class QuotaHolder(Protocol):
    """Whatever has daily quotas: an :class:`App`, or an Open Platform component."""

    quotas: dict[str, int]
    usage: dict[str, Usage]


@dataclass
class App:
    """An Official Account / Mini Program: credentials, quotas and its stable token."""

    appid: str
    secret: str
    ip_allowlist: frozenset[str] | None
    quotas: dict[str, int]
    usage: dict[str, Usage] = field(default_factory=dict)
    minute_usage: Usage = field(default_factory=Usage)
    clear_usage: Usage = field(default_factory=Usage)
    force_usage: Usage = field(default_factory=Usage)
    last_force: float | None = None
    stable: IssuedToken | None = None


@dataclass
class WeComApp:
    """One WeCom application (one corpsecret of a corpid) and its current token."""

    corpid: str
    corpsecret: str
    ip_allowlist: frozenset[str] | None
    current: IssuedToken | None = None


@dataclass(frozen=True)
class Answer:
    """What :meth:`FakeWeChat.add_api` registered for an API path."""

    status: int
    content_type: str
    body: bytes


class EmulatorState:
    """The state a :class:`~wxauth.testing.FakeWeChat` keeps, and the shared rules.

    The attributes are created by ``FakeWeChat.__init__``; this class only declares
    them, so that the endpoint mixins are type-checked against the same state.
    """

    grace: float
    expires_in: int
    wrong_secret_errcode: int
    forget_tokens_after: float | None
    _lock: threading.Lock
    _rng: random.Random
    _apps: dict[str, App]
    _wecom: dict[tuple[str, str], WeComApp]
    _tokens: dict[str, IssuedToken]
    _issued: deque[str]
    _answers: dict[str, Answer]

    def _app(self, appid: str) -> App:
        try:
            return self._apps[appid]
        except KeyError:
            raise ValueError(f"no app {appid!r} is registered") from None

    def _quota_holder(self, appid: str) -> QuotaHolder:
        """The account whose quotas ``set_quota`` / ``quota_used`` name (an app here; the
        Open Platform mixin adds components)."""
        return self._app(appid)

    @staticmethod
    def _day(now: float) -> int:
        return int((now + QUOTA_DAY_UTC_OFFSET) // _DAY)

    @staticmethod
    def _seconds_to_next_day(now: float) -> float:
        return _DAY - ((now + QUOTA_DAY_UTC_OFFSET) % _DAY)

    @staticmethod
    def _month(now: float) -> int:
        when = datetime.datetime.fromtimestamp(now, tz=_BEIJING)
        return when.year * 12 + when.month

    def _rid(self, now: float) -> str:
        return f"{int(now) & 0xFFFFFFFF:08x}-{self._rng.getrandbits(32):08x}-" + (
            f"{self._rng.getrandbits(32):08x}"
        )

    def _new_token_value(self) -> str:
        raw = self._rng.getrandbits(102 * 8).to_bytes(102, "big")
        return f"{self._rng.randint(70, 99)}_" + base64.urlsafe_b64encode(raw).decode()

    def _issue(self, kind: CallKind, owner: str, now: float) -> IssuedToken:
        token = IssuedToken(self._new_token_value(), kind, owner, now, now + self.expires_in)
        self._tokens[token.value] = token
        self._issued.append(token.value)
        if self.forget_tokens_after is not None:
            self._forget_dead_tokens(now - self.forget_tokens_after)
        return token

    def _forget_dead_tokens(self, horizon: float) -> None:
        """Drop the oldest tokens that expired before ``horizon`` (they become unknown).

        Tokens are dropped in the order they were issued, so this stops at the first one
        still remembered: O(1) per token issued, amortized.
        """
        issued, tokens = self._issued, self._tokens
        while issued:
            record = tokens.get(issued[0])
            if record is not None and record.expires_at > horizon:
                break
            issued.popleft()
            if record is not None:
                del tokens[record.value]

    def _error(self, errcode: int, now: float, text: str | None = None) -> Reply:
        payload = {"errcode": errcode, "errmsg": wechat_errmsg(errcode, self._rid(now), text)}
        return Reply(200, WECHAT_JSON, dumps(payload))

    def _fail(
        self, errcode: int, now: float, owner: str | None = None, text: str | None = None
    ) -> Outcome:
        return Outcome(self._error(errcode, now, text), errcode, owner)

    def _wecom_error(
        self, errcode: int, request: Request, now: float, text: str | None = None
    ) -> Reply:
        hint = f"{int(now * 1000)}{self._rng.randrange(10**12):012d}"
        errmsg = wecom_errmsg(errcode, hint, request.client_ip, text)
        return Reply(200, WECOM_JSON, dumps({"errcode": errcode, "errmsg": errmsg}))

    def _json_post(
        self, request: Request, now: float, owner: str | None = None
    ) -> dict[str, Any] | Outcome:
        """The JSON object a POST-only endpoint was sent, or its 43002 / 47001 answer."""
        if request.method != "POST":
            return self._fail(43002, now, owner)
        body = json_object(request)
        if body is None:
            return self._fail(47001, now, owner)
        return body

    @staticmethod
    def _ip_allowed(allowlist: frozenset[str] | None, ip: str) -> bool:
        return allowlist is None or ip in allowlist

    def _quota_ok(self, app: QuotaHolder, path: str, now: float) -> bool:
        """Count one call of ``path`` against ``app``'s daily quota, if there is room."""
        limit = app.quotas.get(path)
        usage = app.usage.setdefault(path, Usage())
        day = self._day(now)
        if limit is not None and usage.current(day) >= limit:
            return False
        usage.add(day)
        return True

    def _check_app(
        self, appid: str | None, secret: str | None, grant_type: Any, request: Request, now: float
    ) -> App | Outcome:
        """The credential checks of both WeChat token endpoints, in WeChat's order."""
        if grant_type != "client_credential":
            return self._fail(40002, now, appid)
        if not appid:
            return self._fail(41002, now)
        if not secret:
            return self._fail(41004, now, appid)
        app = self._apps.get(appid)
        if app is None:
            return self._fail(40013, now, appid)
        if secret != app.secret:
            return self._fail(self.wrong_secret_errcode, now, appid)
        if not self._ip_allowed(app.ip_allowlist, request.client_ip):
            return self._fail(40164, now, appid, ip_not_in_whitelist(request.client_ip))
        return app

    def _canned_answer(
        self, path: str, owner: str | None, token: str | None, *, wecom: bool = False
    ) -> Outcome:
        """The answer :meth:`FakeWeChat.add_api` registered for ``path``, else ``ok``."""
        answer = self._answers.get(path)
        if answer is None:
            reply = Reply(200, WECOM_JSON if wecom else WECHAT_JSON, ok_body())
            return Outcome(reply, 0, owner, token)
        errcode = 0 if answer.status < 400 else None
        if "json" in answer.content_type:
            with contextlib.suppress(ValueError):
                decoded = json.loads(answer.body)
                if isinstance(decoded, dict) and isinstance(decoded.get("errcode"), int):
                    errcode = decoded["errcode"]
        reply = Reply(answer.status, answer.content_type, answer.body)
        return Outcome(reply, errcode, owner, token)

    def _token_reply(self, token: IssuedToken, now: float, *, remaining: bool) -> Outcome:
        """A WeChat token answer: a fresh ``expires_in``, or the token's remaining life."""
        expires_in = int(token.expires_at - now) if remaining else self.expires_in
        payload = {"access_token": token.value, "expires_in": expires_in}
        return Outcome(Reply(200, WECHAT_JSON, dumps(payload)), 0, token.owner, token.value)
