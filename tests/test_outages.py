"""Outages and quota: a failing token endpoint, WeChat rejecting every token, and many
managers of one app in one process.

- An outage gives callers TokenFetchError promptly, WeChat about one token request a
  second, and recovery within a second of the endpoint coming back; failed fetches do
  not spend the refresh budget.
- A replacement token rejected within minutes holds the next refetch (growing delays),
  so a persistent 40001 cannot burn the day's quota; a per-day budget caps the rest.
- Managers built from the same appid, secret and api_base share one token.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest
import requests

import wxauth
from wxauth._guards import REJECTION_RESET_AGE
from wxauth.testing import FakeWeChat

APPID, SECRET = "wxoutage00001", "the-outage-secret"


@pytest.fixture
def fake() -> FakeWeChat:
    emulator = FakeWeChat()
    emulator.add_app(APPID, SECRET)
    return emulator


def manager(fake: FakeWeChat, url: str, **options: object) -> wxauth.TokenManager:
    options.setdefault("clock", fake.clock)
    options.setdefault("backoff", 0)
    return wxauth.TokenManager(APPID, SECRET, api_base=url, **options)  # type: ignore[arg-type]


# -- an outage ------------------------------------------------------------------------


def test_an_outage_raises_fetch_errors_not_budget_errors(fake: FakeWeChat) -> None:
    """Thirty failing calls, one a second, all get TokenFetchError, none the
    RefreshBudgetError that counting failures against max_fetches_per_minute gave."""
    with fake.serve() as url:
        tokens = manager(fake, url, max_fetches_per_minute=3)
        fake.fail_next(1000, on="token", status=502)
        for _ in range(30):
            with pytest.raises(wxauth.TokenFetchError):
                tokens.get_token()
            fake.advance(1)
        fake.clear_faults()
        assert tokens.get_token()
    assert tokens.stats.failures >= 25


def test_an_outage_is_paced_to_about_one_request_a_second(fake: FakeWeChat) -> None:
    """Eight threads calling as fast as they can for 2 s of real time during an outage:
    WeChat sees at most about one token request a second (plus the first two at once)."""
    with fake.serve() as url:
        tokens = wxauth.TokenManager(APPID, SECRET, api_base=url, backoff=0.5)
        fake.fail_next(100_000, on="token", status=503)
        errors: list[type[BaseException]] = []
        stop = time.monotonic() + 2.0

        def hammer() -> None:
            while time.monotonic() < stop:
                try:
                    tokens.get_token()
                except wxauth.WxAuthError as exc:
                    errors.append(type(exc))

        threads = [threading.Thread(target=hammer) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        fake.clear_faults()
    assert set(errors) == {wxauth.TokenFetchError}
    assert len(errors) > 100  # callers were answered promptly, not made to wait
    # 2 s at <= 1/s once paced, plus the first fetch's 3 attempts and the second's one.
    assert fake.token_fetches <= 7


def test_recovery_is_seen_within_a_second(fake: FakeWeChat) -> None:
    """After many failures in a row, a call one second after the endpoint recovered
    gets a token."""
    with fake.serve() as url:
        tokens = manager(fake, url)
        fake.fail_next(1000, on="token", errcode=-1)
        for _ in range(10):
            fake.advance(1.01)
            with pytest.raises(wxauth.TokenFetchError):
                tokens.get_token()
        fake.clear_faults()
        with pytest.raises(wxauth.TokenFetchError, match="next try in"):
            tokens.get_token()  # in the pause the last failure imposed
        fake.advance(1.01)
        assert tokens.get_token()


def test_the_pause_ends_on_real_time_too(fake: FakeWeChat) -> None:
    """A fake clock that nobody moves does not stretch the pause: real time ends it."""
    with fake.serve() as url:
        tokens = manager(fake, url, retries=0)
        fake.fail_next(2, on="token", status=500)
        for _ in range(2):
            with pytest.raises(wxauth.TokenFetchError):
                tokens.get_token()
        deadline = time.monotonic() + 3
        while True:
            try:
                assert tokens.get_token()
                break
            except wxauth.TokenFetchError:
                assert time.monotonic() < deadline, "the 0.25 s pause never ended"
                time.sleep(0.05)


def test_a_refused_credential_is_raised_again_during_the_pause(fake: FakeWeChat) -> None:
    """During the pause, callers get the same kind of error the endpoint gave."""
    with fake.serve() as url:
        tokens = wxauth.TokenManager(APPID, "wrong-secret", api_base=url, clock=fake.clock)
        for _ in range(4):
            with pytest.raises(wxauth.CredentialError) as caught:
                tokens.get_token()
            assert caught.value.errcode == 40125
    assert fake.token_fetches == 2  # the two after that came inside the pause


def test_a_failed_fetch_does_not_spend_the_budget(fake: FakeWeChat) -> None:
    """Failures count for the backoff, not against max_fetches_per_minute."""
    with fake.serve() as url:
        tokens = manager(fake, url, max_fetches_per_minute=2, retries=0)
        fake.fail_next(5, on="token", status=500)
        for _ in range(5):
            with pytest.raises(wxauth.TokenFetchError):
                tokens.get_token()
            fake.advance(1.01)
        tokens.refresh()
        tokens.refresh()
        with pytest.raises(wxauth.RefreshBudgetError):
            tokens.refresh()


# -- WeChat rejecting every token -------------------------------------------------------


def test_a_young_tokens_first_rejection_is_healed_at_once(fake: FakeWeChat) -> None:
    """A token seconds old, retired by someone else, is refetched and re-sent at once."""
    with fake.serve() as url:
        session = requests.Session()
        session.auth = wxauth.WxAuth(APPID, SECRET, api_base=url, clock=fake.clock)
        assert session.get(url + "/cgi-bin/user/get").json()["errcode"] == 0
        fake.retire_all()
        r = session.get(url + "/cgi-bin/user/get")
    assert r.json()["errcode"] == 0
    assert len(r.history) == 1


def test_a_persistent_40001_does_not_burn_the_quota(
    fake: FakeWeChat, caplog: pytest.LogCaptureFixture
) -> None:
    """A simulated day of one call every 30 s while WeChat rejects every token: far
    fewer than 300 fetches, every caller gets WeChat's answer, and a WARNING names the
    likely cause."""
    with fake.intercept():
        session = requests.Session()
        session.auth = wxauth.WxAuth(APPID, SECRET, clock=fake.clock, backoff=0)
        fake.fail_next(10**6, on="api", errcode=40001)
        with caplog.at_level(logging.WARNING, logger="wxauth"):
            for _ in range(2880):
                answer = session.get("https://api.weixin.qq.com/cgi-bin/user/get")
                assert answer.json()["errcode"] == 40001
                fake.advance(30)
    assert fake.token_fetches <= 300
    assert fake.token_fetches >= 10  # the held refetches still happen, ever more rarely
    # While a refetch is held, the rejected answer is returned, not re-sent with the
    # same token: a re-send only follows a real refetch.
    assert fake.api_calls <= 2880 + fake.token_fetches
    assert any("Something else is probably fetching tokens" in r.message for r in caplog.records)


def test_a_replacement_that_survives_is_healed_at_once(fake: FakeWeChat) -> None:
    """A replacement token that worked past the window is healed at once when it is
    finally rejected: only rejections within minutes of a fetch hold refetches."""
    with fake.serve() as url:
        tokens = manager(fake, url)
        first = tokens.get_token()
        assert tokens.invalidate(first)
        second = tokens.get_token()
        assert tokens.invalidate(second) is False  # rejected at once: held
        assert tokens.get_token() == second
        fake.advance(31)
        assert tokens.invalidate(second)  # the hold ran out
        third = tokens.get_token()
        fake.advance(301)
        assert tokens.invalidate(third)  # survived five minutes: healed at once
        assert tokens.get_token() != third


def hold_of(tokens: wxauth.TokenManager, fake: FakeWeChat) -> int:
    """Reject a fresh replacement at once and return how long (s) its refetch is held,
    to the 30 s step (the streak's first hold is 30 s, then 60, 120...)."""
    token = tokens.get_token()
    assert tokens.invalidate(token) is False  # held
    held = 0
    while not tokens.invalidate(token):
        fake.advance(30)
        held += 30
    return held


def test_a_replacement_rejected_after_five_minutes_does_not_end_the_streak(
    fake: FakeWeChat,
) -> None:
    """Alternating late and early reports cannot reset the growing hold: a replacement
    rejected at 301 s is healed at once, but the next one rejected at once is held
    longer than the one before. Only a replacement that lived 30 minutes ends it."""
    with fake.serve() as url:
        tokens = manager(fake, url, max_fetches_per_minute=None)
        assert tokens.invalidate(tokens.get_token())
        holds = []
        for _ in range(3):
            holds.append(hold_of(tokens, fake))
            late = tokens.get_token()
            fake.advance(301)
            assert tokens.invalidate(late)  # healed at once
        assert holds == [30, 60, 120]
        lived = tokens.get_token()
        fake.advance(REJECTION_RESET_AGE + 1)
        assert tokens.invalidate(lived)  # lived 30 minutes: the streak is over
        assert hold_of(tokens, fake) == 30


def test_an_alternating_reporter_costs_about_a_hundred_fetches_a_day(fake: FakeWeChat) -> None:
    """A caller that reports every token as rejected for a simulated day, one once it is
    five minutes old and the next at once (the pattern that reset the streak half the
    time and cost about 520 fetches), now costs at most about 100."""
    with fake.serve() as url:
        tokens = manager(fake, url, max_fetches_per_minute=None, max_fetches_per_day=None)
        end = fake.clock() + 86400
        aged = True
        while fake.clock() < end:
            token = tokens.get_token()
            if aged:
                fake.advance(301)
            if tokens.invalidate(token):
                aged = not aged
            else:
                fake.advance(30)  # held: try again in 30 s
    assert 60 <= fake.token_fetches <= 110


def test_a_daily_budget_refuses_until_china_midnight(fake: FakeWeChat) -> None:
    """max_fetches_per_day counts per China-time day, shared through the store."""
    with fake.serve() as url:
        tokens = manager(fake, url, max_fetches_per_day=3, max_fetches_per_minute=None)
        for _ in range(3):
            tokens.refresh()
        with pytest.raises(wxauth.RefreshBudgetError, match="today") as caught:
            tokens.refresh()
        assert 0 < caught.value.retry_after <= fake.seconds_to_next_day() + 1
        fake.advance_to_next_day()
        assert tokens.refresh()
    fake.assert_token_fetches(4)


# -- many managers of one app -----------------------------------------------------------


def test_two_auths_of_one_app_share_one_token(fake: FakeWeChat) -> None:
    """Two WxAuth(appid, secret) built apart share a token: a day of alternating calls
    makes about 13 fetches, not hundreds."""
    with fake.serve() as url:
        auths = [wxauth.WxAuth(APPID, SECRET, api_base=url, clock=fake.clock) for _ in range(2)]
        sessions = [requests.Session() for _ in auths]
        for session, auth in zip(sessions, auths, strict=True):
            session.auth = auth
        for minute in range(24 * 60):
            r = sessions[minute % 2].post(url + "/cgi-bin/message/custom/send", json={})
            assert r.json()["errcode"] == 0
            assert not r.history
            fake.advance(60)
    assert fake.token_fetches <= 14


def test_a_manager_per_request_fetches_once(fake: FakeWeChat) -> None:
    """A WxAuth built for every request (as some frameworks' examples do) reuses the
    token the first one fetched."""
    with fake.serve() as url:
        for _ in range(50):
            r = requests.get(
                url + "/cgi-bin/user/get", auth=wxauth.WxAuth(APPID, SECRET, api_base=url)
            )
            assert r.json()["errcode"] == 0
    fake.assert_token_fetches(1)


def test_a_wrong_secret_never_gets_the_right_ones_token(fake: FakeWeChat) -> None:
    """Sharing is by appid, secret and endpoint: a manager with another secret fetches
    for itself (and is refused)."""
    with fake.serve() as url:
        assert manager(fake, url).get_token()
        with pytest.raises(wxauth.CredentialError):
            wxauth.TokenManager(APPID, "not-the-secret", api_base=url).get_token()


def test_other_endpoints_and_explicit_stores_stay_apart(fake: FakeWeChat) -> None:
    """Another api_base, or an explicit store=, is not the shared default."""
    with fake.serve() as url, fake.serve() as other:
        a = manager(fake, url).get_token()
        assert manager(fake, other).get_token() != a
        assert manager(fake, url, store=wxauth.MemoryStore()).get_token() != a
        assert manager(fake, url).get_token() == a


def test_reset_default_store_forgets_shared_tokens(fake: FakeWeChat) -> None:
    """reset_default_store() (called by the fake_wechat fixture and by every new
    FakeWeChat) makes the next call fetch anew."""
    with fake.serve() as url:
        first = manager(fake, url).get_token()
        wxauth.reset_default_store()
        assert manager(fake, url).get_token() != first
    fake.assert_token_fetches(2)


def test_the_decorator_returns_the_first_answer_while_a_refetch_is_held(
    fake: FakeWeChat,
) -> None:
    """@with_access_token calls the function once per call while the manager holds a
    rejected token back, and returns (or raises) WeChat's answer."""
    with fake.serve() as url:
        tokens = manager(fake, url)
        seen: list[str] = []

        @wxauth.with_access_token(tokens)
        def api(*, access_token: str) -> dict[str, object]:
            seen.append(access_token)
            return {"errcode": 40001, "errmsg": "invalid credential"}

        @wxauth.with_access_token(tokens)
        def raising(*, access_token: str) -> None:
            seen.append(access_token)
            raise wxauth.WeChatAPIError(40001, "invalid credential")

        assert api()["errcode"] == 40001  # first rejection: refetched, called again
        assert api()["errcode"] == 40001  # the replacement rejected at once: held
        assert len(seen) == 3
        with pytest.raises(wxauth.WeChatAPIError):
            raising()
        assert len(seen) == 4
        assert len(set(seen)) == 2
    fake.assert_token_fetches(2)
