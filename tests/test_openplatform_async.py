"""AsyncComponentTokenManager: a platform for async code, under asyncio and trio, against
the emulator (``fake.intercept()`` answers httpx in process)."""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Iterator

import anyio
import httpx
import pytest

import wxauth
from wxauth.httpx import WxAuth
from wxauth.openplatform import (
    AsyncComponentTokenManager,
    AuthorizerNotAuthorizedError,
    ComponentTokenManager,
    PushSignatureError,
)
from wxauth.testing import FakeWeChat

COMPONENT = "wxcomponent0000003"
SECRET = "the-component-secret-async-00001"
PUSH_TOKEN = "the-push-token-03"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
AUTHORIZER = "wxauthorizer000003"
API = "https://api.weixin.qq.com/cgi-bin/user/info"

pytestmark = pytest.mark.anyio


@pytest.fixture
def fake() -> Iterator[FakeWeChat]:
    fake = FakeWeChat()
    fake.add_component(COMPONENT, SECRET, token=PUSH_TOKEN, encoding_aes_key=AES_KEY)
    fake.add_api("/cgi-bin/user/info", json={"subscribe": 1})
    with fake, fake.intercept():
        yield fake


def new_platform(fake: FakeWeChat, store: wxauth.TokenStore) -> AsyncComponentTokenManager:
    return AsyncComponentTokenManager(
        COMPONENT,
        SECRET,
        token=PUSH_TOKEN,
        encoding_aes_key=AES_KEY,
        store=store,
        clock=fake.clock,
        backoff=0,
    )


async def test_push_authorization_and_a_cold_authorizer_burst(fake: FakeWeChat) -> None:
    """A ticket push and an authorization push handled with await; then 200 tasks ask a
    cold authorizer for its token at once: one fetch, one token."""
    async with new_platform(fake, wxauth.MemoryStore()) as platform:
        event = await platform.handle_push(*fake.verify_ticket_push(COMPONENT))
        assert event.info_type == "component_verify_ticket"
        query, body = fake.authorization_push(COMPONENT, AUTHORIZER)
        event = await platform.handle_push(query, body)
        assert event.info_type == "authorized"
        # Forget the token the exchange stored: the burst below starts cold.
        tokens = platform.authorizer(AUTHORIZER)
        assert await tokens.invalidate(await tokens.get_token())
        before = fake.count(kind="authorizer_token")
        seen: list[str] = []

        async def one() -> None:
            seen.append(await tokens.get_token())

        async with anyio.create_task_group() as group:
            for _ in range(200):
                group.start_soon(one)
    assert len(seen) == 200
    assert len(set(seen)) == 1
    assert fake.count(kind="authorizer_token") == before + 1
    assert seen[0] == fake.authorizer_token_of(AUTHORIZER, COMPONENT)


async def test_authorization_url_query_auth_and_an_async_client(fake: FakeWeChat) -> None:
    """The whole flow with await, then an httpx.AsyncClient authenticated as the
    authorizer heals a retired token once."""
    async with new_platform(fake, wxauth.MemoryStore()) as platform:
        await platform.handle_push(*fake.verify_ticket_push(COMPONENT))
        url = await platform.authorization_url("https://platform.example.com/back")
        pre_auth = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
        auth_code = fake.approve_authorization(COMPONENT, pre_auth["pre_auth_code"], AUTHORIZER)
        authorization = await platform.query_auth(auth_code)
        assert authorization.authorizer_appid == AUTHORIZER
        auth = WxAuth(manager=platform.authorizer(AUTHORIZER))
        async with httpx.AsyncClient(auth=auth) as client:
            assert (await client.get(API)).json() == {"subscribe": 1}
            fake.retire_all()
            healed = await client.get(API)
    assert healed.json() == {"subscribe": 1}
    assert fake.count(kind="api", errcode=40001) == 1


async def test_a_sync_and_an_async_face_share_one_platform(fake: FakeWeChat) -> None:
    """from_sync: the component token and an authorizer's token are the sync platform's
    (same store, same keys): no second fetch either way."""
    sync = ComponentTokenManager(
        COMPONENT,
        SECRET,
        token=PUSH_TOKEN,
        encoding_aes_key=AES_KEY,
        store=wxauth.MemoryStore(),
        clock=fake.clock,
    )
    sync.handle_push(*fake.verify_ticket_push(COMPONENT))
    sync.query_auth(fake.authorize(COMPONENT, AUTHORIZER))
    async with AsyncComponentTokenManager.from_sync(sync) as platform:
        assert await platform.get_token() == sync.get_token()
        assert await platform.authorizer(AUTHORIZER).get_token() == (
            sync.authorizer(AUTHORIZER).get_token()
        )
        assert platform.authorizer(AUTHORIZER) is platform.authorizer(AUTHORIZER)
    assert fake.count(kind="component_token") == 1
    assert fake.count(kind="authorizer_token") == 0  # the exchange's token, still valid
    # Leaving the async face did not close the caller's platform (its HTTP session is
    # still open); an AsyncComponentTokenManager that built its platform closes it.
    assert sync.tokens._own_session is not None
    sync.close()
    assert sync.tokens._own_session is None
    with pytest.raises(TypeError, match="ComponentTokenManager"):
        AsyncComponentTokenManager.from_sync(object())  # type: ignore[arg-type]


async def test_errors_are_the_sync_platforms(fake: FakeWeChat) -> None:
    """A forged push and a never-authorized account raise the same types as on the sync
    side; the operations run off the event loop's thread."""
    async with new_platform(fake, wxauth.MemoryStore()) as platform:
        query, body = fake.verify_ticket_push(COMPONENT)
        forged = dict(query, msg_signature="0" * 40)
        with pytest.raises(PushSignatureError):
            await platform.handle_push(forged, body)
        await platform.handle_push(query, body)
        with pytest.raises(AuthorizerNotAuthorizedError):
            await platform.authorizer("wxneverauthorized1").get_token()
        loop_thread = threading.get_ident()
        threads: list[int] = []
        real = platform.sync.create_pre_auth_code

        def spy() -> wxauth.openplatform.PreAuthCode:
            threads.append(threading.get_ident())
            return real()

        platform.sync.create_pre_auth_code = spy  # type: ignore[method-assign]
        await platform.create_pre_auth_code()
    assert threads
    assert threads[0] != loop_thread
    assert "the-component-secret" not in repr(platform)
