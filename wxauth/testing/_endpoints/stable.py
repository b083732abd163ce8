"""``POST /cgi-bin/stable_token``: the stable access token.

Normal mode returns the current token until its last 300 s, then issues a successor
without retiring the old one; ``force_refresh`` retires it at once, at most 20 times a
day and 30 s apart. It has its own quotas and never touches the classic tokens.
"""

from __future__ import annotations

from .._state import EmulatorState
from .._wire import Outcome, Request

__all__ = [
    "STABLE_DAILY_QUOTA",
    "STABLE_FORCE_DAILY_LIMIT",
    "STABLE_FORCE_INTERVAL",
    "STABLE_MINUTE_QUOTA",
    "STABLE_RENEW_WINDOW",
    "STABLE_TOKEN_PATH",
    "StableTokenEndpoint",
]

#: Stable token endpoint (``POST``, secret in the JSON body).
STABLE_TOKEN_PATH = "/cgi-bin/stable_token"  # noqa: S105 - a URL path, not a password
#: stable_token calls allowed per account per day and per minute.
STABLE_DAILY_QUOTA = 500_000
STABLE_MINUTE_QUOTA = 10_000
#: Force refreshes of stable_token allowed per day, and the minimum seconds between them.
STABLE_FORCE_DAILY_LIMIT = 20
STABLE_FORCE_INTERVAL = 30.0
#: In normal mode stable_token issues a successor this many seconds before expiry.
STABLE_RENEW_WINDOW = 300.0


class StableTokenEndpoint(EmulatorState):
    """The stable_token endpoint: one current token per account, renewed near expiry."""

    def _stable_token(self, request: Request, now: float) -> Outcome:
        body = self._json_post(request, now)
        if isinstance(body, Outcome):
            return body
        appid, secret = body.get("appid"), body.get("secret")
        checked = self._check_app(
            appid if isinstance(appid, str) else None,
            secret if isinstance(secret, str) else None,
            body.get("grant_type"),
            request,
            now,
        )
        if isinstance(checked, Outcome):
            return checked
        app = checked
        force = body.get("force_refresh", False)
        if not isinstance(force, bool):
            return self._fail(47001, now, app.appid)
        minute = int(now // 60)
        if app.minute_usage.current(minute) >= STABLE_MINUTE_QUOTA:
            return self._fail(45011, now, app.appid)
        if not self._quota_ok(app, STABLE_TOKEN_PATH, now):
            return self._fail(45009, now, app.appid)
        app.minute_usage.add(minute)
        current = app.stable
        current_valid = current is not None and current.status(now) == "valid"
        if force:
            too_soon = app.last_force is not None and now - app.last_force < STABLE_FORCE_INTERVAL
            if too_soon and current is not None and current_valid:
                # Documented: "otherwise it does not refresh". What it returns then is
                # unverified; the emulator returns the current token unchanged.
                return self._token_reply(current, now, remaining=True)
            if not too_soon:
                day = self._day(now)
                if app.force_usage.current(day) >= STABLE_FORCE_DAILY_LIMIT:
                    return self._fail(45009, now, app.appid)
                app.force_usage.add(day)
                app.last_force = now
                if current is not None:
                    current.retire(now)
                app.stable = self._issue("stable_token", app.appid, now)
                return self._token_reply(app.stable, now, remaining=False)
        if current is not None and current_valid and current.expires_at - now > STABLE_RENEW_WINDOW:
            return self._token_reply(current, now, remaining=True)
        # No valid token, or it is in its last 5 minutes: issue a successor. The old
        # one is not retired; it stays valid until its own expiry.
        app.stable = self._issue("stable_token", app.appid, now)
        return self._token_reply(app.stable, now, remaining=False)
