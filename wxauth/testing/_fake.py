"""The emulator model: :class:`FakeWeChat` holds the state and answers like WeChat.

The model knows nothing about HTTP transports. A front end (:mod:`._responses` in
process, :mod:`._server` on loopback) turns a request into a :class:`Request`, calls
:meth:`FakeWeChat.handle`, and writes the :class:`Reply` back, honouring its ``delay``
and ``hang``. Every rule the emulator follows comes from ``wechat-token-api.md``; where
WeChat's behaviour is undocumented the choice made here is named in ``docs/testing.md``.

Time is the emulator's own: it stands still until the test calls :meth:`FakeWeChat.advance`
(or follows a base clock given as ``clock=``). Give the same clock to the client under test
(``TokenManager(..., clock=fake.clock)``) so both sides agree on expiry.

This module keeps :class:`FakeWeChat` itself: its reference docstring, the constructor
that checks the options and creates the state, and its repr. The rest is inherited, one
concern a module:

- :mod:`._clock`: the clock and the controls that move it (``advance``, ...);
- :mod:`._accounts`: registering apps, WeCom applications, quotas and API answers;
- :mod:`._controls`: retiring tokens, injecting faults (``fail_next``), forgetting calls;
- :mod:`._dispatch`: :meth:`FakeWeChat.handle`, which picks the endpoint for a path;
- :mod:`._endpoints`: the rules of each endpoint family (classic, stable, WeCom, other
  API paths, quota endpoints, tickets, the Open Platform's component endpoints), on the
  state and shared steps of :mod:`._state`;
- :mod:`._component_push`: the Open Platform's encrypted pushes (verify tickets,
  authorization notices), built or POSTed to a loopback handler;
- :mod:`._inspection`: the call record, token status and ``assert_*`` helpers;
- :mod:`._frontends`: ``intercept()``, ``serve()``, ``close()`` and the context manager.

:mod:`._wire` has the request, reply and call types, :mod:`._errmsg` the errmsg texts.
Every name this module exports (``__all__``) is still importable from it.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable

from ..stores import reset_default_store
from ._accounts import Accounts
from ._clock import Clock
from ._component_push import ComponentPushes, PushDeliveryError
from ._controls import Controls
from ._dispatch import Dispatch
from ._endpoints.classic import TOKEN_PATH, ClassicTokenEndpoint
from ._endpoints.component import (
    AUTHORIZER_INFO_PATH,
    AUTHORIZER_LIST_PATH,
    AUTHORIZER_TOKEN_PATH,
    COMPONENT_TOKEN_PATH,
    PRE_AUTH_CODE_PATH,
    QUERY_AUTH_PATH,
    START_PUSH_TICKET_PATH,
    VERIFY_TICKET_OVERLAP,
    VERIFY_TICKET_TTL,
)
from ._endpoints.quota import CLEAR_QUOTA_PATH, CLEAR_QUOTA_V2_PATH, QUOTA_GET_PATH
from ._endpoints.stable import STABLE_TOKEN_PATH, StableTokenEndpoint
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
from ._state import QUOTA_DAY_UTC_OFFSET
from ._wire import Call, CallKind, Reply, Request, TokenStatus

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


class FakeWeChat(
    Clock,
    Accounts,
    Controls,
    Dispatch,
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
        self._faults = []
        self._servers = []

    def __repr__(self) -> str:
        return (
            f"FakeWeChat(apps={sorted(self._apps)!r}, "
            f"wecom={sorted({corpid for corpid, _ in self._wecom})!r}, "
            f"components={sorted(self._components)!r}, "
            f"calls={self._tally.total()}, issued_tokens={len(self._issued)})"
        )
