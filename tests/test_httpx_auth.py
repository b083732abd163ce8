"""wxauth.httpx.WxAuth on an httpx.Client and an httpx.AsyncClient (asyncio and trio),
against the emulator as an httpx transport: the token only for WeChat's API hosts, one
heal of a rejected token and never a loop, answers it must not read, bodies it cannot
replay, one token for both kinds of client, no lock held across a request; and
with_access_token's native async path."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import httpx
import pytest
from _async_helpers import Wire, leaks

import wxauth
from wxauth.httpx import HttpxTransport, WxAuth
from wxauth.testing import FakeWeChat

pytestmark = pytest.mark.anyio

APPID = "wxhttpxauth000001"
SECRET = "7d4b1e9a3f6c0e2b8d5a1f4c7e0b3d6a"
API = "https://api.weixin.qq.com"
SEND_PATH = "/cgi-bin/message/custom/send"
MENU_PATH = "/cgi-bin/get_current_selfmenu_info"
MEDIA_PATH = "/cgi-bin/media/get"
BIG_PATH = "/cgi-bin/user/get"
SEND_URL, MENU_URL, MEDIA_URL, BIG_URL = (
    API + SEND_PATH,
    API + MENU_PATH,
    API + MEDIA_PATH,
    API + BIG_PATH,
)
# An image whose bytes happen to hold what a rejection looks like.
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF" + b'{"errcode":40001}' + bytes(range(256)) * 64

FLAVOURS = ["Client", "AsyncClient-asyncio", "AsyncClient-trio"]
#: For the tests that need an event loop but no particular client.
LOOPS = pytest.mark.parametrize("flavour", ["asyncio", "trio"])


@pytest.fixture(params=FLAVOURS)
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def anyio_backend(flavour: str) -> str:
    return "trio" if flavour.endswith("trio") else "asyncio"


@pytest.fixture
def fake(fake_wechat: FakeWeChat) -> FakeWeChat:
    fake_wechat.add_app(APPID, SECRET)
    return fake_wechat


@pytest.fixture
def wire(fake: FakeWeChat) -> Wire:
    return Wire(fake)


class Api:
    """An httpx.Client or AsyncClient, awaited alike."""

    def __init__(self, client: httpx.Client | httpx.AsyncClient) -> None:
        self.client = client

    async def send(
        self, method: str, url: str, *, stream: bool = False, **kwargs: Any
    ) -> httpx.Response:
        request = self.client.build_request(method, url, **kwargs)
        if isinstance(self.client, httpx.AsyncClient):
            return await self.client.send(request, stream=stream)
        return self.client.send(request, stream=stream)


@contextlib.asynccontextmanager
async def clients(fake: FakeWeChat, wire: Wire, **options: Any) -> AsyncIterator[WxAuth]:
    """A WxAuth(APPID, SECRET) whose sync and async managers fetch through ``wire``."""
    options.setdefault("clock", fake.clock)
    options.setdefault("backoff", 0)
    async with contextlib.AsyncExitStack() as stack:
        sync_client = stack.enter_context(httpx.Client(transport=wire))
        async_client = await stack.enter_async_context(httpx.AsyncClient(transport=wire))
        auth = WxAuth(
            APPID,
            options.pop("secret", SECRET),
            transport=HttpxTransport(sync_client),
            client=async_client,
            **options,
        )
        stack.push_async_callback(auth.async_manager.aclose)
        yield auth


@contextlib.asynccontextmanager
async def api_with(flavour: str, wire: Wire, auth: WxAuth) -> AsyncIterator[Api]:
    if flavour == "Client":
        with httpx.Client(transport=wire, auth=auth) as client:
            yield Api(client)
    else:
        async with httpx.AsyncClient(transport=wire, auth=auth) as client:
            yield Api(client)


@contextlib.asynccontextmanager
async def api(fake: FakeWeChat, wire: Wire, flavour: str, **options: Any) -> AsyncIterator[Api]:
    async with clients(fake, wire, **options) as auth, api_with(flavour, wire, auth) as client:
        yield client


# -- adding the token -----------------------------------------------------------------------


async def test_the_token_goes_only_to_wechat_api_hosts(
    fake: FakeWeChat, wire: Wire, flavour: str
) -> None:
    """A CDN host, plain http and a look-alike host get no token (none is even fetched);
    WeChat's API hosts get exactly one, ours, whatever access_token the URL held."""
    async with api(fake, wire, flavour) as client:
        for url in [
            "https://mmbiz.qpic.cn/mmbiz_jpg/abc/0?wx_fmt=jpeg",
            "http://api.weixin.qq.com" + MENU_PATH,
            "https://api.weixin.qq.com.example.org" + MENU_PATH,
        ]:
            await client.send("GET", url)
        assert [s.tokens for s in wire.sent] == [[], [], []]
        fake.assert_token_fetches(0)
        await client.send("GET", MENU_URL + "?access_token=STALE&lang=en&access_token=OTHER")
        await client.send("GET", MENU_URL, params={"access_token": "STALE"})
        await client.send("GET", "https://sh.api.weixin.qq.com" + MENU_PATH)
    (token,) = fake.issued_tokens
    first, second, regional = wire.api[3:]
    assert first.tokens == second.tokens == regional.tokens == [token]
    assert first.url.params["lang"] == "en"
    fake.assert_api_calls(3, errcode=0)


@pytest.mark.parametrize("errcode", [40001, 40014, 42001])
async def test_a_rejected_token_is_healed_with_one_resend(
    fake: FakeWeChat, wire: Wire, flavour: str, errcode: int
) -> None:
    """40001/40014/42001: exactly that token is dropped, a fresh one fetched, and the same
    request (body and all) sent once more; the rejection is in response.history."""
    async with api(fake, wire, flavour) as client:
        await client.send("GET", MENU_URL)
        fake.fail_next(on="api", errcode=errcode)
        response = await client.send("POST", SEND_URL, json={"touser": "OPENID"})
    assert response.json()["errcode"] == 0
    (rejected,) = response.history
    assert rejected.json()["errcode"] == errcode
    old, new = fake.issued_tokens
    first, again = wire.to(SEND_PATH)
    assert first.body is not None
    assert first.body.read  # the rejection was read (the answers are observable)
    assert (first.tokens, again.tokens) == ([old], [new])
    assert json.loads(first.content) == json.loads(again.content) == {"touser": "OPENID"}
    fake.assert_api_calls(3)
    fake.assert_token_fetches(2)


@pytest.mark.parametrize("errcode", [40003, 45009, 48001])
async def test_other_errcodes_are_returned_as_they_are(
    fake: FakeWeChat, wire: Wire, flavour: str, errcode: int
) -> None:
    """An errcode that says nothing about the token is WeChat's answer: no retry."""
    async with api(fake, wire, flavour) as client:
        fake.fail_next(on="api", errcode=errcode)
        response = await client.send("GET", MENU_URL)
    assert response.json()["errcode"] == errcode
    assert response.history == []
    fake.assert_api_calls(1)
    fake.assert_token_fetches(1)


async def test_retire_all_heals_with_exactly_two_api_calls(
    fake: FakeWeChat, wire: Wire, flavour: str
) -> None:
    """After fake.retire_all(), one call makes exactly two API calls and one fetch."""
    async with api(fake, wire, flavour) as client:
        await client.send("GET", MENU_URL)
        fake.retire_all()
        fake.reset_calls()
        response = await client.send("GET", MENU_URL)
    assert response.json()["errcode"] == 0
    assert len(response.history) == 1
    fake.assert_api_calls(2)
    fake.assert_api_calls(1, errcode=40001)
    fake.assert_token_fetches(1)


async def test_a_second_rejection_is_returned_as_it_is(
    fake: FakeWeChat, wire: Wire, flavour: str
) -> None:
    """WeChat rejects the fresh token too: that answer is returned, no third try."""
    async with api(fake, wire, flavour) as client:
        fake.fail_next(5, on="api", errcode=40001)
        response = await client.send("GET", MENU_URL)
    assert response.json()["errcode"] == 40001
    assert len(response.history) == 1
    fake.assert_api_calls(2)
    fake.assert_token_fetches(2)


# -- answers left unread, bodies not replayed -------------------------------------------------


async def test_a_binary_answer_is_not_read(fake: FakeWeChat, wire: Wire, flavour: str) -> None:
    """An image (whose bytes look like a 40001) streamed to the caller is left unread:
    no retry, the token kept, the caller reads it whole."""
    fake.add_api(MEDIA_PATH, body=JPEG, content_type="image/jpeg")
    async with api(fake, wire, flavour) as client:
        response = await client.send("GET", MEDIA_URL, params={"media_id": "M"}, stream=True)
        (sent,) = wire.api
        assert sent.body is not None
        assert not sent.body.read
        if isinstance(client.client, httpx.Client):
            content = response.read()
        else:
            content = await response.aread()
    assert content == JPEG
    assert response.history == []
    fake.assert_token_fetches(1)


async def test_a_large_json_answer_is_not_read(fake: FakeWeChat, wire: Wire, flavour: str) -> None:
    """A JSON answer over 64 KiB (with its Content-Length) is the caller's: not read by
    the auth, even with a 40001 at its start; the token is kept."""
    fake.add_api(BIG_PATH, json={"errcode": 40001, "items": ["openid" * 20] * 700})
    async with clients(fake, wire) as auth, api_with(flavour, wire, auth) as client:
        response = await client.send("GET", BIG_URL, stream=True)
        assert int(response.headers["Content-Length"]) > 64 * 1024
        (sent,) = wire.api
        assert sent.body is not None
        assert not sent.body.read
        assert response.history == []
        assert await auth.async_manager.peek() is not None
    fake.assert_token_fetches(1)


async def test_a_body_that_cannot_be_replayed_is_not_retried(
    fake: FakeWeChat, wire: Wire, flavour: str
) -> None:
    """A generator (Client) or async generator (AsyncClient) body cannot be sent twice:
    the 40001 answer is returned, the token invalidated, the next call fetches anew."""

    def chunks() -> Iterator[bytes]:
        yield b'{"touser": '
        yield b'"OPENID"}'

    async def achunks() -> AsyncIterator[bytes]:
        for chunk in chunks():
            yield chunk

    async with clients(fake, wire) as auth, api_with(flavour, wire, auth) as client:
        old = await auth.async_manager.get_token()
        fake.retire_all()
        body = chunks() if flavour == "Client" else achunks()
        response = await client.send("POST", SEND_URL, content=body)
        assert response.json()["errcode"] == 40001
        assert response.history == []
        assert await auth.async_manager.peek() is None  # invalidated
        fake.assert_token_fetches(1)
        assert (await client.send("GET", MENU_URL)).json()["errcode"] == 0
    (sent,) = wire.to(SEND_PATH)
    assert sent.tokens == [old]
    assert sent.content == b'{"touser": "OPENID"}'
    fake.assert_token_fetches(2)


# -- managers ----------------------------------------------------------------------------------


@LOOPS
async def test_one_wxauth_on_a_client_and_an_async_client_holds_one_token(
    fake: FakeWeChat, wire: Wire
) -> None:
    """The same WxAuth on both kinds of client: one fetch; a rejection healed by one is
    healed for the other."""
    async with (
        clients(fake, wire) as auth,
        api_with("AsyncClient", wire, auth) as async_api,
        api_with("Client", wire, auth) as sync_api,
    ):
        await async_api.send("GET", MENU_URL)
        await sync_api.send("GET", MENU_URL)
        fake.assert_token_fetches(1)
        fake.retire_all()
        assert len((await sync_api.send("GET", MENU_URL)).history) == 1
        assert (await async_api.send("GET", MENU_URL)).history == []
    old, new = fake.issued_tokens
    assert [s.tokens for s in wire.api] == [[old], [old], [old], [new], [new]]
    fake.assert_token_fetches(2)


@LOOPS
async def test_wxauth_with_an_async_token_manager(fake: FakeWeChat, wire: Wire) -> None:
    """WxAuth(manager=AsyncTokenManager) uses that manager on an AsyncClient, and a sync
    twin on the same store for a Client: one token."""
    async with httpx.AsyncClient(transport=wire) as token_client:
        manager = wxauth.AsyncTokenManager(APPID, SECRET, client=token_client, clock=fake.clock)
        auth = WxAuth(manager=manager)
        assert auth.async_manager is manager
        async with api_with("AsyncClient", wire, auth) as client:
            await client.send("GET", MENU_URL)
        assert isinstance(auth.manager, wxauth.TokenManager)
        async with api_with("Client", wire, auth) as client:
            await client.send("GET", MENU_URL)
        assert auth.manager.get_token() == await manager.get_token()
    (token,) = fake.issued_tokens
    assert [s.tokens for s in wire.api] == [[token], [token]]


@LOOPS
async def test_wxauth_with_a_token_manager(fake: FakeWeChat) -> None:
    """WxAuth(manager=TokenManager) uses that manager on a Client and its async twin
    (same source, store and key) on an AsyncClient, over loopback: one token, and a
    rejection healed by the async side is seen by the sync manager."""
    with fake.serve() as url:
        manager = wxauth.TokenManager(APPID, SECRET, api_base=url, clock=fake.clock, backoff=0)
        auth = WxAuth(manager=manager)
        assert auth.manager is manager
        try:
            async with httpx.AsyncClient(auth=auth) as client:
                assert (await client.get(url + MENU_PATH)).json()["errcode"] == 0
                assert manager.get_token() == fake.latest_token()
                fake.assert_token_fetches(1)
                fake.retire_all()
                response = await client.get(url + MENU_PATH)
            with httpx.Client(auth=auth) as sync_client:
                assert sync_client.get(url + MENU_PATH).history == []
        finally:
            await auth.async_manager.aclose()
    assert response.json()["errcode"] == 0
    assert len(response.history) == 1
    assert manager.get_token() == fake.latest_token()
    fake.assert_token_fetches(2)


async def test_wxauth_arguments_are_checked(fake: FakeWeChat) -> None:
    """manager= excludes appid/secret/options; a manager must be a token manager."""
    manager = wxauth.TokenManager(APPID, SECRET)
    with pytest.raises(ValueError, match="manager"):
        WxAuth(APPID, manager=manager)
    with pytest.raises(ValueError, match="manager"):
        WxAuth(manager=manager, clock=fake.clock)
    with pytest.raises(TypeError, match="manager"):
        WxAuth(manager=object())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        WxAuth()


# -- errors ------------------------------------------------------------------------------------


async def test_a_credential_error_surfaces_from_the_flow(
    fake: FakeWeChat, wire: Wire, flavour: str
) -> None:
    """A wrong secret raises CredentialError from the client call; nothing is sent to
    the API, and the secret is in no message."""
    async with api(fake, wire, flavour, secret="0123456789abcdef0123456789abcdef") as client:
        with pytest.raises(wxauth.CredentialError) as caught:
            await client.send("GET", MENU_URL)
    assert caught.value.errcode == 40125
    assert not leaks(str(caught.value), ["0123456789abcdef0123456789abcdef"])
    assert wire.api == []


async def test_a_credential_error_on_the_refetch_surfaces(
    fake: FakeWeChat, wire: Wire, flavour: str
) -> None:
    """The refetch after a rejection is refused for the IP (40164): that configuration
    error is raised, not hidden behind the rejected answer."""
    async with api(fake, wire, flavour) as client:
        await client.send("GET", MENU_URL)
        fake.retire_all()
        fake.fail_next(on="token", errcode=40164)
        with pytest.raises(wxauth.CredentialError) as caught:
            await client.send("GET", MENU_URL)
    assert caught.value.errcode == 40164


async def test_a_failed_refetch_returns_the_rejected_answer(
    fake: FakeWeChat, wire: Wire, flavour: str
) -> None:
    """The refetch fails for a passing reason (HTTP 502): the 40001 answer is returned
    as it is, and the next call heals."""
    async with api(fake, wire, flavour, retries=0) as client:
        await client.send("GET", MENU_URL)
        fake.retire_all()
        fake.fail_next(on="token", status=502)
        response = await client.send("GET", MENU_URL)
        assert response.json()["errcode"] == 40001
        assert response.history == []
        assert (await client.send("GET", MENU_URL)).json()["errcode"] == 0
    fake.assert_token_fetches(3)


@LOOPS
async def test_a_token_client_carrying_its_own_wxauth_fails_at_once(
    fake: FakeWeChat, wire: Wire
) -> None:
    """The AsyncClient the manager fetches with carries the WxAuth of the same app: the
    token request would wait for itself; it fails at once, saying why."""
    async with httpx.AsyncClient(transport=wire) as client:
        auth = WxAuth(APPID, SECRET, client=client, clock=fake.clock, backoff=0, retries=0)
        client.auth = auth
        with anyio.fail_after(5), pytest.raises(wxauth.WxAuthError, match="must not carry"):
            await auth.async_manager.get_token()
    fake.assert_token_fetches(0)


# -- no lock across a yield ------------------------------------------------------------------

CONCURRENT = 12


class Meeting(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Holds every API request until ``CONCURRENT`` of them are in flight together (each
    generation meets again): a flow that held a lock while its request is out would
    leave the others outside, and the meeting would time out."""

    def __init__(self, wire: Wire) -> None:
        self.wire = wire
        self.barrier = threading.Barrier(CONCURRENT, timeout=5)
        self.arrived = 0
        self.met: anyio.Event | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path not in (MENU_PATH,):
            return self.wire.handle_request(request)
        self.barrier.wait()
        return self.wire.handle_request(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == MENU_PATH:
            if self.met is None or self.met.is_set():
                self.met, self.arrived = anyio.Event(), 0
            met = self.met
            self.arrived += 1
            if self.arrived == CONCURRENT:
                met.set()
            with anyio.fail_after(5):
                await met.wait()
        return await self.wire.handle_async_request(request)


async def test_no_lock_is_held_while_a_request_is_out(
    fake: FakeWeChat, wire: Wire, flavour: str
) -> None:
    """Concurrent requests through one WxAuth, cold and then all rejected, are all in
    flight at once (twice: the first sends and the re-sends); one fetch each time."""
    meeting = Meeting(wire)
    async with clients(fake, wire) as auth:
        for _ in range(2):
            responses: list[httpx.Response] = []
            if flavour == "Client":
                with (
                    httpx.Client(transport=meeting, auth=auth) as client,
                    ThreadPoolExecutor(CONCURRENT) as pool,
                ):
                    futures = [pool.submit(client.get, MENU_URL) for _ in range(CONCURRENT)]
                    responses += [f.result(timeout=10) for f in futures]
            else:
                async with httpx.AsyncClient(transport=meeting, auth=auth) as aclient:

                    async def get(
                        aclient: httpx.AsyncClient = aclient,
                        responses: list[httpx.Response] = responses,
                    ) -> None:
                        responses.append(await aclient.get(MENU_URL))

                    async with anyio.create_task_group() as tg:
                        for _ in range(CONCURRENT):
                            tg.start_soon(get)
            assert [r.json()["errcode"] for r in responses] == [0] * CONCURRENT
            fake.retire_all()
    assert len(fake.issued_tokens) == 2
    assert fake.count(kind="api", errcode=40001) == CONCURRENT


# -- with_access_token ------------------------------------------------------------------------


@LOOPS
async def test_the_decorator_awaits_an_async_token_manager_on_the_loop(
    fake: FakeWeChat, wire: Wire
) -> None:
    """with_access_token(AsyncTokenManager) on an async function: the token is awaited
    on the event loop (every token request went out on its thread, none from a worker),
    and a 40001 result is healed with one more call."""
    seen: list[str] = []
    async with httpx.AsyncClient(transport=wire) as token_client:
        manager = wxauth.AsyncTokenManager(APPID, SECRET, client=token_client, clock=fake.clock)

        @wxauth.with_access_token(manager)
        async def send(touser: str, *, access_token: str) -> dict[str, Any]:
            seen.append(access_token)
            return {"errcode": 40001 if len(seen) == 1 else 0, "touser": touser}

        assert await send("OPENID") == {"errcode": 0, "touser": "OPENID"}
    assert seen == fake.issued_tokens
    assert len(seen) == 2
    assert [s.thread for s in wire.token_requests] == [threading.get_ident()] * 2


@LOOPS
async def test_the_decorator_takes_the_native_path_for_an_httpx_wxauth(
    fake: FakeWeChat, wire: Wire
) -> None:
    """with_access_token(httpx WxAuth): an async function gets its token from the async
    manager on the loop; a plain function from the sync one, as before."""
    async with clients(fake, wire) as auth:

        @wxauth.with_access_token(auth)
        async def async_call(*, access_token: str) -> str:
            return access_token

        @wxauth.with_access_token(auth)
        def sync_call(*, access_token: str) -> str:
            return access_token

        token = await async_call()
        assert wire.token_requests[0].thread == threading.get_ident()
        assert await anyio.to_thread.run_sync(sync_call) == token
    fake.assert_token_fetches(1)


async def test_an_async_token_manager_cannot_decorate_a_plain_function() -> None:
    """A plain function cannot await the token: TypeError when it is decorated."""
    manager = wxauth.AsyncTokenManager(APPID, SECRET)

    def plain(*, access_token: str) -> str:
        return access_token

    with pytest.raises(TypeError, match="async"):
        wxauth.with_access_token(manager)(plain)


# -- secrets ------------------------------------------------------------------------------------


async def test_wxauths_logs_and_repr_show_no_secret_or_whole_token(
    fake: FakeWeChat, wire: Wire, flavour: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The heal of a rejection is logged by ``wxauth`` with the token redacted; the
    WxAuth repr names the appid only."""
    caplog.set_level(logging.DEBUG)
    async with clients(fake, wire) as auth, api_with(flavour, wire, auth) as client:
        await client.send("GET", MENU_URL)
        fake.retire_all()
        await client.send("GET", MENU_URL)
        shown = repr(auth)
    records = [r for r in caplog.records if r.name.startswith("wxauth")]
    text = "\n".join(f"{r.getMessage()} {r.args!r}" for r in records)
    assert "errcode 40001" in text
    assert APPID in shown
    assert not leaks(text + shown, [SECRET, *fake.issued_tokens])


async def test_no_whole_token_in_any_log_line(
    fake: FakeWeChat, wire: Wire, flavour: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Every log record at DEBUG, httpx's request lines included, shows no secret and no
    whole token."""
    caplog.set_level(logging.DEBUG)
    async with api(fake, wire, flavour) as client:
        await client.send("GET", MENU_URL)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert not leaks(text, [SECRET, *fake.issued_tokens])


# -- redirects and lifecycle ----------------------------------------------------------------


class Redirecting(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """The emulator, except that an API path redirects to another host, which then
    answers 40001 (as a hostile or broken host would)."""

    def __init__(self, fake: FakeWeChat) -> None:
        self.inner = fake.httpx_transport()
        self.elsewhere: list[str] = []

    def _answer(self, request: httpx.Request) -> httpx.Response | None:
        if request.url.host == "elsewhere.example":
            self.elsewhere.append(str(request.url))
            return httpx.Response(200, json={"errcode": 40001, "errmsg": "invalid credential"})
        if request.url.path == "/cgi-bin/jump":
            return httpx.Response(302, headers={"Location": "https://elsewhere.example/x"})
        return None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._answer(request) or self.inner.handle_request(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return self._answer(request) or await self.inner.handle_async_request(request)


async def test_an_answer_from_another_host_after_a_redirect_is_not_healed(
    fake: FakeWeChat,
) -> None:
    """With follow_redirects=True, the 40001 of the host a redirect led to neither drops
    the good token nor makes wxauth fetch and send a fresh one there."""
    transport = Redirecting(fake)
    auth = WxAuth(APPID, SECRET, client=httpx.AsyncClient(transport=transport))
    async with httpx.AsyncClient(auth=auth, transport=transport, follow_redirects=True) as client:
        r = await client.get("https://api.weixin.qq.com/cgi-bin/jump")
    assert r.json()["errcode"] == 40001
    assert transport.elsewhere == ["https://elsewhere.example/x"]  # no token went there
    assert fake.token_fetches == 1
    assert auth.async_manager.stats.invalidations == 0
    await auth.async_manager.aclose()


async def test_aclose_from_another_task_stops_the_background_refresh(
    fake: FakeWeChat, wire: Wire
) -> None:
    """A shutdown task may call aclose() while the manager is open in another task's
    ``async with``: the refresh task ends, and the block still exits cleanly."""
    manager = wxauth.AsyncTokenManager(
        APPID,
        SECRET,
        client=httpx.AsyncClient(transport=wire),
        clock=fake.clock,
        background_refresh=True,
        poll_interval=0.01,
    )
    async with manager:
        scope = manager._background_scope
        assert scope is not None
        assert not scope.cancel_called
        async with anyio.create_task_group() as tg:
            tg.start_soon(manager.aclose)
        assert scope.cancel_called  # the refresh task's own scope, not this task's
    assert manager._task_group is None  # left by the task that entered it
