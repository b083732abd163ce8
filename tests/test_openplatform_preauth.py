"""The start of an authorization: a pre-authorization code and the authorization page's
URL (``authorization_url``), then the administrator's approval (played by the emulator)
and ``query_auth`` of the code WeChat hands back."""

from __future__ import annotations

import logging
import urllib.parse
from typing import Any

import pytest

import wxauth
from wxauth.openplatform import ComponentTokenManager, PreAuthCode, authorization_url
from wxauth.testing import FakeWeChat

COMPONENT = "wxcomponent0000002"
SECRET = "the-component-secret-preauth-0001"
PUSH_TOKEN = "the-push-token-02"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
AUTHORIZER = "wxauthorizer000002"
REDIRECT = "https://platform.example.com/wechat/authorized?tenant=7&x=a b"
PRE_AUTH_PATH = "/cgi-bin/component/api_create_preauthcode"


@pytest.fixture
def fake(wechat: FakeWeChat) -> FakeWeChat:
    wechat.add_component(COMPONENT, SECRET, token=PUSH_TOKEN, encoding_aes_key=AES_KEY)
    return wechat


@pytest.fixture
def platform(fake: FakeWeChat) -> ComponentTokenManager:
    platform = ComponentTokenManager(
        COMPONENT,
        SECRET,
        token=PUSH_TOKEN,
        encoding_aes_key=AES_KEY,
        store=wxauth.MemoryStore(),
        clock=fake.clock,
        backoff=0,
    )
    query, body = fake.verify_ticket_push(COMPONENT)
    platform.handle_push(query, body)
    return platform


def query_of(url: str) -> dict[str, str]:
    parts = urllib.parse.urlsplit(url)
    pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True)
    assert len({name for name, _ in pairs}) == len(pairs), "a parameter is repeated"
    return dict(pairs)


# -- the URL, no I/O ---------------------------------------------------------------------


def test_the_pc_page_carries_every_parameter_encoded() -> None:
    url = authorization_url(COMPONENT, "preauthcode@@@a+b/c=", REDIRECT, auth_type=2)
    assert url.startswith("https://mp.weixin.qq.com/cgi-bin/componentloginpage?")
    assert "#" not in url
    assert query_of(url) == {
        "component_appid": COMPONENT,
        "pre_auth_code": "preauthcode@@@a+b/c=",
        "redirect_uri": REDIRECT,
        "auth_type": "2",
    }


def test_the_mobile_page_and_one_account_only() -> None:
    url = authorization_url(
        COMPONENT, PreAuthCode(wxauth.Secret("c0de"), 600), REDIRECT, biz_appid=AUTHORIZER,
        mobile=True,
    )  # fmt: skip
    page, _, fragment = url.partition("#")
    assert page.startswith("https://mp.weixin.qq.com/safe/bindcomponent?")
    assert fragment == "wechat_redirect"
    assert query_of(page) == {
        "action": "bindcomponent",
        "no_scan": "1",
        "component_appid": COMPONENT,
        "pre_auth_code": "c0de",
        "redirect_uri": REDIRECT,
        "auth_type": "3",
        "biz_appid": AUTHORIZER,
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"redirect_uri": "javascript:alert(1)"}, "redirect_uri"),
        ({"redirect_uri": "/relative/path"}, "redirect_uri"),
        ({"redirect_uri": "ftp://platform.example.com/"}, "redirect_uri"),
        ({"auth_type": 0}, "auth_type"),
        ({"auth_type": True}, "auth_type"),
        ({"biz_appid": "wx bad&appid"}, "biz_appid"),
        ({"pre_auth_code": ""}, "pre_auth_code"),
        ({"component_appid": "wx?x=1"}, "component_appid"),
    ],
)
def test_bad_arguments_are_a_value_error(change: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {
        "component_appid": COMPONENT,
        "pre_auth_code": "code",
        "redirect_uri": REDIRECT,
    }
    arguments.update(change)
    with pytest.raises(ValueError, match=message):
        authorization_url(**arguments)


def test_a_pre_auth_code_shows_in_no_repr() -> None:
    code = PreAuthCode(wxauth.Secret("preauthcode@@@visible"), 600)
    assert "visible" not in repr(code)
    assert "visible" not in str(code)


# -- the whole flow against the emulator ---------------------------------------------------


def test_authorization_from_the_page_to_a_working_authorizer_token(
    fake: FakeWeChat, platform: ComponentTokenManager, caplog: pytest.LogCaptureFixture
) -> None:
    """authorization_url -> the administrator approves -> query_auth(auth_code): the
    authorizer's token works, and no log line holds the pre-auth code."""
    with caplog.at_level(logging.DEBUG):
        url = platform.authorization_url(REDIRECT, auth_type=1)
        code = query_of(url)["pre_auth_code"]
        auth_code = fake.approve_authorization(COMPONENT, code, AUTHORIZER)
        authorization = platform.query_auth(auth_code)
        token = platform.authorizer(AUTHORIZER).get_token()
    assert authorization.authorizer_appid == AUTHORIZER
    assert token == fake.authorizer_token_of(AUTHORIZER, COMPONENT)
    assert query_of(url)["auth_type"] == "1"
    assert fake.count(path=PRE_AUTH_PATH) == 1
    assert code not in caplog.text


def test_a_pre_auth_code_is_single_use_and_expires(
    fake: FakeWeChat, platform: ComponentTokenManager
) -> None:
    first = platform.create_pre_auth_code()
    assert first.expires_in == 600
    fake.approve_authorization(COMPONENT, first.code.get_secret_value(), AUTHORIZER)
    with pytest.raises(ValueError, match="already used"):
        fake.approve_authorization(COMPONENT, first.code.get_secret_value(), AUTHORIZER)
    second = platform.create_pre_auth_code()
    assert second.code != first.code
    fake.advance(601)
    with pytest.raises(ValueError, match="expired"):
        fake.approve_authorization(COMPONENT, second.code.get_secret_value(), AUTHORIZER)
    with pytest.raises(ValueError, match="unknown"):
        fake.approve_authorization(COMPONENT, "preauthcode@@@made-up", AUTHORIZER)


def test_bad_options_spend_no_pre_auth_code(
    fake: FakeWeChat, platform: ComponentTokenManager
) -> None:
    with pytest.raises(ValueError, match="redirect_uri"):
        platform.authorization_url("not a url")
    with pytest.raises(ValueError, match="auth_type"):
        platform.authorization_url(REDIRECT, auth_type=-1)
    assert fake.count(path=PRE_AUTH_PATH) == 0


def test_a_rejected_component_token_is_healed_once(
    fake: FakeWeChat, platform: ComponentTokenManager
) -> None:
    """The component token retired under the call: one refetch, one re-send."""
    platform.get_token()
    fetches = fake.count(kind="component_token")
    fake.retire_all()
    code = platform.create_pre_auth_code()
    assert code.code
    assert fake.count(kind="component_token") == fetches + 1
    assert fake.count(path=PRE_AUTH_PATH) == 2
