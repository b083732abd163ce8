"""ComponentTokenManager: pushes, the verify ticket and the component token, against the
emulator (in process, or on loopback for the example push receiver)."""

from __future__ import annotations

import importlib.util
import logging
import random
import threading
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests

import wxauth
from wxauth.openplatform import (
    AuthorizationCodeError,
    AuthorizerNotAuthorizedError,
    ComponentTicketError,
    ComponentTokenManager,
    MessageCrypto,
    PushAppIdError,
    PushError,
    PushEvent,
    PushFormatError,
    PushReplayError,
    PushSignatureError,
)
from wxauth.openplatform._protocol import TICKET_RECORD, parse_ticket_record
from wxauth.testing import FakeWeChat

ROOT = Path(__file__).resolve().parents[1]

COMPONENT = "wxcomponent0000001"
SECRET = "the-component-secret-0123456789ab"
PUSH_TOKEN = "the-push-token-01"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
AUTHORIZER = "wxauthorizer000001"


@pytest.fixture
def fake(wechat: FakeWeChat) -> FakeWeChat:
    """The emulator behind api.weixin.qq.com, with the platform registered."""
    wechat.add_component(COMPONENT, SECRET, token=PUSH_TOKEN, encoding_aes_key=AES_KEY)
    return wechat


def platform_on(
    fake: FakeWeChat, store: wxauth.TokenStore | None = None, **options: Any
) -> ComponentTokenManager:
    """A platform on ``store`` (default: a fresh MemoryStore) with the fake's clock."""
    options.setdefault("clock", fake.clock)
    options.setdefault("backoff", 0)
    return ComponentTokenManager(
        COMPONENT,
        SECRET,
        token=PUSH_TOKEN,
        encoding_aes_key=AES_KEY,
        store=wxauth.MemoryStore() if store is None else store,
        **options,
    )


def pushed_ticket(fake: FakeWeChat, platform: ComponentTokenManager, **kwargs: Any) -> str:
    """Have the emulator push a ticket to ``platform``; return the ticket."""
    query, body = fake.verify_ticket_push(COMPONENT, **kwargs)
    platform.handle_push(query, body)
    return str(kwargs.get("ticket") or fake.latest_verify_ticket(COMPONENT))


def stored_ticket(platform: ComponentTokenManager) -> str | None:
    stored = parse_ticket_record(platform.store.get_record(platform.keys.ticket, TICKET_RECORD))
    return None if stored is None else stored.ticket.get_secret_value()


def handmade_push(
    fake: FakeWeChat, inner: str, *, appid: str = COMPONENT, timestamp: int | None = None
) -> tuple[dict[str, str], bytes]:
    """A push with any inner XML, sealed as WeChat seals one (for what the emulator
    never pushes: an unknown InfoType, a missing field)."""
    crypto = MessageCrypto(PUSH_TOKEN, AES_KEY, appid)
    encrypt = crypto.encrypt(inner)
    stamp, nonce = (
        str(int(fake.clock()) if timestamp is None else timestamp),
        str(random.randrange(10**9, 10**10)),
    )
    query = {
        "timestamp": stamp,
        "nonce": nonce,
        "encrypt_type": "aes",
        "msg_signature": crypto.signature(stamp, nonce, encrypt),
    }
    body = f"<xml><AppId><![CDATA[{appid}]]></AppId><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    return query, body.encode()


# -- the ticket and the component token --------------------------------------------------


def test_a_pushed_ticket_feeds_one_component_token_fetch_for_32_threads(fake: FakeWeChat) -> None:
    """The ticket push is stored; 32 cold threads share one api_component_token call."""
    platform = platform_on(fake)
    query, body = fake.verify_ticket_push(COMPONENT)
    event = platform.handle_push(query, body)
    assert event.info_type == "component_verify_ticket"
    assert event.component_appid == COMPONENT
    assert event.authorizer_appid is None
    assert stored_ticket(platform) == fake.latest_verify_ticket(COMPONENT)
    with ThreadPoolExecutor(32) as pool:
        tokens = set(pool.map(lambda _: platform.get_token(), range(32)))
    assert tokens == {fake.component_token_of(COMPONENT)}
    assert fake.count(kind="component_token") == 1


def test_the_component_token_is_refreshed_ahead_and_invalidated_by_value(fake: FakeWeChat) -> None:
    """Refresh ahead at the margin; invalidate() drops only the token it names."""
    platform = platform_on(fake)
    pushed_ticket(fake, platform)
    first = platform.get_token()
    assert platform.invalidate("not-the-token") is False
    fake.advance(7200 - 299)
    second = platform.get_token()
    assert second != first
    assert platform.invalidate(second) is True
    assert platform.get_token() not in (first, second)
    assert fake.count(kind="component_token") == 3


def test_no_ticket_yet_is_a_ticket_error_that_names_the_remedy(fake: FakeWeChat) -> None:
    """Before any push: ComponentTicketError saying to wait or call start_push_ticket;
    the next push makes get_token work."""
    platform = platform_on(fake)
    with pytest.raises(ComponentTicketError, match="start_push_ticket") as caught:
        platform.get_token()
    assert isinstance(caught.value, wxauth.WeChatAPIError)
    assert fake.count(kind="component_token") == 0  # nothing was sent
    pushed_ticket(fake, platform)
    assert platform.get_token() == fake.component_token_of(COMPONENT)


def test_a_ticket_wechat_refuses_is_a_ticket_error(fake: FakeWeChat) -> None:
    """61006 (a ticket WeChat never issued, or superseded) is a ComponentTicketError."""
    platform = platform_on(fake)
    pushed_ticket(fake, platform, ticket="ticket@@@not-issued-by-wechat")
    with pytest.raises(ComponentTicketError) as caught:
        platform.get_token()
    assert caught.value.errcode == 61006


def test_a_wrong_component_secret_is_a_credential_error(fake: FakeWeChat) -> None:
    platform = ComponentTokenManager(
        COMPONENT,
        "a-wrong-component-secret-0000000",
        token=PUSH_TOKEN,
        encoding_aes_key=AES_KEY,
        store=wxauth.MemoryStore(),
        clock=fake.clock,
    )
    pushed_ticket(fake, platform)
    with pytest.raises(wxauth.CredentialError):
        platform.get_token()


def test_an_older_ticket_never_replaces_a_newer_one(fake: FakeWeChat) -> None:
    """A push with an earlier CreateTime, arriving later, leaves the newer ticket."""
    platform = platform_on(fake)
    now = int(fake.clock())
    newer = pushed_ticket(fake, platform, create_time=now)
    older = pushed_ticket(fake, platform, ticket="ticket@@@older", create_time=now - 600)
    assert older != newer
    assert stored_ticket(platform) == newer
    latest = pushed_ticket(fake, platform, create_time=now + 600)
    assert stored_ticket(platform) == latest


def test_racing_pushes_leave_the_newest_ticket(fake: FakeWeChat, tmp_path: Path) -> None:
    """16 pushes in random order, from 8 threads and two handles on one FileStore:
    the ticket with the largest CreateTime stays."""
    platforms = [
        platform_on(fake, wxauth.FileStore(tmp_path / "store")),
        platform_on(fake, wxauth.FileStore(tmp_path / "store")),
    ]
    now = int(fake.clock())
    pushes = [
        (i, fake.verify_ticket_push(COMPONENT, ticket=f"ticket@@@{i:02d}", create_time=now + i))
        for i in range(16)
    ]
    random.Random(7).shuffle(pushes)
    start = threading.Barrier(8)

    def deliver(n: int) -> None:
        start.wait(10)
        for i, (query, body) in pushes[n::8]:
            platforms[i % 2].handle_push(query, body)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(deliver, range(8)))
    assert stored_ticket(platforms[0]) == "ticket@@@15"


# -- bad pushes ---------------------------------------------------------------------------


def test_forged_tampered_and_foreign_pushes_are_refused_and_keep_the_ticket(
    fake: FakeWeChat,
) -> None:
    """Every bad push raises its PushError (a ValueError) and changes nothing stored."""
    platform = platform_on(fake)
    good = pushed_ticket(fake, platform)
    query, body = fake.verify_ticket_push(COMPONENT, ticket="ticket@@@attacker")
    fake.add_component("wxothercomponent01", SECRET, token=PUSH_TOKEN, encoding_aes_key=AES_KEY)
    foreign_query, foreign_body = fake.verify_ticket_push("wxothercomponent01")
    tampered = body.replace(b"<Encrypt><![CDATA[", b"<Encrypt><![CDATA[AAAA")
    cases: list[tuple[dict[str, str], bytes, type[PushError]]] = [
        ({**query, "msg_signature": "0" * 40}, body, PushSignatureError),
        ({k: v for k, v in query.items() if k != "msg_signature"}, body, PushSignatureError),
        ({**query, "timestamp": str(int(query["timestamp"]) + 1)}, body, PushSignatureError),
        (query, tampered, PushSignatureError),
        (foreign_query, foreign_body, PushAppIdError),
        (query, b"<xml><Encrypt>not xml", PushFormatError),
        (query, b"\x00" * 2048, PushFormatError),
        (
            query,
            b"<!DOCTYPE x [<!ENTITY a 'b'>]><xml><Encrypt>&a;</Encrypt></xml>",
            PushFormatError,
        ),
    ]
    for bad_query, bad_body, error in cases:
        with pytest.raises(error):
            platform.handle_push(bad_query, bad_body)
        with pytest.raises(ValueError):
            platform.handle_push(bad_query, bad_body)
    assert stored_ticket(platform) == good


def test_replayed_pushes_are_refused(fake: FakeWeChat) -> None:
    """A push handled once is refused the second time, and one signed more than
    push_max_age ago is refused outright; the stored ticket stays."""
    platform = platform_on(fake)
    query, body = fake.verify_ticket_push(COMPONENT)
    platform.handle_push(query, body)
    with pytest.raises(PushReplayError, match="already handled"):
        platform.handle_push(query, body)
    stale_query, stale_body = fake.verify_ticket_push(COMPONENT)
    fake.advance(301)
    with pytest.raises(PushReplayError, match="push_max_age"):
        platform.handle_push(stale_query, stale_body)
    assert isinstance(PushReplayError("x"), PushSignatureError)
    assert stored_ticket(platform) != fake.latest_verify_ticket(COMPONENT)  # the stale one
    future_query, future_body = handmade_push(
        fake,
        "<xml><AppId>wxcomponent0000001</AppId><CreateTime>1</CreateTime>"
        "<InfoType>component_verify_ticket</InfoType>"
        "<ComponentVerifyTicket>ticket@@@future</ComponentVerifyTicket></xml>",
        timestamp=int(fake.clock()) + 3600,
    )
    with pytest.raises(PushReplayError):
        platform.handle_push(future_query, future_body)


def test_an_unknown_info_type_is_logged_and_returned(
    fake: FakeWeChat, caplog: pytest.LogCaptureFixture
) -> None:
    platform = platform_on(fake)
    query, body = handmade_push(
        fake,
        f"<xml><AppId>{COMPONENT}</AppId><CreateTime>{int(fake.clock())}</CreateTime>"
        "<InfoType>notify_third_fasteregister</InfoType><Extra>x</Extra></xml>",
    )
    with caplog.at_level(logging.INFO, logger="wxauth"):
        event = platform.handle_push(query, body)
    assert event.info_type == "notify_third_fasteregister"
    assert event.fields["Extra"] == "x"
    assert any("notify_third_fasteregister" in r.getMessage() for r in caplog.records)
    assert stored_ticket(platform) is None


@pytest.mark.parametrize(
    ("inner", "message"),
    [
        ("<xml><AppId>{c}</AppId><CreateTime>{t}</CreateTime></xml>", "InfoType"),
        ("<xml><AppId>{c}</AppId><InfoType>authorized</InfoType></xml>", "CreateTime"),
        (
            "<xml><AppId>{c}</AppId><CreateTime>{t}</CreateTime>"
            "<InfoType>component_verify_ticket</InfoType></xml>",
            "ComponentVerifyTicket",
        ),
        (
            "<xml><AppId>{c}</AppId><CreateTime>{t}</CreateTime><InfoType>authorized</InfoType>"
            "<AuthorizerAppid>../../x</AuthorizerAppid></xml>",
            "AuthorizerAppid",
        ),
        (
            "<xml><AppId>{c}</AppId><CreateTime>{t}</CreateTime><InfoType>authorized</InfoType>"
            "<AuthorizerAppid>wxa</AuthorizerAppid></xml>",
            "AuthorizationCode",
        ),
        (
            "<xml><AppId>wxsomeoneelse</AppId><CreateTime>{t}</CreateTime>"
            "<InfoType>component_verify_ticket</InfoType></xml>",
            "AppId",
        ),
    ],
)
def test_a_push_missing_a_field_is_a_push_error(fake: FakeWeChat, inner: str, message: str) -> None:
    platform = platform_on(fake)
    query, body = handmade_push(fake, inner.format(c=COMPONENT, t=int(fake.clock())))
    with pytest.raises(PushError, match=message):
        platform.handle_push(query, body)
    assert stored_ticket(platform) is None


# -- authorization notices --------------------------------------------------------------


def test_an_authorized_push_exchanges_the_code_and_stores_both_tokens(fake: FakeWeChat) -> None:
    """The code is exchanged once; the refresh token is a durable record and the access
    token sits in the authorizer's key, so the first API call fetches nothing."""
    platform = platform_on(fake)
    pushed_ticket(fake, platform)
    query, body = fake.authorization_push(COMPONENT, AUTHORIZER)
    event = platform.handle_push(query, body)
    assert event.info_type == "authorized"
    assert event.authorizer_appid == AUTHORIZER
    assert isinstance(event.fields["AuthorizationCode"], wxauth.Secret)
    assert platform.authorizer_appids() == [AUTHORIZER]
    stored = platform.refresh_tokens.get(AUTHORIZER)
    assert stored is not None
    assert stored.token is not None
    assert stored.token.get_secret_value() == fake.refresh_token_of(AUTHORIZER)
    assert stored.event_time == event.create_time
    manager = platform.authorizer(AUTHORIZER)
    assert manager.get_token() == fake.authorizer_token_of(AUTHORIZER)
    assert fake.count(kind="authorizer_token") == 0
    assert fake.count(path="/cgi-bin/component/api_query_auth") == 1


def test_an_updateauthorized_push_replaces_the_refresh_and_access_tokens(fake: FakeWeChat) -> None:
    platform = platform_on(fake)
    pushed_ticket(fake, platform)
    platform.handle_push(*fake.authorization_push(COMPONENT, AUTHORIZER))
    manager = platform.authorizer(AUTHORIZER)
    before = manager.get_token()
    platform.handle_push(*fake.authorization_push(COMPONENT, AUTHORIZER, "updateauthorized"))
    stored = platform.refresh_tokens.get(AUTHORIZER)
    assert stored is not None
    assert stored.token is not None
    assert stored.token.get_secret_value() == fake.refresh_token_of(AUTHORIZER)
    after = manager.get_token()
    assert after != before
    assert after == fake.authorizer_token_of(AUTHORIZER)


def test_an_unauthorized_push_forgets_the_authorizer(fake: FakeWeChat) -> None:
    """Refresh token and cached token gone; the next get_token re-reads the list once
    and raises AuthorizerNotAuthorizedError."""
    platform = platform_on(fake)
    pushed_ticket(fake, platform)
    platform.handle_push(*fake.authorization_push(COMPONENT, AUTHORIZER))
    manager = platform.authorizer(AUTHORIZER)
    manager.get_token()
    event = platform.handle_push(*fake.authorization_push(COMPONENT, AUTHORIZER, "unauthorized"))
    assert event.info_type == "unauthorized"
    assert platform.authorizer_appids() == []
    assert manager.peek() is None
    with pytest.raises(AuthorizerNotAuthorizedError):
        platform.authorizer(AUTHORIZER).get_token()
    assert fake.count(path="/cgi-bin/component/api_get_authorizer_list") == 1


def test_an_unauthorized_push_older_than_the_authorization_is_ignored(fake: FakeWeChat) -> None:
    """Delivered out of order, a cancellation that predates the current authorization
    leaves its refresh token alone."""
    platform = platform_on(fake)
    pushed_ticket(fake, platform)
    fake.authorize(COMPONENT, AUTHORIZER)
    fake.advance(5)
    platform.handle_push(*fake.authorization_push(COMPONENT, AUTHORIZER))
    stale = handmade_push(
        fake,
        f"<xml><AppId>{COMPONENT}</AppId><CreateTime>{int(fake.clock()) - 5}</CreateTime>"
        f"<InfoType>unauthorized</InfoType><AuthorizerAppid>{AUTHORIZER}</AuthorizerAppid></xml>",
    )
    platform.handle_push(*stale)
    assert platform.authorizer_appids() == [AUTHORIZER]


def test_query_auth_with_a_bad_code_is_an_authorization_code_error(fake: FakeWeChat) -> None:
    platform = platform_on(fake)
    pushed_ticket(fake, platform)
    with pytest.raises(AuthorizationCodeError) as caught:
        platform.query_auth("queryauthcode@@@never-issued")
    assert caught.value.errcode == 61009
    code = fake.authorize(COMPONENT, AUTHORIZER)
    fake.advance(601)
    pushed_ticket(fake, platform)  # the first ticket's 12 h are not over, but keep it fresh
    with pytest.raises(AuthorizationCodeError) as caught:
        platform.query_auth(code)
    assert caught.value.errcode == 61010
    assert platform.authorizer_appids() == []


def test_query_auth_heals_a_retired_component_token_once(fake: FakeWeChat) -> None:
    """api_query_auth answers 40001 for a retired component token: invalidate, fetch
    one new component token, send once more."""
    platform = platform_on(fake)
    pushed_ticket(fake, platform)
    platform.get_token()
    fake.retire_all()
    result = platform.query_auth(fake.authorize(COMPONENT, AUTHORIZER))
    assert result.authorizer_appid == AUTHORIZER
    assert result.permissions == (1, 2, 3)
    assert fake.count(kind="component_token") == 2
    assert fake.count(path="/cgi-bin/component/api_query_auth") == 2


def test_start_push_ticket_sends_the_secret_in_the_body(fake: FakeWeChat) -> None:
    platform = platform_on(fake)
    platform.start_push_ticket()
    assert fake.count(path="/cgi-bin/component/api_start_push_ticket", errcode=0) == 1
    wrong = ComponentTokenManager(
        COMPONENT,
        "a-wrong-component-secret-0000000",
        token=PUSH_TOKEN,
        encoding_aes_key=AES_KEY,
        store=wxauth.MemoryStore(),
    )
    with pytest.raises(wxauth.CredentialError):
        wrong.start_push_ticket()


# -- construction, stores, secrets -------------------------------------------------------


def test_a_memory_store_earns_a_warning_and_a_durable_one_does_not(
    fake: FakeWeChat, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="wxauth"):
        platform_on(fake)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "refresh tokens" in warnings[0]
    assert "lost when this process ends" in warnings[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="wxauth"):
        platform_on(fake, wxauth.FileStore(tmp_path / "store"))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_bad_settings_are_refused() -> None:
    class NoRecords(wxauth.MemoryStore):
        get_record = wxauth.TokenStore.get_record  # type: ignore[assignment]

    settings: dict[str, Any] = {"token": PUSH_TOKEN, "encoding_aes_key": AES_KEY}
    with pytest.raises(TypeError, match="durable records"):
        ComponentTokenManager(COMPONENT, SECRET, store=NoRecords(), **settings)
    with pytest.raises(TypeError, match="source"):
        ComponentTokenManager(COMPONENT, SECRET, source="classic", **settings)
    with pytest.raises(ValueError, match="component_appid"):
        ComponentTokenManager("wx bad/appid", SECRET, **settings)
    with pytest.raises(ValueError, match="component_secret"):
        ComponentTokenManager(COMPONENT, " ", **settings)
    with pytest.raises(ValueError, match="43"):
        ComponentTokenManager(COMPONENT, SECRET, token=PUSH_TOKEN, encoding_aes_key="short")
    platform = ComponentTokenManager(COMPONENT, SECRET, **settings)
    with pytest.raises(ValueError, match="authorizer_appid"):
        platform.authorizer("../etc")


def test_no_secret_ticket_code_or_token_in_logs_reprs_or_errors(
    fake: FakeWeChat, caplog: pytest.LogCaptureFixture
) -> None:
    """A whole life (pushes, tokens, a forged push, a refused code, a heal) at DEBUG:
    neither the component secret, the push token, the AES key, a ticket, a code, a
    refresh token nor a whole token in any log line, repr or error message."""
    shown: list[str] = []
    with caplog.at_level(logging.DEBUG):
        platform = platform_on(fake)
        ticket = pushed_ticket(fake, platform)
        component_token = platform.get_token()
        query, body = fake.authorization_push(COMPONENT, AUTHORIZER)
        event = platform.handle_push(query, body)
        code = event.fields["AuthorizationCode"]
        assert isinstance(code, wxauth.Secret)
        manager = platform.authorizer(AUTHORIZER)
        authorizer_token = manager.get_token()
        refresh = fake.refresh_token_of(AUTHORIZER)
        for bad in (
            lambda: platform.handle_push({**query, "msg_signature": "0" * 40}, body),
            lambda: platform.handle_push(query, body),
            lambda: platform.query_auth(code),
        ):
            with pytest.raises(wxauth.WxAuthError) as caught:
                bad()
            shown += [str(caught.value), repr(caught.value)]
        fake.retire_all()
        fake.advance(7200)
        manager.refresh()
        shown += [repr(platform), repr(event), repr(manager), repr(manager.source)]
        shown += [repr(platform.source), repr(platform.refresh_tokens.get(AUTHORIZER))]
        shown += [repr(platform.peek()), repr(manager.peek()), repr(dict(event.fields))]
    shown += [record.getMessage() for record in caplog.records]
    text = "\n".join(shown)
    secrets = [SECRET, PUSH_TOKEN, AES_KEY, ticket, code.get_secret_value(), refresh]
    secrets += [component_token, authorizer_token, manager.get_token()]
    for secret in secrets:
        assert secret
        assert secret not in text


def locals_shown(exc: BaseException) -> str:
    """What an error tracker records of a failure: every local, by repr, of wxauth's
    frames on the traceback of the error and of its causes and contexts."""
    shown, todo, seen = [], [exc], set()
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]
        for frame, _ in traceback.walk_tb(current.__traceback__):
            if not frame.f_code.co_filename.startswith(str(ROOT / "wxauth")):
                continue  # this test's own frames
            for name, value in frame.f_locals.items():
                try:
                    shown.append(f"{name}={value!r}")
                except Exception as failed:  # a half-built object: trackers show the error
                    shown.append(f"{name}=<repr failed: {type(failed).__name__}>")
    return "\n".join(shown)


def test_no_secret_ticket_or_refresh_token_in_the_frame_locals_of_failures(
    fake: FakeWeChat,
) -> None:
    """A refused setting, a refused ticket (61006), a forged push, a failed transport
    and a refused refresh token (61023): no frame on the traceback holds the component
    secret, the push token, the AES key, the ticket or the refresh token in clear."""
    failures: list[BaseException] = []

    def failing(call: Any) -> None:
        with pytest.raises(wxauth.WxAuthError if not isinstance(call, type) else call) as caught:
            call()
        failures.append(caught.value)

    with pytest.raises(ValueError) as refused:
        ComponentTokenManager(
            COMPONENT, SECRET, token=PUSH_TOKEN, encoding_aes_key=AES_KEY[:-1] + "!"
        )
    failures.append(refused.value)
    platform = platform_on(fake, retries=0)
    bad_ticket = pushed_ticket(fake, platform, ticket="ticket@@@refused-by-wechat-0123456789")
    failing(platform.get_token)
    query, body = fake.verify_ticket_push(COMPONENT)
    failing(lambda: platform.handle_push({**query, "msg_signature": "0" * 40}, body))
    platform.handle_push(query, body)
    ticket = stored_ticket(platform)
    fake.fail_next(on="/cgi-bin/component/api_component_token", status=502)
    failing(platform.get_token)
    fake.advance(2)
    platform.query_auth(fake.authorize(COMPONENT, AUTHORIZER))
    refresh = fake.refresh_token_of(AUTHORIZER)
    fake.fail_next(on="/cgi-bin/component/api_authorizer_token", errcode=61023)
    failing(platform.authorizer(AUTHORIZER).refresh)
    assert len(failures) == 5
    for failure in failures:
        shown = locals_shown(failure)
        for secret in (SECRET, PUSH_TOKEN, AES_KEY, bad_ticket, ticket, refresh):
            assert secret
            assert secret not in shown, (type(failure).__name__, secret[:8])


def test_push_event_repr_hides_the_fields(fake: FakeWeChat) -> None:
    event = PushEvent("component_verify_ticket", COMPONENT, None, 1, {"ComponentVerifyTicket": "x"})
    assert "fields" not in repr(event)
    assert "x'" not in repr(event)


# -- the example push receiver -----------------------------------------------------------


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "push_receiver", ROOT / "examples" / "push_receiver.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def receiver(
    fake_wechat: FakeWeChat, tmp_path: Path
) -> Iterator[tuple[str, str, ComponentTokenManager]]:
    """examples/push_receiver.py served by wsgiref on loopback, for a platform on a
    FileStore talking to the emulator on loopback: (push URL, API base, platform)."""
    example = load_example()
    fake_wechat.add_component(COMPONENT, SECRET, token=PUSH_TOKEN, encoding_aes_key=AES_KEY)
    with fake_wechat.serve() as api:
        platform = platform_on(fake_wechat, wxauth.FileStore(tmp_path / "store"), api_base=api)
        server = example.serve(example.make_app(platform), "127.0.0.1", 0)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/push", api, platform
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)
            platform.close()


def test_the_example_receiver_takes_real_pushes_over_http(
    fake_wechat: FakeWeChat, receiver: tuple[str, str, ComponentTokenManager]
) -> None:
    """The emulator POSTs a ticket and an authorization to the WSGI app; a forged POST
    gets 400 and a GET 405, and neither changes anything."""
    url, api, platform = receiver
    ticket = fake_wechat.push_verify_ticket(url, COMPONENT)
    assert stored_ticket(platform) == ticket
    code = fake_wechat.push_authorization(url, COMPONENT, AUTHORIZER)
    assert code
    assert platform.authorizer_appids() == [AUTHORIZER]
    session = requests.Session()
    session.auth = wxauth.WxAuth(manager=platform.authorizer(AUTHORIZER))
    assert session.get(f"{api}/cgi-bin/get_api_domain_ip", timeout=10).json()["errcode"] == 0
    forged = requests.post(
        url,
        params={"msg_signature": "0" * 40, "timestamp": "1", "nonce": "1"},
        data=b"<xml><Encrypt>x</Encrypt></xml>",
        timeout=10,
    )
    assert forged.status_code == 400
    assert forged.text == "refused"
    assert requests.get(url, timeout=10).status_code == 405
    assert stored_ticket(platform) == ticket


def test_the_example_demo_runs(tmp_path: Path) -> None:
    """``python examples/push_receiver.py --demo`` exits 0 on loopback and prints no
    secret."""
    import os
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "push_receiver.py"), "--demo"],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo done" in result.stdout
    assert "a forged push got HTTP 400" in result.stdout
    assert "demo-component-secret" not in result.stdout + result.stderr
