"""The levers a test pulls on a running emulator: retire tokens, inject faults, forget calls.

:meth:`Controls.retire_all` and :meth:`Controls.retire` end tokens early, as another
server's fetch or WeCom would. :meth:`Controls.fail_next` queues faults (an errcode, an
HTTP error page, an HTML page, a hang) that the next matching requests meet before any
other rule: :meth:`FakeWeChat.handle <wxauth.testing.FakeWeChat.handle>` takes the first
matching one with :meth:`Controls._take_fault` and answers it with
:meth:`Controls._fault_outcome`. :meth:`Controls.reset_calls` empties the call record.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from ._endpoints.wecom import WECOM_TOKEN_PATH
from ._state import EmulatorState
from ._wire import (
    COMPONENT_KINDS,
    TOKEN_KINDS,
    Call,
    CallKind,
    Outcome,
    Reply,
    Request,
    html_reply,
    normalize_path,
)

__all__ = ["Controls"]

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


class Controls(EmulatorState):
    """The controls of :class:`~wxauth.testing.FakeWeChat`: retire, fail, forget."""

    _faults: list[_Fault]
    _calls: deque[Call]
    _tally: Counter[tuple[CallKind, str, int | None]]
    _tally_keys: dict[tuple[CallKind, str, int | None], tuple[CallKind, str, int | None]]
    _tally_by_owner: dict[str | None, Counter[tuple[CallKind, str, int | None]]]

    #: The fake's clock (:meth:`FakeWeChat.clock`), for when a token is retired.
    clock: Callable[[], float]

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

    # The two steps of FakeWeChat.handle below run with self._lock held.

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
