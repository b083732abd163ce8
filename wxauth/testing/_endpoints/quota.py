"""The quota endpoints: ``clear_quota``, ``clear_quota/v2`` and ``openapi/quota/get``.

Both clear_quota endpoints reset every daily count of an account and share its budget of
10 a calendar month (then 48006); quota/get reads one path's daily limit and use.
``clear_quota`` and ``quota/get`` take an ``access_token``, which :mod:`.api` checks
before it hands the request here.
"""

from __future__ import annotations

from .._state import App, EmulatorState, IssuedToken, Usage
from .._wire import (
    WECHAT_JSON,
    Outcome,
    Reply,
    Request,
    dumps,
    normalize_path,
    ok_body,
)

__all__ = [
    "CLEAR_QUOTA_MONTHLY_LIMIT",
    "CLEAR_QUOTA_PATH",
    "CLEAR_QUOTA_V2_PATH",
    "QUOTA_GET_PATH",
    "QuotaEndpoints",
]

#: Reset the daily quotas with an access token.
CLEAR_QUOTA_PATH = "/cgi-bin/clear_quota"
#: Reset the daily quotas with appid and appsecret (no token needed).
CLEAR_QUOTA_V2_PATH = "/cgi-bin/clear_quota/v2"
#: Read one API's daily quota.
QUOTA_GET_PATH = "/cgi-bin/openapi/quota/get"
#: clear_quota (v1 and v2 together) allowed per account per calendar month.
CLEAR_QUOTA_MONTHLY_LIMIT = 10


class QuotaEndpoints(EmulatorState):
    """clear_quota (with a token or with the appsecret) and openapi/quota/get."""

    def _reset_quotas(self, app: App, now: float) -> Outcome:
        month = self._month(now)
        if app.clear_usage.current(month) >= CLEAR_QUOTA_MONTHLY_LIMIT:
            return self._fail(48006, now, app.appid)
        app.clear_usage.add(month)
        app.usage.clear()
        app.minute_usage = Usage()
        return Outcome(Reply(200, WECHAT_JSON, ok_body()), 0, app.appid)

    def _clear_quota(self, token: IssuedToken, request: Request, now: float) -> Outcome:
        body = self._json_post(request, now, token.owner)
        if isinstance(body, Outcome):
            return body
        appid = body.get("appid")
        if not appid:
            return self._fail(41002, now, token.owner)
        app = self._apps.get(token.owner)
        if app is None or appid != token.owner:
            return self._fail(40013, now, token.owner)
        outcome = self._reset_quotas(app, now)
        return Outcome(outcome.reply, outcome.errcode, outcome.owner, token.value)

    def _clear_quota_v2(self, request: Request, now: float) -> Outcome:
        body = self._json_post(request, now)
        if isinstance(body, Outcome):
            return body
        appid, appsecret = body.get("appid"), body.get("appsecret")
        if not appid:
            return self._fail(41002, now)
        if not appsecret:
            return self._fail(41004, now, str(appid))
        app = self._apps.get(str(appid))
        if app is None:
            return self._fail(40013, now, str(appid))
        if appsecret != app.secret:
            return self._fail(40125, now, app.appid)
        return self._reset_quotas(app, now)

    def _quota_get(self, token: IssuedToken, request: Request, now: float) -> Outcome:
        body = self._json_post(request, now, token.owner)
        if isinstance(body, Outcome):
            return body
        cgi_path = body.get("cgi_path")
        if not isinstance(cgi_path, str) or not cgi_path:
            return self._fail(47001, now, token.owner)
        app = self._apps.get(token.owner)
        cgi_path = normalize_path(cgi_path)
        limit = None if app is None else app.quotas.get(cgi_path)
        if app is None or limit is None:
            return self._fail(76021, now, token.owner)
        usage = app.usage.get(cgi_path)
        used = 0 if usage is None else usage.current(self._day(now))
        payload = {
            "errcode": 0,
            "errmsg": "ok",
            "quota": {"daily_limit": limit, "used": used, "remain": max(0, limit - used)},
        }
        return Outcome(Reply(200, WECHAT_JSON, dumps(payload)), 0, app.appid, token.value)
