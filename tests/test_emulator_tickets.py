"""The emulator's tickets: getticket (jsapi, wx_card), WeCom's corp and agent tickets,
their expiry, quota and token checks, and ``check_jssdk_signature``; every rule through
both front ends (``intercept()`` with requests, ``serve()`` over loopback)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from wxauth.testing import FakeWeChat
from wxauth.testing._endpoints.ticket import TICKET_PATH, jssdk_signature

APPID, SECRET = "wx0123456789abcdef", "app-secret-1"
CORPID, CORPSECRET, OTHER_SECRET = "ww0123456789abcdef", "corp-secret-1", "corp-secret-2"
WECHAT, QYAPI = "https://api.weixin.qq.com", "https://qyapi.weixin.qq.com"

Get = Callable[..., dict[str, Any]]

# The worked example of the JS-SDK docs (wechat-token-api.md, section 9).
DOC_TICKET = (
    "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg"
)
DOC_NONCE, DOC_TIMESTAMP = "Wm3WZYTPz0wzccnW", 1414587457
DOC_URL, DOC_SIGNATURE = (
    "http://mp.weixin.qq.com?params=value",
    ("0f9de62fce790f9a083d5c99e95740ceb90c27ed"),
)


@pytest.fixture
def fake() -> Iterator[FakeWeChat]:
    emulator = FakeWeChat(start=1_700_000_000.0, seed=7)
    emulator.add_app(APPID, SECRET)
    emulator.add_wecom_app(CORPID, CORPSECRET)
    emulator.add_wecom_app(CORPID, OTHER_SECRET)
    try:
        yield emulator
    finally:
        emulator.close()


@pytest.fixture(params=["intercept", "serve"])
def get(request: pytest.FixtureRequest, fake: FakeWeChat) -> Iterator[Get]:
    """``get(host, path, **params)``: a GET through one front end, its JSON answer."""
    if request.param == "intercept":
        with fake.intercept():

            def via_intercept(host: str, path: str, **params: Any) -> dict[str, Any]:
                answer = requests.get(host + path, params=params, timeout=5)
                return dict(answer.json())

            yield via_intercept
    else:
        with fake.serve() as url:

            def via_server(host: str, path: str, **params: Any) -> dict[str, Any]:
                answer = requests.get(url + path, params=params, timeout=5)
                return dict(answer.json())

            yield via_server


def wechat_token(get: Get) -> str:
    query = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
    return str(get(WECHAT, "/cgi-bin/token", **query)["access_token"])


def wecom_token(get: Get, secret: str = CORPSECRET) -> str:
    return str(get(QYAPI, "/cgi-bin/gettoken", corpid=CORPID, corpsecret=secret)["access_token"])


def sign(ticket: str, url: str, noncestr: str = "nonce", timestamp: int = 1_700_000_000) -> str:
    return jssdk_signature(ticket, noncestr, timestamp, url)


# -- fetching ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["jsapi", "wx_card"])
def test_getticket(fake: FakeWeChat, get: Get, kind: str) -> None:
    token = wechat_token(get)
    answer = get(WECHAT, TICKET_PATH, access_token=token, type=kind)
    assert answer["errcode"] == 0
    assert answer["errmsg"] == "ok"
    assert answer["expires_in"] == 7200
    assert answer["ticket"] in fake.issued_tickets
    assert fake.latest_ticket(APPID, kind=kind) == answer["ticket"]
    assert fake.ticket_status(answer["ticket"]) == "valid"
    assert fake.count(kind="ticket") == 1
    assert fake.count(kind="ticket", errcode=0, path=TICKET_PATH) == 1
    call = fake.calls[-1]
    assert (call.kind, call.owner, call.token) == ("ticket", APPID, token)
    assert not call.is_token_fetch
    fake.assert_token_fetches(1)
    fake.assert_api_calls(0)


def test_wecom_tickets(fake: FakeWeChat, get: Get) -> None:
    token = wecom_token(get)
    corp = get(QYAPI, "/cgi-bin/get_jsapi_ticket", access_token=token)
    agent = get(QYAPI, "/cgi-bin/ticket/get", access_token=token, type="agent_config")
    for answer in (corp, agent):
        assert answer["errcode"] == 0
        assert answer["expires_in"] == 7200
    assert fake.latest_ticket(CORPID, kind="wecom_jsapi") == corp["ticket"]
    assert fake.latest_ticket(CORPID, kind="agent_config") == agent["ticket"]
    assert fake.count(kind="ticket", errcode=0) == 2


def test_wecom_bad_type(fake: FakeWeChat, get: Get) -> None:
    token = wecom_token(get)
    answer = get(QYAPI, "/cgi-bin/ticket/get", access_token=token, type="jsapi")
    assert answer["errcode"] == 40097
    assert "hint:" in answer["errmsg"]


def test_tickets_expire_on_the_emulator_clock(fake: FakeWeChat, get: Get) -> None:
    ticket = get(WECHAT, TICKET_PATH, access_token=wechat_token(get), type="jsapi")["ticket"]
    fake.advance(7199)
    assert fake.ticket_status(ticket) == "valid"
    fake.advance(1)
    assert fake.ticket_status(ticket) == "expired"
    assert fake.ticket_status("never-issued") == "unknown"


def test_bad_type_is_40097_and_free(fake: FakeWeChat, get: Get) -> None:
    token = wechat_token(get)
    for params in ({"type": "nope"}, {}):
        answer = get(WECHAT, TICKET_PATH, access_token=token, **params)
        assert answer["errcode"] == 40097
        assert answer["errmsg"].startswith("invalid args rid: ")
    assert fake.quota_used(APPID, TICKET_PATH) == 0
    assert fake.issued_tickets == []


# -- quota and token checks ----------------------------------------------------------------


def test_daily_quota_then_45009(get: Get, fake: FakeWeChat) -> None:
    fake.set_quota(APPID, TICKET_PATH, 3)
    token = wechat_token(get)
    codes = [
        get(WECHAT, TICKET_PATH, access_token=token, type="jsapi")["errcode"] for _ in range(4)
    ]
    assert codes == [0, 0, 0, 45009]
    assert fake.quota_used(APPID, TICKET_PATH) == 3
    fake.advance_to_next_day()
    token = wechat_token(get)
    assert get(WECHAT, TICKET_PATH, access_token=token, type="jsapi")["errcode"] == 0


def test_default_quota_is_the_setting() -> None:
    fake = FakeWeChat(start=1_700_000_000.0, ticket_daily_quota=2)
    fake.add_app(APPID, SECRET)
    with fake.intercept():
        token = wechat_token(lambda host, path, **p: requests.get(host + path, params=p).json())
        codes = [
            requests.get(
                WECHAT + TICKET_PATH, params={"access_token": token, "type": "wx_card"}
            ).json()["errcode"]
            for _ in range(3)
        ]
    assert codes == [0, 0, 45009]
    assert FakeWeChat().ticket_daily_quota == 100


def test_token_checks(fake: FakeWeChat, get: Get) -> None:
    assert get(WECHAT, TICKET_PATH, type="jsapi")["errcode"] == 41001
    assert get(WECHAT, TICKET_PATH, access_token="bogus", type="jsapi")["errcode"] == 40014
    old = wechat_token(get)
    new = wechat_token(get)  # retires the old one after the grace
    fake.advance(300)
    assert get(WECHAT, TICKET_PATH, access_token=old, type="jsapi")["errcode"] == 40001
    fake.advance(7200)
    assert get(WECHAT, TICKET_PATH, access_token=new, type="jsapi")["errcode"] == 42001
    assert fake.issued_tickets == []
    assert fake.errcodes(kind="ticket") == {41001: 1, 40014: 1, 40001: 1, 42001: 1}


def test_wecom_token_checks(fake: FakeWeChat, get: Get) -> None:
    token = wecom_token(get)
    fake.advance(7200)
    answer = get(QYAPI, "/cgi-bin/get_jsapi_ticket", access_token=token)
    assert answer["errcode"] == 42001
    fake.retire(wecom_token(get))
    answer = get(
        QYAPI, "/cgi-bin/ticket/get", access_token=fake.latest_token(), type="agent_config"
    )
    assert answer["errcode"] == 40014


# -- successive tickets --------------------------------------------------------------------


def test_old_ticket_stays_valid_by_default(fake: FakeWeChat, get: Get) -> None:
    token = wechat_token(get)
    first = get(WECHAT, TICKET_PATH, access_token=token, type="jsapi")["ticket"]
    second = get(WECHAT, TICKET_PATH, access_token=token, type="jsapi")["ticket"]
    assert first != second
    assert fake.ticket_status(first) == fake.ticket_status(second) == "valid"


def test_ticket_grace_retires_the_previous_ticket() -> None:
    fake = FakeWeChat(start=1_700_000_000.0, ticket_grace=60)
    fake.add_app(APPID, SECRET)
    with fake.intercept():
        token = wechat_token(lambda host, path, **p: requests.get(host + path, params=p).json())

        def ticket(kind: str) -> str:
            params = {"access_token": token, "type": kind}
            return str(requests.get(WECHAT + TICKET_PATH, params=params).json()["ticket"])

        card, first, second = ticket("wx_card"), ticket("jsapi"), ticket("jsapi")
    fake.advance(59)
    assert fake.ticket_status(first) == "valid"
    fake.advance(1)
    assert fake.ticket_status(first) == "retired"
    assert fake.ticket_status(second) == fake.ticket_status(card) == "valid"
    url = "https://example.com/page"
    assert not fake.check_jssdk_signature(url, "nonce", 1, sign(first, url, "nonce", 1))
    assert fake.check_jssdk_signature(url, "nonce", 1, sign(second, url, "nonce", 1))


def test_wecom_agent_tickets_are_per_application() -> None:
    fake = FakeWeChat(start=1_700_000_000.0, ticket_grace=0)
    fake.add_wecom_app(CORPID, CORPSECRET)
    fake.add_wecom_app(CORPID, OTHER_SECRET)
    with fake.serve() as url:

        def get(host: str, path: str, **params: Any) -> dict[str, Any]:
            return dict(requests.get(url + path, params=params, timeout=5).json())

        tickets = [
            get(QYAPI, "/cgi-bin/ticket/get", access_token=wecom_token(get, s), type="agent_config")
            for s in (CORPSECRET, OTHER_SECRET)
        ]
    assert [fake.ticket_status(t["ticket"]) for t in tickets] == ["valid", "valid"]


# -- the JS-SDK signature ------------------------------------------------------------------


def test_signature_of_the_doc_example() -> None:
    assert jssdk_signature(DOC_TICKET, DOC_NONCE, DOC_TIMESTAMP, DOC_URL) == DOC_SIGNATURE
    assert FakeWeChat.jssdk_signature(DOC_TICKET, DOC_NONCE, str(DOC_TIMESTAMP), DOC_URL) == (
        DOC_SIGNATURE
    )
    plain = (
        f"jsapi_ticket={DOC_TICKET}&noncestr={DOC_NONCE}&timestamp={DOC_TIMESTAMP}&url={DOC_URL}"
    )
    assert hashlib.sha1(plain.encode()).hexdigest() == DOC_SIGNATURE  # noqa: S324


def test_check_jssdk_signature(fake: FakeWeChat, get: Get) -> None:
    ticket = get(WECHAT, TICKET_PATH, access_token=wechat_token(get), type="jsapi")["ticket"]
    url = "http://mp.weixin.qq.com?params=value"
    signature = sign(ticket, url, DOC_NONCE, DOC_TIMESTAMP)
    assert fake.check_jssdk_signature(url, DOC_NONCE, DOC_TIMESTAMP, signature)
    assert fake.check_jssdk_signature(url, DOC_NONCE, str(DOC_TIMESTAMP), signature, appid=APPID)
    # The fragment is not part of the signed URL, on either side.
    assert fake.check_jssdk_signature(url + "#top", DOC_NONCE, DOC_TIMESTAMP, signature)
    assert sign(ticket, url + "#top", DOC_NONCE, DOC_TIMESTAMP) == signature
    # A different query, nonce, timestamp, app or kind does not match.
    assert not fake.check_jssdk_signature(url + "&x=1", DOC_NONCE, DOC_TIMESTAMP, signature)
    other_query = "http://mp.weixin.qq.com?params=other"
    assert not fake.check_jssdk_signature(other_query, DOC_NONCE, DOC_TIMESTAMP, signature)
    assert not fake.check_jssdk_signature(url, "other", DOC_TIMESTAMP, signature)
    assert not fake.check_jssdk_signature(url, DOC_NONCE, DOC_TIMESTAMP + 1, signature)
    assert not fake.check_jssdk_signature(url, DOC_NONCE, DOC_TIMESTAMP, signature, appid="wxx")
    assert not fake.check_jssdk_signature(
        url, DOC_NONCE, DOC_TIMESTAMP, signature, kind="wecom_jsapi"
    )
    # The doc's own ticket was never issued by this emulator.
    assert not fake.check_jssdk_signature(DOC_URL, DOC_NONCE, DOC_TIMESTAMP, DOC_SIGNATURE)
    # Stale: once the ticket expired, its signatures stop matching.
    fake.advance(7200)
    assert not fake.check_jssdk_signature(url, DOC_NONCE, DOC_TIMESTAMP, signature)


def test_check_wecom_signatures(fake: FakeWeChat, get: Get) -> None:
    token = wecom_token(get)
    corp = get(QYAPI, "/cgi-bin/get_jsapi_ticket", access_token=token)["ticket"]
    agent = get(QYAPI, "/cgi-bin/ticket/get", access_token=token, type="agent_config")["ticket"]
    url = "https://work.example.com/app?id=1"
    assert fake.check_jssdk_signature(url, "n", 5, sign(corp, url, "n", 5), kind="wecom_jsapi")
    assert fake.check_jssdk_signature(
        url, "n", 5, sign(agent, url, "n", 5), appid=CORPID, kind="agent_config"
    )
    assert not fake.check_jssdk_signature(url, "n", 5, sign(agent, url, "n", 5), kind="jsapi")
    with pytest.raises(ValueError, match="kind"):
        fake.check_jssdk_signature(url, "n", 5, "x", kind="card")


def test_ticket_paths_are_not_canned(fake: FakeWeChat) -> None:
    with pytest.raises(ValueError, match="emulated"):
        fake.add_api(TICKET_PATH, json={})
