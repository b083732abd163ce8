"""Who the emulator knows, and what it answers for them: accounts, quotas, API answers.

A :class:`~wxauth.testing.FakeWeChat` starts empty. The test registers Official Accounts
and Mini Programs (:meth:`Accounts.add_app`), WeCom applications
(:meth:`Accounts.add_wecom_app`), the daily limit of any API path for one account
(:meth:`Accounts.set_quota`) and the answer of an API path (:meth:`Accounts.add_api`).
Open Platform components register through :meth:`~wxauth.testing.FakeWeChat.add_component`
(:mod:`._endpoints.component_controls`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._dispatch import KIND_BY_PATH
from ._endpoints.classic import TOKEN_PATH
from ._endpoints.component_state import Component
from ._endpoints.quota import CLEAR_QUOTA_PATH, CLEAR_QUOTA_V2_PATH
from ._endpoints.stable import STABLE_DAILY_QUOTA, STABLE_TOKEN_PATH
from ._endpoints.ticket import TICKET_PATH
from ._state import Answer, App, EmulatorState, WeComApp
from ._wire import WECHAT_JSON, dumps, normalize_path

__all__ = ["Accounts"]


class Accounts(EmulatorState):
    """The registry of :class:`~wxauth.testing.FakeWeChat`: apps, quotas, API answers."""

    #: Classic token fetches a day for an app registered without ``daily_quota=``.
    daily_quota: int
    #: ``ticket/getticket`` calls a day for every app (``set_quota`` overrides it).
    ticket_daily_quota: int
    #: Open Platform components: an app may not take the appid of one.
    _components: dict[str, Component]

    def add_app(
        self,
        appid: str,
        secret: str,
        *,
        ip_allowlist: Iterable[str] | None = None,
        daily_quota: int | None = None,
    ) -> None:
        """Register an Official Account / Mini Program.

        :param ip_allowlist: caller IPs allowed to fetch tokens; others get 40164.
            ``None`` (default) allows every IP.
        :param daily_quota: classic token fetches a day for this account (e.g. 200 for a
            test account); default: the emulator's ``daily_quota``.
        """
        quotas = {
            TOKEN_PATH: self.daily_quota if daily_quota is None else int(daily_quota),
            STABLE_TOKEN_PATH: STABLE_DAILY_QUOTA,
            TICKET_PATH: self.ticket_daily_quota,
        }
        allow = None if ip_allowlist is None else frozenset(ip_allowlist)
        with self._lock:
            if appid in self._apps or appid in self._components:
                raise ValueError(f"app {appid!r} is already registered")
            self._apps[appid] = App(appid, secret, allow, quotas)

    def add_wecom_app(
        self, corpid: str, corpsecret: str, *, ip_allowlist: Iterable[str] | None = None
    ) -> None:
        """Register one WeCom application (one corpsecret) of corporation ``corpid``.

        Call again with another ``corpsecret`` for each application: each has its own token.
        :param ip_allowlist: trusted caller IPs; others get 60020. ``None`` allows all.
        """
        allow = None if ip_allowlist is None else frozenset(ip_allowlist)
        with self._lock:
            if (corpid, corpsecret) in self._wecom:
                raise ValueError(f"this WeCom application of {corpid!r} is already registered")
            self._wecom[(corpid, corpsecret)] = WeComApp(corpid, corpsecret, allow)

    def set_quota(self, appid: str, path: str, daily_limit: int) -> None:
        """Set the daily limit of one API path for one account (``45009`` past it).

        Token endpoints have limits by default; any other path is unlimited (and unknown
        to ``openapi/quota/get``) until given one here. ``appid`` may be a component's:
        its ``/cgi-bin/component/`` endpoints count per component (api_component_token:
        10000 a day by default, the others unlimited).
        """
        with self._lock:
            self._quota_holder(appid).quotas[normalize_path(path)] = int(daily_limit)

    def add_api(
        self,
        path: str,
        *,
        json: Any = None,
        body: bytes | None = None,
        content_type: str | None = None,
        status: int = 200,
    ) -> None:
        """Register the answer of an API path once its ``access_token`` passed the check.

        Give ``json`` (any JSON-serialisable value) or ``body`` bytes with their
        ``content_type`` (e.g. ``image/jpeg`` for ``cgi-bin/media/get``). Unregistered
        paths answer ``{"errcode":0,"errmsg":"ok"}``.
        """
        path = normalize_path(path)
        if path in KIND_BY_PATH or path in (CLEAR_QUOTA_PATH, CLEAR_QUOTA_V2_PATH):
            # (an unmodelled /cgi-bin/component/ path is fine: its answer follows the
            # component token check)
            raise ValueError(f"{path} is emulated by FakeWeChat itself")
        if (json is None) == (body is None):
            raise ValueError("give exactly one of json= and body=")
        if body is not None:
            answer = Answer(status, content_type or "application/octet-stream", bytes(body))
        else:
            encoded = dumps(json)
            answer = Answer(status, content_type or WECHAT_JSON, encoded)
        with self._lock:
            self._answers[path] = answer
