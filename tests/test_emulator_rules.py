"""Each WeChat rule the emulator promises, checked over both front ends.

Every test runs twice: through the in-process ``responses`` front end (real WeChat URLs)
and through the loopback HTTP server. The emulator clock is moved with ``advance``; no
test sleeps.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from wxauth.testing import FakeWeChat

START = 1_700_000_000.0  # 2023-11-15 06:13:20 Beijing time
APPID, SECRET = "wx0123456789abcdef", "app-secret-1"
CORPID, CORPSECRET = "ww0123456789abcdef", "corp-secret-1"
RID = re.compile(r" rid: [0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}$")


@dataclass
class Wire:
    """Talks HTTP to the emulator through one front end."""

    fake: FakeWeChat
    wechat: str
    wecom: str
    session: requests.Session = field(default_factory=requests.Session)

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        response = self.session.get(self.wechat + path, params=params, timeout=5)
        assert response.status_code == 200
        body: dict[str, Any] = response.json()
        return body

    def post(self, path: str, body: Any = None, **params: Any) -> dict[str, Any]:
        response = self.session.post(self.wechat + path, params=params, json=body, timeout=5)
        assert response.status_code == 200
        result: dict[str, Any] = response.json()
        return result

    def raw_get(self, path: str, **params: Any) -> requests.Response:
        return self.session.get(self.wechat + path, params=params, timeout=5)

    def wecom_get(self, path: str, **params: Any) -> dict[str, Any]:
        response = self.session.get(self.wecom + path, params=params, timeout=5)
        assert response.status_code == 200
        body: dict[str, Any] = response.json()
        return body

    def fetch(self, appid: str = APPID, secret: str = SECRET) -> dict[str, Any]:
        return self.get(
            "/cgi-bin/token", grant_type="client_credential", appid=appid, secret=secret
        )

    def token(self, appid: str = APPID, secret: str = SECRET) -> str:
        value: str = self.fetch(appid, secret)["access_token"]
        return value

    def stable(self, force: bool | None = None, **overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"grant_type": "client_credential", "appid": APPID}
        body["secret"] = SECRET
        if force is not None:
            body["force_refresh"] = force
        body.update(overrides)
        return self.post("/cgi-bin/stable_token", body)

    def api(self, token: str | None, path: str = "/cgi-bin/user/get") -> dict[str, Any]:
        return self.get(path) if token is None else self.get(path, access_token=token)

    def wecom_token(self, corpsecret: str = CORPSECRET) -> dict[str, Any]:
        return self.wecom_get("/cgi-bin/gettoken", corpid=CORPID, corpsecret=corpsecret)


@pytest.fixture(params=["in_process", "loopback"])
def wire(request: pytest.FixtureRequest) -> Iterator[Wire]:
    fake = FakeWeChat(start=START, seed=7)
    fake.add_app(APPID, SECRET)
    fake.add_wecom_app(CORPID, CORPSECRET)
    try:
        if request.param == "in_process":
            with fake.intercept():
                yield Wire(fake, "https://api.weixin.qq.com", "https://qyapi.weixin.qq.com")
        else:
            with fake.serve() as url:
                yield Wire(fake, url, url)
    finally:
        fake.close()


# -- GET /cgi-bin/token --------------------------------------------------------------------


def test_token_fetch_returns_a_long_url_safe_token_and_expires_in(wire: Wire) -> None:
    """A fetch answers {"access_token", "expires_in": 7200}, the token opaque and long."""
    body = wire.fetch()
    assert set(body) == {"access_token", "expires_in"}
    assert body["expires_in"] == 7200
    assert len(body["access_token"]) >= 100
    assert re.fullmatch(r"[A-Za-z0-9_-]+", body["access_token"])


def test_token_expires_in_is_configurable(wire: Wire) -> None:
    """expires_in follows the emulator setting (WeChat promises only "within 7200")."""
    wire.fake.expires_in = 600
    assert wire.fetch()["expires_in"] == 600


def test_each_fetch_issues_a_new_token(wire: Wire) -> None:
    """Every classic fetch returns a different token."""
    tokens = {wire.token() for _ in range(3)}
    assert len(tokens) == 3
    assert wire.fake.issued_tokens == sorted(tokens, key=wire.fake.issued_tokens.index)


def test_new_fetch_retires_previous_token_after_grace(wire: Wire) -> None:
    """The old token works for 300 s after a new fetch, then answers 40001."""
    old = wire.token()
    wire.fake.advance(1000)
    new = wire.token()
    wire.fake.advance(299)
    assert wire.api(old)["errcode"] == 0
    assert wire.api(new)["errcode"] == 0
    wire.fake.advance(1)
    body = wire.api(old)
    assert body["errcode"] == 40001
    assert body["errmsg"].startswith("invalid credential, access_token is invalid or not latest")
    assert wire.api(new)["errcode"] == 0


def test_grace_period_is_configurable(wire: Wire) -> None:
    """grace=0 makes a new fetch retire the old token at once."""
    wire.fake.grace = 0
    old = wire.token()
    wire.token()
    assert wire.api(old)["errcode"] == 40001


def test_token_expires_after_expires_in(wire: Wire) -> None:
    """A token answers 42001 once expires_in seconds have passed."""
    token = wire.token()
    wire.fake.advance(7199)
    assert wire.api(token)["errcode"] == 0
    wire.fake.advance(1)
    body = wire.api(token)
    assert body["errcode"] == 42001
    assert body["errmsg"].startswith("access_token expired")


@pytest.mark.parametrize(
    ("params", "errcode", "errmsg"),
    [
        ({"appid": APPID, "secret": SECRET}, 40002, "invalid grant_type"),
        ({"grant_type": "password", "appid": APPID, "secret": SECRET}, 40002, None),
        ({"grant_type": "client_credential", "secret": SECRET}, 41002, "appid missing"),
        ({"grant_type": "client_credential", "appid": APPID}, 41004, "appsecret missing"),
        (
            {"grant_type": "client_credential", "appid": "wxunknown", "secret": SECRET},
            40013,
            "invalid appid",
        ),
        (
            {"grant_type": "client_credential", "appid": APPID, "secret": "wrong"},
            40125,
            "invalid appsecret",
        ),
    ],
)
def test_token_endpoint_errcodes(
    wire: Wire, params: dict[str, str], errcode: int, errmsg: str | None
) -> None:
    """Bad requests answer WeChat's errcodes, HTTP 200, and issue no token."""
    body = wire.get("/cgi-bin/token", **params)
    assert body["errcode"] == errcode
    assert "access_token" not in body
    if errmsg is not None:
        assert body["errmsg"].startswith(errmsg)
    assert wire.fake.issued_tokens == []


def test_wrong_secret_can_answer_40001(wire: Wire) -> None:
    """wrong_secret_errcode=40001 mimics the other answer seen in the wild."""
    wire.fake.wrong_secret_errcode = 40001
    assert wire.fetch(secret="wrong")["errcode"] == 40001


def test_errmsg_carries_a_rid_suffix(wire: Wire) -> None:
    """errmsg ends with "rid: xxxxxxxx-xxxxxxxx-xxxxxxxx" like WeChat's."""
    assert RID.search(wire.fetch(appid="wxunknown")["errmsg"])
    assert RID.search(wire.api("not-a-token")["errmsg"])


def test_daily_quota_answers_45009_until_the_day_rolls_over(wire: Wire) -> None:
    """Past the daily quota fetches answer 45009; the quota resets at the next day."""
    wire.fake.add_app("wxtest", "s", daily_quota=3)
    for _ in range(3):
        assert "access_token" in wire.fetch("wxtest", "s")
    body = wire.fetch("wxtest", "s")
    assert body["errcode"] == 45009
    assert body["errmsg"].startswith("reach max api daily quota limit")
    wire.fake.advance(wire.fake.seconds_to_next_day() - 1)
    assert wire.fetch("wxtest", "s")["errcode"] == 45009
    wire.fake.advance(1)
    assert "access_token" in wire.fetch("wxtest", "s")


def test_default_daily_quota_is_2000(wire: Wire) -> None:
    """The classic quota defaults to 2000 a day (counted as the model sees it)."""
    assert wire.fake.daily_quota == 2000
    wire.fetch()
    assert wire.fake.quota_used(APPID) == 1


def test_ip_allowlist_answers_40164_naming_the_caller_ip(wire: Wire) -> None:
    """A caller outside the allowlist gets 40164 with its IP in errmsg."""
    wire.fake.add_app("wxip", "s", ip_allowlist=["203.0.113.9"])
    body = wire.fetch("wxip", "s")
    assert body["errcode"] == 40164
    assert body["errmsg"].startswith(
        "invalid ip 127.0.0.1 ipv6 ::ffff:127.0.0.1, not in whitelist rid: "
    )
    wire.fake.add_app("wxip2", "s", ip_allowlist=["127.0.0.1"])
    assert "access_token" in wire.fetch("wxip2", "s")


# -- POST /cgi-bin/stable_token ------------------------------------------------------------


def test_stable_token_requires_post(wire: Wire) -> None:
    """GET on stable_token answers 43002 require POST method."""
    body = wire.get("/cgi-bin/stable_token", grant_type="client_credential", appid=APPID)
    assert body["errcode"] == 43002
    assert body["errmsg"].startswith("require POST method")


@pytest.mark.parametrize(
    ("overrides", "errcode"),
    [
        ({"grant_type": "x"}, 40002),
        ({"appid": ""}, 41002),
        ({"secret": ""}, 41004),
        ({"appid": "wxunknown"}, 40013),
        ({"secret": "wrong"}, 40125),
        ({"force_refresh": "yes"}, 47001),
    ],
)
def test_stable_token_errcodes(wire: Wire, overrides: dict[str, Any], errcode: int) -> None:
    """stable_token validates its JSON body like the classic endpoint."""
    assert wire.stable(**overrides)["errcode"] == errcode


def test_stable_token_rejects_a_body_that_is_not_json(wire: Wire) -> None:
    """A body that is not a JSON object answers 47001 data format error."""
    response = wire.session.post(wire.wechat + "/cgi-bin/stable_token", data=b"appid=x")
    assert response.json()["errcode"] == 47001


def test_stable_token_normal_mode_returns_the_same_token_with_remaining_life(
    wire: Wire,
) -> None:
    """Normal mode returns the current token and its remaining expires_in."""
    first = wire.stable()
    assert first["expires_in"] == 7200
    wire.fake.advance(1000)
    again = wire.stable(force=False)
    assert again == {"access_token": first["access_token"], "expires_in": 6200}
    assert len(wire.fake.issued_tokens) == 1


def test_stable_token_renews_in_the_last_300s_and_both_tokens_work(wire: Wire) -> None:
    """In the last 5 minutes normal mode issues a successor; the old one works to expiry."""
    old = wire.stable()["access_token"]
    wire.fake.advance(7200 - 301)
    assert wire.stable() == {"access_token": old, "expires_in": 301}
    wire.fake.advance(2)
    renewed = wire.stable()
    assert renewed["access_token"] != old
    assert renewed["expires_in"] == 7200
    assert wire.api(old)["errcode"] == 0
    assert wire.api(renewed["access_token"])["errcode"] == 0
    assert wire.stable()["access_token"] == renewed["access_token"]
    wire.fake.advance(299)
    assert wire.api(old)["errcode"] == 42001
    assert wire.api(renewed["access_token"])["errcode"] == 0


def test_stable_token_force_refresh_retires_the_old_token(wire: Wire) -> None:
    """force_refresh returns a new 7200 s token and the old one answers 40001 at once."""
    old = wire.stable()["access_token"]
    wire.fake.advance(100)
    forced = wire.stable(force=True)
    assert forced["access_token"] != old
    assert forced["expires_in"] == 7200
    assert wire.api(old)["errcode"] == 40001
    assert wire.stable()["access_token"] == forced["access_token"]


def test_stable_token_force_refresh_at_most_once_per_30s(wire: Wire) -> None:
    """A force refresh within 30 s of the last one does not refresh."""
    first = wire.stable(force=True)["access_token"]
    wire.fake.advance(29)
    too_soon = wire.stable(force=True)
    assert too_soon == {"access_token": first, "expires_in": 7200 - 29}
    assert wire.api(first)["errcode"] == 0
    wire.fake.advance(1)
    assert wire.stable(force=True)["access_token"] != first


def test_stable_token_force_refresh_20_times_a_day(wire: Wire) -> None:
    """The 21st force refresh of a day answers 45009; the next day it works again."""
    for _ in range(20):
        assert "access_token" in wire.stable(force=True)
        wire.fake.advance(30)
    assert wire.stable(force=True)["errcode"] == 45009
    assert "access_token" in wire.stable()  # normal mode is not limited by it
    wire.fake.advance_to_next_day()
    assert "access_token" in wire.stable(force=True)


def test_stable_token_daily_call_quota(wire: Wire) -> None:
    """stable_token calls count against their own daily quota (500,000 by default)."""
    wire.fake.set_quota(APPID, "/cgi-bin/stable_token", 2)
    wire.stable()
    wire.stable()
    assert wire.stable()["errcode"] == 45009
    assert "access_token" in wire.fetch()  # the classic quota is separate


def test_stable_token_is_isolated_from_the_classic_token(wire: Wire) -> None:
    """Classic fetches do not retire stable tokens, nor stable force refreshes classic ones."""
    stable = wire.stable()["access_token"]
    classic = wire.token()
    wire.token()
    wire.fake.advance(301)
    assert wire.api(stable)["errcode"] == 0
    assert wire.api(classic)["errcode"] == 40001
    classic = wire.token()
    wire.stable(force=True)
    assert wire.api(classic)["errcode"] == 0


# -- WeCom GET /cgi-bin/gettoken -----------------------------------------------------------


def test_wecom_gettoken_success_shape(wire: Wire) -> None:
    """WeCom answers errcode 0, errmsg ok, access_token and expires_in."""
    body = wire.wecom_token()
    assert body["errcode"] == 0
    assert body["errmsg"] == "ok"
    assert body["expires_in"] == 7200
    assert len(body["access_token"]) >= 100


def test_wecom_one_token_per_corpsecret_reused_while_valid(wire: Wire) -> None:
    """Each application has its own token; gettoken repeats it while it is valid."""
    wire.fake.add_wecom_app(CORPID, "corp-secret-2")
    first = wire.wecom_token()
    other = wire.wecom_token("corp-secret-2")
    assert first["access_token"] != other["access_token"]
    wire.fake.advance(100)
    assert wire.wecom_token()["access_token"] == first["access_token"]
    assert wire.wecom_token()["expires_in"] == 7100
    wire.fake.advance(7100)
    assert wire.wecom_token()["access_token"] != first["access_token"]


@pytest.mark.parametrize(
    ("params", "errcode"),
    [
        ({"corpsecret": CORPSECRET}, 41002),
        ({"corpid": CORPID}, 41004),
        ({"corpid": "wwunknown", "corpsecret": CORPSECRET}, 40013),
        ({"corpid": CORPID, "corpsecret": "wrong"}, 40001),
    ],
)
def test_wecom_gettoken_errcodes(wire: Wire, params: dict[str, str], errcode: int) -> None:
    """WeCom errors carry its hint/from ip/more info suffix."""
    body = wire.wecom_get("/cgi-bin/gettoken", **params)
    assert body["errcode"] == errcode
    assert re.search(
        r", hint: \[\d+\], from ip: 127\.0\.0\.1, more info at "
        rf"https://open\.work\.weixin\.qq\.com/devtool/query\?e={errcode}$",
        body["errmsg"],
    )


def test_wecom_ip_allowlist_answers_60020(wire: Wire) -> None:
    """A WeCom app with trusted IPs refuses other callers with 60020."""
    wire.fake.add_wecom_app("wwip", "s", ip_allowlist=["203.0.113.9"])
    body = wire.wecom_get("/cgi-bin/gettoken", corpid="wwip", corpsecret="s")
    assert body["errcode"] == 60020


def test_wecom_token_dropped_early_answers_40014_and_gettoken_issues_a_new_one(
    wire: Wire,
) -> None:
    """WeCom may invalidate a token early: 40014 on use, a new token on gettoken."""
    token = wire.wecom_token()["access_token"]
    wire.fake.retire(token)
    body = wire.wecom_get("/cgi-bin/user/get", access_token=token)
    assert body["errcode"] == 40014
    assert "from ip: 127.0.0.1" in body["errmsg"]
    assert wire.wecom_token()["access_token"] != token


def test_wecom_token_expires_with_42001(wire: Wire) -> None:
    """An expired WeCom token answers 42001."""
    token = wire.wecom_token()["access_token"]
    wire.fake.advance(7200)
    assert wire.wecom_get("/cgi-bin/user/get", access_token=token)["errcode"] == 42001


# -- any other API path --------------------------------------------------------------------


def test_api_without_access_token_answers_41001(wire: Wire) -> None:
    """No access_token (or an empty one) answers 41001 access_token missing."""
    assert wire.api(None)["errcode"] == 41001
    body = wire.api("")
    assert body["errcode"] == 41001
    assert body["errmsg"].startswith("access_token missing rid: ")


def test_api_with_unknown_token_answers_40014(wire: Wire) -> None:
    """A token the emulator never issued answers 40014 invalid access_token."""
    body = wire.api("x" * 136)
    assert body["errcode"] == 40014
    assert body["errmsg"].startswith("invalid access_token rid: ")


def test_api_with_valid_token_answers_ok(wire: Wire) -> None:
    """Any path with a valid token answers {"errcode":0,"errmsg":"ok"}, GET or POST."""
    token = wire.token()
    assert wire.api(token, "/cgi-bin/message/custom/send") == {"errcode": 0, "errmsg": "ok"}
    body = wire.post("/wxa/msg_sec_check", {"content": "hi"}, access_token=token)
    assert body == {"errcode": 0, "errmsg": "ok"}


def test_registered_json_answer(wire: Wire) -> None:
    """A path can be given its own JSON answer, served after the token check."""
    wire.fake.add_api("cgi-bin/user/info", json={"subscribe": 1, "openid": "o1"})
    token = wire.token()
    assert wire.api(token, "/cgi-bin/user/info") == {"subscribe": 1, "openid": "o1"}
    assert wire.api("bogus", "/cgi-bin/user/info")["errcode"] == 40014


def test_registered_binary_answer_after_the_token_check(wire: Wire) -> None:
    """media/get can answer image bytes; a bad token still gets a JSON error first."""
    jpeg = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4
    wire.fake.add_api("/cgi-bin/media/get", body=jpeg, content_type="image/jpeg")
    token = wire.token()
    response = wire.raw_get("/cgi-bin/media/get", access_token=token, media_id="m")
    assert response.headers["Content-Type"] == "image/jpeg"
    assert response.content == jpeg
    wire.fake.advance(7200)
    expired = wire.raw_get("/cgi-bin/media/get", access_token=token, media_id="m")
    assert expired.headers["Content-Type"].startswith("application/json")
    assert expired.json()["errcode"] == 42001


def test_api_path_daily_quota(wire: Wire) -> None:
    """An API path given a daily limit answers 45009 past it."""
    wire.fake.set_quota(APPID, "/cgi-bin/message/custom/send", 1)
    token = wire.token()
    assert wire.api(token, "/cgi-bin/message/custom/send")["errcode"] == 0
    assert wire.api(token, "/cgi-bin/message/custom/send")["errcode"] == 45009
    assert wire.api(token, "/cgi-bin/user/get")["errcode"] == 0


# -- quota endpoints -----------------------------------------------------------------------


def test_quota_get_reports_daily_limit_used_and_remain(wire: Wire) -> None:
    """openapi/quota/get answers the quota of one cgi_path."""
    token = wire.token()
    wire.token()
    body = wire.post(
        "/cgi-bin/openapi/quota/get", {"cgi_path": "/cgi-bin/token"}, access_token=token
    )
    assert body == {
        "errcode": 0,
        "errmsg": "ok",
        "quota": {"daily_limit": 2000, "used": 2, "remain": 1998},
    }


def test_quota_get_needs_a_token_and_a_known_path(wire: Wire) -> None:
    """quota/get checks the token, and answers 76021 for a path without a quota."""
    no_token = wire.post("/cgi-bin/openapi/quota/get", {"cgi_path": "/cgi-bin/token"})
    assert no_token["errcode"] == 41001
    token = wire.token()
    body = wire.post("/cgi-bin/openapi/quota/get", {"cgi_path": "/nope"}, access_token=token)
    assert body["errcode"] == 76021


def test_clear_quota_resets_the_daily_quota(wire: Wire) -> None:
    """clear_quota (token + appid) resets every daily count of the account."""
    wire.fake.add_app("wxq", "s", daily_quota=1)
    token = wire.token("wxq", "s")
    assert wire.fetch("wxq", "s")["errcode"] == 45009
    body = wire.post("/cgi-bin/clear_quota", {"appid": "wxq"}, access_token=token)
    assert body == {"errcode": 0, "errmsg": "ok"}
    assert "access_token" in wire.fetch("wxq", "s")


def test_clear_quota_checks_token_and_appid(wire: Wire) -> None:
    """clear_quota needs a valid token and the appid it belongs to."""
    assert wire.post("/cgi-bin/clear_quota", {"appid": APPID})["errcode"] == 41001
    token = wire.token()
    assert wire.post("/cgi-bin/clear_quota", {}, access_token=token)["errcode"] == 41002
    body = wire.post("/cgi-bin/clear_quota", {"appid": "wxother"}, access_token=token)
    assert body["errcode"] == 40013


def test_clear_quota_ten_times_a_month_then_48006(wire: Wire) -> None:
    """The 11th clear in a calendar month answers 48006; next month it works again."""
    token = wire.stable()["access_token"]
    for _ in range(10):
        body = wire.post("/cgi-bin/clear_quota", {"appid": APPID}, access_token=token)
        assert body["errcode"] == 0
    body = wire.post("/cgi-bin/clear_quota", {"appid": APPID}, access_token=token)
    assert body["errcode"] == 48006
    wire.fake.advance(31 * 86400)
    token = wire.stable()["access_token"]
    body = wire.post("/cgi-bin/clear_quota", {"appid": APPID}, access_token=token)
    assert body["errcode"] == 0


def test_clear_quota_v2_uses_appid_and_appsecret(wire: Wire) -> None:
    """clear_quota/v2 needs no token; it checks the appsecret and shares the monthly 10."""
    wire.fake.add_app("wxq", "s", daily_quota=1)
    wire.fetch("wxq", "s")
    assert wire.fetch("wxq", "s")["errcode"] == 45009
    assert wire.post("/cgi-bin/clear_quota/v2", {"appid": "wxq"})["errcode"] == 41004
    bad = wire.post("/cgi-bin/clear_quota/v2", {"appid": "wxq", "appsecret": "no"})
    assert bad["errcode"] == 40125
    good = wire.post("/cgi-bin/clear_quota/v2", {"appid": "wxq", "appsecret": "s"})
    assert good == {"errcode": 0, "errmsg": "ok"}
    assert "access_token" in wire.fetch("wxq", "s")
    for _ in range(9):
        wire.post("/cgi-bin/clear_quota/v2", {"appid": "wxq", "appsecret": "s"})
    again = wire.post("/cgi-bin/clear_quota/v2", {"appid": "wxq", "appsecret": "s"})
    assert again["errcode"] == 48006


def test_quota_endpoints_require_post(wire: Wire) -> None:
    """clear_quota, clear_quota/v2 and quota/get answer 43002 to GET."""
    token = wire.token()
    assert wire.get("/cgi-bin/clear_quota", access_token=token)["errcode"] == 43002
    assert wire.get("/cgi-bin/clear_quota/v2")["errcode"] == 43002
    assert wire.get("/cgi-bin/openapi/quota/get", access_token=token)["errcode"] == 43002
