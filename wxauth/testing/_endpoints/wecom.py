"""WeCom's ``GET /cgi-bin/gettoken?corpid=&corpsecret=``.

One token per (corpid, corpsecret): repeated calls return the same token with its
remaining ``expires_in`` while it is valid, a new one once it expired or was dropped.
"""

from __future__ import annotations

from .._state import EmulatorState
from .._wire import WECOM_JSON, Outcome, Reply, Request, dumps

__all__ = ["WECOM_TOKEN_PATH", "WeComTokenEndpoint"]

#: WeCom token endpoint (``qyapi.weixin.qq.com``; served on the same loopback server).
WECOM_TOKEN_PATH = "/cgi-bin/gettoken"  # noqa: S105 - a URL path, not a password


class WeComTokenEndpoint(EmulatorState):
    """WeCom's gettoken: the current token of one application, issued when needed."""

    def _wecom_token(self, request: Request, now: float) -> Outcome:
        corpid, corpsecret = request.query.get("corpid"), request.query.get("corpsecret")

        def fail(errcode: int) -> Outcome:
            return Outcome(self._wecom_error(errcode, request, now), errcode, corpid)

        if not corpid:
            return fail(41002)
        if not corpsecret:
            return fail(41004)
        app = self._wecom.get((corpid, corpsecret))
        if app is None:
            known = any(cid == corpid for cid, _ in self._wecom)
            return fail(40001 if known else 40013)
        if not self._ip_allowed(app.ip_allowlist, request.client_ip):
            return fail(60020)
        # WeCom: repeated gettoken within the validity returns the same token.
        current = app.current
        if current is None or current.status(now) != "valid":
            current = app.current = self._issue("wecom_token", corpid, now)
        payload = {
            "errcode": 0,
            "errmsg": "ok",
            "access_token": current.value,
            "expires_in": int(current.expires_at - now),
        }
        return Outcome(Reply(200, WECOM_JSON, dumps(payload)), 0, corpid, current.value)
