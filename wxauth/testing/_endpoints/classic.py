"""``GET /cgi-bin/token``: the classic access token (also answers POST).

Every fetch issues a new token and retires the account's previous classic tokens after
the fake's ``grace`` (300 s by default); fetches count against the daily quota.
"""

from __future__ import annotations

from .._state import EmulatorState
from .._wire import Outcome, Request

__all__ = ["TOKEN_PATH", "ClassicTokenEndpoint"]

#: Classic token endpoint (``GET``, secret in the query).
TOKEN_PATH = "/cgi-bin/token"  # noqa: S105 - a URL path, not a password


class ClassicTokenEndpoint(EmulatorState):
    """The classic token endpoint: a new token per fetch, the old ones retire after grace."""

    def _classic_token(self, request: Request, now: float) -> Outcome:
        q = request.query
        checked = self._check_app(
            q.get("appid"), q.get("secret"), q.get("grant_type"), request, now
        )
        if isinstance(checked, Outcome):
            return checked
        app = checked
        if not self._quota_ok(app, TOKEN_PATH, now):
            return self._fail(45009, now, app.appid)
        # Every new classic token retires the previous ones after the grace period.
        for old in self._tokens.values():
            if old.kind == "token" and old.owner == app.appid:
                old.retire(now + self.grace)
        return self._token_reply(self._issue("token", app.appid, now), now, remaining=False)
