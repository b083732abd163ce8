"""The Open Platform (第三方平台): component and authorizer tokens, and what feeds them.

A third-party platform (a *component*) gets a ``component_verify_ticket`` pushed to it
every 10 minutes, trades it with its secret for a ``component_access_token``, and with
that token trades each authorizer's ``authorizer_refresh_token`` for an
``authorizer_access_token``, which works on the authorizer's ordinary API paths (judged
by :mod:`.api` like any access token). The rules come from ``open-platform.md``; where
WeChat's behaviour is undocumented the choice made here is named in ``docs/testing.md``.

All endpoints are ``POST`` with a JSON body under ``/cgi-bin/component/``:

- ``api_component_token`` (appid, secret, latest ticket): a new component token per
  call; the previous one keeps working for the fake's ``grace``.
- ``api_start_push_ticket`` (appid and secret, no token): answers ``ok``.
- ``?component_access_token=`` (or ``access_token=``): ``api_create_preauthcode``,
  ``api_query_auth`` (authorization code → authorizer token and refresh token),
  ``api_authorizer_token`` (refresh token → authorizer token), ``api_get_authorizer_list``,
  ``api_get_authorizer_info``, ``clear_quota``; ``clear_quota/v2`` takes the secret.
  Any other ``/cgi-bin/component/`` path: the token check, then an ``add_api`` answer.

:class:`ComponentEndpoints` answers these requests, after the token, body and secret
checks of its base :class:`~.component_checks.ComponentChecks`. The tests' side of the
platform (registering a component, issuing tickets, authorizing and unauthorizing
accounts, reading back refresh tokens) is
:class:`~.component_controls.ComponentControls`, below those checks; the records, paths
and limits are in :mod:`.component_state`, and every name defined there is re-exported
here, where it was defined before. Pushes (encrypted XML) are built in
:mod:`.._component_push`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from .._state import IssuedToken
from .._wire import WECHAT_JSON, Outcome, Reply, Request, dumps, ok_body
from .component_checks import ComponentChecks
from .component_state import (
    AUTHORIZATION_CODE_EXPIRES_IN,
    AUTHORIZER_INFO_PATH,
    AUTHORIZER_LIST_MAX_COUNT,
    AUTHORIZER_LIST_PATH,
    AUTHORIZER_TOKEN_PATH,
    COMPONENT_CLEAR_QUOTA_PATH,
    COMPONENT_CLEAR_QUOTA_V2_PATH,
    COMPONENT_KIND_BY_PATH,
    COMPONENT_PREFIX,
    COMPONENT_TOKEN_DAILY_QUOTA,
    COMPONENT_TOKEN_PATH,
    DEFAULT_FUNC_INFO,
    PRE_AUTH_CODE_EXPIRES_IN,
    PRE_AUTH_CODE_PATH,
    QUERY_AUTH_PATH,
    START_PUSH_TICKET_PATH,
    VERIFY_TICKET_OVERLAP,
    VERIFY_TICKET_TTL,
    Authorization,
    AuthorizationCode,
    Component,
    VerifyTicket,
    component_kind,
)
from .quota import CLEAR_QUOTA_MONTHLY_LIMIT

__all__ = [
    "AUTHORIZATION_CODE_EXPIRES_IN",
    "AUTHORIZER_INFO_PATH",
    "AUTHORIZER_LIST_MAX_COUNT",
    "AUTHORIZER_LIST_PATH",
    "AUTHORIZER_TOKEN_PATH",
    "COMPONENT_CLEAR_QUOTA_PATH",
    "COMPONENT_CLEAR_QUOTA_V2_PATH",
    "COMPONENT_KIND_BY_PATH",
    "COMPONENT_PREFIX",
    "COMPONENT_TOKEN_DAILY_QUOTA",
    "COMPONENT_TOKEN_PATH",
    "DEFAULT_FUNC_INFO",
    "PRE_AUTH_CODE_EXPIRES_IN",
    "PRE_AUTH_CODE_PATH",
    "QUERY_AUTH_PATH",
    "START_PUSH_TICKET_PATH",
    "VERIFY_TICKET_OVERLAP",
    "VERIFY_TICKET_TTL",
    "Authorization",
    "AuthorizationCode",
    "Component",
    "ComponentEndpoints",
    "VerifyTicket",
    "component_kind",
]


class ComponentEndpoints(ComponentChecks):
    """The Open Platform endpoints, on the checks of
    :class:`~.component_checks.ComponentChecks`; the test controls that play the WeChat
    side are inherited from :class:`~.component_controls.ComponentControls`."""

    # Everything here runs with self._lock held.

    def _component(self, path: str, request: Request, now: float) -> Outcome:
        """Answer one request to a ``/cgi-bin/component/`` path."""
        if path == COMPONENT_TOKEN_PATH:
            return self._component_token(request, now)
        if path == START_PUSH_TICKET_PATH:
            return self._start_push_ticket(request, now)
        if path == COMPONENT_CLEAR_QUOTA_V2_PATH:
            return self._component_clear_quota_v2(request, now)
        handler = _HANDLERS.get(path)
        if handler is None:
            # An unmodelled component API: the token check, then an add_api answer.
            checked = self._component_token_check(request, now)
            if isinstance(checked, Outcome):
                return checked
            component, value = checked
            if not self._quota_ok(component, path, now):
                return self._cfail(45009, now, component.appid, value)
            return self._canned_answer(path, component.appid, value)
        if request.method != "POST":
            return self._fail(43002, now)
        checked = self._component_token_check(request, now)
        if isinstance(checked, Outcome):
            return checked
        component, value = checked
        body = self._component_body(request, now, component, value)
        if isinstance(body, Outcome):
            return body
        return handler(self, component, value, body, path, now)

    def _component_token(self, request: Request, now: float) -> Outcome:
        checked = self._credentials(request, now, "component_appsecret")
        if isinstance(checked, Outcome):
            return checked
        component, body = checked
        appid = component.appid
        value = body.get("component_verify_ticket")
        ticket = component.tickets.get(value) if isinstance(value, str) else None
        if ticket is None:
            return self._fail(61006, now, appid)
        status = ticket.status(now, self.verify_ticket_overlap)
        if status != "valid":
            return self._fail(61005 if status == "expired" else 61006, now, appid)
        if not self._quota_ok(component, COMPONENT_TOKEN_PATH, now):
            return self._fail(45009, now, appid)
        # Every call issues a new token; the previous one works for the grace period.
        if component.current_token is not None:
            component.current_token.retire(now + self.grace)
        token = component.current_token = self._issue("component_token", appid, now)
        payload = {"component_access_token": token.value, "expires_in": self.expires_in}
        return Outcome(Reply(200, WECHAT_JSON, dumps(payload)), 0, appid, token.value)

    def _start_push_ticket(self, request: Request, now: float) -> Outcome:
        checked = self._credentials(request, now, "component_secret")
        if isinstance(checked, Outcome):
            return checked
        component = checked[0]
        if not self._quota_ok(component, START_PUSH_TICKET_PATH, now):
            return self._fail(45009, now, component.appid)
        return Outcome(Reply(200, WECHAT_JSON, ok_body()), 0, component.appid)

    def _pre_auth_code(
        self, component: Component, token: str, body: dict[str, Any], path: str, now: float
    ) -> Outcome:
        if not self._quota_ok(component, path, now):
            return self._cfail(45009, now, component.appid, token)
        code = self._random_text("preauthcode@@@")
        expired = [c for c, until in component.pre_auth_codes.items() if until <= now]
        for stale in expired:
            del component.pre_auth_codes[stale]
        component.pre_auth_codes[code] = now + PRE_AUTH_CODE_EXPIRES_IN
        payload = {"pre_auth_code": code, "expires_in": PRE_AUTH_CODE_EXPIRES_IN}
        return Outcome(Reply(200, WECHAT_JSON, dumps(payload)), 0, component.appid, token)

    def _query_auth(
        self, component: Component, token: str, body: dict[str, Any], path: str, now: float
    ) -> Outcome:
        value = body.get("authorization_code")
        code = component.codes.get(value) if isinstance(value, str) else None
        if code is None:
            return self._cfail(61009, now, component.appid, token)
        if now >= code.expires_at:
            return self._cfail(61010, now, component.appid, token)
        auth = component.authorizations.get(code.authorizer)
        if auth is None or not auth.authorized or auth.generation != code.generation:
            # A code of an authorization that was since replaced or cancelled.
            return self._cfail(61009, now, component.appid, token)
        if not self._quota_ok(component, path, now):
            return self._cfail(45009, now, component.appid, token)
        del component.codes[code.value]  # single use
        issued = self._issue_authorizer_token(auth, now)
        info = {
            "authorizer_appid": auth.appid,
            "authorizer_access_token": issued.value,
            "expires_in": self.expires_in,
            "authorizer_refresh_token": auth.refresh_token,
            "func_info": _func_info(auth),
        }
        payload = {"authorization_info": info}
        return Outcome(Reply(200, WECHAT_JSON, dumps(payload)), 0, component.appid, token)

    def _authorizer_token(
        self, component: Component, token: str, body: dict[str, Any], path: str, now: float
    ) -> Outcome:
        appid = body.get("authorizer_appid")
        if not isinstance(appid, str) or not appid:
            return self._cfail(41002, now, component.appid, token)
        auth = component.authorizations.get(appid)
        if auth is None or not auth.authorized:
            return self._cfail(61003, now, appid, token)
        refresh = body.get("authorizer_refresh_token")
        current = refresh == auth.refresh_token
        in_grace = (
            auth.old_refresh_token is not None
            and refresh == auth.old_refresh_token
            and now < auth.old_refresh_until
        )
        if not isinstance(refresh, str) or not (current or in_grace):
            return self._cfail(61023, now, appid, token)
        if not self._quota_ok(component, path, now):
            return self._cfail(45009, now, appid, token)
        issued = self._issue_authorizer_token(auth, now)
        if self.rotate_refresh_tokens and current:
            auth.old_refresh_token, auth.old_refresh_until = auth.refresh_token, now + self.grace
            auth.refresh_token = self._random_text("refreshtoken@@@")
        payload = {
            "authorizer_access_token": issued.value,
            "expires_in": self.expires_in,
            "authorizer_refresh_token": auth.refresh_token,
        }
        return Outcome(Reply(200, WECHAT_JSON, dumps(payload)), 0, appid, issued.value)

    def _authorizer_list(
        self, component: Component, token: str, body: dict[str, Any], path: str, now: float
    ) -> Outcome:
        offset, count = _count(body.get("offset")), _count(body.get("count"))
        if offset is None or count is None:
            return self._cfail(47001, now, component.appid, token)
        if count > AUTHORIZER_LIST_MAX_COUNT:
            return self._cfail(40170, now, component.appid, token)
        if not self._quota_ok(component, path, now):
            return self._cfail(45009, now, component.appid, token)
        page = [
            {
                "authorizer_appid": appid,
                "refresh_token": (auth := component.authorizations[appid]).refresh_token,
                "auth_time": auth.auth_time,
            }
            for appid in component.order[offset : offset + count]
        ]
        payload = {"total_count": len(component.order), "list": page}
        return Outcome(Reply(200, WECHAT_JSON, dumps(payload)), 0, component.appid, token)

    def _authorizer_info(
        self, component: Component, token: str, body: dict[str, Any], path: str, now: float
    ) -> Outcome:
        appid = body.get("authorizer_appid")
        if not isinstance(appid, str) or not appid:
            return self._cfail(41002, now, component.appid, token)
        auth = component.authorizations.get(appid)
        if auth is None or not auth.authorized:
            return self._cfail(61003, now, component.appid, token)
        if not self._quota_ok(component, path, now):
            return self._cfail(45009, now, component.appid, token)
        digest = hashlib.sha1(appid.encode()).hexdigest()  # noqa: S324 - a stable fake id
        payload = {
            "authorizer_info": {
                "nick_name": f"authorizer {appid}",
                "head_img": "",
                "service_type_info": {"id": 2},
                "verify_type_info": {"id": 0},
                "user_name": f"gh_{digest[:12]}",
                "principal_name": "wxauth emulator",
                "alias": "",
                "business_info": {
                    "open_store": 0,
                    "open_scan": 0,
                    "open_pay": 0,
                    "open_card": 0,
                    "open_shake": 0,
                },
                "qrcode_url": "",
            },
            "authorization_info": {
                "authorizer_appid": appid,
                "authorizer_refresh_token": auth.refresh_token,
                "func_info": _func_info(auth),
            },
        }
        return Outcome(Reply(200, WECHAT_JSON, dumps(payload)), 0, component.appid, token)

    def _component_clear_quota(
        self, component: Component, token: str, body: dict[str, Any], path: str, now: float
    ) -> Outcome:
        outcome = self._reset_component_quotas(component, now)
        return Outcome(outcome.reply, outcome.errcode, component.appid, token)

    def _component_clear_quota_v2(self, request: Request, now: float) -> Outcome:
        checked = self._credentials(request, now, "appsecret")
        if isinstance(checked, Outcome):
            return checked
        component, body = checked
        authorizer = body.get("appid")
        if authorizer is None:
            return self._reset_component_quotas(component, now)
        auth = component.authorizations.get(authorizer) if isinstance(authorizer, str) else None
        if auth is None or not auth.authorized:
            return self._fail(61003, now, component.appid)
        app = self._apps.get(auth.appid)
        if app is None:
            # The authorizer's own quotas are modelled only for a registered app.
            return Outcome(Reply(200, WECHAT_JSON, ok_body()), 0, component.appid)
        return self._reset_quotas(app, now)

    def _reset_component_quotas(self, component: Component, now: float) -> Outcome:
        month = self._month(now)
        if component.clear_usage.current(month) >= CLEAR_QUOTA_MONTHLY_LIMIT:
            return self._fail(48006, now, component.appid)
        component.clear_usage.add(month)
        component.usage.clear()
        return Outcome(Reply(200, WECHAT_JSON, ok_body()), 0, component.appid)

    def _component_quota_get(self, token: IssuedToken, request: Request, now: float) -> Outcome:
        """``openapi/quota/get`` with a component token: the component's own quotas."""
        body = self._json_post(request, now, token.owner)
        if isinstance(body, Outcome):
            return Outcome(body.reply, body.errcode, token.owner, token.value)
        cgi_path = body.get("cgi_path")
        if not isinstance(cgi_path, str) or not cgi_path:
            return self._cfail(47001, now, token.owner, token.value)
        component = self._components[token.owner]
        cgi_path = "/" + cgi_path.lstrip("/")
        limit = component.quotas.get(cgi_path)
        if limit is None:
            return self._cfail(76021, now, token.owner, token.value)
        usage = component.usage.get(cgi_path)
        used = 0 if usage is None else usage.current(self._day(now))
        payload = {
            "errcode": 0,
            "errmsg": "ok",
            "quota": {"daily_limit": limit, "used": used, "remain": max(0, limit - used)},
        }
        return Outcome(Reply(200, WECHAT_JSON, dumps(payload)), 0, token.owner, token.value)

    def _component_on_classic(self, request: Request, now: float) -> Outcome | None:
        """``/cgi-bin/token`` with a component's appid answers 61024."""
        appid = request.query.get("appid")
        if appid and appid in self._components and appid not in self._apps:
            return self._fail(61024, now, appid)
        return None

    def _issue_authorizer_token(self, auth: Authorization, now: float) -> IssuedToken:
        # A new authorizer token retires the previous one after the grace period.
        if auth.token is not None:
            auth.token.retire(now + self.grace)
        auth.previous = auth.token
        auth.token = self._issue("authorizer_token", auth.appid, now)
        return auth.token


def _count(value: object) -> int | None:
    """``value`` if it is a JSON number of things (an int, not a bool, not negative)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _func_info(auth: Authorization) -> list[dict[str, Any]]:
    return [{"funcscope_category": {"id": scope}} for scope in auth.func_info]


_Handler = Callable[[ComponentEndpoints, Component, str, dict[str, Any], str, float], Outcome]
_HANDLERS: Mapping[str, _Handler] = {
    PRE_AUTH_CODE_PATH: ComponentEndpoints._pre_auth_code,
    QUERY_AUTH_PATH: ComponentEndpoints._query_auth,
    AUTHORIZER_TOKEN_PATH: ComponentEndpoints._authorizer_token,
    AUTHORIZER_LIST_PATH: ComponentEndpoints._authorizer_list,
    AUTHORIZER_INFO_PATH: ComponentEndpoints._authorizer_info,
    COMPONENT_CLEAR_QUOTA_PATH: ComponentEndpoints._component_clear_quota,
}
