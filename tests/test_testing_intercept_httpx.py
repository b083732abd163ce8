"""``fake.intercept()`` answers httpx as well as requests: sync and async clients with
their default transport, under asyncio and trio; loopback passes through; any other
host is refused; the patch is gone when the last interceptor stops."""

from __future__ import annotations

import anyio
import httpx
import pytest
import requests

import wxauth
from wxauth import AsyncTokenManager, MemoryStore, TokenManager
from wxauth.httpx import WxAuth
from wxauth.testing import FakeWeChat

APPID = "wx00000000000000b2"
SECRET = "b2" * 16
TOKEN_URL = "https://api.weixin.qq.com/cgi-bin/token"
PARAMS = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
API_URL = "https://api.weixin.qq.com/cgi-bin/user/info"


@pytest.fixture
def fake() -> FakeWeChat:
    fake = FakeWeChat()
    fake.add_app(APPID, SECRET)
    fake.add_api("/cgi-bin/user/info", json={"subscribe": 1})
    return fake


def test_sync_httpx_client_is_answered_by_the_emulator(fake: FakeWeChat) -> None:
    """A plain httpx.Client made before the interceptor started gets the emulator's
    token; the same interceptor answers requests too."""
    client = httpx.Client()
    with fake.intercept():
        token = client.get(TOKEN_URL, params=PARAMS).json()["access_token"]
        assert fake.token_status(token) == "valid"
        answer = requests.get(API_URL, params={"access_token": token}, timeout=5)
        assert answer.json() == {"subscribe": 1}
    client.close()
    assert fake.token_fetches == 1
    assert fake.api_calls == 1


@pytest.mark.anyio
async def test_async_client_with_wxauth_runs_under_intercept(fake: FakeWeChat) -> None:
    """The issue's async example, unchanged code: httpx.AsyncClient(auth=WxAuth(...))
    under fake.intercept() fetches once and heals a retired token once."""
    auth = WxAuth(APPID, SECRET, store=MemoryStore())
    with fake.intercept():
        async with httpx.AsyncClient(auth=auth) as client:
            first = await client.get(API_URL)
            assert first.json() == {"subscribe": 1}
            fake.retire_all()
            healed = await client.get(API_URL)
    assert healed.json() == {"subscribe": 1}
    assert fake.token_fetches == 2
    assert fake.count(kind="api", errcode=40001) == 1


@pytest.mark.anyio
async def test_token_latency_is_awaited_not_slept(fake: FakeWeChat) -> None:
    """With 0.2 s of token latency, 50 tasks wait on one fetch and the loop runs on:
    a ticker keeps ticking during the fetch."""
    fake.token_latency = 0.2
    ticks = 0
    done = anyio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await anyio.sleep(0.01)

    with fake.intercept():
        tokens = AsyncTokenManager(APPID, SECRET, store=MemoryStore())
        results: list[str] = []

        async def one() -> None:
            results.append(await tokens.get_token())

        async with anyio.create_task_group() as group:
            group.start_soon(ticker)
            async with anyio.create_task_group() as callers:
                for _ in range(50):
                    callers.start_soon(one)
            done.set()
        await tokens.aclose()
    assert len(set(results)) == 1
    assert len(results) == 50
    assert fake.token_fetches == 1
    assert ticks >= 5  # the loop ran during the 0.2 s fetch


def test_other_hosts_are_refused_and_loopback_passes(fake: FakeWeChat) -> None:
    """No request escapes to the network; the loopback emulator server still answers."""
    with fake.serve() as base, fake.intercept(), httpx.Client() as client:
        with pytest.raises(httpx.ConnectError, match="not intercepted"):
            client.get("https://example.com/")
        served = client.get(base + "/cgi-bin/token", params=PARAMS)
        assert "access_token" in served.json()
    assert fake.token_fetches == 1


def test_passthru_prefix_reaches_the_network(fake: FakeWeChat) -> None:
    """A URL named in passthru is sent on (127.0.0.2 is loopback, but not one of the
    addresses that pass by default; nothing listens on port 1, so it is refused)."""
    url = "http://127.0.0.2:1/"
    with httpx.Client() as client:
        with fake.intercept(), pytest.raises(httpx.ConnectError, match="not intercepted"):
            client.get(url)
        with (
            fake.intercept(passthru=["http://127.0.0.2"]),
            pytest.raises(httpx.ConnectError) as info,
        ):
            client.get(url)
    assert "not intercepted" not in str(info.value)


def test_patch_is_removed_when_the_last_interceptor_stops(fake: FakeWeChat) -> None:
    """Nested interceptors: the inner one answers while it runs; the outer one answers
    again after; the transports' own methods are back when both stopped."""
    sync_handler = httpx.HTTPTransport.handle_request
    async_handler = httpx.AsyncHTTPTransport.handle_async_request
    other = FakeWeChat()
    other.add_app(APPID, SECRET)
    with fake.intercept(), httpx.Client() as client:
        assert httpx.HTTPTransport.handle_request is not sync_handler
        with other.intercept():
            client.get(TOKEN_URL, params=PARAMS)
        client.get(TOKEN_URL, params=PARAMS)
    assert (fake.token_fetches, other.token_fetches) == (1, 1)
    assert httpx.HTTPTransport.handle_request is sync_handler
    assert httpx.AsyncHTTPTransport.handle_async_request is async_handler


def test_sync_wxauth_and_token_manager_under_intercept(fake: FakeWeChat) -> None:
    """The sync side of wxauth.httpx.WxAuth and a TokenManager share one token."""
    store = MemoryStore()
    with fake.intercept():
        with httpx.Client(auth=WxAuth(APPID, SECRET, store=store)) as client:
            assert client.get(API_URL).json() == {"subscribe": 1}
        assert TokenManager(APPID, SECRET, store=store).get_token() == fake.latest_token()
    assert fake.token_fetches == 1
    assert isinstance(wxauth.httpx.WxAuth, type)
