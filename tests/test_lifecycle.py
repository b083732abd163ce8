"""A manager's life: closed in the middle of a background fetch, and misconfigured so
that its own token requests would need its own token."""

from __future__ import annotations

import time

import pytest
import requests
from _gated import GatedSource

import wxauth
from wxauth.testing import FakeWeChat

APPID, SECRET = "wxlifecycle001", "the-lifecycle-secret"


def test_close_during_a_background_fetch_returns_promptly_and_writes_nothing() -> None:
    """close() does not wait for a fetch in flight, and that fetch's token is not
    written to the store after close() returned."""
    source = GatedSource(APPID)
    store = wxauth.MemoryStore()
    tokens = wxauth.TokenManager(APPID, source=source, store=store, background_refresh=True)
    tokens.start_background()
    assert source.started.wait(10)
    refresher = tokens._refresher
    assert refresher is not None
    started = time.monotonic()
    tokens.close()
    assert time.monotonic() - started < 1.0
    source.release.set()
    assert source.finished.wait(10)
    refresher._thread.join(10)
    assert not refresher._thread.is_alive()
    assert store.get(tokens.key) is None


def test_a_closed_manager_still_fetches_in_the_foreground(fake_wechat: FakeWeChat) -> None:
    """close() ends the refresher, not the manager."""
    fake_wechat.add_app(APPID, SECRET)
    with fake_wechat.serve() as url:
        tokens = wxauth.TokenManager(APPID, SECRET, api_base=url, background_refresh=True)
        first = tokens.get_token()
        tokens.close()
        second = tokens.refresh()
        assert second != first
        assert tokens.get_token() == second
        assert tokens.sync_background() is False  # no refresher came back


def test_a_session_carrying_the_managers_own_auth_fails_fast(fake_wechat: FakeWeChat) -> None:
    """A manager whose session= carries a WxAuth of that same manager would wait for
    itself until lock_timeout; it raises a clear error at once instead."""
    fake_wechat.add_app(APPID, SECRET)
    with fake_wechat.serve() as url:
        session = requests.Session()
        tokens = wxauth.TokenManager(APPID, SECRET, api_base=url, session=session)
        session.auth = wxauth.WxAuth(manager=tokens)
        started = time.monotonic()
        with pytest.raises(wxauth.WxAuthError, match="session"):
            tokens.get_token()
        assert time.monotonic() - started < 2.0
    assert fake_wechat.token_fetches == 0
