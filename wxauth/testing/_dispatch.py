"""One request in, one reply out: :meth:`Dispatch.handle` picks the rule for a path.

Every front end calls :meth:`Dispatch.handle`. With the fake's lock held it reads the
clock once, lets a fault queued by ``fail_next`` (:mod:`._controls`) answer first, else
hands the request to the endpoint family its path belongs to (:mod:`._endpoints`), and
records the call (:mod:`._inspection`). ``token_latency`` is added to the reply of every
token endpoint for the front end to wait out, outside the lock.

:data:`KIND_BY_PATH` maps each path a family emulates to its call kind; the
``/cgi-bin/component/`` paths not in it are component calls, every other path is an
``"api"`` call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from ._endpoints.classic import TOKEN_PATH
from ._endpoints.component import COMPONENT_KIND_BY_PATH, component_kind
from ._endpoints.stable import STABLE_TOKEN_PATH
from ._endpoints.ticket import TICKET_PATH, WECOM_AGENT_TICKET_PATH, WECOM_JSAPI_TICKET_PATH
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
    normalize_path,
)

if TYPE_CHECKING:
    from ._controls import _Fault

__all__ = ["KIND_BY_PATH", "Dispatch"]

#: The call kind of each path an endpoint family emulates (``add_api`` refuses them).
KIND_BY_PATH: Mapping[str, CallKind] = {
    TOKEN_PATH: "token",
    STABLE_TOKEN_PATH: "stable_token",
    WECOM_TOKEN_PATH: "wecom_token",
    TICKET_PATH: "ticket",
    WECOM_JSAPI_TICKET_PATH: "ticket",
    WECOM_AGENT_TICKET_PATH: "ticket",
    **COMPONENT_KIND_BY_PATH,
}


class Dispatch(EmulatorState):
    """The entry point of :class:`~wxauth.testing.FakeWeChat`: :meth:`handle`.

    The steps it calls are declared here and defined by the other bases of
    ``FakeWeChat``: the clock (:mod:`._clock`), the faults (:mod:`._controls`), the
    endpoint families (:mod:`._endpoints`) and the call record (:mod:`._inspection`).
    """

    #: Seconds every token endpoint waits before answering.
    token_latency: float
    clock: Callable[[], float]
    _take_fault: Callable[[str, CallKind], _Fault | None]
    _fault_outcome: Callable[[_Fault, str, Request, float], Outcome]
    _component_on_classic: Callable[[Request, float], Outcome | None]
    _classic_token: Callable[[Request, float], Outcome]
    _stable_token: Callable[[Request, float], Outcome]
    _wecom_token: Callable[[Request, float], Outcome]
    _ticket: Callable[[str, Request, float], Outcome]
    _component: Callable[[str, Request, float], Outcome]
    _api: Callable[[str, Request, float], Outcome]
    _record: Callable[[Call], None]

    def handle(self, request: Request) -> Reply:
        """Answer one request as WeChat would, and record it in :attr:`calls`."""
        path = normalize_path(request.path)
        kind = KIND_BY_PATH.get(path) or component_kind(path) or "api"
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
