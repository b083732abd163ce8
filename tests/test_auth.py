"""WxAuth: the token in the query, one invisible retry on 40001/40014/42001 with the same
request and send options, and everything it must leave alone."""

from __future__ import annotations

import io
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

import wxauth
from wxauth.testing import FakeWeChat, WeChatInterceptor

APPID = "wxauthtest0000001"
SECRET = "auth-secret-3b9f1c7e5a2d8e60"
API = "https://api.weixin.qq.com"
SEND_PATH = "/cgi-bin/message/custom/send"
MENU_PATH = "/cgi-bin/get_current_selfmenu_info"
MEDIA_PATH = "/cgi-bin/media/get"
SEND_URL = API + SEND_PATH
MENU_URL = API + MENU_PATH
MEDIA_URL = API + MEDIA_PATH
OK = {"errcode": 0, "errmsg": "ok"}
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF" + b'{"errcode":40001}' + bytes(range(256)) * 64


def expired(errcode: int) -> dict[str, object]:
    return {"errcode": errcode, "errmsg": f"token rejected rid: 6792f178-0c5b09a3-{errcode:08d}"}


def token_of(url: str | None) -> list[str]:
    return parse_qs(urlsplit(url or "").query).get("access_token", [])


@pytest.fixture
def wechat(wechat: FakeWeChat) -> FakeWeChat:
    """The emulator, with this module's app registered."""
    wechat.add_app(APPID, SECRET)
    return wechat


def sent_to(interceptor: WeChatInterceptor, url: str) -> list[requests.PreparedRequest]:
    """The requests that went out to ``url`` (whatever their query), oldest first."""
    return [
        call.request
        for call in interceptor.mock.calls
        if (call.request.url or "").split("?")[0] == url
    ]


@dataclass
class Sent:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    options: dict[str, Any]


class RecordingTransport(BaseAdapter):
    """A transport test double: reads the body the way urllib3 would (files and
    iterators are consumed), records it with the send options, and answers from
    ``answer(sent, n)``."""

    def __init__(self, answer: Callable[[Sent, int], tuple[int, str, bytes]]) -> None:
        super().__init__()
        self.answer = answer
        self.sent: list[Sent] = []

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **options: Any
    ) -> requests.Response:
        body = request.body
        if body is None:
            data = b""
        elif isinstance(body, str):
            data = body.encode()
        elif isinstance(body, (bytes, bytearray)):
            data = bytes(body)
        elif hasattr(body, "read"):
            data = body.read()
        else:
            data = b"".join(body)
        sent = Sent(request.method or "", request.url or "", dict(request.headers), data, options)
        self.sent.append(sent)
        status, content_type, content = self.answer(sent, len(self.sent))
        response = requests.Response()
        response.status_code = status
        response.headers = CaseInsensitiveDict({"Content-Type": content_type})
        response.raw = io.BytesIO(content)
        response.url = request.url or ""
        response.request = request
        response.connection = self  # type: ignore[attr-defined]
        response.encoding = "utf-8"
        return response

    def close(self) -> None:
        pass


def first_rejected(sent: Sent, n: int) -> tuple[int, str, bytes]:
    """40001 for the first request, ok afterwards."""
    return 200, "application/json", json.dumps(expired(40001) if n == 1 else OK).encode()


def make_session(**manager_options: Any) -> requests.Session:
    manager_options.setdefault("backoff", 0)
    session = requests.Session()
    session.auth = wxauth.WxAuth(APPID, SECRET, **manager_options)
    return session


# -- adding the token -----------------------------------------------------------------------


def test_token_is_added_to_the_query(
    wechat: FakeWeChat, wechat_interceptor: WeChatInterceptor
) -> None:
    """Every request carries ``access_token=<current token>``; other params are kept."""
    session = make_session()
    session.get(MENU_URL, params={"lang": "zh_CN"})
    session.get(MENU_URL)
    first, second = sent_to(wechat_interceptor, MENU_URL)
    (token,) = wechat.issued_tokens
    assert token_of(first.url) == [token]
    assert parse_qs(urlsplit(first.url or "").query)["lang"] == ["zh_CN"]
    assert token_of(second.url) == [token]
    wechat.assert_token_fetches(1)
    wechat.assert_api_calls(2, errcode=0)


@pytest.mark.parametrize(
    ("url", "params"),
    [
        (MENU_URL, {"access_token": "STALE_TOKEN", "lang": "en"}),
        (MENU_URL + "?access_token=STALE_TOKEN&lang=en", None),
        (MENU_URL + "?lang=en&access_token=STALE_ONE&access_token=STALE_TWO", None),
        (MENU_URL + "?access_token&lang=en", None),
    ],
)
def test_an_existing_access_token_is_replaced_never_duplicated(
    wechat: FakeWeChat,
    wechat_interceptor: WeChatInterceptor,
    url: str,
    params: dict[str, str] | None,
) -> None:
    """Whatever access_token the caller put in the URL, exactly one is sent: ours."""
    make_session().get(url, params=params)
    (request,) = sent_to(wechat_interceptor, MENU_URL)
    query = parse_qs(urlsplit(request.url or "").query, keep_blank_values=True)
    assert query["access_token"] == wechat.issued_tokens
    assert query["lang"] == ["en"]


def test_similar_parameter_names_are_left_alone(
    wechat: FakeWeChat, wechat_interceptor: WeChatInterceptor
) -> None:
    """``component_access_token`` or ``my_access_token`` are not ours to replace."""
    make_session().get(MENU_URL, params={"component_access_token": "C", "my_access_token": "M"})
    query = parse_qs(urlsplit(sent_to(wechat_interceptor, MENU_URL)[0].url or "").query)
    assert query["component_access_token"] == ["C"]
    assert query["my_access_token"] == ["M"]
    assert query["access_token"] == wechat.issued_tokens


def test_token_is_added_before_a_fragment(wechat: FakeWeChat) -> None:
    """A URL with a fragment gets the token in its query, not after the '#'."""
    prepared = requests.Request("GET", MENU_URL + "?lang=en#section").prepare()
    auth = wxauth.WxAuth(APPID, SECRET)
    url = auth(prepared).url or ""
    assert urlsplit(url).fragment == "section"
    (token,) = wechat.issued_tokens
    assert token_of(url) == [token]
    empty_query = auth(requests.Request("GET", MENU_URL + "?").prepare()).url
    assert token_of(empty_query) == [token]


def test_manager_is_exposed_and_can_be_shared(wechat: FakeWeChat) -> None:
    """``.manager`` is the TokenManager; WxAuth(manager=m) uses that one."""
    manager = wxauth.TokenManager(APPID, SECRET)
    auth = wxauth.WxAuth(manager=manager)
    assert auth.manager is manager
    assert isinstance(wxauth.WxAuth(APPID, SECRET).manager, wxauth.TokenManager)
    token = manager.get_token()
    requests.get(MENU_URL, auth=auth)
    wechat.assert_token_fetches(1)
    wechat.assert_api_calls(1, errcode=0)
    assert auth.get_token() == token


def test_invalidate_and_equality_delegate_to_the_manager(wechat: FakeWeChat) -> None:
    """WxAuth.invalidate is the manager's compare-and-invalidate; two auths on one
    manager are equal (requests compares auths when merging session settings)."""
    manager = wxauth.TokenManager(APPID, SECRET)
    auth = wxauth.WxAuth(manager=manager)
    token = auth.get_token()
    assert auth.invalidate("other") is False
    assert auth.invalidate(token) is True
    assert manager.peek() is None
    twin = wxauth.WxAuth(manager=manager)
    assert auth == twin
    assert hash(auth) == hash(twin)
    assert auth != wxauth.WxAuth(APPID, SECRET)


def test_manager_options_are_passed_through(rsps: responses.RequestsMock) -> None:
    """Keyword options configure the TokenManager WxAuth builds."""
    store = wxauth.MemoryStore()
    auth = wxauth.WxAuth(APPID, SECRET, store=store, refresh_margin=120, timeout=4)
    assert auth.manager.store is store
    assert auth.manager.refresh_margin == 120
    assert auth.manager.timeout == 4
    assert auth.manager.appid == APPID


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((), {}),
        ((APPID,), {}),
        ((APPID, SECRET), {"manager": "placeholder"}),
        ((), {"manager": "placeholder", "timeout": 3}),
    ],
)
def test_wxauth_needs_credentials_or_a_manager_not_both(
    args: tuple[str, ...], kwargs: dict[str, Any]
) -> None:
    """Ambiguous or missing configuration is a ValueError."""
    if kwargs.get("manager") == "placeholder":
        kwargs["manager"] = wxauth.TokenManager(APPID, SECRET)
    with pytest.raises(ValueError):
        wxauth.WxAuth(*args, **kwargs)


def test_a_callable_or_token_source_needs_no_secret(rsps: responses.RequestsMock) -> None:
    """WxAuth(appid, source=callable) works without a secret, as TokenManager does; so
    does a TokenSource. A named source still needs the secret."""
    rsps.get(MENU_URL, json=OK)
    auth = wxauth.WxAuth(APPID, source=lambda: ("central-token-value", 7200))
    requests.get(MENU_URL, auth=auth)
    assert token_of(rsps.calls[0].request.url) == ["central-token-value"]
    source = wxauth.CallableTokenSource(APPID, lambda: ("source-token-value", 7200))
    assert wxauth.WxAuth(APPID, source=source).get_token() == "source-token-value"
    for name in ("classic", "stable", "wecom"):
        with pytest.raises(ValueError, match="secret"):
            wxauth.WxAuth(APPID, source=name)


def test_wxauth_is_a_requests_auth() -> None:
    """WxAuth plugs into requests as an AuthBase."""
    assert isinstance(wxauth.WxAuth(APPID, SECRET), requests.auth.AuthBase)


# -- healing a rejected token ----------------------------------------------------------------


@pytest.mark.parametrize("errcode", sorted(wxauth.EXPIRED_ERRCODES))
def test_expired_errcode_is_healed_by_one_refresh_and_one_resend(
    wechat: FakeWeChat, wechat_interceptor: WeChatInterceptor, errcode: int
) -> None:
    """40001/40014/42001: invalidate, fetch a new token, re-send once; history holds the
    rejected response."""
    wechat.fail_next(on=SEND_PATH, errcode=errcode)
    session = make_session()
    response = session.post(SEND_URL, json={"touser": "OPENID", "msgtype": "text"})
    assert response.json() == OK
    wechat.assert_api_calls(2)
    wechat.assert_token_fetches(2)
    old, fresh = wechat.issued_tokens
    first, second = sent_to(wechat_interceptor, SEND_URL)
    assert token_of(first.url) == [old]
    assert token_of(second.url) == [fresh]
    assert token_of(response.request.url) == [fresh]
    (rejected,) = response.history
    assert rejected.json()["errcode"] == errcode
    assert token_of(rejected.request.url) == [old]
    # the next request uses the fresh token without another fetch
    session.post(SEND_URL, json={})
    assert token_of(sent_to(wechat_interceptor, SEND_URL)[-1].url) == [fresh]
    wechat.assert_token_fetches(2)


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/json; charset=utf-8", "text/json"]
)
def test_errors_labelled_text_or_json_with_charset_are_healed(
    wechat: FakeWeChat, content_type: str
) -> None:
    """The error body is recognised under every JSON/text Content-Type WeChat uses."""

    def labelled(sent: Sent, n: int) -> tuple[int, str, bytes]:
        return 200, content_type, json.dumps(expired(42001) if n == 1 else OK).encode()

    transport = RecordingTransport(labelled)
    session = make_session()
    session.mount("https://", transport)
    response = session.get(MENU_URL)
    assert response.json() == OK
    assert len(transport.sent) == 2
    old, fresh = wechat.issued_tokens
    assert [token_of(sent.url) for sent in transport.sent] == [[old], [fresh]]


@pytest.mark.parametrize(
    "answer",
    [
        {"errcode": 41001, "errmsg": "access_token missing"},
        {"errcode": 45009, "errmsg": "reach max api daily quota limit"},
        {"errcode": 40013, "errmsg": "invalid appid"},
        {"errcode": 47001, "errmsg": "data format error"},
        {"errcode": 0, "errmsg": "ok", "data": {"errcode": 40001}},
        {"errcode": "40001x", "errmsg": "not a number"},
    ],
    ids=["41001", "45009", "40013", "47001", "nested-40001", "garbage-errcode"],
)
def test_other_answers_are_not_retried(wechat: FakeWeChat, answer: dict[str, object]) -> None:
    """Only a top-level 40001/40014/42001 triggers the retry: one API call, no refresh."""
    wechat.add_api(SEND_PATH, json=answer)
    response = make_session().post(SEND_URL, json={})
    assert response.json() == answer
    assert response.history == []
    wechat.assert_api_calls(1)
    wechat.assert_token_fetches(1)


@pytest.mark.parametrize(
    "body",
    [b"", b'{"errcode":40001, broken json', b'[{"errcode":40001}]'],
    ids=["empty", "broken-json", "json-array"],
)
def test_textual_bodies_that_are_not_an_error_object_are_not_retried(
    wechat: FakeWeChat, body: bytes
) -> None:
    """Only a JSON object with a top-level expired errcode counts."""
    wechat.add_api(MENU_PATH, body=body, content_type="application/json")
    response = make_session().get(MENU_URL)
    assert response.content == body
    assert response.history == []
    wechat.assert_api_calls(1)
    wechat.assert_token_fetches(1)


def test_a_second_rejection_is_returned_as_it_is(wechat: FakeWeChat) -> None:
    """If the re-sent request is rejected too, that response is returned: exactly two API
    calls, no loop, no exception."""
    wechat.fail_next(on=SEND_PATH, errcode=40001)
    wechat.fail_next(on=SEND_PATH, errcode=40014)
    response = make_session().post(SEND_URL, json={"a": 1})
    assert response.json()["errcode"] == 40014
    assert len(response.history) == 1
    wechat.assert_api_calls(2)
    wechat.assert_token_fetches(2)


def test_large_success_bodies_are_not_mistaken_for_errors(wechat: FakeWeChat) -> None:
    """A big JSON answer that mentions an expired errcode deep inside is a success."""
    payload = {"errcode": 0, "items": [{"n": i, "note": "x" * 100} for i in range(1000)]}
    payload["items"].append({"errcode": 40001})  # type: ignore[attr-defined]
    wechat.add_api(MENU_PATH, json=payload)
    response = make_session().get(MENU_URL)
    assert response.json() == payload
    assert response.history == []
    wechat.assert_api_calls(1)


def test_failing_refresh_during_healing_raises_the_typed_error(wechat: FakeWeChat) -> None:
    """If the fresh token cannot be fetched, the caller gets the wxauth error."""
    session = make_session()
    assert isinstance(session.auth, wxauth.WxAuth)
    session.auth.get_token()
    wechat.retire_all()  # the cached token answers 40001 ...
    wechat.fail_next(on="token", errcode=40125)  # ... and the refresh is refused
    with pytest.raises(wxauth.CredentialError):
        session.get(MENU_URL)
    wechat.assert_api_calls(1, errcode=40001)
    wechat.assert_token_fetches(2)


# -- the re-sent request is the same request -------------------------------------------------


def body_cases(tmp_path: Path) -> dict[str, dict[str, Any]]:
    binary = bytes(range(256)) * 8
    path = tmp_path / "upload.bin"
    path.write_bytes(binary)
    offset = io.BytesIO(b"IGNORED-PREFIX|" + binary)
    offset.seek(len(b"IGNORED-PREFIX|"))
    return {
        "json": {"json": {"touser": "OPENID", "text": {"content": "你好"}}},
        "form": {"data": {"media": "m1", "type": "image"}},
        "bytes": {"data": binary},
        "str": {"data": "plain text body"},
        "file": {"data": path.open("rb")},
        "file-at-offset": {"data": offset},
        "multipart": {"files": {"media": ("a.jpg", binary, "image/jpeg")}},
    }


@pytest.mark.parametrize(
    "case", ["json", "form", "bytes", "str", "file", "file-at-offset", "multipart"]
)
def test_the_retry_sends_the_same_method_headers_and_body(
    wechat: FakeWeChat, tmp_path: Path, case: str
) -> None:
    """JSON, form, bytes, str, file (rewound to where it started) and multipart bodies are
    replayed byte for byte, with the same method and headers."""
    kwargs = body_cases(tmp_path)[case]
    transport = RecordingTransport(first_rejected)
    session = make_session()
    session.mount("https://", transport)
    response = session.post(SEND_URL, headers={"X-Request-Id": "r-1"}, **kwargs)
    if hasattr(kwargs.get("data"), "close"):
        kwargs["data"].close()
    assert response.json() == OK
    first, second = transport.sent
    assert first.body  # the transport really read something
    assert second.body == first.body
    assert second.method == first.method == "POST"
    assert second.headers["X-Request-Id"] == "r-1"
    assert second.headers.get("Content-Type") == first.headers.get("Content-Type")
    assert second.headers.get("Content-Length") == first.headers.get("Content-Length")
    old, fresh = wechat.issued_tokens
    assert token_of(first.url) == [old]
    assert token_of(second.url) == [fresh]


def test_file_body_is_replayed_under_responses_too(
    wechat: FakeWeChat, wechat_interceptor: WeChatInterceptor, tmp_path: Path
) -> None:
    """responses swaps a file body for the bytes it read; the retry still works (this
    is how users test their own code)."""
    path = tmp_path / "menu.json"
    path.write_bytes(b'{"button": []}')
    wechat.fail_next(on=SEND_PATH, errcode=40001)
    with path.open("rb") as body:
        response = make_session().post(SEND_URL, data=body)
    assert response.json() == OK
    sent = sent_to(wechat_interceptor, SEND_URL)
    assert [r.body for r in sent] == [b'{"button": []}', b'{"button": []}']


def test_a_generator_body_is_not_retried(
    wechat: FakeWeChat, caplog: pytest.LogCaptureFixture
) -> None:
    """An iterator cannot be sent twice: the rejected response is returned, a warning is
    logged, and the rejected token is still dropped for the next request."""
    caplog.set_level(logging.WARNING, logger="wxauth")
    transport = RecordingTransport(first_rejected)
    session = make_session()
    session.mount("https://", transport)
    response = session.post(SEND_URL, data=(chunk for chunk in [b"part-1;", b"part-2"]))
    assert response.json()["errcode"] == 40001
    assert response.history == []
    assert len(transport.sent) == 1
    assert transport.sent[0].body == b"part-1;part-2"
    warnings = [r for r in caplog.records if r.name == "wxauth" and r.levelno == logging.WARNING]
    assert any("/cgi-bin/message/custom/send" in r.getMessage() for r in warnings)
    session.post(SEND_URL, json={})
    _, fresh = wechat.issued_tokens
    assert token_of(transport.sent[-1].url) == [fresh]


def test_a_non_seekable_stream_is_not_retried(
    wechat: FakeWeChat, caplog: pytest.LogCaptureFixture
) -> None:
    """A pipe has read() but cannot tell() or seek(): it is not retried either."""
    caplog.set_level(logging.WARNING, logger="wxauth")
    transport = RecordingTransport(first_rejected)
    session = make_session()
    session.mount("https://", transport)
    read_end, write_end = os.pipe()
    os.write(write_end, b"streamed upload")
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        response = session.post(SEND_URL, data=pipe)
    assert response.json()["errcode"] == 40001
    assert len(transport.sent) == 1
    assert transport.sent[0].body == b"streamed upload"
    assert any(r.levelno == logging.WARNING for r in caplog.records if r.name == "wxauth")


def test_the_retry_gets_the_original_send_options(wechat: FakeWeChat) -> None:
    """timeout, verify, proxies, cert and stream of the original send reach the re-send."""
    transport = RecordingTransport(first_rejected)
    session = make_session()
    session.mount("https://", transport)
    proxies = {"https": "http://proxy.internal:3128"}
    response = session.post(
        SEND_URL,
        json={"a": 1},
        timeout=(3.05, 27),
        verify="/etc/ssl/private-ca.pem",
        proxies=proxies,
        cert=("/etc/ssl/client.pem", "/etc/ssl/client.key"),
        stream=True,
    )
    assert response.json() == OK
    first, second = transport.sent
    assert first.options["timeout"] == (3.05, 27)
    assert first.options["verify"] == "/etc/ssl/private-ca.pem"
    assert first.options["cert"] == ("/etc/ssl/client.pem", "/etc/ssl/client.key")
    assert first.options["stream"] is True
    assert first.options["proxies"]["https"] == proxies["https"]
    assert second.options == first.options


def test_cookies_and_session_headers_survive_the_retry(wechat: FakeWeChat) -> None:
    """Session headers and cookies are on the re-sent request as on the first one."""
    transport = RecordingTransport(first_rejected)
    session = make_session()
    session.mount("https://", transport)
    session.headers["User-Agent"] = "my-app/1.0"
    session.cookies.set("sid", "abc", domain="api.weixin.qq.com")
    session.get(MENU_URL)
    first, second = transport.sent
    assert second.headers["User-Agent"] == "my-app/1.0"
    assert second.headers.get("Cookie") == first.headers.get("Cookie") == "sid=abc"


# -- bodies that must not be touched ------------------------------------------------------------


def test_binary_stream_is_not_read(
    wechat: FakeWeChat, wechat_interceptor: WeChatInterceptor
) -> None:
    """An image from media/get with stream=True is passed through unread, even if its
    bytes happen to contain an errcode; the caller can still read all of it."""
    wechat.add_api(MEDIA_PATH, body=JPEG, content_type="image/jpeg")
    response = make_session().get(MEDIA_URL, params={"media_id": "MEDIA"}, stream=True)
    assert response._content_consumed is False  # type: ignore[attr-defined]
    assert response.raw.tell() == 0
    assert response.history == []
    assert b"".join(response.iter_content(4096)) == JPEG
    assert len(wechat_interceptor.mock.calls) == 2  # one token fetch, one API call
    wechat.assert_token_fetches(1)


def test_binary_body_is_not_retried_without_stream(wechat: FakeWeChat) -> None:
    """A binary answer is never parsed for an errcode."""
    wechat.add_api(MEDIA_PATH, body=JPEG, content_type="image/jpeg")
    response = make_session().get(MEDIA_URL, params={"media_id": "MEDIA"})
    assert response.content == JPEG
    assert response.history == []
    wechat.assert_api_calls(1)
    wechat.assert_token_fetches(1)


def test_json_error_of_a_binary_api_is_healed_with_stream(wechat: FakeWeChat) -> None:
    """media/get answers JSON on error: with stream=True that error is still healed, and
    the image of the retry is left unread for the caller."""
    wechat.add_api(MEDIA_PATH, body=JPEG, content_type="image/jpeg")
    wechat.fail_next(on=MEDIA_PATH, errcode=40001)
    response = make_session().get(MEDIA_URL, params={"media_id": "MEDIA"}, stream=True)
    assert response._content_consumed is False  # type: ignore[attr-defined]
    assert response.content == JPEG
    assert len(response.history) == 1


# -- threads --------------------------------------------------------------------------------------


def test_one_session_shared_by_16_threads(wechat: FakeWeChat) -> None:
    """16 threads share a Session whose token is rejected: one refresh in total, each
    thread's own request (its own body) re-sent once, every answer ok."""
    wechat.token_latency = 0.05
    session = make_session()
    assert isinstance(session.auth, wxauth.WxAuth)
    session.auth.manager.get_token()  # everyone starts with token 1 ...
    wechat.retire_all()  # ... which WeChat now refuses with 40001
    barrier = threading.Barrier(16)
    results: dict[int, requests.Response] = {}

    def worker(i: int) -> None:
        barrier.wait(10)
        results[i] = session.post(SEND_URL, json={"thread": i})

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert sorted(results) == list(range(16))
    wechat.assert_token_fetches(2)
    _, fresh = wechat.issued_tokens
    for i, response in results.items():
        assert response.json() == OK
        assert json.loads(response.request.body or b"{}") == {"thread": i}
        assert token_of(response.request.url) == [fresh]
        for rejected in response.history:
            assert json.loads(rejected.request.body or b"{}") == {"thread": i}
    wechat.assert_api_calls(16 + sum(len(r.history) for r in results.values()))


def test_a_transport_without_response_connection_gets_the_response_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An adapter that builds responses without ``connection`` cannot be re-sent on:
    the 40001 answer is returned as it is, the token is invalidated, and a warning says why."""

    class BareAdapter(BaseAdapter):
        def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
            response = requests.Response()
            response.status_code = 200
            response.headers["Content-Type"] = "application/json"
            response._content = b'{"errcode": 40001, "errmsg": "invalid credential"}'
            response.request = request
            response.url = request.url or ""
            return response

        def close(self) -> None:
            pass

    tokens = wxauth.TokenManager("wxbareadapter01", source=lambda: ("bare-token-value", 7200))
    session = requests.Session()
    session.mount("https://api.weixin.qq.com", BareAdapter())
    session.auth = wxauth.WxAuth(manager=tokens)
    with caplog.at_level(logging.WARNING, logger="wxauth"):
        response = session.get("https://api.weixin.qq.com/cgi-bin/user/get")
    assert response.json()["errcode"] == 40001
    assert response.history == []
    assert tokens.stats.invalidations == 1
    assert "response.connection" in caplog.text
