"""Authorizers of a platform: their managers in WxAuth, the decorator and the httpx auth,
durable refresh tokens, and recovery through api_get_authorizer_list, against the
emulator."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
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
    AuthorizerTokenSource,
    ComponentTokenManager,
    RefreshTokenError,
)
from wxauth.openplatform._protocol import LIST_PAGE_SIZE
from wxauth.testing import FakeWeChat

API = "https://api.weixin.qq.com/cgi-bin/user/info"
LIST_PATH = "/cgi-bin/component/api_get_authorizer_list"


@pytest.fixture
def fake(wechat: FakeWeChat) -> FakeWeChat:
    """The emulator behind api.weixin.qq.com, with the platform registered."""
    wechat.add_component(COMPONENT, SECRET, token=PUSH_TOKEN, encoding_aes_key=AES_KEY)
    return wechat


def ready(
    fake: FakeWeChat, store: wxauth.TokenStore | None = None, **options: object
) -> ComponentTokenManager:
    """A platform with a ticket and AUTHORIZER authorized through query_auth."""
    platform = platform_on(fake, store, **options)
    pushed_ticket(fake, platform)
    platform.query_auth(fake.authorize(COMPONENT, AUTHORIZER))
    return platform


def stored_refresh(platform: ComponentTokenManager, appid: str = AUTHORIZER) -> str | None:
    stored = platform.refresh_tokens.get(appid)
    return None if stored is None or stored.token is None else stored.token.get_secret_value()


def list_calls(fake: FakeWeChat) -> int:
    return fake.count(path=LIST_PATH)


# -- the manager wherever a TokenManager goes ---------------------------------------------


def test_wxauth_on_a_session_calls_an_api_as_the_authorizer(fake: FakeWeChat) -> None:
    """session.auth = WxAuth(manager=platform.authorizer(a)): the API sees a's token."""
    platform = ready(fake)
    session = requests.Session()
    session.auth = wxauth.WxAuth(manager=platform.authorizer(AUTHORIZER))
    assert session.get(API, params={"openid": "o1"}, timeout=10).json()["errcode"] == 0
    assert fake.calls[-1].token == fake.authorizer_token_of(AUTHORIZER)
    assert fake.calls[-1].owner == AUTHORIZER


def test_40001_on_the_api_heals_once_with_the_refresh_token(fake: FakeWeChat) -> None:
    """The authorizer token is retired: one api_authorizer_token call, the request sent
    once more, the caller sees a success."""
    platform = ready(fake)
    session = requests.Session()
    session.auth = wxauth.WxAuth(manager=platform.authorizer(AUTHORIZER))
    session.get(API, timeout=10)
    fake.retire(fake.authorizer_token_of(AUTHORIZER) or "")
    answer = session.get(API, timeout=10)
    assert answer.json()["errcode"] == 0
    assert len(answer.history) == 1
    assert fake.count(kind="authorizer_token") == 1


def test_32_threads_on_a_cold_authorizer_make_one_fetch(fake: FakeWeChat) -> None:
    """Single flight for the authorizer token and the component token under it."""
    platform = platform_on(fake)
    pushed_ticket(fake, platform)
    fake.add_authorizers(COMPONENT, [AUTHORIZER])
    platform.recover_refresh_tokens()
    manager = platform.authorizer(AUTHORIZER)
    with ThreadPoolExecutor(32) as pool:
        seen = set(pool.map(lambda _: manager.get_token(), range(32)))
    assert seen == {fake.authorizer_token_of(AUTHORIZER)}
    assert fake.count(kind="authorizer_token") == 1
    assert fake.count(kind="component_token") == 1


def test_the_decorator_and_the_httpx_auth_take_an_authorizer_manager(fake: FakeWeChat) -> None:
    import httpx

    import wxauth.httpx

    platform = ready(fake)
    manager = platform.authorizer(AUTHORIZER)

    @wxauth.with_access_token(manager)
    def user_info(*, access_token: str) -> dict[str, object]:
        return dict(requests.get(API, params={"access_token": access_token}, timeout=10).json())

    assert user_info()["errcode"] == 0
    with httpx.Client(
        transport=fake.httpx_transport(), auth=wxauth.httpx.WxAuth(manager=manager)
    ) as client:
        assert client.get(API).json()["errcode"] == 0
    assert fake.calls[-1].token == fake.authorizer_token_of(AUTHORIZER)


@pytest.mark.anyio
async def test_an_async_client_fetches_through_the_sync_source(fake: FakeWeChat) -> None:
    """httpx.AsyncClient with the authorizer's WxAuth: the source's fetch runs in a
    worker thread (it has no async flow) and heals a retired token."""
    import httpx

    import wxauth.httpx

    platform = ready(fake)
    auth = wxauth.httpx.WxAuth(manager=platform.authorizer(AUTHORIZER))
    async with httpx.AsyncClient(transport=fake.httpx_transport(), auth=auth) as client:
        fake.retire(fake.authorizer_token_of(AUTHORIZER) or "")
        assert (await client.get(API)).json()["errcode"] == 0
    assert fake.count(kind="authorizer_token") == 1


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_authorizer_managers_are_bounded_and_start_no_thread(fake: FakeWeChat) -> None:
    """500 authorizers, at most max_authorizer_managers managers kept, no thread each
    (background_refresh applies to the component token only)."""
    platform = platform_on(fake, max_authorizer_managers=10, background_refresh=True)
    managers = [platform.authorizer(f"wxauthorizer{i:06d}") for i in range(500)]
    assert len(platform._managers) == 10
    assert platform.authorizer("wxauthorizer000499") is managers[-1]
    assert not any(m._background or m._refresher for m in managers)
    pushed_ticket(fake, platform)
    fake.add_authorizers(COMPONENT, [AUTHORIZER])
    used = platform.authorizer(AUTHORIZER)
    assert used.get_token()
    assert used._refresher is None
    assert platform.tokens._refresher is not None  # the component token's one thread
    assert isinstance(managers[0].source, AuthorizerTokenSource)
    assert managers[0].key == f"token:authorizer:{COMPONENT}:wxauthorizer000000"
    platform.close()


# -- refresh tokens: durable, recovered --------------------------------------------------


def test_lost_refresh_tokens_come_back_from_one_list_pass(fake: FakeWeChat) -> None:
    """1200 authorizers, none stored (a flushed store): 24 threads asking for 24 of them
    make exactly one pass over the list (3 pages of WeChat's largest, 500) and all get
    their token."""
    platform = platform_on(fake)
    pushed_ticket(fake, platform)
    appids = [f"wxauthorizer{i:06d}" for i in range(1200)]
    fake.add_authorizers(COMPONENT, appids)
    with ThreadPoolExecutor(24) as pool:
        tokens = list(pool.map(lambda a: platform.authorizer(a).get_token(), appids[::50]))
    assert all(tokens)
    assert LIST_PAGE_SIZE == 500
    assert list_calls(fake) == 3
    assert platform.authorizer_appids() == sorted(appids)
    assert stored_refresh(platform, appids[7]) == fake.refresh_token_of(appids[7])


def test_a_reauthorization_whose_push_was_missed_heals_through_61023(fake: FakeWeChat) -> None:
    """The account re-authorized (new refresh token, tokens retired) and the push never
    came: 40001 on the API, 61023 on the refresh, one list pass, one retry, success."""
    platform = ready(fake)
    session = requests.Session()
    session.auth = wxauth.WxAuth(manager=platform.authorizer(AUTHORIZER))
    session.get(API, timeout=10)
    old = stored_refresh(platform)
    fake.authorize(COMPONENT, AUTHORIZER)  # the code is never exchanged
    assert session.get(API, timeout=10).json()["errcode"] == 0
    assert fake.count(kind="authorizer_token", errcode=61023) == 1
    assert fake.count(kind="authorizer_token", errcode=0) == 1
    assert list_calls(fake) == 1
    assert stored_refresh(platform) == fake.refresh_token_of(AUTHORIZER) != old


def test_61023_with_nothing_new_in_the_list_is_a_refresh_token_error(fake: FakeWeChat) -> None:
    """WeChat refuses a refresh token the list still gives: RefreshTokenError after one
    pass; a second refusal within a minute makes no second pass."""
    platform = ready(fake)
    manager = platform.authorizer(AUTHORIZER)
    fake.fail_next(1, on="/cgi-bin/component/api_authorizer_token", errcode=61023)
    with pytest.raises(RefreshTokenError) as caught:
        manager.refresh()
    assert caught.value.errcode == 61023
    assert list_calls(fake) == 1
    fake.fail_next(1, on="/cgi-bin/component/api_authorizer_token", errcode=61023)
    fake.advance(2)  # past the manager's failure pause
    with pytest.raises(RefreshTokenError):
        manager.refresh()
    assert list_calls(fake) == 1
    fake.advance(61)
    assert manager.refresh() == fake.authorizer_token_of(AUTHORIZER)


def test_a_rotated_refresh_token_replaces_the_stored_one(fake: FakeWeChat) -> None:
    """When api_authorizer_token answers a different refresh token, it is stored, and
    the next refresh sends it."""
    platform = ready(fake)
    fake.rotate_refresh_tokens = True
    manager = platform.authorizer(AUTHORIZER)
    first = stored_refresh(platform)
    manager.refresh()
    second = stored_refresh(platform)
    assert second == fake.refresh_token_of(AUTHORIZER) != first
    fake.advance(400)  # past the old refresh token's grace
    manager.refresh()
    assert stored_refresh(platform) == fake.refresh_token_of(AUTHORIZER) != second
    assert fake.count(kind="authorizer_token", errcode=61023) == 0


def test_a_rotated_token_never_overwrites_a_newer_record(fake: FakeWeChat) -> None:
    """Compare-and-set: if the record changed during the fetch (a re-authorization
    stored by another process), the rotated token from the old one is dropped."""
    platform = ready(fake)
    fake.rotate_refresh_tokens = True
    stored = platform.refresh_tokens.get(AUTHORIZER)
    assert stored is not None
    other = platform_on(fake, platform.store)
    other.refresh_tokens.put(AUTHORIZER, wxauth.Secret("refreshtoken@@@from-another-process"))
    assert platform.refresh_tokens.replace(AUTHORIZER, stored, wxauth.Secret("rotated")) is False
    assert stored_refresh(platform) == "refreshtoken@@@from-another-process"


def test_an_authorizer_never_authorized_is_a_typed_error(fake: FakeWeChat) -> None:
    """No refresh token stored nor listed: AuthorizerNotAuthorizedError (61003), after
    one list pass; asking again within a minute passes over the list no more."""
    platform = platform_on(fake)
    pushed_ticket(fake, platform)
    manager = platform.authorizer("wxnever0000000001")
    for _ in range(3):
        with pytest.raises(AuthorizerNotAuthorizedError) as caught:
            manager.get_token()
        assert caught.value.errcode == 61003
        assert "never authorized" in str(caught.value)
        fake.advance(2)
    assert list_calls(fake) == 1
    assert fake.count(kind="authorizer_token") == 0


def test_a_cancellation_without_a_push_is_found_by_61003(fake: FakeWeChat) -> None:
    """The account cancelled and the push was lost: 61003 forgets the refresh token."""
    platform = ready(fake)
    fake.unauthorize(COMPONENT, AUTHORIZER)
    with pytest.raises(AuthorizerNotAuthorizedError):
        platform.authorizer(AUTHORIZER).refresh()
    assert platform.authorizer_appids() == []


def test_a_component_token_retired_under_an_authorizer_fetch_heals_once(fake: FakeWeChat) -> None:
    """api_authorizer_token answers 40001 for the component token: one new component
    token, the refresh sent once more."""
    platform = ready(fake)
    platform.get_token()
    fake.retire_all()
    assert platform.authorizer(AUTHORIZER).refresh() == fake.authorizer_token_of(AUTHORIZER)
    assert fake.count(kind="authorizer_token", errcode=40001) == 1
    assert fake.count(kind="component_token") == 2


def test_a_file_store_keeps_refresh_tokens_for_good(fake: FakeWeChat, tmp_path: Path) -> None:
    """Another process (a new platform on the same directory), days later, refreshes
    without a list pass; the record has no expiry."""
    ready(fake, wxauth.FileStore(tmp_path / "store"))
    records = list((tmp_path / "store").glob("*.records/*.rec"))
    assert len([r for r in records if AUTHORIZER in r.read_text()]) == 1
    assert not [r for r in records if "until" in r.read_text()]
    fake.advance(30 * 86400)
    later = platform_on(fake, wxauth.FileStore(tmp_path / "store"))
    pushed_ticket(fake, later)
    assert later.authorizer(AUTHORIZER).get_token() == fake.authorizer_token_of(AUTHORIZER)
    assert list_calls(fake) == 0


@pytest.mark.redis
def test_a_redis_store_keeps_refresh_tokens_without_a_ttl(fake: FakeWeChat, redis_url: str) -> None:
    """The refresh tokens are a hash with no TTL; another client's platform uses them."""
    import redis

    platform = ready(fake, wxauth.RedisStore.from_url(redis_url))
    client = redis.Redis.from_url(redis_url)
    try:
        key = f"wxauth:records:{platform.keys.refresh_table}"
        assert client.ttl(key) == -1
        assert client.hkeys(key) == [AUTHORIZER.encode()]
    finally:
        client.close()
    other = platform_on(fake, wxauth.RedisStore.from_url(redis_url))
    assert other.authorizer(AUTHORIZER).refresh() == fake.authorizer_token_of(AUTHORIZER)
    assert list_calls(fake) == 0


def test_platforms_never_share_keys(fake: FakeWeChat) -> None:
    """Two platforms on one store keep tickets, tokens and refresh tokens apart."""
    store = wxauth.MemoryStore()
    other_appid = "wxcomponent0000002"
    fake.add_component(other_appid, SECRET, token=PUSH_TOKEN, encoding_aes_key=AES_KEY)
    first = ready(fake, store)
    second = ComponentTokenManager(
        other_appid,
        SECRET,
        token=PUSH_TOKEN,
        encoding_aes_key=AES_KEY,
        store=store,
        clock=fake.clock,
    )
    assert second.authorizer_appids() == []
    assert {first.keys.ticket, first.keys.refresh_table, first.key}.isdisjoint(
        {second.keys.ticket, second.keys.refresh_table, second.key}
    )
    assert first.authorizer(AUTHORIZER).key != second.authorizer(AUTHORIZER).key
