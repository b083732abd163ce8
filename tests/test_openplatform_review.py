"""An adversarial review of the Open Platform: outages (a flushed store, a failing or
slow authorizer list, a host clock that is off), races (a cancellation during a code
exchange), crash reports (frame locals while the store is down), and the contract
surface (signatures, adapters over loopback HTTP, steady state), against the emulator.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import shutil
import subprocess
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
import requests.adapters
from conftest import stop_redis_server
from test_openplatform_component import (
    AES_KEY,
    AUTHORIZER,
    COMPONENT,
    PUSH_TOKEN,
    SECRET,
    platform_on,
    pushed_ticket,
)

import wxauth
from wxauth.openplatform import (
    AuthorizerNotAuthorizedError,
    ComponentTicketError,
    ComponentTokenManager,
    MessageCrypto,
    PushFormatError,
    PushReplayError,
)
from wxauth.openplatform._protocol import AUTHORIZER_LIST, QUERY_AUTH
from wxauth.testing import FakeWeChat
from wxauth.transport import HTTPAnswer, RequestsTransport

API = "https://api.weixin.qq.com/cgi-bin/user/info"


@pytest.fixture
def fake(wechat: FakeWeChat) -> FakeWeChat:
    """The emulator behind api.weixin.qq.com, with the platform registered."""
    wechat.add_component(COMPONENT, SECRET, token=PUSH_TOKEN, encoding_aes_key=AES_KEY)
    return wechat


class Gate(RequestsTransport):
    """A requests transport that, for one path, gets WeChat's answer and then holds it
    until :meth:`open` (``answered`` is set meanwhile): the moment between WeChat
    acting on a request and the platform reading the answer."""

    def __init__(self, path: str) -> None:
        super().__init__(requests.Session())
        self.path = path
        self.answered = threading.Event()
        self._open = threading.Event()

    def open(self) -> None:
        self._open.set()

    def send(self, request: Any, *, timeout: float) -> HTTPAnswer:
        answer = super().send(request, timeout=timeout)
        if request.path == self.path and not self._open.is_set():
            self.answered.set()
            self._open.wait(10)
        return answer


def list_calls(fake: FakeWeChat) -> int:
    return fake.count(path=AUTHORIZER_LIST)


# -- a lost store, a failing list: no verdict on the authorizer ----------------------------


def test_a_flushed_store_recovers_at_the_next_ticket_push(fake: FakeWeChat) -> None:
    """The store is wiped (a Redis flush): the ticket, the tokens and the refresh
    tokens are gone. The authorizer's fetch says there is no ticket; once the next
    ticket arrives, the very next fetch re-reads the list and works: the failed attempt
    counted as no pass over the list and as no verdict on the authorizer."""
    store = wxauth.MemoryStore()
    platform = platform_on(fake, store)
    pushed_ticket(fake, platform)
    platform.query_auth(fake.authorize(COMPONENT, AUTHORIZER))
    manager = platform.authorizer(AUTHORIZER)
    manager.get_token()
    store.clear()
    fake.advance(7200)
    with pytest.raises(ComponentTicketError, match="no component_verify_ticket"):
        manager.get_token()
    assert list_calls(fake) == 0
    fake.advance(2)
    pushed_ticket(fake, platform)
    assert manager.get_token() == fake.authorizer_token_of(AUTHORIZER)
    assert list_calls(fake) == 1


def test_a_failed_list_pass_is_no_verdict_and_is_retried_soon(fake: FakeWeChat) -> None:
    """api_get_authorizer_list fails (HTTP 502): the caller gets that failure; a caller
    moments later gets a TokenFetchError that names it, never the 61003 of an
    authorizer that is not listed (a fleet drops those), and the list is not asked
    again at once; a little later it is, and the authorizer comes back."""
    platform = platform_on(fake, retries=0)
    pushed_ticket(fake, platform)
    fake.add_authorizers(COMPONENT, [AUTHORIZER])
    manager = platform.authorizer(AUTHORIZER)
    fake.fail_next(on=AUTHORIZER_LIST, status=502)
    with pytest.raises(wxauth.TokenFetchError):
        manager.get_token()
    fake.advance(2)
    with pytest.raises(wxauth.TokenFetchError, match="authorizer list") as caught:
        platform.authorizer("wxauthorizer000002").get_token()
    assert not isinstance(caught.value, AuthorizerNotAuthorizedError)
    assert list_calls(fake) == 1
    fake.advance(30)
    assert manager.get_token() == fake.authorizer_token_of(AUTHORIZER)
    assert list_calls(fake) == 2


def test_a_recovery_held_elsewhere_is_no_verdict(fake: FakeWeChat) -> None:
    """Another process holds the re-read of the list past lock_timeout: the caller
    gets a TokenFetchError saying so, not AuthorizerNotAuthorizedError."""
    platform = platform_on(fake, lock_timeout=0.2)
    pushed_ticket(fake, platform)
    fake.add_authorizers(COMPONENT, [AUTHORIZER])
    other = platform.store.lock(platform.keys.recovery, lease=30)
    assert other.acquire(timeout=1)
    try:
        with pytest.raises(wxauth.TokenFetchError, match="authorizer list") as caught:
            platform.authorizer(AUTHORIZER).get_token()
        assert not isinstance(caught.value, AuthorizerNotAuthorizedError)
    finally:
        other.release()
    fake.advance(2)
    assert platform.authorizer(AUTHORIZER).get_token()


def test_a_slow_list_pass_does_not_hold_other_threads_past_lock_timeout(
    fake: FakeWeChat,
) -> None:
    """One thread's pass over the list hangs on a slow answer: another thread that
    needs a pass waits lock_timeout, then gets a TokenFetchError; it is not stuck until
    the slow answer comes."""
    gate = Gate(AUTHORIZER_LIST)
    platform = platform_on(fake, transport=gate, lock_timeout=0.3)
    pushed_ticket(fake, platform)
    fake.add_authorizers(COMPONENT, [AUTHORIZER, "wxauthorizer000002"])
    slow = threading.Thread(target=platform.authorizer(AUTHORIZER).get_token, daemon=True)
    slow.start()
    try:
        assert gate.answered.wait(10)
        outcome: list[BaseException] = []

        def other() -> None:
            try:
                platform.authorizer("wxauthorizer000002").get_token()
            except BaseException as exc:
                outcome.append(exc)

        started = time.monotonic()
        waiter = threading.Thread(target=other, daemon=True)
        waiter.start()
        waiter.join(5)
        assert not waiter.is_alive(), "the second thread waited for the slow pass"
        assert time.monotonic() - started < 3
        assert len(outcome) == 1
        assert isinstance(outcome[0], wxauth.TokenFetchError)
        assert not isinstance(outcome[0], AuthorizerNotAuthorizedError)
    finally:
        gate.open()
        slow.join(10)


# -- a cancellation racing a code exchange ------------------------------------------------


def test_a_cancellation_during_the_exchange_of_an_authorization_push_wins(
    fake: FakeWeChat,
) -> None:
    """The authorized push's code is exchanged; while WeChat's answer is on its way the
    account cancels and the unauthorized push (later CreateTime) is handled. The
    answer that arrives after must not bring the authorizer back: no refresh token, no
    cached access token."""
    gate = Gate(QUERY_AUTH)
    platform = platform_on(fake, transport=gate)
    pushed_ticket(fake, platform)
    authorized = fake.authorization_push(COMPONENT, AUTHORIZER)
    worker = threading.Thread(target=platform.handle_push, args=authorized, daemon=True)
    worker.start()
    try:
        assert gate.answered.wait(10)
        fake.advance(5)
        platform.handle_push(*fake.authorization_push(COMPONENT, AUTHORIZER, "unauthorized"))
    finally:
        gate.open()
        worker.join(10)
    assert platform.authorizer_appids() == []
    assert platform.authorizer(AUTHORIZER).peek() is None
    # A later authorization is taken as usual.
    fake.advance(5)
    platform.handle_push(*fake.authorization_push(COMPONENT, AUTHORIZER))
    assert platform.authorizer_appids() == [AUTHORIZER]
    assert platform.authorizer(AUTHORIZER).get_token() == fake.authorizer_token_of(AUTHORIZER)


def test_a_cancellation_during_query_auth_wins(fake: FakeWeChat) -> None:
    """query_auth (the merchant's redirect) is answered, and the account cancels before
    the answer is read: query_auth raises AuthorizerNotAuthorizedError and stores
    nothing; a code exchanged after the cancellation is stored as usual."""
    gate = Gate(QUERY_AUTH)
    platform = platform_on(fake, transport=gate)
    pushed_ticket(fake, platform)
    code = fake.authorize(COMPONENT, AUTHORIZER)
    outcome: list[object] = []

    def exchange() -> None:
        try:
            outcome.append(platform.query_auth(code))
        except Exception as exc:
            outcome.append(exc)

    worker = threading.Thread(target=exchange, daemon=True)
    worker.start()
    try:
        assert gate.answered.wait(10)
        fake.advance(5)
        platform.handle_push(*fake.authorization_push(COMPONENT, AUTHORIZER, "unauthorized"))
    finally:
        gate.open()
        worker.join(10)
    assert len(outcome) == 1
    assert isinstance(outcome[0], AuthorizerNotAuthorizedError)
    assert platform.authorizer_appids() == []
    assert platform.authorizer(AUTHORIZER).peek() is None
    fake.advance(5)
    platform.query_auth(fake.authorize(COMPONENT, AUTHORIZER))
    assert platform.authorizer_appids() == [AUTHORIZER]


def test_an_older_authorization_never_replaces_a_newer_one(fake: FakeWeChat) -> None:
    """Two authorization pushes handled out of order: the refresh token of the later
    one (by CreateTime) stays."""
    gate = Gate(QUERY_AUTH)
    platform = platform_on(fake, transport=gate)
    pushed_ticket(fake, platform)
    first = fake.authorization_push(COMPONENT, AUTHORIZER)
    worker = threading.Thread(target=platform.handle_push, args=first, daemon=True)
    worker.start()
    try:
        assert gate.answered.wait(10)
        fake.advance(5)
        gate_free = platform_on(fake, platform.store)
        gate_free.handle_push(*fake.authorization_push(COMPONENT, AUTHORIZER, "updateauthorized"))
    finally:
        gate.open()
        worker.join(10)
    stored = platform.refresh_tokens.get(AUTHORIZER)
    assert stored is not None
    assert stored.token is not None
    assert stored.token.get_secret_value() == fake.refresh_token_of(AUTHORIZER)


def test_the_list_brings_back_an_authorizer_cancelled_then_authorized_again(
    fake: FakeWeChat,
) -> None:
    """Cancelled (push handled), then authorized again with the push lost: the next
    fetch re-reads the list and the authorizer works again."""
    platform = platform_on(fake)
    pushed_ticket(fake, platform)
    platform.handle_push(*fake.authorization_push(COMPONENT, AUTHORIZER))
    fake.advance(5)
    platform.handle_push(*fake.authorization_push(COMPONENT, AUTHORIZER, "unauthorized"))
    assert platform.authorizer_appids() == []
    fake.advance(5)
    fake.authorize(COMPONENT, AUTHORIZER)
    assert platform.authorizer(AUTHORIZER).get_token() == fake.authorizer_token_of(AUTHORIZER)
    assert platform.authorizer_appids() == [AUTHORIZER]


# -- a host clock that is off -------------------------------------------------------------


def test_pushes_refused_for_this_hosts_clock_are_loud_and_named_by_the_ticket_error(
    fake: FakeWeChat, caplog: pytest.LogCaptureFixture
) -> None:
    """This host's clock runs 10 minutes ahead: every push is refused (PushReplayError,
    so the handler answers 4xx), each with a WARNING that names the offset and the
    remedy, and the ComponentTicketError that follows says why no ticket is stored. A
    wider push_max_age takes the push."""
    ahead = platform_on(fake, clock=lambda: fake.clock() + 600)
    query, body = fake.verify_ticket_push(COMPONENT)
    with caplog.at_level(logging.WARNING, logger="wxauth"), pytest.raises(PushReplayError):
        ahead.handle_push(query, body)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("clock" in w and "push_max_age" in w and "+60" in w for w in warnings)
    with pytest.raises(ComponentTicketError, match="clock") as caught:
        ahead.get_token()
    assert "push_max_age" in str(caught.value)
    tolerant = platform_on(fake, ahead.store, clock=lambda: fake.clock() + 600, push_max_age=900)
    tolerant.handle_push(*fake.verify_ticket_push(COMPONENT))
    assert tolerant.get_token() == fake.component_token_of(COMPONENT)


def test_a_hint_about_a_refused_push_goes_once_a_later_push_is_taken(fake: FakeWeChat) -> None:
    """The clock was fixed: once a later ticket is stored, a ticket error no longer
    blames the clock."""
    offset = [600.0]
    platform = platform_on(fake, clock=lambda: fake.clock() + offset[0])
    with pytest.raises(PushReplayError):
        platform.handle_push(*fake.verify_ticket_push(COMPONENT))
    offset[0] = 0.0
    fake.advance(1)
    pushed_ticket(fake, platform, ticket="ticket@@@refused-by-wechat")
    with pytest.raises(ComponentTicketError) as caught:
        platform.get_token()
    assert "clock" not in str(caught.value)


# -- crash reports while the store is down -------------------------------------------------


class DroppingRedis(wxauth.RedisStore):
    """A RedisStore whose record and meta writes fail, as if the server went away at
    that moment, while ``down`` is set; everything else reaches the real server."""

    down = False

    def _gone(self) -> None:
        import redis

        if self.down:
            raise redis.exceptions.ConnectionError("Error 111 connecting: Connection refused.")

    def _write_meta(self, key: str, value: str, ttl: float) -> Any:
        self._gone()
        return super()._write_meta(key, value, ttl)

    def _write_record(self, table: str, name: str, value: str) -> Any:
        self._gone()
        return super()._write_record(table, name, value)

    def _swap_record(self, table: str, name: str, old: str | None, new: str | None) -> Any:
        self._gone()
        return super()._swap_record(table, name, old, new)


@pytest.mark.redis
def test_no_ticket_code_or_refresh_token_in_frame_locals_when_the_store_fails(
    fake: FakeWeChat, redis_url: str
) -> None:
    """Redis goes away just as a ticket, a refresh token (an exchange, a list pass, a
    rotation's neighbour: a cancellation) is written: every StoreError's traceback, as
    a crash reporter renders its frames' locals, holds none of them in clear."""
    from test_openplatform_component import locals_shown

    store = DroppingRedis(__import__("redis").Redis.from_url(redis_url))
    platform = platform_on(fake, store)
    first = pushed_ticket(fake, platform)
    failures: list[BaseException] = []

    def failing(call: Any) -> None:
        store.down = True
        try:
            with pytest.raises(wxauth.StoreError) as caught:
                call()
        finally:
            store.down = False
        failures.append(caught.value)

    fake.advance(1)
    query, body = fake.verify_ticket_push(COMPONENT)
    ticket = fake.latest_verify_ticket(COMPONENT)
    failing(lambda: platform.handle_push(query, body))
    code = fake.authorize(COMPONENT, AUTHORIZER)
    failing(lambda: platform.query_auth(code))
    fake.add_authorizers(COMPONENT, [AUTHORIZER, "wxauthorizer000002"])
    failing(platform.recover_refresh_tokens)
    fake.advance(61)
    platform.recover_refresh_tokens()
    refresh = fake.refresh_token_of(AUTHORIZER)
    fake.advance(1)
    cancel = fake.authorization_push(COMPONENT, AUTHORIZER, "unauthorized")
    failing(lambda: platform.handle_push(*cancel))
    assert len(failures) == 4
    for failure in failures:
        shown = locals_shown(failure)
        for secret in (SECRET, PUSH_TOKEN, AES_KEY, first, ticket, code, refresh):
            assert secret
            assert secret not in shown, (type(failure).__name__, secret[:12])


def test_no_access_token_in_frame_locals_when_storing_an_exchanged_one_fails(
    fake: FakeWeChat,
) -> None:
    """The authorizer token api_query_auth brings cannot be written (the store fails):
    no frame on the StoreError's traceback holds it whole."""
    from test_openplatform_component import locals_shown

    class Failing(wxauth.MemoryStore):
        down = False

        def set(self, key: str, token: wxauth.Token) -> bool:
            if self.down and key.startswith("token:authorizer:"):
                raise wxauth.StoreError("the store is down")
            return super().set(key, token)

    store = Failing()
    platform = platform_on(fake, store)
    pushed_ticket(fake, platform)
    store.down = True
    with pytest.raises(wxauth.StoreError) as caught:
        platform.query_auth(fake.authorize(COMPONENT, AUTHORIZER))
    token = fake.authorizer_token_of(AUTHORIZER)
    assert token
    assert token not in locals_shown(caught.value)


class Rewrite(RequestsTransport):
    """A requests transport that hands back WeChat's answers to one path changed by
    ``change`` (a decoded JSON body in, one out): an answer WeChat might send."""

    def __init__(self, path: str, change: Any) -> None:
        super().__init__(requests.Session())
        self.path = path
        self.change = change

    def send(self, request: Any, *, timeout: float) -> HTTPAnswer:
        answer = super().send(request, timeout=timeout)
        if request.path != self.path:
            return answer
        body = json.dumps(self.change(json.loads(answer.body))).encode()
        return HTTPAnswer(answer.status, answer.headers, body)


def test_no_refresh_token_in_frame_locals_when_a_list_page_is_malformed(
    fake: FakeWeChat,
) -> None:
    """A page of the authorizer list without its total_count: a TokenFetchError whose
    traceback's frames hold none of the page's refresh tokens in clear."""
    from test_openplatform_component import locals_shown

    def no_total(page: dict[str, Any]) -> dict[str, Any]:
        page.pop("total_count", None)
        return page

    platform = platform_on(fake, transport=Rewrite(AUTHORIZER_LIST, no_total))
    pushed_ticket(fake, platform)
    fake.add_authorizers(COMPONENT, [AUTHORIZER])
    with pytest.raises(wxauth.TokenFetchError, match="total_count") as caught:
        platform.recover_refresh_tokens()
    refresh = fake.refresh_token_of(AUTHORIZER)
    assert refresh
    assert refresh not in locals_shown(caught.value)


# -- a forked worker ------------------------------------------------------------------------


class RefusingAdapter(requests.adapters.BaseAdapter):
    """Mounted on a session no request may use any more."""

    def send(self, *args: Any, **kwargs: Any) -> requests.Response:
        raise AssertionError("a request went out on the parent's session")

    def close(self) -> None:
        pass


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_fetches_authorizer_tokens_on_a_session_of_its_own(
    fake_wechat: FakeWeChat, tmp_path: Path
) -> None:
    """gunicorn --preload: the platform was used before the fork, so its session holds
    keep-alive connections every child inherits. A child's authorizer fetches must not
    go out on them (two processes on one socket read each other's answers): they go
    out on the child's own session, as the component token's do."""
    from test_manager import wait_for_child

    fake_wechat.add_component(COMPONENT, SECRET, token=PUSH_TOKEN, encoding_aes_key=AES_KEY)
    with fake_wechat.serve() as api:
        platform = platform_on(fake_wechat, wxauth.FileStore(tmp_path / "store"), api_base=api)
        pushed_ticket(fake_wechat, platform)
        platform.query_auth(fake_wechat.authorize(COMPONENT, AUTHORIZER))
        parent_session = platform.tokens.session
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork + threads
            pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 3
            try:
                for prefix in ("http://", "https://"):
                    parent_session.mount(prefix, RefusingAdapter())
                platform.authorizer(AUTHORIZER).refresh()
                code = 0
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        status = wait_for_child(pid, timeout=20)
    assert os.WIFEXITED(status), f"child status {status}"
    assert os.WEXITSTATUS(status) == 0, f"child exit code {os.WEXITSTATUS(status)}"


# -- the contract surface --------------------------------------------------------------------


def test_the_names_of_the_issue_have_its_signatures() -> None:
    """ComponentTokenManager(component_appid, component_secret, *, token,
    encoding_aes_key, store=None, **options), handle_push(query, body),
    query_auth(code), authorizer(appid), start_push_ticket(), get_token(); and
    MessageCrypto(token, encoding_aes_key, appid) with verify, decrypt and encrypt; at
    the package root too."""
    kinds = inspect.Parameter
    params = inspect.signature(ComponentTokenManager).parameters
    assert list(params)[:2] == ["component_appid", "component_secret"]
    assert all(params[n].kind is kinds.POSITIONAL_OR_KEYWORD for n in list(params)[:2])
    for name in ("token", "encoding_aes_key", "store"):
        assert params[name].kind is kinds.KEYWORD_ONLY
    assert params["store"].default is None
    assert params["token"].default is kinds.empty
    assert params["encoding_aes_key"].default is kinds.empty
    assert list(params.values())[-1].kind is kinds.VAR_KEYWORD

    def positional(function: Any) -> list[str]:
        return [n for n in inspect.signature(function).parameters if n != "self"]

    assert positional(ComponentTokenManager.handle_push) == ["query", "body"]
    assert positional(ComponentTokenManager.query_auth) == ["authorization_code"]
    assert positional(ComponentTokenManager.authorizer) == ["authorizer_appid"]
    assert positional(ComponentTokenManager.start_push_ticket) == []
    assert positional(ComponentTokenManager.get_token) == []
    assert positional(ComponentTokenManager.invalidate) == ["token"]
    assert positional(MessageCrypto) == ["token", "encoding_aes_key", "appid"]
    for method in ("verify", "decrypt", "encrypt"):
        assert callable(getattr(MessageCrypto, method))
    assert wxauth.ComponentTokenManager is ComponentTokenManager
    assert wxauth.openplatform.ComponentTokenManager is ComponentTokenManager
    from wxauth.openplatform._component import (
        Authorization,
        ComponentTokenSource,
        PushEvent,
    )

    assert wxauth.openplatform.Authorization is Authorization
    assert wxauth.openplatform.PushEvent is PushEvent
    assert wxauth.openplatform.ComponentTokenSource is ComponentTokenSource


def test_the_token_manager_options_that_apply_are_taken(fake: FakeWeChat) -> None:
    """api_base, clock, refresh_margin, timeout go to the component token's manager and
    every authorizer's."""
    platform = platform_on(
        fake, api_base="https://api.weixin.qq.com/", refresh_margin=600, timeout=4
    )
    assert platform.api_base == "https://api.weixin.qq.com"
    manager = platform.authorizer(AUTHORIZER)
    for tokens in (platform.tokens, manager):
        assert tokens.refresh_margin == 600
        assert tokens.timeout == 4
        assert tokens.clock == fake.clock
    pushed_ticket(fake, platform)
    first = platform.get_token()
    fake.advance(7200 - 599)
    assert platform.get_token() != first  # refreshed 600 s ahead


def test_the_platform_is_a_token_provider_for_the_decorator_on_component_apis(
    fake: FakeWeChat,
) -> None:
    """with_access_token(platform, param="component_access_token") on a component API
    call: the component token goes in; a retired one is invalidated by value and the
    call made once more."""
    platform = platform_on(fake)
    pushed_ticket(fake, platform)
    assert isinstance(platform, wxauth.TokenProvider)

    @wxauth.with_access_token(platform, param="component_access_token")
    def pre_auth_code(*, component_access_token: str) -> dict[str, Any]:
        answer = requests.post(
            "https://api.weixin.qq.com/cgi-bin/component/api_create_preauthcode",
            params={"component_access_token": component_access_token},
            json={"component_appid": COMPONENT},
            timeout=10,
        )
        return dict(answer.json())

    assert pre_auth_code()["pre_auth_code"]
    fake.retire_all()
    assert pre_auth_code()["pre_auth_code"]
    assert fake.count(path="/cgi-bin/component/api_create_preauthcode", errcode=40001) == 1
    assert fake.count(kind="component_token") == 2


@pytest.fixture
def served(fake_wechat: FakeWeChat, tmp_path: Path) -> Iterator[tuple[FakeWeChat, str, Any]]:
    """The emulator on a real loopback HTTP server, and a platform on a FileStore with
    AUTHORIZER authorized: (fake, API base, platform)."""
    fake_wechat.add_component(COMPONENT, SECRET, token=PUSH_TOKEN, encoding_aes_key=AES_KEY)
    with fake_wechat.serve() as api:
        platform = platform_on(fake_wechat, wxauth.FileStore(tmp_path / "store"), api_base=api)
        pushed_ticket(fake_wechat, platform)
        platform.query_auth(fake_wechat.authorize(COMPONENT, AUTHORIZER))
        try:
            yield fake_wechat, api, platform
        finally:
            platform.close()


def test_an_authorizer_in_requests_wxauth_and_the_decorator_over_http(
    served: tuple[FakeWeChat, str, Any],
) -> None:
    """Over loopback HTTP: WxAuth on a requests Session and with_access_token call the
    authorizer's API with its token, and heal a retired one once."""
    fake, api, platform = served
    manager = platform.authorizer(AUTHORIZER)
    session = requests.Session()
    session.auth = wxauth.WxAuth(manager=manager)
    assert session.get(f"{api}/cgi-bin/user/info", timeout=10).json()["errcode"] == 0
    assert fake.calls[-1].token == fake.authorizer_token_of(AUTHORIZER)

    @wxauth.with_access_token(manager)
    def user_info(*, access_token: str) -> dict[str, Any]:
        answer = requests.get(
            f"{api}/cgi-bin/user/info", params={"access_token": access_token}, timeout=10
        )
        return dict(answer.json())

    fake.retire(fake.authorizer_token_of(AUTHORIZER) or "")
    assert user_info()["errcode"] == 0
    fake.advance(301)  # a second rejection at once would be held back as a streak
    fake.retire(fake.authorizer_token_of(AUTHORIZER) or "")
    assert session.get(f"{api}/cgi-bin/user/info", timeout=10).json()["errcode"] == 0
    assert fake.count(kind="authorizer_token") == 2


def test_an_authorizer_in_the_httpx_auth_of_a_client_over_http(
    served: tuple[FakeWeChat, str, Any],
) -> None:
    import httpx

    import wxauth.httpx

    fake, api, platform = served
    auth = wxauth.httpx.WxAuth(manager=platform.authorizer(AUTHORIZER))
    with httpx.Client(auth=auth, trust_env=False) as client:
        assert client.get(f"{api}/cgi-bin/user/info").json()["errcode"] == 0
        assert fake.calls[-1].token == fake.authorizer_token_of(AUTHORIZER)
        fake.retire(fake.authorizer_token_of(AUTHORIZER) or "")
        assert client.get(f"{api}/cgi-bin/user/info").json()["errcode"] == 0
    assert fake.count(kind="authorizer_token") == 1


def test_an_authorizer_in_the_httpx_auth_of_an_async_client_over_http(
    served: tuple[FakeWeChat, str, Any],
) -> None:
    """httpx.AsyncClient on a real loopback server: the authorizer's token, a heal of
    a retired one, and the same token as a sync client sees (one store, one key)."""
    import anyio
    import httpx

    import wxauth.httpx

    fake, api, platform = served
    auth = wxauth.httpx.WxAuth(manager=platform.authorizer(AUTHORIZER))

    async def calls() -> list[int]:
        async with httpx.AsyncClient(auth=auth, trust_env=False) as client:
            first = (await client.get(f"{api}/cgi-bin/user/info")).json()["errcode"]
            fake.retire(fake.authorizer_token_of(AUTHORIZER) or "")
            second = (await client.get(f"{api}/cgi-bin/user/info")).json()["errcode"]
        return [first, second]

    assert anyio.run(calls) == [0, 0]
    assert fake.calls[-1].token == fake.authorizer_token_of(AUTHORIZER)
    assert fake.count(kind="authorizer_token") == 1
    assert platform.authorizer(AUTHORIZER).get_token() == fake.authorizer_token_of(AUTHORIZER)


class CountingStore(wxauth.MemoryStore):
    """A MemoryStore that counts what is asked of it."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: Counter[str] = Counter()

    def get(self, key: str) -> wxauth.Token | None:
        self.asked["get"] += 1
        return super().get(key)

    def lock(self, key: str, *, lease: float) -> Any:
        self.asked["lock"] += 1
        return super().lock(key, lease=lease)

    def get_meta(self, key: str) -> str | None:
        self.asked["get_meta"] += 1
        return super().get_meta(key)

    def get_record(self, table: str, name: str) -> str | None:
        self.asked["get_record"] += 1
        return super().get_record(table, name)


def test_an_authorizer_token_in_steady_state_is_one_store_read(fake: FakeWeChat) -> None:
    """Once fetched, each get_token() of an authorizer is one read of the store: no
    request, no lock, no refresh-token record, no meta record."""
    store = CountingStore()
    platform = platform_on(fake, store)
    pushed_ticket(fake, platform)
    platform.query_auth(fake.authorize(COMPONENT, AUTHORIZER))
    manager = platform.authorizer(AUTHORIZER)
    token = manager.get_token()
    calls = len(fake.calls)
    store.asked.clear()
    for _ in range(100):
        assert manager.get_token() == token
    assert store.asked == Counter(get=100)
    assert len(fake.calls) == calls


def test_no_secret_in_any_log_at_debug_over_http(
    fake_wechat: FakeWeChat, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A whole life over loopback HTTP with every logger at DEBUG (urllib3 prints each
    request line, query string included): pushes, the component token, an exchange,
    API calls, a rotation, a missed re-authorization healed through 61023 and the list,
    a cancellation, a forged push, a failing endpoint. No log line holds the component
    secret, the push token, the AES key, a ticket, a code, a refresh token or a whole
    token."""
    fake = fake_wechat
    fake.add_component(COMPONENT, SECRET, token=PUSH_TOKEN, encoding_aes_key=AES_KEY)
    secrets = [SECRET, PUSH_TOKEN, AES_KEY]
    with caplog.at_level(logging.DEBUG), fake.serve() as api:
        platform = platform_on(fake, wxauth.FileStore(tmp_path / "store"), api_base=api, retries=0)
        secrets.append(pushed_ticket(fake, platform))
        platform.get_token()
        event = platform.handle_push(*fake.authorization_push(COMPONENT, AUTHORIZER))
        code = event.fields["AuthorizationCode"]
        assert isinstance(code, wxauth.Secret)
        secrets.append(code.get_secret_value())
        secrets.append(fake.refresh_token_of(AUTHORIZER) or "")
        session = requests.Session()
        session.auth = wxauth.WxAuth(manager=platform.authorizer(AUTHORIZER))
        assert session.get(f"{api}/cgi-bin/user/info", timeout=10).json()["errcode"] == 0
        fake.rotate_refresh_tokens = True
        platform.authorizer(AUTHORIZER).refresh()
        secrets.append(fake.refresh_token_of(AUTHORIZER) or "")
        fake.rotate_refresh_tokens = False
        fake.advance(400)
        secrets.append(fake.authorize(COMPONENT, AUTHORIZER))  # its push is lost
        secrets.append(fake.refresh_token_of(AUTHORIZER) or "")
        assert session.get(f"{api}/cgi-bin/user/info", timeout=10).json()["errcode"] == 0
        query, body = fake.verify_ticket_push(COMPONENT)
        secrets.append(fake.latest_verify_ticket(COMPONENT) or "")
        with pytest.raises(wxauth.WxAuthError):
            platform.handle_push({**query, "msg_signature": "0" * 40}, body)
        platform.handle_push(query, body)
        fake.advance(5)
        platform.handle_push(*fake.authorization_push(COMPONENT, AUTHORIZER, "unauthorized"))
        fake.fail_next(on="/cgi-bin/component/api_component_token", status=502)
        with pytest.raises(wxauth.WxAuthError):
            platform.refresh()
        platform.close()
    secrets += fake.issued_tokens
    assert len(secrets) > 12
    lines = [record.getMessage() for record in caplog.records]
    assert any("HTTP/1.1" in line for line in lines), "urllib3 logged no request line"
    shown = "\n".join(lines) + caplog.text
    for secret in secrets:
        assert secret
        assert secret not in shown, secret[:12]


# -- storms ----------------------------------------------------------------------------------


def test_a_61023_storm_from_1000_threads_makes_one_list_pass(fake: FakeWeChat) -> None:
    """Every stored refresh token is stale (a store restored from an old backup): 1000
    threads, ten per authorizer, all at once; each authorizer's fetch gets 61023 or
    finds the pass done. The list is read once (600 authorizers: 2 pages of 500) and
    every thread gets its authorizer's new token."""
    appids = [f"wxauthorizer{i:06d}" for i in range(100)]
    listed = appids + [f"wxother{i:06d}" for i in range(500)]
    platform = platform_on(fake)
    pushed_ticket(fake, platform)
    fake.add_authorizers(COMPONENT, listed)
    platform.recover_refresh_tokens()
    fake.add_authorizers(COMPONENT, listed)  # re-authorized: every stored token is stale
    fake.advance(61)
    before = list_calls(fake)
    callers = appids * 10
    start = threading.Barrier(len(callers))

    def fetch(appid: str) -> str:
        start.wait(30)
        return platform.authorizer(appid).get_token()

    with ThreadPoolExecutor(len(callers)) as pool:
        tokens = list(pool.map(fetch, callers))
    assert list_calls(fake) - before == 2
    expected = {appid: fake.authorizer_token_of(appid) for appid in appids}
    assert tokens == [expected[appid] for appid in callers]
    assert fake.count(kind="authorizer_token", errcode=0) == len(appids)
    assert fake.count(kind="authorizer_token", errcode=61023) >= 1


# -- pushes WeChat sends that the platform must take ----------------------------------------


def test_an_authorization_push_whose_code_the_redirect_already_exchanged_is_taken(
    fake: FakeWeChat, caplog: pytest.LogCaptureFixture
) -> None:
    """The merchant's redirect exchanged the code (query_auth) before the authorized
    push with the same code was handled: WeChat answers 61009 to the second exchange.
    Pushing again cannot help, so handle_push returns (the handler answers success),
    logs it, and the stored refresh token stays."""
    platform = platform_on(fake)
    pushed_ticket(fake, platform)
    query, body = fake.authorization_push(COMPONENT, AUTHORIZER)
    code = MessageCrypto(PUSH_TOKEN, AES_KEY, COMPONENT).decrypt_push(query, body)
    platform.query_auth(code["AuthorizationCode"])
    stored = platform.refresh_tokens.get(AUTHORIZER)
    with caplog.at_level(logging.WARNING, logger="wxauth"):
        event = platform.handle_push(query, body)
    assert event.info_type == "authorized"
    assert any("61009" in r.getMessage() for r in caplog.records)
    assert platform.refresh_tokens.get(AUTHORIZER) == stored
    assert platform.authorizer(AUTHORIZER).get_token() == fake.authorizer_token_of(AUTHORIZER)


def test_a_push_with_nested_fields_and_an_unknown_info_type_is_logged_and_returned(
    fake: FakeWeChat,
) -> None:
    """notify_third_fasteregister (a mini program registered for the platform) nests an
    <info> element and carries an auth_code: it is returned, not refused; the nested
    field holds its inner XML, and the code is a Secret."""
    from test_openplatform_component import handmade_push

    platform = platform_on(fake)
    inner = (
        f"<xml><AppId>{COMPONENT}</AppId><CreateTime>{int(fake.clock())}</CreateTime>"
        "<InfoType>notify_third_fasteregister</InfoType><appid>wxnewminiprogram1</appid>"
        "<status>0</status><auth_code>fastregister@@@code-0123456789</auth_code><msg>OK</msg>"
        "<info><name><![CDATA[a company]]></name><code>91110000</code></info></xml>"
    )
    event = platform.handle_push(*handmade_push(fake, inner))
    assert event.info_type == "notify_third_fasteregister"
    assert event.fields["appid"] == "wxnewminiprogram1"
    auth_code = event.fields["auth_code"]
    assert isinstance(auth_code, wxauth.Secret)
    assert auth_code.get_secret_value() == "fastregister@@@code-0123456789"
    info = event.fields["info"]
    assert isinstance(info, str)
    nested = wxauth.openplatform.parse_xml_fields(f"<xml>{info}</xml>")
    assert nested == {"name": "a company", "code": "91110000"}


# -- a Redis restart --------------------------------------------------------------------------


def _redis_on(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    """A redis-server without persistence on ``port`` (answering PING)."""
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server binary not found")
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--dir", str(workdir)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if client.ping():
                    return proc
            except redis.exceptions.ConnectionError:
                time.sleep(0.02)
    finally:
        client.close()
    stop_redis_server(proc)
    pytest.fail("redis-server did not start")


@pytest.mark.redis
def test_a_redis_restart_without_persistence_heals_at_the_next_ticket_push(
    fake: FakeWeChat, tmp_path: Path, redis_server: str
) -> None:
    """Redis goes down: callers get StoreError (a 5xx for a push handler), nothing
    half-written. It comes back empty: the authorizer's fetch says no ticket is stored;
    after the next ticket push the refresh token comes back from one list pass."""
    import redis
    from conftest import restartable_port

    port = restartable_port()
    proc = _redis_on(port, tmp_path)
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # Timeouts with room for a loaded machine: a stopped server refuses at once anyway.
    client = redis.Redis(
        port=port, socket_connect_timeout=3, socket_timeout=3, retry=Retry(NoBackoff(), 0)
    )
    try:
        platform = platform_on(fake, wxauth.RedisStore(client))
        pushed_ticket(fake, platform)
        platform.query_auth(fake.authorize(COMPONENT, AUTHORIZER))
        manager = platform.authorizer(AUTHORIZER)
        assert manager.get_token()
        stop_redis_server(proc)
        manager._local.clear()  # this process's copy: the outage is the store's
        fake.advance(7200)
        with pytest.raises(wxauth.StoreError):
            manager.get_token()
        with pytest.raises(wxauth.StoreError):
            platform.handle_push(*fake.verify_ticket_push(COMPONENT))
        proc = _redis_on(port, tmp_path)
        fake.advance(2)
        with pytest.raises(ComponentTicketError):
            manager.get_token()
        fake.advance(2)
        pushed_ticket(fake, platform)
        assert manager.get_token() == fake.authorizer_token_of(AUTHORIZER)
        assert list_calls(fake) == 1
        assert platform.authorizer_appids() == [AUTHORIZER]
    finally:
        client.close()
        stop_redis_server(proc)


def test_replays_of_a_stale_push_log_one_warning_a_minute(
    fake: FakeWeChat, caplog: pytest.LogCaptureFixture
) -> None:
    """Someone replays a captured push 50 times: each is refused, but the log gets one
    WARNING (the rest at DEBUG) and the store one record, not 50."""
    platform = platform_on(fake)
    query, body = fake.verify_ticket_push(COMPONENT)
    fake.advance(3600)
    with caplog.at_level(logging.DEBUG, logger="wxauth"):
        for _ in range(50):
            with pytest.raises(PushReplayError):
                platform.handle_push(query, body)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len([r for r in warnings if "push_max_age" in r.getMessage()]) == 1


def test_push_max_age_must_be_a_window_within_a_tickets_life() -> None:
    """An infinite or negative window, or one longer than a ticket lives (12 h), is
    refused at construction (the replay memory lasts twice the window)."""
    settings: dict[str, Any] = {"token": PUSH_TOKEN, "encoding_aes_key": AES_KEY}
    for bad in (float("inf"), float("nan"), 0, -1, 12 * 3600 + 1):
        with pytest.raises(ValueError, match="push_max_age"):
            ComponentTokenManager(COMPONENT, SECRET, push_max_age=bad, **settings)
    ComponentTokenManager(COMPONENT, SECRET, push_max_age=12 * 3600, **settings)


@pytest.mark.parametrize(
    ("inner", "says"),
    [
        (
            '<!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;">]>'
            "<xml><InfoType>&b;</InfoType></xml>",
            "refused",
        ),
        ('<!DOCTYPE xml SYSTEM "http://127.0.0.1:9/x.dtd"><xml><A>x</A></xml>', "refused"),
        ("<xml><InfoType>a</InfoType><InfoType>b</InfoType></xml>", "repeats"),
        ("<root><InfoType>a</InfoType></root>", "root"),
        ("<xml><InfoType>a</InfoType>", "malformed"),
    ],
)
def test_a_hostile_inner_xml_is_a_format_error(fake: FakeWeChat, inner: str, says: str) -> None:
    """Even inside a push signed and encrypted right (a leaked key), the inner XML is
    read safely: no DTD, entity or external reference, one root <xml>, no field twice."""
    from test_openplatform_component import handmade_push

    platform = platform_on(fake)
    with pytest.raises(PushFormatError, match=says):
        platform.handle_push(*handmade_push(fake, inner))


def test_a_list_answer_over_its_cap_is_refused_and_remembered(fake: FakeWeChat) -> None:
    """A page of the authorizer list over 1 MiB is not read (TokenFetchError) and the
    failed pass is what the next caller is told about."""

    def padded(page: dict[str, Any]) -> dict[str, Any]:
        page["padding"] = "x" * (1024 * 1024 + 1)
        return page

    platform = platform_on(fake, transport=Rewrite(AUTHORIZER_LIST, padded))
    pushed_ticket(fake, platform)
    fake.add_authorizers(COMPONENT, [AUTHORIZER])
    with pytest.raises(wxauth.TokenFetchError, match="bytes"):
        platform.authorizer(AUTHORIZER).get_token()
    fake.advance(2)
    with pytest.raises(wxauth.TokenFetchError, match="could not be read"):
        platform.authorizer(AUTHORIZER).get_token()
    assert platform.authorizer_appids() == []


# -- the ticket is state, not cache -----------------------------------------------------------


def test_the_ticket_outlives_a_store_full_of_authorizers(fake: FakeWeChat) -> None:
    """A MemoryStore evicts past maxsize, and Redis's volatile-* policies evict keys with
    a TTL first. The ticket cannot be fetched again (only pushed, every 10 minutes), so
    it is kept like the refresh tokens: a store crowded by 100 authorizers' tokens and
    bookkeeping still has it when the component token is next fetched."""
    platform = platform_on(fake, wxauth.MemoryStore(maxsize=64))
    pushed_ticket(fake, platform)
    appids = [f"wxauthorizer{i:06d}" for i in range(100)]
    fake.add_authorizers(COMPONENT, appids)
    for appid in appids:
        platform.authorizer(appid).get_token()
    fake.advance(7200)
    platform.tokens._local.clear()
    assert platform.get_token() == fake.component_token_of(COMPONENT)


@pytest.mark.redis
def test_the_ticket_has_no_ttl_in_redis(fake: FakeWeChat, redis_url: str) -> None:
    """In Redis the ticket is no key with a TTL (which volatile-lru evicts first); it is
    still refused once 12 hours old."""
    import redis

    platform = platform_on(fake, wxauth.RedisStore.from_url(redis_url))
    pushed_ticket(fake, platform)
    client = redis.Redis.from_url(redis_url)
    try:
        ttls = {key: client.ttl(key) for key in client.keys("*ticket*")}
    finally:
        client.close()
    assert ttls
    assert all(ttl == -1 for ttl in ttls.values()), ttls
    fake.advance(12 * 3600 + 1)
    with pytest.raises(ComponentTicketError, match="no component_verify_ticket"):
        platform.get_token()


def test_a_query_of_lists_is_a_clear_type_error(fake: FakeWeChat) -> None:
    """urllib.parse.parse_qs gives lists: a developer's mistake, named as such (not a
    push refused as unsigned, which would look like WeChat's fault)."""
    from urllib.parse import parse_qs, urlencode

    platform = platform_on(fake)
    query, body = fake.verify_ticket_push(COMPONENT)
    with pytest.raises(TypeError, match="parse_qsl"):
        platform.handle_push(parse_qs(urlencode(query)), body)  # type: ignore[arg-type]
    platform.handle_push(dict(query), body)


def test_an_auth_time_in_milliseconds_is_not_taken_for_an_event_time() -> None:
    """The list's auth_time becomes the record's event time, compared with pushes'
    CreateTime: a value in milliseconds would make every later push look older."""
    from wxauth.openplatform._protocol import parse_list_page

    page = parse_list_page(
        {
            "total_count": 2,
            "list": [
                {"authorizer_appid": "wxa1", "refresh_token": "r1", "auth_time": 1558000607},
                {"authorizer_appid": "wxa2", "refresh_token": "r2", "auth_time": 1558000607000},
            ],
        }
    )
    assert not isinstance(page, Exception)
    assert page.tokens["wxa1"][1] == 1558000607
    assert page.tokens["wxa2"][1] is None
