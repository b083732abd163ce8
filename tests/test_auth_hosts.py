"""WxAuth hands the token only to the API hosts of its source: WeChat's own, the
``api_base`` it was given, and the ``extra_hosts`` the caller names. A request to any
other host (a CDN, another company's API, a redirect target) goes out untouched."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from _loopback import serve

import wxauth
from wxauth.testing import FakeWeChat

APPID = "wxhoststest000001"
SECRET = "hosts-secret-0a1b2c3d4e5f6a7b"
TOKEN = "HOSTS_TOKEN_" + "h" * 100
OK = {"errcode": 0, "errmsg": "ok"}
EXPIRED = {"errcode": 40001, "errmsg": "invalid credential"}
REGIONAL = [
    "https://api.weixin.qq.com",
    "https://api2.weixin.qq.com",
    "https://sh.api.weixin.qq.com",
    "https://sz.api.weixin.qq.com",
    "https://hk.api.weixin.qq.com",
]


def token_of(url: str | None) -> list[str]:
    return parse_qs(urlsplit(url or "").query).get("access_token", [])


def callable_auth(**options: Any) -> wxauth.WxAuth:
    return wxauth.WxAuth(APPID, source=lambda: (TOKEN, 7200), **options)


def prepared_url(auth: wxauth.WxAuth, url: str) -> str:
    return auth(requests.Request("GET", url).prepare()).url or ""


# -- which hosts get the token ------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://cdn.example.com/image.jpg",
        "https://api.other.example/v1/things",
        "https://api.weixin.qq.com.evil.example/cgi-bin/user/get",
        "https://weixin.qq.com/cgi-bin/user/get",
        "https://mmbiz.qpic.cn/mmbiz_jpg/abc/0",
        "http://api.weixin.qq.com/cgi-bin/user/get",  # plain http: not the https API
        "https://api.weixin.qq.com:8443/cgi-bin/user/get",  # another port
        "https://user@api.weixin.qq.com.evil.example/x",
    ],
)
def test_the_token_is_not_added_for_other_hosts(url: str) -> None:
    """A classic WxAuth on WeChat's API base sends nothing to any other origin, and does
    not even fetch a token for such a request."""
    fetched: list[int] = []

    def source() -> tuple[str, float]:
        fetched.append(1)
        return TOKEN, 7200

    auth = wxauth.WxAuth(APPID, source=source)
    prepared = auth(requests.Request("GET", url, params={"a": "1"}).prepare())
    assert token_of(prepared.url) == []
    assert prepared.hooks["response"] == []
    assert fetched == []


class _FixedClassic(wxauth.ClassicTokenSource):
    """The classic source with a fixed token instead of a fetch."""

    def fetch(self, ctx: wxauth.FetchContext) -> tuple[str, float]:
        return TOKEN, 7200


class _FixedStable(wxauth.StableTokenSource):
    """The stable source with a fixed token instead of a fetch."""

    def fetch(self, ctx: wxauth.FetchContext) -> tuple[str, float]:
        return TOKEN, 7200


@pytest.mark.parametrize("base", REGIONAL)
def test_wechats_regional_api_hosts_get_the_token(base: str) -> None:
    """api.weixin.qq.com and WeChat's regional/backup API domains (api2, sh.api, sz.api,
    hk.api) all get the token, for the classic, stable and a callable source alike;
    host names are compared case-insensitively."""
    for auth in (
        wxauth.WxAuth(APPID, source=_FixedClassic(APPID, SECRET)),
        wxauth.WxAuth(APPID, source=_FixedStable(APPID, SECRET)),
        callable_auth(),
    ):
        assert token_of(prepared_url(auth, base + "/cgi-bin/user/get")) == [TOKEN]
        assert token_of(prepared_url(auth, base.upper() + ":443/cgi-bin/user/get")) == [TOKEN]


class _FixedWeCom(wxauth.WeComTokenSource):
    """The WeCom source, with a fixed token instead of a fetch."""

    def __init__(self, corpid: str) -> None:
        super().__init__(corpid, "corp-secret")

    def fetch(self, ctx: wxauth.FetchContext) -> tuple[str, float]:
        return TOKEN, 7200


def test_wecom_tokens_go_to_qyapi_only() -> None:
    """A WeCom token is for qyapi.weixin.qq.com, not for the Official Account API."""
    wecom = wxauth.WxAuth(
        manager=wxauth.TokenManager("ww0123456789", source=_FixedWeCom("ww0123456789"))
    )
    qyapi = "https://qyapi.weixin.qq.com/cgi-bin/user/get"
    assert token_of(prepared_url(wecom, qyapi)) == [TOKEN]
    assert token_of(prepared_url(wecom, "https://api.weixin.qq.com/cgi-bin/user/get")) == []


def test_a_callable_source_also_covers_qyapi() -> None:
    """A callable source does not say which API its tokens are for: WeChat's API hosts,
    WeCom's included, get them."""
    auth = callable_auth()
    assert token_of(prepared_url(auth, "https://qyapi.weixin.qq.com/cgi-bin/user/get")) == [TOKEN]


def test_api_base_of_an_emulator_is_the_only_api_host(fake_wechat: FakeWeChat) -> None:
    """With api_base=the emulator's loopback URL, that origin (scheme, host and port)
    gets the token; WeChat's hosts and the same host on another port do not."""
    fake_wechat.add_app(APPID, SECRET)
    with fake_wechat.serve() as url:
        port = int(url.rsplit(":", 1)[1])
        auth = wxauth.WxAuth(APPID, SECRET, api_base=url, clock=fake_wechat.clock)
        assert token_of(prepared_url(auth, url + "/cgi-bin/user/get")) != []
        assert token_of(prepared_url(auth, url + "/")) != []
        other_port = f"http://127.0.0.1:{port + 1 if port < 65535 else port - 1}/x"
        assert token_of(prepared_url(auth, other_port)) == []
        assert token_of(prepared_url(auth, f"https://127.0.0.1:{port}/x")) == []
        assert token_of(prepared_url(auth, "https://api.weixin.qq.com/cgi-bin/user/get")) == []
        # WxAuth(manager=...) reads the API base from the manager's source.
        shared = wxauth.WxAuth(manager=auth.manager)
        assert token_of(prepared_url(shared, url + "/cgi-bin/user/get")) != []
        assert token_of(prepared_url(shared, "https://api.weixin.qq.com/x")) == []


def test_api_base_with_a_callable_source_names_the_api_host() -> None:
    """api_base given with a callable source (which fetches nothing from it) says where
    the API calls go: that origin gets the token."""
    auth = callable_auth(api_base="http://127.0.0.1:9")
    assert token_of(prepared_url(auth, "http://127.0.0.1:9/cgi-bin/user/get")) == [TOKEN]
    assert token_of(prepared_url(auth, "http://127.0.0.1:10/cgi-bin/user/get")) == []


def test_extra_hosts_widen_the_list() -> None:
    """extra_hosts takes bare host names (https, port 443) and scheme://host[:port]
    origins, on top of the source's API hosts."""
    auth = callable_auth(
        extra_hosts=["https://My-Proxy.example:8443", "api.other.example", "http://10.0.0.5"]
    )
    assert token_of(prepared_url(auth, "https://my-proxy.example:8443/cgi-bin/x")) == [TOKEN]
    assert token_of(prepared_url(auth, "https://my-proxy.example/cgi-bin/x")) == []
    assert token_of(prepared_url(auth, "https://api.other.example/v1")) == [TOKEN]
    assert token_of(prepared_url(auth, "http://api.other.example/v1")) == []
    assert token_of(prepared_url(auth, "http://10.0.0.5:80/v1")) == [TOKEN]
    assert token_of(prepared_url(auth, "https://api.weixin.qq.com/cgi-bin/x")) == [TOKEN]
    assert token_of(prepared_url(auth, "https://cdn.example.com/x")) == []
    one = callable_auth(extra_hosts="api.other.example")  # one str is one host
    assert token_of(prepared_url(one, "https://api.other.example/v1")) == [TOKEN]
    manager = wxauth.TokenManager(APPID, source=lambda: (TOKEN, 7200))
    shared = wxauth.WxAuth(manager=manager, extra_hosts=["api.other.example"])
    assert token_of(prepared_url(shared, "https://api.other.example/v1")) == [TOKEN]


@pytest.mark.parametrize(
    "entry", ["", "ftp://files.example", "https://x.example/path", "https://", "https://a b"]
)
def test_malformed_extra_hosts_are_refused(entry: str) -> None:
    """An entry that is not a host or an origin is a ValueError at construction."""
    with pytest.raises(ValueError):
        callable_auth(extra_hosts=[entry])


# -- over the wire ------------------------------------------------------------------------------


def test_a_session_sends_no_token_to_a_cdn(rsps: responses.RequestsMock) -> None:
    """One Session used for WeChat and for a CDN: the CDN request carries no token, is
    not healed when it answers 40001-like JSON, and causes no token fetch."""
    rsps.get("https://cdn.example.com/a.json", json=EXPIRED)
    rsps.get("https://api.weixin.qq.com/cgi-bin/user/get", json=OK)
    fetched: list[int] = []

    def source() -> tuple[str, float]:
        fetched.append(1)
        return TOKEN, 7200

    session = requests.Session()
    session.auth = wxauth.WxAuth(APPID, source=source)
    cdn = session.get("https://cdn.example.com/a.json")
    assert token_of(cdn.request.url) == []
    assert cdn.json() == EXPIRED
    assert cdn.history == []
    assert fetched == []
    api = session.get("https://api.weixin.qq.com/cgi-bin/user/get")
    assert token_of(api.request.url) == [TOKEN]
    assert fetched == [1]
    assert [token_of(call.request.url) for call in rsps.calls] == [[], [TOKEN]]


def test_a_redirect_to_another_host_carries_no_token(rsps: responses.RequestsMock) -> None:
    """requests follows a 302 by building the URL from Location and does not call the
    auth again, so the token is not forwarded; a 40001 from the other host is not healed
    (no token is sent there on a re-send either)."""
    rsps.get(
        "https://api.weixin.qq.com/cgi-bin/redirected",
        status=302,
        headers={"Location": "https://cdn.example.com/file?x=1"},
    )
    rsps.get("https://cdn.example.com/file", json=EXPIRED)
    fetched: list[int] = []

    def source() -> tuple[str, float]:
        fetched.append(1)
        return TOKEN, 7200

    session = requests.Session()
    session.auth = wxauth.WxAuth(APPID, source=source)
    response = session.get("https://api.weixin.qq.com/cgi-bin/redirected")
    assert response.url.startswith("https://cdn.example.com/file")
    assert response.json() == EXPIRED
    assert [r.status_code for r in response.history] == [302]
    assert [token_of(call.request.url) for call in rsps.calls] == [[TOKEN], []]
    assert fetched == [1]  # no invalidation, no refresh for the CDN's answer


def test_a_location_that_carries_the_token_elsewhere_is_scrubbed(
    rsps: responses.RequestsMock,
) -> None:
    """If a WeChat host's Location copied the query (token included) to another host,
    the token is taken out before requests follows it."""
    rsps.get(
        "https://api.weixin.qq.com/cgi-bin/bounce",
        status=302,
        headers={"Location": f"https://cdn.example.com/file?a=1&access_token={TOKEN}&b=2"},
    )
    rsps.get("https://cdn.example.com/file", json=OK)
    session = requests.Session()
    session.auth = callable_auth()
    response = session.get("https://api.weixin.qq.com/cgi-bin/bounce")
    assert response.json() == OK
    forwarded = parse_qs(urlsplit(rsps.calls[1].request.url).query)
    assert forwarded == {"a": ["1"], "b": ["2"]}
    assert TOKEN not in response.url


class _RedirectingHandler(BaseHTTPRequestHandler):
    """``/go`` redirects to the ``target`` origin's ``/landed``; every other path echoes
    the request target as JSON."""

    target = ""
    seen: list[str] = []  # noqa: RUF012 - replaced per server

    def do_GET(self) -> None:
        self.seen.append(self.path)
        if self.path.startswith("/go"):
            self.send_response(302)
            self.send_header("Location", self.target + "/landed")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps({"errcode": 40001, "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_real_redirect_between_loopback_servers() -> None:
    """Over real HTTP: the API server (api_base) redirects to a second server, which sees
    no token and whose 40001 answer is not healed."""
    other_seen: list[str] = []
    api_seen: list[str] = []
    other_handler = type("Other", (_RedirectingHandler,), {"seen": other_seen})
    with serve(other_handler) as other_url:
        api_handler = type("Api", (_RedirectingHandler,), {"seen": api_seen, "target": other_url})
        with serve(api_handler) as api_url:
            session = requests.Session()
            session.auth = callable_auth(api_base=api_url)
            response = session.get(api_url + "/go", timeout=10)
    assert response.json() == {"errcode": 40001, "path": "/landed"}
    assert len(api_seen) == 1
    assert token_of(api_seen[0]) == [TOKEN]
    assert other_seen == ["/landed"]
