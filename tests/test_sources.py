"""Token sources against the emulator: stable_token escalation and force budget, WeCom
per-application tokens, custom callables, and the local refresh budget."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
import requests
import responses
from _loopback import Scripted

import wxauth
from wxauth.sources import parse_token_answer
from wxauth.testing import FakeWeChat

APPID, SECRET = "wxstable0001", "stable-secret-value"
TOKEN_URL = "https://api.weixin.qq.com/cgi-bin/token"


@pytest.fixture
def fake() -> FakeWeChat:
    fake = FakeWeChat(start=1_800_000_000.0)
    fake.add_app(APPID, SECRET)
    fake.add_wecom_app("ww-corp", "secret-of-app-A")
    fake.add_wecom_app("ww-corp", "secret-of-app-B")
    yield fake
    fake.close()


class Recorder:
    """A token-fetch session that keeps what it sent, to read force_refresh flags."""

    def __init__(self) -> None:
        self.session = requests.Session()
        self.sent: list[requests.PreparedRequest] = []
        self.session.hooks["response"].append(self._record)

    def _record(self, response: requests.Response, **_: object) -> requests.Response:
        self.sent.append(response.request)
        return response

    def stable_bodies(self) -> list[dict[str, object]]:
        return [
            json.loads(r.body or b"{}")
            for r in self.sent
            if (r.url or "").split("?")[0].endswith("/cgi-bin/stable_token")
        ]

    def forces(self) -> list[bool]:
        return [bool(b["force_refresh"]) for b in self.stable_bodies()]


def stable_manager(
    fake: FakeWeChat, url: str, recorder: Recorder | None = None, **options: object
) -> wxauth.TokenManager:
    return wxauth.TokenManager(
        APPID,
        SECRET,
        api_base=url,
        source="stable",
        clock=fake.clock,
        backoff=0,
        session=(recorder or Recorder()).session,
        **options,  # type: ignore[arg-type]
    )


def test_stable_source_posts_the_secret_in_the_body_not_the_url(fake: FakeWeChat) -> None:
    """source="stable" POSTs to /cgi-bin/stable_token; the secret is in the body, not the URL."""
    recorder = Recorder()
    with fake.serve() as url:
        token = stable_manager(fake, url, recorder).get_token()
    (call,) = fake.calls
    assert call.path == "/cgi-bin/stable_token"
    assert call.method == "POST"
    (sent,) = recorder.sent
    assert SECRET not in (sent.url or "")
    assert recorder.stable_bodies()[0]["secret"] == SECRET
    assert token == fake.latest_token(APPID)


def test_stable_tokens_do_not_retire_classic_ones(fake: FakeWeChat) -> None:
    """The two token families are isolated: a stable fetch leaves a classic token working."""
    with fake.serve() as url:
        classic = wxauth.TokenManager(APPID, SECRET, api_base=url, clock=fake.clock)
        classic_token = classic.get_token()
        stable_manager(fake, url).get_token()
        assert fake.token_status(classic_token) == "valid"


def test_rejected_stable_token_asks_normal_mode_first(fake: FakeWeChat) -> None:
    """After a real retirement, normal mode already hands out a new token: no force refresh."""
    recorder = Recorder()
    with fake.serve() as url:
        manager = stable_manager(fake, url, recorder)
        first = manager.get_token()
        fake.retire_all()
        assert manager.invalidate(first)
        second = manager.get_token()
    assert second != first
    assert recorder.forces() == [False, False]


def test_same_rejected_token_escalates_to_force_refresh(fake: FakeWeChat) -> None:
    """If WeChat hands back the very token an API rejected, the source forces a refresh."""
    session = requests.Session()
    recorder = Recorder()
    with fake.serve() as url:
        manager = stable_manager(fake, url, recorder)
        session.auth = wxauth.WxAuth(manager=manager)
        first = manager.get_token()
        # An API says 40001 although the stable endpoint still considers the token current.
        fake.fail_next(on="api", errcode=40001)
        response = session.get(url + "/cgi-bin/get_current_selfmenu_info")
    assert response.json()["errcode"] == 0
    assert len(response.history) == 1
    assert recorder.forces() == [False, False, True]
    assert manager.get_token() != first


def test_force_refresh_is_spaced_30s_and_budgeted_20_a_day(fake: FakeWeChat) -> None:
    """Force refreshes are spent at most once per 30 s and 20 times a day, counted in the store."""
    store = wxauth.MemoryStore()
    recorder = Recorder()
    with fake.serve() as url:
        manager = stable_manager(fake, url, recorder, store=store, max_fetches_per_minute=None)

        def reject_current() -> None:
            token = manager.get_token()
            manager.invalidate(token)  # the stable endpoint still hands back this token
            manager.get_token()

        def forces() -> int:
            return sum(recorder.forces())

        reject_current()
        assert forces() == 1
        fake.advance(10)
        reject_current()  # 10 s after the last force: not allowed
        assert forces() == 1
        # A second manager on the same store shares the bookkeeping.
        other = stable_manager(fake, url, recorder, store=store, max_fetches_per_minute=None)
        other.invalidate(other.get_token())
        other.get_token()
        assert forces() == 1
        for _ in range(40):
            # Past the rejection window, so each rejection is healed at once rather
            # than held as a streak of replacements rejected within minutes.
            fake.advance(301)  # REJECTION_WINDOW is 300 s
            reject_current()
        assert forces() == 20  # the daily budget
        fake.advance_to_next_day()
        reject_current()
        assert forces() == 21


def test_wecom_source_keeps_one_token_per_application(fake: FakeWeChat) -> None:
    """Two WeCom applications of one corp get, cache and invalidate separate tokens."""
    store = wxauth.MemoryStore()
    with fake.serve() as url:
        a = wxauth.TokenManager(
            "ww-corp", "secret-of-app-A", source="wecom", api_base=url, store=store
        )
        b = wxauth.TokenManager(
            "ww-corp", "secret-of-app-B", source="wecom", api_base=url, store=store
        )
        token_a, token_b = a.get_token(), b.get_token()
        assert token_a != token_b
        assert a.get_token() == token_a
        assert b.get_token() == token_b
        assert a.key != b.key
        assert "secret-of-app" not in a.key + b.key
        fake.retire(token_a)
        session = requests.Session()
        session.auth = wxauth.WxAuth(manager=a)
        response = session.get(url + "/cgi-bin/user/get", params={"userid": "zhangsan"})
        assert response.json()["errcode"] == 0
        assert len(response.history) == 1
        assert b.get_token() == token_b
    fake.assert_token_fetches(3)


def test_wecom_default_api_base_is_qyapi() -> None:
    """Without api_base, the WeCom source talks to qyapi.weixin.qq.com."""
    manager = wxauth.TokenManager("ww-corp", "s", source="wecom")
    assert isinstance(manager.source, wxauth.WeComTokenSource)
    assert manager.source.api_base == "https://qyapi.weixin.qq.com"


@pytest.mark.parametrize(
    ("secret", "errcode", "error"),
    [("wrong-secret", 40001, wxauth.CredentialError), ("secret-of-app-A", 60020, None)],
)
def test_wecom_errors_map_into_the_error_tree(
    secret: str, errcode: int, error: type[Exception] | None
) -> None:
    """A wrong corpsecret and a non-whitelisted IP are CredentialErrors with WeCom's errcode."""
    fake = FakeWeChat()
    fake.add_wecom_app("ww-corp", "secret-of-app-A", ip_allowlist=["10.9.9.9"])
    with fake.serve() as url:
        manager = wxauth.TokenManager("ww-corp", secret, source="wecom", api_base=url)
        with pytest.raises(wxauth.CredentialError) as info:
            manager.get_token()
    assert info.value.errcode == errcode
    assert secret not in str(info.value)
    if errcode == 60020:
        assert info.value.ip == "127.0.0.1"


def test_custom_callable_source() -> None:
    """Any callable returning (token, expires_in) is a source; it is called once per token."""
    calls: list[int] = []

    def central_service() -> tuple[str, float]:
        calls.append(1)
        return f"central-token-{len(calls)}", 7200

    now = [1_800_000_000.0]
    manager = wxauth.TokenManager("wxcentral", source=central_service, clock=lambda: now[0])
    assert manager.get_token() == "central-token-1"
    assert manager.get_token() == "central-token-1"
    now[0] += 7200
    assert manager.get_token() == "central-token-2"
    assert len(calls) == 2


def test_custom_source_failures_are_typed_and_do_not_copy_messages() -> None:
    """A callable that raises or returns garbage gives TokenFetchError without its text."""

    def broken() -> tuple[str, float]:
        raise RuntimeError("password=hunter2 in a connection string")

    manager = wxauth.TokenManager("wxcentral", source=broken)
    with pytest.raises(wxauth.TokenFetchError) as info:
        manager.get_token()
    assert "hunter2" not in str(info.value)
    assert info.value.__context__ is None
    assert info.value.__cause__ is None
    bad = wxauth.TokenManager("wxcentral", source=lambda: ("", 7200))  # type: ignore[arg-type,return-value]
    with pytest.raises(wxauth.TokenFetchError):
        bad.get_token()


def test_unknown_source_name_is_a_value_error() -> None:
    """source= takes classic, stable, wecom, a TokenSource or a callable."""
    with pytest.raises(ValueError, match="source"):
        wxauth.TokenManager(APPID, SECRET, source="stabel")
    with pytest.raises(ValueError, match="secret"):
        wxauth.TokenManager(APPID, source="stable")


def test_refresh_budget_refuses_locally_past_k_fetches_a_minute(fake: FakeWeChat) -> None:
    """Past max_fetches_per_minute, RefreshBudgetError is raised without calling WeChat."""
    with fake.serve() as url:
        manager = wxauth.TokenManager(
            APPID, SECRET, api_base=url, clock=fake.clock, max_fetches_per_minute=3
        )
        for _ in range(3):
            manager.refresh()
        with pytest.raises(wxauth.RefreshBudgetError) as info:
            manager.refresh()
        assert isinstance(info.value, wxauth.QuotaError)
        assert 0 < info.value.retry_after <= 60
        fake.assert_token_fetches(3)
        fake.advance(61)
        assert manager.refresh()
        fake.assert_token_fetches(4)


def test_refresh_budget_is_shared_through_the_store(fake: FakeWeChat) -> None:
    """Two managers on one store draw from one budget."""
    store = wxauth.MemoryStore()
    with fake.serve() as url:
        managers = [
            wxauth.TokenManager(
                APPID, SECRET, api_base=url, clock=fake.clock, store=store, max_fetches_per_minute=2
            )
            for _ in range(2)
        ]
        managers[0].refresh()
        managers[1].refresh()
        with pytest.raises(wxauth.RefreshBudgetError):
            managers[0].refresh()
    fake.assert_token_fetches(2)


def test_the_rejection_seen_by_one_manager_reaches_the_one_that_fetches(
    fake: FakeWeChat,
) -> None:
    """With a shared store, the process that wins the lock escalates too: the rejected
    token is remembered in the store, not only in the manager that saw the 40001."""
    store = wxauth.MemoryStore()
    recorder = Recorder()
    with fake.serve() as url:
        saw_40001 = stable_manager(fake, url, recorder, store=store)
        fetches_next = stable_manager(fake, url, recorder, store=store)
        token = saw_40001.get_token()
        assert saw_40001.invalidate(token)
        fresh = fetches_next.get_token()
    assert fresh != token
    assert recorder.forces() == [False, False, True]


# -- loopback servers with scripted answers -----------------------------------------------------


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[BaseHTTPRequestHandler], None]], Scripted]]:
    """Start scripted loopback servers; all are stopped and joined when the test ends."""
    started: list[tuple[Scripted, threading.Thread]] = []

    def start(script: Callable[[BaseHTTPRequestHandler], None]) -> Scripted:
        server = Scripted(script)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        started.append((server, thread))
        return server

    yield start
    for server, thread in started:
        server.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
        assert not thread.is_alive()


def answer(handler: BaseHTTPRequestHandler, status: int, body: bytes, **headers: str) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    for name, value in headers.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.end_headers()
    handler.wfile.write(body)


def trickle(handler: BaseHTTPRequestHandler, status: int = 200, **headers: str) -> None:
    """Headers at once, then one byte of a never-ending body every 0.2 s (for 15 s at
    most, so that a client without a deadline fails the test instead of hanging it)."""
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", "1000000")
    for name, value in headers.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.end_headers()
    handler.wfile.write(b'{"access_token": "')
    handler.wfile.flush()
    until = time.monotonic() + 15
    while not handler.server.stop.wait(0.2) and time.monotonic() < until:  # type: ignore[attr-defined]
        handler.wfile.write(b"A")
        handler.wfile.flush()


def source_manager(source: str, url: str, **options: Any) -> wxauth.TokenManager:
    appid, secret = ("ww-corp", "secret-of-app-A") if source == "wecom" else (APPID, SECRET)
    options.setdefault("backoff", 0)
    return wxauth.TokenManager(appid, secret, source=source, api_base=url, **options)


# -- redirects (issue #9 item 12) -------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("source", ["classic", "stable", "wecom"])
def test_token_requests_never_follow_a_redirect(
    serve: Callable[..., Scripted], source: str, status: int
) -> None:
    """A redirect from the token endpoint would re-send the secret (in the query, or in
    a 307/308 POST body) to another origin: it is an error, and nobody else is asked."""
    elsewhere = serve(lambda h: answer(h, 200, b'{"access_token": "STOLEN", "expires_in": 7200}'))
    endpoint = serve(
        lambda h: answer(h, status, b"moved", Location=elsewhere.url + h.path + "#frag")
    )
    manager = source_manager(source, endpoint.url, retries=2)
    with pytest.raises(wxauth.TokenFetchError) as info:
        manager.get_token()
    message = str(info.value)
    assert f"HTTP {status}" in message
    assert "redirect" in message
    assert "not followed" in message
    assert elsewhere.url in message  # where it pointed, without its query
    for shown_nowhere in (SECRET, "secret-of-app-A", "grant_type", "appid=", "corpid=", "frag"):
        assert shown_nowhere not in message
    assert elsewhere.hits == []
    assert len(endpoint.hits) == 1  # not retried


def test_a_redirect_whose_body_never_ends_fails_within_the_timeout(
    serve: Callable[..., Scripted],
) -> None:
    """requests reads a redirect's body before handing it back, even with
    allow_redirects=False: wxauth refuses the redirect on its headers."""
    endpoint = serve(lambda h: trickle(h, 302, Location="http://127.0.0.1:9/cgi-bin/token"))
    manager = source_manager("classic", endpoint.url, timeout=1, retries=0)
    started = time.monotonic()
    with pytest.raises(wxauth.TokenFetchError, match="redirect"):
        manager.get_token()
    assert time.monotonic() - started < 2.5


# -- absurd token answers (issue #9 item 15) -------------------------------------------------

ABSURD_TOKEN = "ABSURD_TOKEN_0123456789abcdefghijklmnopqrstuvwxyz"


@pytest.mark.parametrize(
    "body",
    [
        '{"access_token": "%s", "expires_in": NaN}',
        '{"access_token": "%s", "expires_in": Infinity}',
        '{"access_token": "%s", "expires_in": -Infinity}',
        '{"access_token": "%s", "expires_in": 1e400}',
        '{"access_token": "%s", "expires_in": 1' + "0" * 400 + "}",
        '{"access_token": "%s", "expires_in": 1e300}',
        '{"access_token": "%s", "expires_in": 86401}',
        '{"access_token": "%s", "expires_in": 315360000}',
        '{"access_token": "%s", "expires_in": "nan"}',
        '{"access_token": "%s", "expires_in": "inf"}',
        '{"access_token": "%s", "expires_in": 0}',
        '{"access_token": "%s", "expires_in": -7200}',
        '{"access_token": "", "expires_in": 7200}',
        '{"access_token": "   ", "expires_in": 7200}',
        '{"access_token": "\\t\\n\\u3000", "expires_in": 7200}',
    ],
)
def test_absurd_token_answers_are_typed_errors(
    rsps: responses.RequestsMock, caplog: pytest.LogCaptureFixture, body: str
) -> None:
    """A non-finite, absurdly long or non-positive lifetime, or a blank token: a
    TokenFetchError that does not show the token, and nothing is cached."""
    rsps.get(TOKEN_URL, body=body % ABSURD_TOKEN if "%s" in body else body)
    manager = wxauth.TokenManager(APPID, SECRET, retries=0)
    with pytest.raises(wxauth.TokenFetchError) as info:
        manager.get_token()
    assert "expires_in" in str(info.value) or "access_token" in str(info.value)
    assert ABSURD_TOKEN not in str(info.value)
    assert ABSURD_TOKEN[:12] not in caplog.text
    assert manager.peek() is None


@pytest.mark.parametrize(
    "expires_in",
    [10**400, float("inf"), float("nan"), 86400.5, -1],
    ids=["10**400", "inf", "nan", "86400.5", "-1"],
)
def test_absurd_lifetimes_from_a_callable_are_typed_errors(expires_in: float) -> None:
    """The same check for a custom source: 10**400 is no OverflowError."""
    manager = wxauth.TokenManager("wxcentral", source=lambda: (ABSURD_TOKEN, expires_in))
    with pytest.raises(wxauth.TokenFetchError, match="expires_in") as info:
        manager.get_token()
    assert ABSURD_TOKEN not in str(info.value)


@pytest.mark.parametrize("expires_in", [7200, 86400, "7200", 1.5])
def test_sane_lifetimes_up_to_a_day_are_accepted(expires_in: float) -> None:
    """Up to one day, as a number or a numeric string, is a lifetime."""
    answer = {"access_token": "t", "expires_in": expires_in}
    assert parse_token_answer(answer, "x") == ("t", float(expires_in))


# -- a total deadline per token request (issue #9 item 6) -----------------------------------


def test_a_body_trickled_for_ever_fails_within_the_timeout(serve: Callable[..., Scripted]) -> None:
    """One byte every 0.2 s keeps a per-read timeout happy for ever; the whole request
    (connect, headers, body) must finish within ``timeout``. Not retried."""
    endpoint = serve(trickle)
    manager = source_manager("classic", endpoint.url, timeout=1, retries=2)
    started = time.monotonic()
    with pytest.raises(wxauth.TokenFetchError, match=r"did not finish within 1\.0s") as info:
        manager.get_token()
    elapsed = time.monotonic() - started
    assert elapsed < 2.5, elapsed
    assert len(endpoint.hits) == 1
    assert SECRET not in str(info.value)


def test_a_body_that_stalls_near_the_deadline_fails_at_the_deadline(
    serve: Callable[..., Scripted],
) -> None:
    """A read that starts just before the deadline may not wait a whole ``timeout`` more:
    headers at once, one byte at 1.6 s, then silence; with timeout=2 the fetch fails at
    about 2 s, not at 3.6 s."""

    def stall(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", "100")
        handler.end_headers()
        handler.wfile.flush()
        for _ in range(2):
            if handler.server.stop.wait(1.6):  # type: ignore[attr-defined]
                return
            handler.wfile.write(b"{")
            handler.wfile.flush()
        handler.server.stop.wait(10)  # type: ignore[attr-defined]

    endpoint = serve(stall)
    manager = source_manager("classic", endpoint.url, timeout=2, retries=0)
    started = time.monotonic()
    with pytest.raises(wxauth.TokenFetchError, match=r"did not finish within 2\.0s"):
        manager.get_token()
    elapsed = time.monotonic() - started
    assert 1.9 < elapsed < 2.8, elapsed


@pytest.mark.parametrize("status", [200, 400])
def test_an_answer_larger_than_64_kib_is_refused(
    serve: Callable[..., Scripted], status: int
) -> None:
    """A token answer is about 200 bytes: more than 64 KiB is an error, not read whole."""
    big = b'{"access_token": "T", "expires_in": 7200, "pad": "' + b"x" * 70_000 + b'"}'
    endpoint = serve(lambda h: answer(h, status, big))
    manager = source_manager("classic", endpoint.url, retries=2)
    with pytest.raises(wxauth.TokenFetchError, match="65536 bytes"):
        manager.get_token()
    assert len(endpoint.hits) == 1


def test_a_large_error_page_is_still_an_http_error(serve: Callable[..., Scripted]) -> None:
    """A 5xx page over the cap is reported (and retried) as the HTTP error it is."""
    endpoint = serve(lambda h: answer(h, 502, b"<html>" + b"bad gateway " * 10_000))
    manager = source_manager("classic", endpoint.url, retries=1)
    with pytest.raises(wxauth.TokenFetchError, match=r"HTTP 502.*bad gateway"):
        manager.get_token()
    assert len(endpoint.hits) == 2


@pytest.mark.parametrize("source", ["classic", "stable", "wecom"])
def test_a_gzip_answer_is_decoded(serve: Callable[..., Scripted], source: str) -> None:
    """The answer is read as it streams in, and still decoded like requests would."""
    import gzip

    body = gzip.compress(b'{"access_token": "GZIPPED_TOKEN", "expires_in": 7200}')
    endpoint = serve(lambda h: answer(h, 200, body, Content_Encoding="gzip"))
    assert source_manager(source, endpoint.url).get_token() == "GZIPPED_TOKEN"
