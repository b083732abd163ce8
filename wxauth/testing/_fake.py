"""The emulator model: :class:`FakeWeChat` holds the state and answers like WeChat.

The model knows nothing about HTTP transports. A front end (:mod:`._responses` in
process, :mod:`._server` on loopback) turns a request into a :class:`Request`, calls
:meth:`FakeWeChat.handle`, and writes the :class:`Reply` back, honouring its ``delay``
and ``hang``. Every rule the emulator follows comes from ``wechat-token-api.md``; where
WeChat's behaviour is undocumented the choice made here is named in ``docs/testing.md``.

Time is the emulator's own: it stands still until the test calls :meth:`FakeWeChat.advance`
(or follows a base clock given as ``clock=``). Give the same clock to the client under test
(``TokenManager(..., clock=fake.clock)``) so both sides agree on expiry.

This module keeps what belongs to the fake as a whole: its state and configuration, the
clock, accounts, controls, fault injection, and :meth:`FakeWeChat.handle`, which picks
the endpoint for a path. The rest is inherited, one concern a module:

- :mod:`._endpoints`: the rules of each endpoint family (classic, stable, WeCom, other
  API paths, quota endpoints, tickets, the Open Platform's component endpoints), on the
  state and shared steps of :mod:`._state`;
- :mod:`._component_push`: the Open Platform's encrypted pushes (verify tickets,
  authorization notices), built or POSTed to a loopback handler;
- :mod:`._inspection`: the call record, token status and ``assert_*`` helpers;
- :mod:`._frontends`: ``intercept()``, ``serve()`` and ``close()``.

:mod:`._wire` has the request, reply and call types, :mod:`._errmsg` the errmsg texts.
Every name this module exported before the split is still importable from it.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..stores import reset_default_store
from ._component_push import ComponentPushes, PushDeliveryError
from ._endpoints.classic import TOKEN_PATH, ClassicTokenEndpoint
from ._endpoints.component import (
    AUTHORIZER_INFO_PATH,
    AUTHORIZER_LIST_PATH,
    AUTHORIZER_TOKEN_PATH,
    COMPONENT_KIND_BY_PATH,
    COMPONENT_TOKEN_PATH,
    PRE_AUTH_CODE_PATH,
    QUERY_AUTH_PATH,
    START_PUSH_TICKET_PATH,
    VERIFY_TICKET_OVERLAP,
    VERIFY_TICKET_TTL,
    component_kind,
)
from ._endpoints.quota import CLEAR_QUOTA_PATH, CLEAR_QUOTA_V2_PATH, QUOTA_GET_PATH
from ._endpoints.stable import STABLE_DAILY_QUOTA, STABLE_TOKEN_PATH, StableTokenEndpoint
from ._endpoints.ticket import (
    TICKET_DAILY_QUOTA,
    TICKET_PATH,
    WECOM_AGENT_TICKET_PATH,
    WECOM_JSAPI_TICKET_PATH,
    TicketEndpoints,
)
from ._endpoints.wecom import WECOM_TOKEN_PATH, WeComTokenEndpoint
from ._frontends import FrontEnds
from ._inspection import Inspection
from ._state import QUOTA_DAY_UTC_OFFSET, Answer, App, WeComApp
from ._wire import (
    COMPONENT_KINDS,
    TOKEN_KINDS,
    WECHAT_JSON,
    Call,
    CallKind,
    Outcome,
    Reply,
    Request,
    TokenStatus,
    dumps,
    html_reply,
    normalize_path,
)

__all__ = [
    "AUTHORIZER_INFO_PATH",
    "AUTHORIZER_LIST_PATH",
    "AUTHORIZER_TOKEN_PATH",
    "CLEAR_QUOTA_PATH",
    "CLEAR_QUOTA_V2_PATH",
    "COMPONENT_TOKEN_PATH",
    "DEFAULT_DAILY_QUOTA",
    "DEFAULT_EXPIRES_IN",
    "DEFAULT_GRACE",
    "PRE_AUTH_CODE_PATH",
    "QUERY_AUTH_PATH",
    "QUOTA_DAY_UTC_OFFSET",
    "QUOTA_GET_PATH",
    "STABLE_TOKEN_PATH",
    "START_PUSH_TICKET_PATH",
    "TICKET_DAILY_QUOTA",
    "TICKET_PATH",
    "TOKEN_PATH",
    "VERIFY_TICKET_OVERLAP",
    "VERIFY_TICKET_TTL",
    "WECOM_AGENT_TICKET_PATH",
    "WECOM_JSAPI_TICKET_PATH",
    "WECOM_TOKEN_PATH",
    "Call",
    "CallKind",
    "FakeWeChat",
    "PushDeliveryError",
    "Reply",
    "Request",
    "TokenStatus",
]

#: Seconds an old classic token keeps working after a new one is issued.
DEFAULT_GRACE = 300.0
#: The ``expires_in`` of a new token.
DEFAULT_EXPIRES_IN = 7200
#: Classic token fetches allowed per account per day.
DEFAULT_DAILY_QUOTA = 2000

_KIND_BY_PATH: Mapping[str, CallKind] = {
    TOKEN_PATH: "token",
    STABLE_TOKEN_PATH: "stable_token",
    WECOM_TOKEN_PATH: "wecom_token",
    TICKET_PATH: "ticket",
    WECOM_JSAPI_TICKET_PATH: "ticket",
    WECOM_AGENT_TICKET_PATH: "ticket",
    **COMPONENT_KIND_BY_PATH,
}
#: What ``fail_next(on=...)`` accepts besides a path: groups and single call kinds.
_FAULT_TARGETS = frozenset(
    {"token", "api", "any", "component"} | (TOKEN_KINDS - {"token"}) | COMPONENT_KINDS | {"ticket"}
)


@dataclass
class _Fault:
    on: str
    remaining: int
    errcode: int | None
    errmsg: str | None
    status: int | None
    html: bool
    hang: float | None

    def matches(self, path: str, kind: CallKind) -> bool:
        if self.on == "any":
            return True
        if self.on == "token":
            return kind in TOKEN_KINDS
        if self.on == "component":
            return kind in COMPONENT_KINDS
        if self.on in _FAULT_TARGETS:
            return kind == self.on
        return self.on == path

    @property
    def label(self) -> str:
        if self.hang is not None:
            return f"hang {self.hang:g}s"
        if self.errcode is not None:
            return f"errcode {self.errcode}"
        if self.status is not None:
            return f"http {self.status}"
        return "html"


class FakeWeChat(
    ClassicTokenEndpoint,
    StableTokenEndpoint,
    WeComTokenEndpoint,
    TicketEndpoints,
    ComponentPushes,
    Inspection,
    FrontEnds,
):
    """An in-memory WeChat (and WeCom) token server, faithful to the documented rules.

    Register accounts with :meth:`add_app` / :meth:`add_wecom_app`, then reach the model
    through a front end: :meth:`intercept` (in process, on ``responses``) or :meth:`serve`
    (a real HTTP server on ``127.0.0.1``). Move time with :meth:`advance`; inspect
    :attr:`calls`, :attr:`issued_tokens` and the ``assert_*`` helpers.

    :param start: epoch seconds the frozen clock starts at (default: ``time.time()`` now).
    :param clock: a base clock to follow instead of a frozen one (e.g. ``time.time`` for a
        standalone server); :meth:`advance` still adds to it. Exclusive with ``start``.
    :param grace: seconds an old classic token keeps working after a new fetch.
    :param expires_in: ``expires_in`` of every new token.
    :param daily_quota: classic token fetches per account per day (2000; 200 for test
        accounts); :meth:`add_app` can override it per account.
    :param token_latency: seconds every token endpoint waits before answering.
    :param wrong_secret_errcode: what ``/cgi-bin/token`` and ``stable_token`` answer to a
        wrong secret: 40125 (``invalid appsecret``, default) or 40001, both seen in the wild.
    :param ticket_daily_quota: ``ticket/getticket`` calls per account per day (45009
        past it); ``set_quota(appid, TICKET_PATH, n)`` overrides it per account.
    :param ticket_grace: seconds a ticket keeps working after a newer one of the same
        kind is issued to the same account; ``None`` (default): until it expires.
    :param verify_ticket_ttl: seconds an Open Platform ``component_verify_ticket`` is
        accepted (12 h).
    :param verify_ticket_overlap: seconds a verify ticket is still accepted after a
        newer one was issued (600; undocumented), then 61006.
    :param rotate_refresh_tokens: whether ``api_authorizer_token`` returns a new
        ``authorizer_refresh_token`` each time (the old one then works ``grace`` more
        seconds); ``False`` (default, as documented) echoes the current one.
    :param component_wrong_secret_errcode: what the component endpoints answer to a wrong
        component secret: 40001 (default, as seen) or 40125.
    :param call_history: how many :class:`Call` records :attr:`calls` keeps: ``None``
        (default) all, ``N`` the latest N, ``0`` none. Counts (:meth:`count`,
        :meth:`errcodes`, the ``assert_*`` helpers) always cover every call.
    :param forget_tokens_after: forget a token this many seconds after it expired (it
        then answers 40014, as a token never issued, and leaves :attr:`issued_tokens`);
        ``None`` (default) remembers every token. For long runs with many accounts
        (an Open Platform fleet issues 1.3 million authorizer tokens a day).
    :param seed: makes tokens, tickets and rids reproducible.

    All methods are thread-safe: one lock guards the state, and waits (latency, hangs)
    happen outside it. :meth:`close` releases every wait and stops the servers.

    A new emulator is a new WeChat: building one empties the process-wide default store
    (:func:`wxauth.reset_default_store`), so managers built without ``store=`` never
    serve a token that an earlier emulator issued.
    """

    def __init__(
        self,
        *,
        start: float | None = None,
        clock: Callable[[], float] | None = None,
        grace: float = DEFAULT_GRACE,
        expires_in: int = DEFAULT_EXPIRES_IN,
        daily_quota: int = DEFAULT_DAILY_QUOTA,
        token_latency: float = 0.0,
        wrong_secret_errcode: int = 40125,
        ticket_daily_quota: int = TICKET_DAILY_QUOTA,
        ticket_grace: float | None = None,
        verify_ticket_ttl: float = VERIFY_TICKET_TTL,
        verify_ticket_overlap: float = VERIFY_TICKET_OVERLAP,
        rotate_refresh_tokens: bool = False,
        component_wrong_secret_errcode: int = 40001,
        call_history: int | None = None,
        forget_tokens_after: float | None = None,
        seed: int | None = None,
    ) -> None:
        if start is not None and clock is not None:
            raise ValueError("give either start= (a frozen clock) or clock=, not both")
        if wrong_secret_errcode not in (40125, 40001):
            raise ValueError("wrong_secret_errcode must be 40125 or 40001")
        if component_wrong_secret_errcode not in (40125, 40001):
            raise ValueError("component_wrong_secret_errcode must be 40125 or 40001")
        if call_history is not None and call_history < 0:
            raise ValueError("call_history must be None or at least 0")
        if forget_tokens_after is not None and forget_tokens_after < 0:
            raise ValueError("forget_tokens_after must be None or at least 0")
        reset_default_store()
        self.grace = float(grace)
        self.expires_in = int(expires_in)
        self.daily_quota = int(daily_quota)
        self.token_latency = float(token_latency)
        self.wrong_secret_errcode = wrong_secret_errcode
        self.ticket_daily_quota = int(ticket_daily_quota)
        self.ticket_grace = None if ticket_grace is None else float(ticket_grace)
        self.verify_ticket_ttl = float(verify_ticket_ttl)
        self.verify_ticket_overlap = float(verify_ticket_overlap)
        self.rotate_refresh_tokens = bool(rotate_refresh_tokens)
        self.component_wrong_secret_errcode = component_wrong_secret_errcode
        self.forget_tokens_after = (
            None if forget_tokens_after is None else float(forget_tokens_after)
        )
        self._base_clock = clock
        self._frozen = time.time() if start is None else float(start)
        self._offset = 0.0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._apps = {}
        self._wecom = {}
        self._tokens = {}
        self._issued = deque()
        self._tickets = {}
        self._issued_tickets = []
        self._calls = deque(maxlen=call_history)
        self._tally = Counter()
        self._tally_by_owner = {}
        self._tally_keys = {}
        self._components = {}
        self._answers = {}
        self._faults: list[_Fault] = []
        self._servers = []

    def __repr__(self) -> str:
        return (
            f"FakeWeChat(apps={sorted(self._apps)!r}, "
            f"wecom={sorted({corpid for corpid, _ in self._wecom})!r}, "
            f"components={sorted(self._components)!r}, "
            f"calls={self._tally.total()}, issued_tokens={len(self._issued)})"
        )

    # -- clock ---------------------------------------------------------------------------

    def clock(self) -> float:
        """The emulator's time in epoch seconds; pass ``fake.clock`` to the client."""
        base = self._base_clock() if self._base_clock is not None else self._frozen
        return base + self._offset

    def advance(self, seconds: float) -> float:
        """Move the emulator clock forward by ``seconds``; returns the new time."""
        if seconds < 0:
            raise ValueError("the emulator clock only moves forward")
        with self._lock:
            self._offset += float(seconds)
        return self.clock()

    def seconds_to_next_day(self) -> float:
        """Seconds until the daily quotas reset (midnight Beijing time, emulator clock)."""
        return self._seconds_to_next_day(self.clock())

    def advance_to_next_day(self) -> float:
        """Move the clock to the next quota reset; returns the new time."""
        return self.advance(self.seconds_to_next_day())

    # -- accounts ------------------------------------------------------------------------

    def add_app(
        self,
        appid: str,
        secret: str,
        *,
        ip_allowlist: Iterable[str] | None = None,
        daily_quota: int | None = None,
    ) -> None:
        """Register an Official Account / Mini Program.

        :param ip_allowlist: caller IPs allowed to fetch tokens; others get 40164.
            ``None`` (default) allows every IP.
        :param daily_quota: classic token fetches a day for this account (e.g. 200 for a
            test account); default: the emulator's ``daily_quota``.
        """
        quotas = {
            TOKEN_PATH: self.daily_quota if daily_quota is None else int(daily_quota),
            STABLE_TOKEN_PATH: STABLE_DAILY_QUOTA,
            TICKET_PATH: self.ticket_daily_quota,
        }
        allow = None if ip_allowlist is None else frozenset(ip_allowlist)
        with self._lock:
            if appid in self._apps or appid in self._components:
                raise ValueError(f"app {appid!r} is already registered")
            self._apps[appid] = App(appid, secret, allow, quotas)

    def add_wecom_app(
        self, corpid: str, corpsecret: str, *, ip_allowlist: Iterable[str] | None = None
    ) -> None:
        """Register one WeCom application (one corpsecret) of corporation ``corpid``.

        Call again with another ``corpsecret`` for each application: each has its own token.
        :param ip_allowlist: trusted caller IPs; others get 60020. ``None`` allows all.
        """
        allow = None if ip_allowlist is None else frozenset(ip_allowlist)
        with self._lock:
            if (corpid, corpsecret) in self._wecom:
                raise ValueError(f"this WeCom application of {corpid!r} is already registered")
            self._wecom[(corpid, corpsecret)] = WeComApp(corpid, corpsecret, allow)

    def set_quota(self, appid: str, path: str, daily_limit: int) -> None:
        """Set the daily limit of one API path for one account (``45009`` past it).

        Token endpoints have limits by default; any other path is unlimited (and unknown
        to ``openapi/quota/get``) until given one here. ``appid`` may be a component's:
        its ``/cgi-bin/component/`` endpoints count per component (api_component_token:
        10000 a day by default, the others unlimited).
        """
        with self._lock:
            self._quota_holder(appid).quotas[normalize_path(path)] = int(daily_limit)

    def add_api(
        self,
        path: str,
        *,
        json: Any = None,
        body: bytes | None = None,
        content_type: str | None = None,
        status: int = 200,
    ) -> None:
        """Register the answer of an API path once its ``access_token`` passed the check.

        Give ``json`` (any JSON-serialisable value) or ``body`` bytes with their
        ``content_type`` (e.g. ``image/jpeg`` for ``cgi-bin/media/get``). Unregistered
        paths answer ``{"errcode":0,"errmsg":"ok"}``.
        """
        path = normalize_path(path)
        if path in _KIND_BY_PATH or path in (CLEAR_QUOTA_PATH, CLEAR_QUOTA_V2_PATH):
            # (an unmodelled /cgi-bin/component/ path is fine: its answer follows the
            # component token check)
            raise ValueError(f"{path} is emulated by FakeWeChat itself")
        if (json is None) == (body is None):
            raise ValueError("give exactly one of json= and body=")
        if body is not None:
            answer = Answer(status, content_type or "application/octet-stream", bytes(body))
        else:
            encoded = dumps(json)
            answer = Answer(status, content_type or WECHAT_JSON, encoded)
        with self._lock:
            self._answers[path] = answer

    # -- controls ------------------------------------------------------------------------

    def retire_all(self, *, grace: float = 0.0) -> int:
        """Retire every live token, as if another server had just fetched new ones.

        With the default ``grace=0`` the next API call with any of them answers 40001
        (WeCom: 40014); give ``grace=300`` to mimic the classic endpoint's 5 minutes.
        stable_token and WeCom then issue a new token on the next normal call. Returns
        how many tokens were retired.
        """
        with self._lock:
            now = self.clock()
            live = [t for t in self._tokens.values() if t.status(now) == "valid"]
            for token in live:
                token.retire(now + grace)
            return len(live)

    def retire(self, token: str, *, grace: float = 0.0) -> None:
        """Retire one token (e.g. "WeCom invalidated it early")."""
        with self._lock:
            record = self._tokens.get(token)
            if record is None:
                raise ValueError("this token was not issued by this emulator")
            record.retire(self.clock() + grace)

    def fail_next(
        self,
        times: int = 1,
        *,
        on: str = "token",
        errcode: int | None = None,
        errmsg: str | None = None,
        status: int | None = None,
        html: bool = False,
        hang: float | None = None,
    ) -> None:
        """Make the next ``times`` matching requests fail, before any other rule applies.

        :param on: ``"token"`` (any token endpoint, component and authorizer tokens
            included), ``"api"`` (any path no family models), ``"component"`` (any
            ``/cgi-bin/component/`` path), one call kind (``"stable_token"``,
            ``"wecom_token"``, ``"ticket"``, ``"component_token"``, ``"authorizer_token"``,
            ``"component_api"``), ``"any"``, or one path such as
            ``"/cgi-bin/message/custom/send"``.
        :param errcode: answer HTTP 200 JSON with this errcode (and ``errmsg``, default
            WeChat's text for it), e.g. ``-1`` system busy or ``45011``.
        :param status: answer this HTTP status (e.g. 502) with an nginx HTML page.
        :param html: answer HTTP 200 with an HTML page (a proxy or captive portal).
        :param hang: do not answer for this many seconds (the loopback server then sends
            504; released early by :meth:`close`); the in-process front end raises
            ``requests.exceptions.ReadTimeout`` at once.

        Faults queue up in order; each request consumes at most one.
        """
        chosen = [errcode is not None, status is not None or html, hang is not None]
        if sum(chosen) != 1:
            raise ValueError("give exactly one of errcode=, status=/html=, hang=")
        if times < 1:
            raise ValueError("times must be at least 1")
        if on not in _FAULT_TARGETS:
            on = normalize_path(on)
        fault = _Fault(on, times, errcode, errmsg, status, html, hang)
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        """Drop every pending injected fault."""
        with self._lock:
            self._faults.clear()

    def reset_calls(self) -> None:
        """Forget the recorded calls and their counts (tokens, quotas and clock are kept)."""
        with self._lock:
            self._calls.clear()
            self._tally.clear()
            self._tally_by_owner.clear()
            self._tally_keys.clear()

    # -- the model -----------------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        """Answer one request as WeChat would, and record it in :attr:`calls`."""
        path = normalize_path(request.path)
        kind = _KIND_BY_PATH.get(path) or component_kind(path) or "api"
        with self._lock:
            now = self.clock()
            fault = self._take_fault(path, kind)
            if fault is not None:
                outcome = self._fault_outcome(fault, path, request, now)
            elif kind == "token":
                outcome = self._component_on_classic(request, now) or self._classic_token(
                    request, now
                )
            elif kind == "stable_token":
                outcome = self._stable_token(request, now)
            elif kind == "wecom_token":
                outcome = self._wecom_token(request, now)
            elif kind == "ticket":
                outcome = self._ticket(path, request, now)
            elif kind in COMPONENT_KINDS:
                outcome = self._component(path, request, now)
            else:
                outcome = self._api(path, request, now)
            self._record(
                Call(
                    time=now,
                    method=request.method,
                    path=path,
                    kind=kind,
                    status=outcome.reply.status,
                    errcode=outcome.errcode,
                    owner=outcome.owner,
                    token=outcome.token,
                    client_ip=request.client_ip,
                    fault=None if fault is None else fault.label,
                )
            )
        reply = outcome.reply
        if kind in TOKEN_KINDS and self.token_latency > 0:
            reply = Reply(
                reply.status, reply.content_type, reply.body, self.token_latency, reply.hang
            )
        return reply

    # Everything below runs with self._lock held.

    def _take_fault(self, path: str, kind: CallKind) -> _Fault | None:
        for fault in self._faults:
            if fault.matches(path, kind):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _fault_outcome(self, fault: _Fault, path: str, request: Request, now: float) -> Outcome:
        if fault.hang is not None:
            page = html_reply(504)
            return Outcome(Reply(504, page.content_type, page.body, hang=fault.hang), None)
        if fault.errcode is not None:
            if path == WECOM_TOKEN_PATH:
                reply = self._wecom_error(fault.errcode, request, now, fault.errmsg)
            else:
                reply = self._error(fault.errcode, now, fault.errmsg)
            return Outcome(reply, fault.errcode)
        return Outcome(html_reply(fault.status if fault.status is not None else 200), None)
