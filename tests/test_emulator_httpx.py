"""The emulator as an httpx transport: ``fake.httpx_transport()`` answers the requests
of an ``httpx.Client`` (run here from a worker thread) and of an ``httpx.AsyncClient``
(on asyncio and trio), records them, injects faults, and waits out token latency
without blocking an event loop."""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from test_emulator_frontends import run_python

from wxauth._httpx_transport import AsyncHttpxTransport, HttpxTransport
from wxauth._protocol import TokenRequest, classic_token_request, read_token_answer
from wxauth._secret import Secret
from wxauth.testing import FakeWeChat
from wxauth.transport import HTTPAnswer, TransportError

APPID = "wxemuhttpx0000001"
SECRET = "emulator-httpx-secret"
WECHAT = "https://api.weixin.qq.com"
TOKEN_QUERY = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


#: The sync client once (from a worker thread), the async one on asyncio and on trio.
every_client = pytest.mark.parametrize(
    ("mode", "anyio_backend"), [("sync", "asyncio"), ("async", "asyncio"), ("async", "trio")]
)


@pytest.fixture
def fake(fake_wechat: FakeWeChat) -> FakeWeChat:
    fake_wechat.add_app(APPID, SECRET)
    return fake_wechat


class Client:
    """One face for both clients: ``await request(...)`` and ``await send(token_request)``
    (through wxauth's httpx transport of the same kind)."""

    def __init__(self, client: httpx.Client | httpx.AsyncClient) -> None:
        self.client = client

    async def request(self, method: str, url: str, **options: Any) -> httpx.Response:
        if isinstance(self.client, httpx.AsyncClient):
            return await self.client.request(method, url, **options)
        call = functools.partial(self.client.request, method, url, **options)
        return await anyio.to_thread.run_sync(call)

    async def send(self, request: TokenRequest, timeout: float = 5) -> HTTPAnswer:
        if isinstance(self.client, httpx.AsyncClient):
            return await AsyncHttpxTransport(self.client).send(request, timeout=timeout)
        call = functools.partial(HttpxTransport(self.client).send, request, timeout=timeout)
        return await anyio.to_thread.run_sync(call)


@pytest.fixture
async def client(mode: str, anyio_backend: str, fake: FakeWeChat) -> AsyncIterator[Client]:
    if mode == "async":
        async with httpx.AsyncClient(transport=fake.httpx_transport()) as async_client:
            yield Client(async_client)
    else:
        with httpx.Client(transport=fake.httpx_transport()) as sync_client:
            yield Client(sync_client)


def token_request() -> TokenRequest:
    return classic_token_request(APPID, Secret(SECRET), WECHAT)


# -- answers ----------------------------------------------------------------------------------


@pytest.mark.anyio
@every_client
async def test_a_token_fetch_and_api_calls(client: Client, fake: FakeWeChat) -> None:
    """A token from /cgi-bin/token opens an API path; an unknown token gets 40014."""
    token = (await client.request("GET", f"{WECHAT}/cgi-bin/token", params=TOKEN_QUERY)).json()
    assert token["expires_in"] == 7200
    api = f"{WECHAT}/cgi-bin/user/get"
    ok = await client.request("GET", api, params={"access_token": token["access_token"]})
    assert ok.json()["errcode"] == 0
    assert ok.headers["Content-Type"] == "application/json; encoding=utf-8"
    rejected = await client.request("GET", api, params={"access_token": "nope"})
    assert rejected.json()["errcode"] == 40014
    assert fake.token_fetches == 1
    assert fake.api_calls == 2
    assert fake.errcodes(kind="api") == {0: 1, 40014: 1}
    assert fake.calls[1].token == token["access_token"]


@pytest.mark.anyio
@every_client
async def test_a_post_body_reaches_the_emulator(client: Client, fake: FakeWeChat) -> None:
    """stable_token reads the secret from the JSON body."""
    body = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
    got = await client.request("POST", f"{WECHAT}/cgi-bin/stable_token", json=body)
    assert "access_token" in got.json()
    fake.assert_token_fetches(1, kind="stable_token")


@pytest.mark.anyio
@every_client
async def test_wxauth_transports_fetch_through_it(client: Client, fake: FakeWeChat) -> None:
    """HttpxTransport and AsyncHttpxTransport on an emulated client get a token answer."""
    request = token_request()
    answer = await client.send(request)
    data = read_token_answer(request, answer.status, answer.headers, answer.body)
    assert isinstance(data, dict)
    assert data["access_token"] == fake.latest_token(APPID)


@pytest.mark.anyio
@every_client
async def test_every_host_is_answered_by_the_emulator(client: Client, fake: FakeWeChat) -> None:
    """A client on the emulator's transport reaches nothing else, whatever the URL."""
    got = await client.request("GET", "http://example.invalid/cgi-bin/token", params=TOKEN_QUERY)
    assert "access_token" in got.json()
    fake.assert_token_fetches(1)


# -- faults -------------------------------------------------------------------------------------


@pytest.mark.anyio
@every_client
@pytest.mark.parametrize(
    ("fault", "status", "shows"),
    [
        ({"errcode": -1}, 200, b'"errcode":-1'),
        ({"status": 502}, 502, b"502 Bad Gateway"),
        ({"html": True}, 200, b"<html>"),
    ],
)
async def test_injected_faults_are_answered(
    client: Client, fake: FakeWeChat, fault: dict[str, Any], status: int, shows: bytes
) -> None:
    """errcode, status and html faults come back as WeChat (or its gateway) sends them."""
    fake.fail_next(**fault)
    got = await client.request("GET", f"{WECHAT}/cgi-bin/token", params=TOKEN_QUERY)
    assert got.status_code == status
    assert shows in got.content
    assert fake.calls[-1].fault is not None


@pytest.mark.anyio
@every_client
async def test_a_hang_raises_read_timeout_at_once(client: Client, fake: FakeWeChat) -> None:
    """An injected hang is httpx.ReadTimeout at once, as if the client's timeout fired;
    through a wxauth transport it is the timeout it reports."""
    fake.fail_next(2, hang=30)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout, match="emulated hang"):
        await client.request("GET", f"{WECHAT}/cgi-bin/token", params=TOKEN_QUERY)
    with pytest.raises(TransportError, match=r"^timed out after 5s: emulated hang") as info:
        await client.send(token_request())
    assert not info.value.retryable
    assert time.monotonic() - started < 1
    assert [call.fault for call in fake.calls] == ["hang 30s", "hang 30s"]


def test_client_ip_feeds_the_allowlist(fake_wechat: FakeWeChat) -> None:
    """The allowlist sees ``client_ip``: 127.0.0.1 by default."""
    fake_wechat.add_app(APPID, SECRET, ip_allowlist=["10.1.2.3"])
    url = f"{WECHAT}/cgi-bin/token"
    with httpx.Client(transport=fake_wechat.httpx_transport()) as refused:
        assert refused.get(url, params=TOKEN_QUERY).json()["errcode"] == 40164
    with httpx.Client(transport=fake_wechat.httpx_transport(client_ip="10.1.2.3")) as allowed:
        assert "access_token" in allowed.get(url, params=TOKEN_QUERY).json()
    assert [call.client_ip for call in fake_wechat.calls] == ["127.0.0.1", "10.1.2.3"]


# -- token latency -----------------------------------------------------------------------------


def test_latency_holds_a_sync_client(fake: FakeWeChat) -> None:
    """A sync client waits ``token_latency`` for a token, not for an API call."""
    fake.token_latency = 0.3
    with httpx.Client(transport=fake.httpx_transport()) as sync_client:
        started = time.monotonic()
        token = sync_client.get(f"{WECHAT}/cgi-bin/token", params=TOKEN_QUERY).json()
        assert time.monotonic() - started >= 0.3
        started = time.monotonic()
        sync_client.get(f"{WECHAT}/cgi-bin/user/get", params=token)
        assert time.monotonic() - started < 0.2


@pytest.mark.anyio
async def test_latency_does_not_block_the_event_loop(anyio_backend: str, fake: FakeWeChat) -> None:
    """Three fetches waiting 0.3 s each, at once, take about 0.3 s in all, and the loop
    keeps running meanwhile."""
    fake.token_latency = 0.3
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.sleep(0.01)

    async with httpx.AsyncClient(transport=fake.httpx_transport()) as async_client:
        get = functools.partial(async_client.get, f"{WECHAT}/cgi-bin/token", params=TOKEN_QUERY)
        started = time.monotonic()
        async with anyio.create_task_group() as fetches:
            fetches.start_soon(tick)
            async with anyio.create_task_group() as waiting:
                for _ in range(3):
                    waiting.start_soon(get)
            fetches.cancel_scope.cancel()
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 0.55, elapsed
    assert ticks >= 10
    fake.assert_token_fetches(3)


@pytest.mark.anyio
async def test_closing_the_fake_ends_an_async_latency_wait(
    anyio_backend: str, fake: FakeWeChat
) -> None:
    """close() releases a client awaiting a long latency, as it does a server's."""
    fake.token_latency = 30
    async with httpx.AsyncClient(transport=fake.httpx_transport()) as async_client:
        started = time.monotonic()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(
                functools.partial(async_client.get, f"{WECHAT}/cgi-bin/token", params=TOKEN_QUERY)
            )
            await anyio.sleep(0.1)
            fake.close()
    assert time.monotonic() - started < 1


# -- packaging ----------------------------------------------------------------------------------


def test_the_emulator_imports_without_httpx() -> None:
    """httpx is optional: wxauth.testing neither imports nor needs it, and
    httpx_transport() says what to install."""
    light = run_python("import sys, wxauth.testing; print('httpx' in sys.modules)")
    assert light.returncode == 0, light.stderr
    assert light.stdout.strip() == "False"
    code = (
        "import sys; sys.modules['httpx'] = None; import wxauth.testing as t\n"
        "try: t.FakeWeChat().httpx_transport()\n"
        "except ImportError as exc: print(exc)"
    )
    missing = run_python(code)
    assert missing.returncode == 0, missing.stderr
    assert "pip install 'wxauth[httpx]'" in missing.stdout


def test_the_transport_is_an_httpx_mock_transport(fake: FakeWeChat) -> None:
    """It is an httpx.MockTransport, and its repr shows the fake, no secret."""
    transport = fake.httpx_transport()
    assert isinstance(transport, httpx.MockTransport)
    assert APPID in repr(transport)
    assert SECRET not in repr(transport)
