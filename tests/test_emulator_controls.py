"""The emulator's controls: clock, retirement, counters, assertions and fault injection.

Tests that go over the wire run through both front ends (``base`` is a WeChat URL in
process, or the loopback server's URL).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from wxauth.testing import FakeWeChat
from wxauth.testing._fake import Request

START = 1_700_000_000.0
APPID, SECRET = "wx0123456789abcdef", "app-secret-1"


@pytest.fixture
def fake() -> Iterator[FakeWeChat]:
    emulator = FakeWeChat(start=START, seed=3)
    emulator.add_app(APPID, SECRET)
    try:
        yield emulator
    finally:
        emulator.close()


@pytest.fixture(params=["in_process", "loopback"])
def base(request: pytest.FixtureRequest, fake: FakeWeChat) -> Iterator[str]:
    if request.param == "in_process":
        with fake.intercept():
            yield "https://api.weixin.qq.com"
    else:
        with fake.serve() as url:
            yield url


def fetch(base: str, secret: str = SECRET, timeout: float = 5) -> requests.Response:
    params = {"grant_type": "client_credential", "appid": APPID, "secret": secret}
    return requests.get(f"{base}/cgi-bin/token", params=params, timeout=timeout)


def token(base: str) -> str:
    value: str = fetch(base).json()["access_token"]
    return value


def call(base: str, access_token: str, path: str = "/cgi-bin/user/get") -> dict[str, Any]:
    body: dict[str, Any] = requests.get(
        base + path, params={"access_token": access_token}, timeout=5
    ).json()
    return body


# -- clock ---------------------------------------------------------------------------------


def test_clock_stands_still_until_advanced(fake: FakeWeChat) -> None:
    """The default clock is frozen at start; advance() moves it and returns the new time."""
    assert fake.clock() == START
    assert fake.clock() == START
    assert fake.advance(12.5) == START + 12.5
    assert fake.clock() == START + 12.5


def test_clock_never_moves_backwards(fake: FakeWeChat) -> None:
    """advance() refuses a negative step."""
    with pytest.raises(ValueError, match="forward"):
        fake.advance(-1)


def test_default_start_is_now() -> None:
    """Without start= the frozen clock starts at the current real time."""
    import time

    before = time.time()
    emulator = FakeWeChat()
    assert before <= emulator.clock() <= time.time()


def test_clock_can_follow_a_base_clock() -> None:
    """clock= follows another clock, and advance() adds on top of it."""
    now = [100.0]
    emulator = FakeWeChat(clock=lambda: now[0])
    now[0] = 150.0
    assert emulator.clock() == 150.0
    emulator.advance(10)
    assert emulator.clock() == 160.0
    with pytest.raises(ValueError, match="not both"):
        FakeWeChat(start=1.0, clock=lambda: 1.0)


def test_quota_day_rolls_over_at_midnight_beijing_time(fake: FakeWeChat) -> None:
    """seconds_to_next_day() points at 16:00 UTC, which is midnight in UTC+8."""
    # START is 2023-11-14 22:13:20 UTC; the next Beijing midnight is 2023-11-15 16:00 UTC.
    assert fake.seconds_to_next_day() == 1_700_064_000 - START
    assert fake.advance_to_next_day() == 1_700_064_000
    assert fake.seconds_to_next_day() == 86400


# -- retirement ----------------------------------------------------------------------------


def test_retire_all_makes_the_next_call_answer_40001(fake: FakeWeChat, base: str) -> None:
    """retire_all() acts like another server fetching: tokens answer 40001 at once."""
    first = token(base)
    assert fake.retire_all() == 1
    assert call(base, first)["errcode"] == 40001
    assert fake.token_status(first) == "retired"
    assert fake.retire_all() == 0


def test_retire_all_with_grace_mimics_the_classic_five_minutes(fake: FakeWeChat, base: str) -> None:
    """retire_all(grace=300) keeps tokens working for 300 more seconds."""
    first = token(base)
    fake.retire_all(grace=300)
    fake.advance(299)
    assert call(base, first)["errcode"] == 0
    fake.advance(1)
    assert call(base, first)["errcode"] == 40001


def test_retire_one_token(fake: FakeWeChat) -> None:
    """retire(token) retires only that token; an unknown one is an error."""
    with fake.intercept():
        first = token("https://api.weixin.qq.com")
    fake.retire(first)
    assert fake.token_status(first) == "retired"
    with pytest.raises(ValueError, match="not issued"):
        fake.retire("nope")


def test_token_status_and_latest_token(fake: FakeWeChat, base: str) -> None:
    """token_status tells valid/retired/expired/unknown; latest_token the newest."""
    assert fake.latest_token() is None
    first = token(base)
    assert fake.latest_token() == first
    assert fake.latest_token(APPID) == first
    assert fake.latest_token("wxother") is None
    assert fake.token_status(first) == "valid"
    assert fake.token_status("nope") == "unknown"
    fake.advance(7200)
    assert fake.token_status(first) == "expired"


# -- counters and assertions ---------------------------------------------------------------


def test_counters_by_kind_and_outcome(fake: FakeWeChat, base: str) -> None:
    """token_fetches, api_calls, count() and errcodes() count what happened."""
    value = token(base)
    fetch(base, secret="wrong")
    for _ in range(3):
        call(base, value)
    call(base, "bogus")
    assert fake.token_fetches == 2
    assert fake.api_calls == 4
    assert fake.count(kind="api", errcode=0) == 3
    assert fake.count(path="cgi-bin/user/get", errcode=40014) == 1
    assert fake.errcodes(kind="api") == {0: 3, 40014: 1}
    assert fake.errcodes(kind="token") == {0: 1, 40125: 1}
    assert fake.issued_tokens == [value]


def test_calls_record_the_request_but_never_the_secret(fake: FakeWeChat, base: str) -> None:
    """Each call records path, kind, owner, status, errcode and token; not the secret."""
    value = token(base)
    call(base, value)
    first, second = fake.calls
    assert (first.method, first.path, first.kind, first.owner) == (
        "GET",
        "/cgi-bin/token",
        "token",
        APPID,
    )
    assert (first.status, first.errcode, first.token) == (200, 0, value)
    assert first.is_token_fetch
    assert first.client_ip == "127.0.0.1"
    assert (second.kind, second.errcode, second.token) == ("api", 0, value)
    assert not second.is_token_fetch
    assert SECRET not in repr(fake.calls)
    assert value not in repr(first)  # the repr shortens tokens
    assert SECRET not in repr(fake)


def test_assert_token_fetches(fake: FakeWeChat, base: str) -> None:
    """assert_token_fetches passes on the exact count and explains a mismatch."""
    fake.assert_token_fetches(0)
    token(base)
    fake.assert_token_fetches(1)
    fake.assert_token_fetches(1, kind="token")
    fake.assert_token_fetches(0, kind="stable_token")
    with pytest.raises(AssertionError, match=r"expected 2 token fetches, got 1:\n.*cgi-bin/token"):
        fake.assert_token_fetches(2)


def test_assert_api_calls(fake: FakeWeChat, base: str) -> None:
    """assert_api_calls counts API calls, optionally by errcode or path."""
    value = token(base)
    call(base, value)
    fake.retire_all()
    call(base, value)
    fake.assert_api_calls(2)
    fake.assert_api_calls(1, errcode=40001)
    fake.assert_api_calls(2, path="/cgi-bin/user/get")
    with pytest.raises(AssertionError, match="expected 0 API calls with errcode 40001, got 1"):
        fake.assert_api_calls(0, errcode=40001)


def test_reset_calls_keeps_tokens(fake: FakeWeChat, base: str) -> None:
    """reset_calls() forgets the calls but not the tokens."""
    value = token(base)
    fake.reset_calls()
    assert fake.calls == []
    assert call(base, value)["errcode"] == 0


def test_same_seed_same_tokens() -> None:
    """seed= makes tokens reproducible."""
    tokens = []
    for _ in range(2):
        emulator = FakeWeChat(start=START, seed=42)
        emulator.add_app(APPID, SECRET)
        query = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
        emulator.handle(Request("GET", "/cgi-bin/token", query))
        tokens.append(emulator.issued_tokens[0])
    assert tokens[0] == tokens[1]


# -- fault injection -----------------------------------------------------------------------


def test_fail_next_errcode_then_back_to_normal(fake: FakeWeChat, base: str) -> None:
    """fail_next(2, errcode=-1) fails two token fetches with system error, then heals."""
    fake.fail_next(2, errcode=-1)
    for _ in range(2):
        body = fetch(base).json()
        assert body["errcode"] == -1
        assert body["errmsg"].startswith("system error rid: ")
    assert "access_token" in fetch(base).json()
    assert [c.fault for c in fake.calls] == ["errcode -1", "errcode -1", None]


def test_fail_next_http_5xx_with_an_html_page(fake: FakeWeChat, base: str) -> None:
    """status=502 answers HTTP 502 with an HTML body."""
    fake.fail_next(status=502)
    response = fetch(base)
    assert response.status_code == 502
    assert response.headers["Content-Type"].startswith("text/html")
    assert "<html>" in response.text
    assert fake.calls[0].errcode is None


def test_fail_next_html_with_status_200(fake: FakeWeChat, base: str) -> None:
    """html=True answers HTTP 200 with an HTML page, as a captive portal would."""
    fake.fail_next(html=True)
    response = fetch(base)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    with pytest.raises(requests.exceptions.JSONDecodeError):
        response.json()


def test_fail_next_on_api_calls_only(fake: FakeWeChat, base: str) -> None:
    """on="api" leaves token fetches alone and fails the next API call."""
    fake.fail_next(on="api", errcode=45011)
    value = token(base)
    assert call(base, value)["errcode"] == 45011
    assert call(base, value)["errcode"] == 0


def test_fail_next_on_one_path(fake: FakeWeChat, base: str) -> None:
    """on="/path" fails only that path."""
    fake.fail_next(on="cgi-bin/message/custom/send", errcode=-1)
    value = token(base)
    assert call(base, value)["errcode"] == 0
    assert call(base, value, "/cgi-bin/message/custom/send")["errcode"] == -1


def test_faults_take_precedence_over_every_rule(fake: FakeWeChat, base: str) -> None:
    """An injected fault answers even a request that would be rejected otherwise."""
    fake.fail_next(errcode=40243)
    assert fetch(base, secret="wrong").json()["errcode"] == 40243


def test_fail_next_hang_times_the_client_out(fake: FakeWeChat, base: str) -> None:
    """hang= makes the client's timeout fire; the next request is answered normally."""
    fake.fail_next(hang=30)
    with pytest.raises(requests.exceptions.Timeout):
        fetch(base, timeout=0.2)
    assert "access_token" in fetch(base).json()
    assert fake.calls[0].fault == "hang 30s"


def test_fail_next_validates_its_arguments(fake: FakeWeChat) -> None:
    """Exactly one kind of fault, at least once."""
    with pytest.raises(ValueError, match="exactly one"):
        fake.fail_next()
    with pytest.raises(ValueError, match="exactly one"):
        fake.fail_next(errcode=-1, status=500)
    with pytest.raises(ValueError, match="at least 1"):
        fake.fail_next(0, errcode=-1)


def test_clear_faults(fake: FakeWeChat, base: str) -> None:
    """clear_faults() drops pending faults."""
    fake.fail_next(5, errcode=-1)
    fake.clear_faults()
    assert "access_token" in fetch(base).json()


def test_token_latency_is_applied_to_token_endpoints_only(fake: FakeWeChat) -> None:
    """token_latency delays token answers (the reply says how long), not API calls."""
    fake.token_latency = 0.25
    query = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
    reply = fake.handle(Request("GET", "/cgi-bin/token", query))
    assert reply.delay == 0.25
    value = reply.json()["access_token"]
    api = fake.handle(Request("GET", "/cgi-bin/user/get", {"access_token": value}))
    assert api.delay == 0


# -- registration --------------------------------------------------------------------------


def test_registration_errors(fake: FakeWeChat) -> None:
    """Duplicate apps and answers for emulated paths are refused."""
    with pytest.raises(ValueError, match="already registered"):
        fake.add_app(APPID, "other")
    fake.add_wecom_app("ww1", "s")
    with pytest.raises(ValueError, match="already registered"):
        fake.add_wecom_app("ww1", "s")
    with pytest.raises(ValueError, match="emulated"):
        fake.add_api("/cgi-bin/token", json={})
    with pytest.raises(ValueError, match="exactly one"):
        fake.add_api("/x")
    with pytest.raises(ValueError, match="no app"):
        fake.set_quota("wxnope", "/x", 1)
    with pytest.raises(ValueError, match="40125 or 40001"):
        FakeWeChat(wrong_secret_errcode=1)


def test_stable_token_minute_quota_answers_45011(fake: FakeWeChat) -> None:
    """More than 10,000 stable_token calls in one minute answer 45011."""
    body = b'{"grant_type":"client_credential","appid":"%s","secret":"%s"}' % (
        APPID.encode(),
        SECRET.encode(),
    )
    request = Request("POST", "/cgi-bin/stable_token", {}, body)
    fake.advance(60 - fake.clock() % 60)  # start of a minute
    for _ in range(10_000):
        assert fake.handle(request).status == 200
    assert fake.handle(request).json()["errcode"] == 45011
    fake.advance(60)
    assert "access_token" in fake.handle(request).json()


# -- concurrency ---------------------------------------------------------------------------


def test_concurrent_fetches_are_all_counted(fake: FakeWeChat) -> None:
    """Many threads hitting the loopback server: every fetch counted, every token unique."""
    errors: list[BaseException] = []
    with fake.serve() as url:

        def worker() -> None:
            try:
                with requests.Session() as session:
                    for _ in range(20):
                        params = {"grant_type": "client_credential", "appid": APPID}
                        params["secret"] = SECRET
                        r = session.get(f"{url}/cgi-bin/token", params=params, timeout=5)
                        assert "access_token" in r.json()
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    fake.assert_token_fetches(160)
    assert len(set(fake.issued_tokens)) == 160
    assert fake.quota_used(APPID) == 160
