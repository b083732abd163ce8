"""Tickets fetched with an access token, and the JS-SDK signature check.

- ``GET /cgi-bin/ticket/getticket?access_token=T&type=jsapi|wx_card`` (Official Account
  / Mini Program): the JS-SDK ``jsapi_ticket`` or the card ``api_ticket``.
- ``GET /cgi-bin/get_jsapi_ticket?access_token=T`` (WeCom): the corporation's ticket,
  for ``wx.config``.
- ``GET /cgi-bin/ticket/get?access_token=T&type=agent_config`` (WeCom): the
  application's ticket, for ``wx.agentConfig``.

The ``access_token`` is judged by :mod:`.api` exactly as on any other path (41001,
40014, 40001 / 42001), and getticket's daily quota is an ordinary ``set_quota`` limit
(the fake's ``ticket_daily_quota``, 45009 past it). Every successful call issues a new
ticket valid for 7200 s; whether it retires the previous one is the fake's
``ticket_grace`` (``None``: never; a number: that many seconds later). A bad ``type``
answers 40097 and is not counted against the quota.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from .._wire import WECHAT_JSON, WECOM_JSON, Outcome, Reply, Request, TokenStatus, dumps
from .api import ApiEndpoint

__all__ = [
    "TICKET_DAILY_QUOTA",
    "TICKET_EXPIRES_IN",
    "TICKET_PATH",
    "TICKET_TYPES",
    "WECOM_AGENT_TICKET_PATH",
    "WECOM_JSAPI_TICKET_PATH",
    "IssuedTicket",
    "TicketEndpoints",
    "jssdk_signature",
]

#: Official Account / Mini Program tickets (``type=jsapi`` or ``type=wx_card``).
TICKET_PATH = "/cgi-bin/ticket/getticket"
#: WeCom: the corporation's jsapi ticket.
WECOM_JSAPI_TICKET_PATH = "/cgi-bin/get_jsapi_ticket"
#: WeCom: the application's ticket (``type=agent_config``).
WECOM_AGENT_TICKET_PATH = "/cgi-bin/ticket/get"
#: getticket calls allowed per account per day (the fake's default ``ticket_daily_quota``).
TICKET_DAILY_QUOTA = 100
#: The ``expires_in`` of every ticket.
TICKET_EXPIRES_IN = 7200
#: The ticket kinds: getticket's two types, WeCom's corp ticket and agent ticket.
TICKET_TYPES = frozenset({"jsapi", "wx_card", "wecom_jsapi", "agent_config"})

_TYPES_BY_PATH = {
    TICKET_PATH: frozenset({"jsapi", "wx_card"}),
    WECOM_AGENT_TICKET_PATH: frozenset({"agent_config"}),
}


def jssdk_signature(ticket: str, noncestr: str, timestamp: int | str, url: str) -> str:
    """The JS-SDK signature: sha1 of the sorted ``k=v`` fields, lower-case hex.

    ``url`` loses its ``#fragment``; values are used raw, not URL-encoded.
    """
    fields = {
        "jsapi_ticket": ticket,
        "noncestr": noncestr,
        "timestamp": str(timestamp),
        "url": url.split("#", 1)[0],
    }
    plain = "&".join(f"{key}={fields[key]}" for key in sorted(fields))
    return hashlib.sha1(plain.encode()).hexdigest()  # noqa: S324 - WeChat's algorithm


@dataclass
class IssuedTicket:
    """A ticket the emulator issued: its kind, whose it is, and when it stops working.

    ``owner`` is the appid (WeCom: the corpid); ``app`` tells a corp's applications
    apart for ``agent_config`` tickets (it is ``None`` otherwise).
    """

    value: str
    kind: str
    owner: str
    app: str | None
    issued_at: float
    expires_at: float
    retired_at: float | None = None

    def status(self, now: float) -> TokenStatus:
        """``"valid"``, ``"retired"`` or ``"expired"`` at ``now``."""
        if self.retired_at is not None and now >= self.retired_at:
            return "retired" if self.retired_at <= self.expires_at else "expired"
        return "expired" if now >= self.expires_at else "valid"

    def retire(self, at: float) -> None:
        """Stop accepting the ticket from ``at`` on (an earlier retirement stands)."""
        if self.retired_at is None or at < self.retired_at:
            self.retired_at = at


class TicketEndpoints(ApiEndpoint):
    """getticket, WeCom's get_jsapi_ticket and ticket/get, and the tickets they issued."""

    ticket_grace: float | None
    #: The fake's clock (:meth:`FakeWeChat.clock`), for the status of tickets.
    clock: Callable[[], float]
    _tickets: dict[str, IssuedTicket]
    _issued_tickets: list[str]

    def _ticket(self, path: str, request: Request, now: float) -> Outcome:
        # The ordinary API path judges the token and counts getticket's quota.
        checked = self._api(path, request, now)
        if checked.errcode != 0 or checked.owner is None or checked.token is None:
            return checked
        access = self._tokens[checked.token]
        wecom = path != TICKET_PATH
        kind = request.query.get("type", "")
        if path == WECOM_JSAPI_TICKET_PATH:
            kind = "wecom_jsapi"
        elif kind not in _TYPES_BY_PATH[path]:
            self._uncount(checked.owner, path, now)
            reply = self._wecom_error(40097, request, now) if wecom else self._error(40097, now)
            return Outcome(reply, 40097, checked.owner, checked.token)
        app = None
        if kind == "agent_config":
            # A WeCom application is its corpsecret; the token tells which one it is.
            app = next(
                (key[1] for key, record in self._wecom.items() if record.current is access),
                checked.token,
            )
        ticket = IssuedTicket(
            self._new_token_value(), kind, checked.owner, app, now, now + TICKET_EXPIRES_IN
        )
        if self.ticket_grace is not None:
            for old in self._tickets.values():
                if (old.kind, old.owner, old.app) == (kind, ticket.owner, app):
                    old.retire(now + self.ticket_grace)
        self._tickets[ticket.value] = ticket
        self._issued_tickets.append(ticket.value)
        payload = {
            "errcode": 0,
            "errmsg": "ok",
            "ticket": ticket.value,
            "expires_in": TICKET_EXPIRES_IN,
        }
        content_type = WECOM_JSON if wecom else WECHAT_JSON
        return Outcome(Reply(200, content_type, dumps(payload)), 0, ticket.owner, checked.token)

    def _uncount(self, owner: str, path: str, now: float) -> None:
        """Give back the quota a refused call took: refused calls are free."""
        app = self._apps.get(owner)
        usage = None if app is None else app.usage.get(path)
        if usage is not None and usage.period == self._day(now) and usage.used > 0:
            usage.used -= 1

    # -- inspection -----------------------------------------------------------------------

    @property
    def issued_tickets(self) -> list[str]:
        """Every ticket issued so far, oldest first (a copy)."""
        with self._lock:
            return list(self._issued_tickets)

    def latest_ticket(self, owner: str | None = None, *, kind: str | None = None) -> str | None:
        """The most recently issued ticket (of ``owner`` and ``kind``, if given)."""
        with self._lock:
            for value in reversed(self._issued_tickets):
                record = self._tickets[value]
                if owner not in (None, record.owner) or kind not in (None, record.kind):
                    continue
                return value
        return None

    def ticket_status(self, ticket: str) -> TokenStatus:
        """``"valid"``, ``"retired"``, ``"expired"`` or ``"unknown"``."""
        with self._lock:
            record = self._tickets.get(ticket)
            return "unknown" if record is None else record.status(self.clock())

    def check_jssdk_signature(
        self,
        url: str,
        noncestr: str,
        timestamp: int | str,
        signature: str,
        *,
        appid: str | None = None,
        kind: str = "jsapi",
    ) -> bool:
        """Whether ``signature`` signs this page with a ticket valid now.

        True iff ``signature`` is the JS-SDK signature (:func:`jssdk_signature`) of
        ``url`` (its ``#fragment`` dropped), ``noncestr`` and ``timestamp`` with a
        currently valid ticket of ``kind`` (``"jsapi"``, or WeCom's ``"wecom_jsapi"`` /
        ``"agent_config"``) issued to ``appid`` (an appid or corpid; any, if ``None``).
        """
        if kind not in TICKET_TYPES:
            raise ValueError(f"kind must be one of {sorted(TICKET_TYPES)}")
        with self._lock:
            now = self.clock()
            candidates = [
                t.value
                for t in self._tickets.values()
                if t.kind == kind
                and (appid is None or t.owner == appid)
                and t.status(now) == "valid"
            ]
        return any(jssdk_signature(t, noncestr, timestamp, url) == signature for t in candidates)

    jssdk_signature = staticmethod(jssdk_signature)
