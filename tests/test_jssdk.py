"""The JS-SDK, agentConfig and card signatures: the documented worked example, the URL
rules (fragment dropped, the rest signed as given), the shape of the ``wx.config`` and
``wx.agentConfig`` dicts, and input errors that never show the ticket."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pytest

import wxauth
from wxauth import agent_config, card_signature, jssdk_config, jssdk_signature

# The worked example of WeChat's JS-SDK documentation (wechat-token-api.md, section 9).
DOC_TICKET = (
    "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg"
)
DOC_NONCE = "Wm3WZYTPz0wzccnW"
DOC_TIMESTAMP = 1414587457
DOC_URL = "http://mp.weixin.qq.com?params=value"
DOC_SIGNATURE = "0f9de62fce790f9a083d5c99e95740ceb90c27ed"


class FakeTickets:
    """Just enough of a ticket manager: a ticket and the appid it belongs to."""

    def __init__(self, ticket: str = DOC_TICKET, appid: str = "wx0000000000000001") -> None:
        self.ticket = ticket
        self.appid = appid
        self.calls = 0

    def get_ticket(self) -> str:
        self.calls += 1
        return self.ticket


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()  # noqa: S324 - the protocol's hash


# -- jssdk_signature ------------------------------------------------------------------


def test_the_documented_example() -> None:
    assert jssdk_signature(DOC_TICKET, DOC_NONCE, DOC_TIMESTAMP, DOC_URL) == DOC_SIGNATURE


def test_a_string_timestamp_signs_like_the_int() -> None:
    assert jssdk_signature(DOC_TICKET, DOC_NONCE, str(DOC_TIMESTAMP), DOC_URL) == DOC_SIGNATURE


@pytest.mark.parametrize("fragment", ["#", "#top", "#/route?x=1", "#a#b"])
def test_the_fragment_is_dropped(fragment: str) -> None:
    signed = jssdk_signature(DOC_TICKET, DOC_NONCE, DOC_TIMESTAMP, DOC_URL + fragment)
    assert signed == DOC_SIGNATURE


def test_the_signed_string_is_the_sorted_raw_fields() -> None:
    url = "https://example.com/a%20b/page?x=1&y=a b&z=%E4%B8%AD"
    expected = sha1(f"jsapi_ticket=T-ticket&noncestr=n0nce&timestamp=42&url={url}")
    assert jssdk_signature("T-ticket", "n0nce", 42, url + "#frag") == expected


def test_a_non_ascii_url_is_signed_as_given() -> None:
    url = "https://例子.cn/页面/路径?名字=值&q=中文"
    expected = sha1(f"jsapi_ticket={DOC_TICKET}&noncestr={DOC_NONCE}&timestamp=7&url={url}")
    assert jssdk_signature(DOC_TICKET, DOC_NONCE, 7, url) == expected
    # Not the percent-encoded form: the page's URL as given is what is signed.
    encoded = "https://example.cn/%E9%A1%B5%E9%9D%A2"
    assert jssdk_signature(DOC_TICKET, DOC_NONCE, 7, encoded) != jssdk_signature(
        DOC_TICKET, DOC_NONCE, 7, "https://example.cn/页面"
    )


def test_the_signature_is_lower_case_hex() -> None:
    signed = jssdk_signature("t", "n", 1, "https://a.example/")
    assert len(signed) == 40
    assert signed == signed.lower()
    int(signed, 16)


@pytest.mark.parametrize(
    "timestamp", [1.5, 1414587457.0, "1.5", "", " 1", "-1", "١٢", -1, None, True]
)
def test_a_timestamp_that_is_not_an_integer_is_refused(timestamp: Any) -> None:
    with pytest.raises(ValueError, match="timestamp") as info:
        jssdk_signature(DOC_TICKET, DOC_NONCE, timestamp, DOC_URL)
    assert DOC_TICKET not in str(info.value)


def test_an_empty_ticket_is_refused() -> None:
    with pytest.raises(ValueError, match="ticket is empty"):
        jssdk_signature("", DOC_NONCE, DOC_TIMESTAMP, DOC_URL)


def test_a_ticket_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(TypeError, match="ticket must be a str"):
        jssdk_signature(None, DOC_NONCE, DOC_TIMESTAMP, DOC_URL)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("noncestr", "url", "error"),
    [
        ("", DOC_URL, ValueError),
        (None, DOC_URL, TypeError),
        (DOC_NONCE, "", ValueError),
        (DOC_NONCE, "#only-a-fragment", ValueError),
        (DOC_NONCE, b"http://mp.weixin.qq.com", TypeError),
    ],
)
def test_bad_nonce_or_url_is_refused_without_the_ticket(
    noncestr: Any, url: Any, error: type[Exception]
) -> None:
    with pytest.raises(error) as info:
        jssdk_signature(DOC_TICKET, noncestr, DOC_TIMESTAMP, url)
    assert DOC_TICKET not in str(info.value)
    assert DOC_TICKET not in repr(info.value)


# -- card_signature -------------------------------------------------------------------


def test_card_signature_is_the_sha1_of_the_sorted_values() -> None:
    values = ("ticket-xyz", "1404896688", "nonce-abc", "pjZ8Yt1XGILfi-FUsewpnnolGgZk")
    assert card_signature(*values) == sha1("".join(sorted(values)))


def test_card_signature_does_not_depend_on_the_order_of_the_values() -> None:
    ticket = "IpK_1T69hDhZkLQTlwsAX1lJTXgwgsR5zLnb1pI7yZ4"
    values: list[str | int] = [1404896688, "nonce-abc", "card-1", "code-9", "openid-7"]
    first = card_signature(ticket, *values)
    assert card_signature(ticket, *reversed(values)) == first
    assert card_signature(ticket, "openid-7", "card-1", 1404896688, "code-9", "nonce-abc") == first
    # The ticket is sorted with the values: it may come anywhere among them.
    assert first == sha1("".join(sorted([ticket, *map(str, values)])))


def test_card_signature_sorts_ints_as_strings() -> None:
    # As strings "10" < "9"; as numbers they would be the other way round.
    assert card_signature("t", 9, 10) == sha1("109t")


def test_card_signature_refuses_an_empty_ticket_and_odd_values() -> None:
    with pytest.raises(ValueError, match="api_ticket is empty"):
        card_signature("", 1, "n")
    with pytest.raises(TypeError, match="value 2") as info:
        card_signature(DOC_TICKET, 1, None)  # type: ignore[arg-type]
    assert DOC_TICKET not in str(info.value)
    with pytest.raises(TypeError):
        card_signature(DOC_TICKET, 1.5)  # type: ignore[arg-type]


# -- jssdk_config ---------------------------------------------------------------------


def test_jssdk_config_reproduces_the_documented_example() -> None:
    tickets = FakeTickets()
    config = jssdk_config(
        tickets,
        url=DOC_URL + "#section",
        js_api_list=["updateAppMessageShareData", "chooseImage"],
        nonce=DOC_NONCE,
        timestamp=DOC_TIMESTAMP,
    )
    assert config == {
        "debug": False,
        "appId": "wx0000000000000001",
        "timestamp": DOC_TIMESTAMP,
        "nonceStr": DOC_NONCE,
        "signature": DOC_SIGNATURE,
        "jsApiList": ["updateAppMessageShareData", "chooseImage"],
    }
    assert tickets.calls == 1


def test_jssdk_config_with_fresh_nonce_and_timestamp_verifies() -> None:
    before = int(time.time())
    config = jssdk_config(
        FakeTickets(), url="https://shop.example/页?id=1#x", open_tag_list=("wx-open-launch-app",)
    )
    after = int(time.time())
    assert set(config) == {
        "debug", "appId", "timestamp", "nonceStr", "signature", "jsApiList", "openTagList",
    }  # fmt: skip
    assert type(config["timestamp"]) is int
    assert before <= config["timestamp"] <= after
    nonce = config["nonceStr"]
    assert len(nonce) == 16
    assert all(c.isascii() and (c.isalnum() or c in "-_") for c in nonce)
    assert config["jsApiList"] == []
    assert config["openTagList"] == ["wx-open-launch-app"]
    expected = jssdk_signature(
        DOC_TICKET, nonce, config["timestamp"], "https://shop.example/页?id=1"
    )
    assert config["signature"] == expected
    assert DOC_TICKET not in repr(config)


def test_jssdk_config_nonces_are_fresh() -> None:
    nonces = {jssdk_config(FakeTickets(), url=DOC_URL)["nonceStr"] for _ in range(50)}
    assert len(nonces) == 50


def test_jssdk_config_debug_and_empty_open_tags() -> None:
    config = jssdk_config(FakeTickets(), url=DOC_URL, debug=True, open_tag_list=[])
    assert config["debug"] is True
    assert "openTagList" not in config


@pytest.mark.parametrize("timestamp", [1.5, "1414587457", True, -3])
def test_jssdk_config_refuses_a_timestamp_that_is_not_an_int(timestamp: Any) -> None:
    tickets = FakeTickets()
    with pytest.raises(ValueError, match="timestamp"):
        jssdk_config(tickets, url=DOC_URL, timestamp=timestamp)
    assert tickets.calls == 0


def test_jssdk_config_refuses_an_empty_ticket_without_showing_anything() -> None:
    with pytest.raises(ValueError, match="empty") as info:
        jssdk_config(FakeTickets(ticket=""), url=DOC_URL)
    assert "get_ticket" in str(info.value)


def test_jssdk_config_refuses_a_lone_string_as_a_list() -> None:
    with pytest.raises(TypeError, match="js_api_list"):
        jssdk_config(FakeTickets(), url=DOC_URL, js_api_list="chooseImage")
    with pytest.raises(TypeError, match="open_tag_list"):
        jssdk_config(FakeTickets(), url=DOC_URL, open_tag_list="wx-open-launch-app")


def test_jssdk_config_refuses_an_empty_nonce() -> None:
    with pytest.raises(ValueError, match="nonce"):
        jssdk_config(FakeTickets(), url=DOC_URL, nonce="")


# -- agent_config (WeCom) -------------------------------------------------------------


def test_agent_config_shape_and_signature() -> None:
    tickets = FakeTickets(ticket="agent-config-ticket-0123456789", appid="ww0000000000000001")
    config = agent_config(
        tickets,
        url="https://work.example/app?x=1#/home",
        agentid=1000002,
        js_api_list=["selectExternalContact"],
        nonce="abc",
        timestamp=1700000000,
    )
    assert config == {
        "corpid": "ww0000000000000001",
        "agentid": "1000002",
        "timestamp": 1700000000,
        "nonceStr": "abc",
        "signature": sha1(
            "jsapi_ticket=agent-config-ticket-0123456789&noncestr=abc"
            "&timestamp=1700000000&url=https://work.example/app?x=1"
        ),
        "jsApiList": ["selectExternalContact"],
    }
    assert tickets.calls == 1


def test_agent_config_defaults_verify() -> None:
    config = agent_config(FakeTickets(), url=DOC_URL, agentid="1000002")
    assert config["agentid"] == "1000002"
    assert type(config["timestamp"]) is int
    assert len(config["nonceStr"]) == 16
    assert config["jsApiList"] == []
    assert config["signature"] == jssdk_signature(
        DOC_TICKET, config["nonceStr"], config["timestamp"], DOC_URL
    )


@pytest.mark.parametrize("agentid", ["", None, True, 1.5])
def test_agent_config_refuses_a_bad_agentid(agentid: Any) -> None:
    with pytest.raises(ValueError, match="agentid"):
        agent_config(FakeTickets(), url=DOC_URL, agentid=agentid)


def test_the_package_root_exports_the_signing_functions() -> None:
    for name in ("jssdk_signature", "jssdk_config", "card_signature", "agent_config"):
        assert name in wxauth.__all__
        assert getattr(wxauth, name).__module__ == "wxauth._jssdk"
