"""Every other path: the ``access_token`` check, then the registered answer.

A missing token answers 41001, one never issued 40014, a retired one 40001 (a WeCom
token: 40014), an expired one 42001. An Open Platform ``authorizer_access_token`` is an
access token like any other (its owner is the authorizer appid); a
``component_access_token`` answers 40001 here, except on ``openapi/quota/get``, which
reports the component's own quotas. A token that passes gets the answer registered with
:meth:`FakeWeChat.add_api`, else ``{"errcode":0,"errmsg":"ok"}``, and the path's
``set_quota`` limit applies. The quota endpoints are API paths too: they are routed to
:mod:`.quota` here, ``clear_quota/v2`` before the token check (it needs none).
"""

from __future__ import annotations

from .._wire import Outcome, Request
from .component import ComponentEndpoints
from .quota import CLEAR_QUOTA_PATH, CLEAR_QUOTA_V2_PATH, QUOTA_GET_PATH

__all__ = ["ApiEndpoint"]


class ApiEndpoint(ComponentEndpoints):
    """Any path that is not a token endpoint: token check, quota, canned answer."""

    def _api(self, path: str, request: Request, now: float) -> Outcome:
        if path == CLEAR_QUOTA_V2_PATH:
            return self._clear_quota_v2(request, now)
        value = request.query.get("access_token")
        if not value:
            return self._api_fail(41001, path, request, now, None)
        token = self._tokens.get(value)
        if token is None:
            return self._api_fail(40014, path, request, now, value)
        status = token.status(now)
        if status == "expired":
            return self._api_fail(42001, path, request, now, value, token.owner)
        if status == "retired":
            # WeCom has no "not latest" notion: a token it dropped early is just invalid.
            code = 40014 if token.kind == "wecom_token" else 40001
            return self._api_fail(code, path, request, now, value, token.owner)
        owner = token.owner
        if token.kind == "component_token":
            # A component token serves the component's own endpoints and its quota/get,
            # never an account's API.
            if path == QUOTA_GET_PATH:
                return self._component_quota_get(token, request, now)
            return self._api_fail(40001, path, request, now, value, owner)
        if path == CLEAR_QUOTA_PATH:
            return self._clear_quota(token, request, now)
        if path == QUOTA_GET_PATH:
            return self._quota_get(token, request, now)
        app = self._apps.get(owner) if token.kind != "wecom_token" else None
        if app is not None and not self._quota_ok(app, path, now):
            return Outcome(self._error(45009, now), 45009, owner, value)
        return self._canned_answer(path, owner, value, wecom=token.kind == "wecom_token")

    def _api_fail(
        self,
        errcode: int,
        path: str,
        request: Request,
        now: float,
        token: str | None,
        owner: str | None = None,
    ) -> Outcome:
        is_wecom = (
            token is not None
            and token in self._tokens
            and (self._tokens[token].kind == "wecom_token")
        )
        reply = self._wecom_error(errcode, request, now) if is_wecom else self._error(errcode, now)
        return Outcome(reply, errcode, owner, token)
