"""The checks every Open Platform request passes before its endpoint answers.

Endpoints called with a component token (``?component_access_token=``, or
``access_token=``) check it first: missing 41001, not a live component token 40001 (one
past its ``expires_in``: 42001), caller IP outside the component's allowlist 61004; then
the JSON body's ``component_appid``: missing 41002, another component's 61011. Endpoints
that take the component secret instead (``api_component_token``,
``api_start_push_ticket``, ``clear_quota/v2``) check the appid (41002, unknown 61011), the
secret (missing 41004, wrong: the fake's ``component_wrong_secret_errcode``) and the IP.
:class:`ComponentChecks` holds these steps; the endpoints of :mod:`.component` use them.
"""

from __future__ import annotations

from typing import Any

from .._errmsg import clientip_not_registered
from .._wire import Outcome, Request
from .component_controls import ComponentControls
from .component_state import Component

__all__ = ["ComponentChecks"]


class ComponentChecks(ComponentControls):
    """The token, body and secret checks of the Open Platform endpoints (lock held)."""

    def _cfail(
        self,
        errcode: int,
        now: float,
        owner: str | None,
        token: str | None = None,
        text: str | None = None,
    ) -> Outcome:
        return Outcome(self._error(errcode, now, text), errcode, owner, token)

    def _component_token_check(
        self, request: Request, now: float
    ) -> tuple[Component, str] | Outcome:
        """The component and token of ``?component_access_token=`` (or ``access_token=``),
        or the answer refusing them (41001, 40001, 42001, 61004)."""
        value = request.query.get("component_access_token") or request.query.get("access_token")
        if not value:
            return self._fail(41001, now)
        token = self._tokens.get(value)
        # An unknown token, or an account's / authorizer's token, is no component token.
        if token is None or token.kind != "component_token":
            return self._cfail(40001, now, None, value)
        status = token.status(now)
        if status == "expired":
            return self._cfail(42001, now, token.owner, value)
        if status == "retired":
            return self._cfail(40001, now, token.owner, value)
        component = self._components[token.owner]
        if not self._ip_allowed(component.ip_allowlist, request.client_ip):
            text = clientip_not_registered(request.client_ip)
            return self._cfail(61004, now, component.appid, value, text)
        return component, value

    def _component_body(
        self, request: Request, now: float, component: Component, token: str
    ) -> dict[str, Any] | Outcome:
        """The JSON body, after its ``component_appid`` was checked against the token's."""
        body = self._json_post(request, now, component.appid)
        if isinstance(body, Outcome):
            return Outcome(body.reply, body.errcode, component.appid, token)
        appid = body.get("component_appid")
        if not appid:
            return self._cfail(41002, now, component.appid, token)
        if appid != component.appid:
            return self._cfail(61011, now, component.appid, token)
        return body

    def _credentials(
        self, request: Request, now: float, secret_key: str
    ) -> tuple[Component, dict[str, Any]] | Outcome:
        """The checks of the endpoints that take the component secret instead of a token."""
        body = self._json_post(request, now)
        if isinstance(body, Outcome):
            return body
        appid, secret = body.get("component_appid"), body.get(secret_key)
        if not isinstance(appid, str) or not appid:
            return self._fail(41002, now)
        if not isinstance(secret, str) or not secret:
            return self._fail(41004, now, appid)
        component = self._components.get(appid)
        if component is None:
            return self._fail(61011, now, appid)
        if secret != component.secret:
            return self._fail(self.component_wrong_secret_errcode, now, appid)
        if not self._ip_allowed(component.ip_allowlist, request.client_ip):
            return self._fail(61004, now, appid, clientip_not_registered(request.client_ip))
        return component, body
