"""The emulator's Open Platform (第三方平台): verify tickets, component and authorizer
tokens, authorization codes, refresh tokens, the authorizer list, quotas, faults, the
call record, and real encrypted pushes POSTed to a loopback handler.

Most rules are checked on the model (``fake.handle``) on a frozen clock moved with
``fake.advance``; the whole flow also runs through both front ends (``intercept()`` with
requests, ``serve()`` over loopback), and an authorizer token drives ``WxAuth`` end to end.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

import wxauth
from wxauth.openplatform import MessageCrypto
from wxauth.testing import FakeWeChat
from wxauth.testing._component_push import PushDeliveryError
from wxauth.testing._endpoints.component import (
    AUTHORIZER_INFO_PATH,
    AUTHORIZER_LIST_PATH,
    AUTHORIZER_TOKEN_PATH,
    COMPONENT_CLEAR_QUOTA_PATH,
    COMPONENT_CLEAR_QUOTA_V2_PATH,
    COMPONENT_TOKEN_PATH,
    PRE_AUTH_CODE_PATH,
    QUERY_AUTH_PATH,
    START_PUSH_TICKET_PATH,
)
from wxauth.testing._wire import Request

COMP, SECRET = "wxcomponent0000001", "component-secret-1"
TOKEN, KEY = "pushtoken", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
AUTHZ, OTHER = "wxauthorizer000001", "wxauthorizer000002"
APPID, APP_SECRET = "wx0123456789abcdef", "app-secret-1"
API = "/cgi-bin/message/custom/send"
START = 1_700_000_000.0


@pytest.fixture
def fake() -> Iterator[FakeWeChat]:
    emulator = FakeWeChat(start=START, seed=7)
    emulator.add_component(COMP, SECRET, token=TOKEN, encoding_aes_key=KEY)
    emulator.add_app(APPID, APP_SECRET)
    try:
        yield emulator
    finally:
        emulator.close()


def post(
    fake: FakeWeChat,
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    method: str = "POST",
    client_ip: str = "127.0.0.1",
    **query: str,
) -> dict[str, Any]:
    """One request to the model; its JSON answer (always HTTP 200)."""
    data = raw if raw is not None else json.dumps(body).encode()
    reply = fake.handle(Request(method, path, query, data, client_ip))
    assert reply.status == 200
    assert reply.content_type == "application/json; encoding=utf-8"
    return dict(reply.json())


def fetch_component_token(fake: FakeWeChat, ticket: str | None = None) -> dict[str, Any]:
    ticket = ticket or fake.latest_verify_ticket(COMP) or fake.new_verify_ticket(COMP)
    body = {
        "component_appid": COMP,
        "component_appsecret": SECRET,
        "component_verify_ticket": ticket,
    }
    return post(fake, COMPONENT_TOKEN_PATH, body)


def component_token(fake: FakeWeChat) -> str:
    return str(fetch_component_token(fake)["component_access_token"])


def refresh(fake: FakeWeChat, ctoken: str, appid: str, refresh_token: str | None) -> dict[str, Any]:
    body = {
        "component_appid": COMP,
        "authorizer_appid": appid,
        "authorizer_refresh_token": refresh_token,
    }
    return post(fake, AUTHORIZER_TOKEN_PATH, body, component_access_token=ctoken)


def query_auth(fake: FakeWeChat, ctoken: str, code: str) -> dict[str, Any]:
    body = {"component_appid": COMP, "authorization_code": code}
    return post(fake, QUERY_AUTH_PATH, body, component_access_token=ctoken)


def api(fake: FakeWeChat, token: str) -> int:
    """The errcode of an ordinary API call with ``token`` as its access_token."""
    return int(post(fake, API, {}, access_token=token)["errcode"])


def errcode(answer: dict[str, Any]) -> int | None:
    return answer.get("errcode")


# -- the component token ---------------------------------------------------------------------


def test_component_token_answer_is_exactly_as_documented(fake: FakeWeChat) -> None:
    """api_component_token answers the token and expires_in 7200, with no errcode."""
    answer = fetch_component_token(fake)
    assert set(answer) == {"component_access_token", "expires_in"}
    assert answer["expires_in"] == 7200
    assert len(answer["component_access_token"]) > 100
    (call,) = fake.calls
    assert (call.kind, call.owner, call.errcode, call.is_token_fetch) == (
        "component_token",
        COMP,
        0,
        True,
    )
    assert fake.component_token_of(COMP) == answer["component_access_token"]


def test_each_component_token_call_issues_a_new_one_and_the_old_keeps_300s(
    fake: FakeWeChat,
) -> None:
    """A new component token per call; the previous one works for the grace, then 40001."""
    first, second = component_token(fake), component_token(fake)
    assert first != second
    body = {"component_appid": COMP}
    assert "pre_auth_code" in post(fake, PRE_AUTH_CODE_PATH, body, component_access_token=first)
    fake.advance(299)
    assert "pre_auth_code" in post(fake, PRE_AUTH_CODE_PATH, body, component_access_token=first)
    fake.advance(1)
    retired = post(fake, PRE_AUTH_CODE_PATH, body, component_access_token=first)
    assert errcode(retired) == 40001
    assert retired["errmsg"].startswith("invalid credential, access_token is invalid or not latest")
    assert "pre_auth_code" in post(fake, PRE_AUTH_CODE_PATH, body, component_access_token=second)
    fake.advance(7200)
    assert errcode(post(fake, PRE_AUTH_CODE_PATH, body, component_access_token=second)) == 42001


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"component_appsecret": SECRET}, 41002),
        ({"component_appid": COMP}, 41004),
        ({"component_appid": "wxnotacomponent", "component_appsecret": SECRET}, 61011),
        ({"component_appid": APPID, "component_appsecret": APP_SECRET}, 61011),
        ({"component_appid": COMP, "component_appsecret": "wrong"}, 40001),
        ({"component_appid": COMP, "component_appsecret": SECRET}, 61006),
        (
            {
                "component_appid": COMP,
                "component_appsecret": SECRET,
                "component_verify_ticket": "ticket@@@never-issued",
            },
            61006,
        ),
    ],
)
def test_component_token_refusals(fake: FakeWeChat, body: dict[str, str], code: int) -> None:
    """Missing appid/secret, a non-component, a wrong secret, a missing or unknown ticket."""
    fake.new_verify_ticket(COMP)
    assert errcode(post(fake, COMPONENT_TOKEN_PATH, body)) == code
    assert fake.issued_tokens == []


def test_component_token_method_body_ip_and_secret_setting() -> None:
    """GET → 43002, a non-object body → 47001, an IP off the allowlist → 61004 naming it,
    and ``component_wrong_secret_errcode=40125``."""
    fake = FakeWeChat(start=START, component_wrong_secret_errcode=40125)
    fake.add_component(COMP, SECRET, token=TOKEN, encoding_aes_key=KEY, ip_allowlist=["10.0.0.1"])
    ticket = fake.new_verify_ticket(COMP)
    good = {
        "component_appid": COMP,
        "component_appsecret": SECRET,
        "component_verify_ticket": ticket,
    }
    assert errcode(post(fake, COMPONENT_TOKEN_PATH, good, method="GET")) == 43002
    assert errcode(post(fake, COMPONENT_TOKEN_PATH, raw=b"[1]")) == 47001
    refused = post(fake, COMPONENT_TOKEN_PATH, good, client_ip="1.2.3.4")
    assert errcode(refused) == 61004
    assert refused["errmsg"].startswith(
        "access clientip is not registered requestIP: 1.2.3.4 rid: "
    )
    wrong = dict(good, component_appsecret="nope")
    assert errcode(post(fake, COMPONENT_TOKEN_PATH, wrong, client_ip="10.0.0.1")) == 40125
    assert "component_access_token" in post(fake, COMPONENT_TOKEN_PATH, good, client_ip="10.0.0.1")
    with pytest.raises(ValueError, match="40125 or 40001"):
        FakeWeChat(component_wrong_secret_errcode=40013)


def test_classic_token_with_a_component_appid_answers_61024(fake: FakeWeChat) -> None:
    """``/cgi-bin/token`` is not how a component gets its token."""
    answer = post(
        fake,
        "/cgi-bin/token",
        None,
        method="GET",
        grant_type="client_credential",
        appid=COMP,
        secret=SECRET,
    )
    assert errcode(answer) == 61024
    assert answer["errmsg"].startswith("must use api(api_component_token)")


# -- verify tickets ----------------------------------------------------------------------------


def test_verify_ticket_form_and_latest(fake: FakeWeChat) -> None:
    """Tickets look like WeChat's and the newest is the latest."""
    first = fake.new_verify_ticket(COMP)
    second = fake.new_verify_ticket(COMP)
    assert first.startswith("ticket@@@")
    assert second.startswith("ticket@@@")
    assert first != second
    assert fake.latest_verify_ticket(COMP) == second
    assert fake.verify_ticket_status(COMP, "ticket@@@nope") == "unknown"


def test_previous_ticket_overlaps_600s_then_61006(fake: FakeWeChat) -> None:
    """The superseded ticket is accepted for ``verify_ticket_overlap``; then 61006."""
    old = fake.new_verify_ticket(COMP)
    fake.advance(60)
    new = fake.new_verify_ticket(COMP)
    fake.advance(599)
    assert "component_access_token" in fetch_component_token(fake, old)
    fake.advance(1)
    assert errcode(fetch_component_token(fake, old)) == 61006
    assert fake.verify_ticket_status(COMP, old) == "retired"
    assert "component_access_token" in fetch_component_token(fake, new)


def test_latest_ticket_expires_after_12h_with_61005(fake: FakeWeChat) -> None:
    """A ticket no newer one replaced still expires after 12 hours."""
    ticket = fake.new_verify_ticket(COMP)
    fake.advance(12 * 3600 - 1)
    assert "component_access_token" in fetch_component_token(fake, ticket)
    fake.advance(1)
    assert errcode(fetch_component_token(fake, ticket)) == 61005
    assert fake.verify_ticket_status(COMP, ticket) == "expired"


def test_ticket_lifetimes_are_settings() -> None:
    """``verify_ticket_ttl`` and ``verify_ticket_overlap`` change both rules."""
    fake = FakeWeChat(start=START, verify_ticket_ttl=100, verify_ticket_overlap=0)
    fake.add_component(COMP, SECRET, token=TOKEN, encoding_aes_key=KEY)
    old = fake.new_verify_ticket(COMP)
    new = fake.new_verify_ticket(COMP)
    assert errcode(fetch_component_token(fake, old)) == 61006
    fake.advance(100)
    assert errcode(fetch_component_token(fake, new)) == 61005


# -- the component token check -----------------------------------------------------------------


def test_component_endpoints_check_the_component_token(fake: FakeWeChat) -> None:
    """Missing → 41001; unknown, an account's or an authorizer's token → 40001; the
    ``access_token=`` spelling works too."""
    body = {"component_appid": COMP}
    assert errcode(post(fake, PRE_AUTH_CODE_PATH, body)) == 41001
    assert errcode(post(fake, PRE_AUTH_CODE_PATH, body, component_access_token="x")) == 40001
    classic = post(
        fake,
        "/cgi-bin/token",
        None,
        method="GET",
        grant_type="client_credential",
        appid=APPID,
        secret=APP_SECRET,
    )["access_token"]
    assert errcode(post(fake, PRE_AUTH_CODE_PATH, body, component_access_token=classic)) == 40001
    ctoken = component_token(fake)
    fake.add_authorizers(COMP, [AUTHZ])
    atoken = refresh(fake, ctoken, AUTHZ, fake.refresh_token_of(AUTHZ))["authorizer_access_token"]
    assert errcode(post(fake, PRE_AUTH_CODE_PATH, body, component_access_token=atoken)) == 40001
    answer = post(fake, PRE_AUTH_CODE_PATH, body, access_token=ctoken)
    assert set(answer) == {"pre_auth_code", "expires_in"}
    assert answer["pre_auth_code"].startswith("preauthcode@@@")
    assert answer["expires_in"] == 600


def test_component_appid_in_the_body_must_be_the_tokens(fake: FakeWeChat) -> None:
    """No component_appid → 41002; another one → 61011; GET → 43002; not JSON → 47001."""
    ctoken = component_token(fake)
    assert errcode(post(fake, PRE_AUTH_CODE_PATH, {}, component_access_token=ctoken)) == 41002
    other = {"component_appid": "wxother"}
    assert errcode(post(fake, PRE_AUTH_CODE_PATH, other, component_access_token=ctoken)) == 61011
    mine = {"component_appid": COMP}
    got = post(fake, PRE_AUTH_CODE_PATH, mine, method="GET", component_access_token=ctoken)
    assert errcode(got) == 43002
    bad = post(fake, PRE_AUTH_CODE_PATH, raw=b"{", component_access_token=ctoken)
    assert errcode(bad) == 47001


def test_component_token_is_refused_on_account_apis(fake: FakeWeChat) -> None:
    """A component token is no access_token for an account's API (40001)."""
    assert api(fake, component_token(fake)) == 40001


# -- authorization codes and authorizer tokens --------------------------------------------------


def test_query_auth_trades_a_code_for_tokens(fake: FakeWeChat) -> None:
    """api_query_auth answers authorization_info with both tokens and func_info."""
    ctoken = component_token(fake)
    code = fake.authorize(COMP, AUTHZ)
    assert code.startswith("queryauthcode@@@")
    info = query_auth(fake, ctoken, code)["authorization_info"]
    assert set(info) == {
        "authorizer_appid",
        "authorizer_access_token",
        "expires_in",
        "authorizer_refresh_token",
        "func_info",
    }
    assert info["authorizer_appid"] == AUTHZ
    assert info["expires_in"] == 7200
    assert info["authorizer_refresh_token"] == fake.refresh_token_of(AUTHZ)
    assert info["func_info"] == [{"funcscope_category": {"id": i}} for i in (1, 2, 3)]
    assert api(fake, info["authorizer_access_token"]) == 0
    assert fake.authorizer_token_of(AUTHZ) == info["authorizer_access_token"]


def test_codes_are_single_use_expire_and_belong_to_one_authorization(fake: FakeWeChat) -> None:
    """Used or unknown → 61009; past 600 s → 61010; a code of an authorization since
    replaced → 61009."""
    ctoken = component_token(fake)
    code = fake.authorize(COMP, AUTHZ, func_info=[1, 17])
    info = query_auth(fake, ctoken, code)["authorization_info"]
    assert info["func_info"] == [
        {"funcscope_category": {"id": 1}},
        {"funcscope_category": {"id": 17}},
    ]
    assert errcode(query_auth(fake, ctoken, code)) == 61009
    assert errcode(query_auth(fake, ctoken, "queryauthcode@@@nope")) == 61009
    late = fake.authorize(COMP, OTHER)
    fake.advance(599)
    ctoken = component_token(fake)
    stale = fake.authorize(COMP, AUTHZ)
    fresh = fake.authorize(COMP, AUTHZ)  # a re-authorization: the stale code is void
    assert errcode(query_auth(fake, ctoken, stale)) == 61009
    assert "authorization_info" in query_auth(fake, ctoken, fresh)
    fake.advance(1)
    assert errcode(query_auth(fake, ctoken, late)) == 61010


def test_authorizer_token_echoes_the_refresh_token_and_retires_the_previous(
    fake: FakeWeChat,
) -> None:
    """Each refresh issues a new authorizer token and echoes the refresh token; the
    previous token works for the grace, then 40001; a token expires after 7200 s."""
    ctoken = component_token(fake)
    refresh_token = fake.add_authorizers(COMP, [AUTHZ])[AUTHZ]
    assert refresh_token.startswith("refreshtoken@@@")
    first = refresh(fake, ctoken, AUTHZ, refresh_token)
    assert set(first) == {"authorizer_access_token", "expires_in", "authorizer_refresh_token"}
    assert first["authorizer_refresh_token"] == refresh_token
    assert first["expires_in"] == 7200
    second = refresh(fake, ctoken, AUTHZ, refresh_token)
    assert second["authorizer_access_token"] != first["authorizer_access_token"]
    assert second["authorizer_refresh_token"] == refresh_token
    fake.advance(299)
    assert api(fake, first["authorizer_access_token"]) == 0
    fake.advance(1)
    assert api(fake, first["authorizer_access_token"]) == 40001
    assert api(fake, second["authorizer_access_token"]) == 0
    fake.advance(7200)
    assert api(fake, second["authorizer_access_token"]) == 42001
    (call,) = [c for c in fake.calls if c.kind == "authorizer_token" and c.errcode == 0][:1]
    assert (call.owner, call.token) == (AUTHZ, first["authorizer_access_token"])


def test_reauthorization_refuses_the_old_refresh_token_with_61023(fake: FakeWeChat) -> None:
    """A re-authorization: new refresh token, the old one 61023, the live token retired."""
    ctoken = component_token(fake)
    old_refresh = fake.add_authorizers(COMP, [AUTHZ])[AUTHZ]
    live = refresh(fake, ctoken, AUTHZ, old_refresh)["authorizer_access_token"]
    fake.authorize(COMP, AUTHZ)
    new_refresh = fake.refresh_token_of(AUTHZ)
    assert new_refresh not in (None, old_refresh)
    refused = refresh(fake, ctoken, AUTHZ, old_refresh)
    assert errcode(refused) == 61023
    assert refused["errmsg"].startswith("refresh_token is invalid rid: ")
    assert api(fake, live) == 40001
    assert "authorizer_access_token" in refresh(fake, ctoken, AUTHZ, new_refresh)


def test_unauthorize_answers_61003_and_retires_tokens(fake: FakeWeChat) -> None:
    """After unauthorize: 61003 for refresh and info, tokens refused, off the list."""
    ctoken = component_token(fake)
    refresh_token = fake.add_authorizers(COMP, [AUTHZ, OTHER])[AUTHZ]
    live = refresh(fake, ctoken, AUTHZ, refresh_token)["authorizer_access_token"]
    fake.unauthorize(COMP, AUTHZ)
    assert errcode(refresh(fake, ctoken, AUTHZ, refresh_token)) == 61003
    assert api(fake, live) == 40001
    assert fake.refresh_token_of(AUTHZ) is None
    info = {"component_appid": COMP, "authorizer_appid": AUTHZ}
    assert errcode(post(fake, AUTHORIZER_INFO_PATH, info, component_access_token=ctoken)) == 61003
    assert fake.authorizer_appids(COMP) == [OTHER]
    with pytest.raises(ValueError, match="does not authorize"):
        fake.unauthorize(COMP, AUTHZ)
    fake.authorize(COMP, AUTHZ)  # authorizing again puts it back, last
    assert fake.authorizer_appids(COMP) == [OTHER, AUTHZ]


@pytest.mark.parametrize(
    ("appid", "refresh_token", "code"),
    [
        (None, "refreshtoken@@@x", 41002),
        ("wxneverauthorized", "refreshtoken@@@x", 61003),
        (AUTHZ, "refreshtoken@@@wrong", 61023),
        (AUTHZ, None, 61023),
    ],
)
def test_authorizer_token_refusals(
    fake: FakeWeChat, appid: str | None, refresh_token: str | None, code: int
) -> None:
    """No authorizer → 41002, not authorized → 61003, a wrong or no refresh token → 61023."""
    ctoken = component_token(fake)
    fake.add_authorizers(COMP, [AUTHZ])
    answer = refresh(fake, ctoken, appid, refresh_token)  # type: ignore[arg-type]
    assert errcode(answer) == code


def test_rotating_refresh_tokens_keep_the_old_one_300s() -> None:
    """``rotate_refresh_tokens=True``: each refresh answers a new refresh token; the old
    one still works (answering the current one) for the grace, then 61023."""
    fake = FakeWeChat(start=START, rotate_refresh_tokens=True)
    fake.add_component(COMP, SECRET, token=TOKEN, encoding_aes_key=KEY)
    ctoken = component_token(fake)
    first = fake.add_authorizers(COMP, [AUTHZ])[AUTHZ]
    second = refresh(fake, ctoken, AUTHZ, first)["authorizer_refresh_token"]
    assert second != first
    assert fake.refresh_token_of(AUTHZ) == second
    fake.advance(299)
    assert refresh(fake, ctoken, AUTHZ, first)["authorizer_refresh_token"] == second
    fake.advance(1)
    assert errcode(refresh(fake, ctoken, AUTHZ, first)) == 61023
    third = refresh(fake, ctoken, AUTHZ, second)["authorizer_refresh_token"]
    assert third not in (first, second)
    fake.authorize(COMP, AUTHZ)  # a re-authorization ends the grace of the one rotated out
    assert errcode(refresh(fake, ctoken, AUTHZ, second)) == 61023


def test_authorizer_belongs_to_each_component_separately(fake: FakeWeChat) -> None:
    """One account may authorize two components; ambiguous look-ups need the component."""
    fake.add_component("wxcomponent0000002", "s2", token=TOKEN, encoding_aes_key=KEY)
    mine = fake.add_authorizers(COMP, [AUTHZ])[AUTHZ]
    theirs = fake.add_authorizers("wxcomponent0000002", [AUTHZ])[AUTHZ]
    assert mine != theirs
    with pytest.raises(ValueError, match="several components"):
        fake.refresh_token_of(AUTHZ)
    assert fake.refresh_token_of(AUTHZ, COMP) == mine
    ctoken = component_token(fake)
    assert errcode(refresh(fake, ctoken, AUTHZ, theirs)) == 61023


# -- the authorizer list and info --------------------------------------------------------------


def test_authorizer_list_pages_1201_authorizers_in_3_pages(fake: FakeWeChat) -> None:
    """500 + 500 + 201, total_count on every page, the key is ``refresh_token``."""
    appids = [f"wxa{i:015d}" for i in range(1201)]
    tokens = fake.add_authorizers(COMP, appids)
    ctoken = component_token(fake)
    seen: dict[str, str] = {}
    sizes = []
    for offset in range(0, 1201, 500):
        body = {"component_appid": COMP, "offset": offset, "count": 500}
        page = post(fake, AUTHORIZER_LIST_PATH, body, component_access_token=ctoken)
        assert set(page) == {"total_count", "list"}
        assert page["total_count"] == 1201
        sizes.append(len(page["list"]))
        for entry in page["list"]:
            assert set(entry) == {"authorizer_appid", "refresh_token", "auth_time"}
            assert entry["auth_time"] == int(START)
            seen[entry["authorizer_appid"]] = entry["refresh_token"]
    assert sizes == [500, 500, 201]
    assert seen == tokens
    assert list(seen) == appids  # authorization order
    past = {"component_appid": COMP, "offset": 1201, "count": 10}
    assert post(fake, AUTHORIZER_LIST_PATH, past, component_access_token=ctoken)["list"] == []


@pytest.mark.parametrize(
    ("offset", "count", "code"),
    [(0, 501, 40170), (-1, 10, 47001), (0, "10", 47001), (None, 10, 47001), (0, True, 47001)],
)
def test_authorizer_list_refusals(fake: FakeWeChat, offset: Any, count: Any, code: int) -> None:
    """count over 500 → 40170 ``args count exceed count limit``; a count or offset that
    is not a non-negative integer → 47001."""
    ctoken = component_token(fake)
    body = {"component_appid": COMP, "offset": offset, "count": count}
    answer = post(fake, AUTHORIZER_LIST_PATH, body, component_access_token=ctoken)
    assert errcode(answer) == code


def test_authorizer_info(fake: FakeWeChat) -> None:
    """api_get_authorizer_info: authorizer_info and authorization_info with the refresh
    token under ``authorizer_refresh_token``."""
    ctoken = component_token(fake)
    refresh_token = fake.add_authorizers(COMP, [AUTHZ])[AUTHZ]
    body = {"component_appid": COMP, "authorizer_appid": AUTHZ}
    answer = post(fake, AUTHORIZER_INFO_PATH, body, component_access_token=ctoken)
    assert set(answer) == {"authorizer_info", "authorization_info"}
    assert answer["authorizer_info"]["user_name"].startswith("gh_")
    assert answer["authorization_info"]["authorizer_refresh_token"] == refresh_token
    assert answer["authorization_info"]["authorizer_appid"] == AUTHZ
    missing = post(
        fake, AUTHORIZER_INFO_PATH, {"component_appid": COMP}, component_access_token=ctoken
    )
    assert errcode(missing) == 41002


# -- start push, quotas, faults ----------------------------------------------------------------


def test_start_push_ticket_takes_the_secret_not_a_token(fake: FakeWeChat) -> None:
    """``{"component_appid","component_secret"}`` → ok; a wrong secret → 40001;
    ``component_appsecret`` is not the key here (41004)."""
    good = {"component_appid": COMP, "component_secret": SECRET}
    assert post(fake, START_PUSH_TICKET_PATH, good) == {"errcode": 0, "errmsg": "ok"}
    wrong = {"component_appid": COMP, "component_secret": "nope"}
    assert errcode(post(fake, START_PUSH_TICKET_PATH, wrong)) == 40001
    misnamed = {"component_appid": COMP, "component_appsecret": SECRET}
    assert errcode(post(fake, START_PUSH_TICKET_PATH, misnamed)) == 41004
    assert fake.count(path=START_PUSH_TICKET_PATH, errcode=0) == 1


def test_daily_quota_per_component_endpoint_gives_45009(fake: FakeWeChat) -> None:
    """``set_quota(component_appid, path, n)``: the n+1-th successful call of the day
    answers 45009; refused calls are free; the next day starts afresh."""
    fake.set_quota(COMP, AUTHORIZER_TOKEN_PATH, 2)
    ctoken = component_token(fake)
    refresh_token = fake.add_authorizers(COMP, [AUTHZ])[AUTHZ]
    assert errcode(refresh(fake, ctoken, AUTHZ, "wrong")) == 61023
    for _ in range(2):
        assert "authorizer_access_token" in refresh(fake, ctoken, AUTHZ, refresh_token)
    over = refresh(fake, ctoken, AUTHZ, refresh_token)
    assert errcode(over) == 45009
    assert over["errmsg"].startswith("reach max api daily quota limit")
    assert fake.quota_used(COMP, AUTHORIZER_TOKEN_PATH) == 2
    fake.advance_to_next_day()
    fake.new_verify_ticket(COMP)  # the old one may be past its 12 hours
    ctoken = component_token(fake)
    assert "authorizer_access_token" in refresh(fake, ctoken, AUTHZ, refresh_token)


def test_component_token_quota_and_quota_get(fake: FakeWeChat) -> None:
    """api_component_token has a daily quota (10000 by default), which quota/get reports
    to the component token; clear_quota (token) and clear_quota/v2 (secret) reset it."""
    fake.set_quota(COMP, COMPONENT_TOKEN_PATH, 3)
    ctoken = ""
    for _ in range(3):
        ctoken = component_token(fake)
    assert errcode(fetch_component_token(fake)) == 45009
    quota = post(
        fake, "/cgi-bin/openapi/quota/get", {"cgi_path": COMPONENT_TOKEN_PATH}, access_token=ctoken
    )
    assert quota["quota"] == {"daily_limit": 3, "used": 3, "remain": 0}
    unknown = post(fake, "/cgi-bin/openapi/quota/get", {"cgi_path": "/x"}, access_token=ctoken)
    assert errcode(unknown) == 76021
    cleared = post(
        fake, COMPONENT_CLEAR_QUOTA_PATH, {"component_appid": COMP}, component_access_token=ctoken
    )
    assert cleared == {"errcode": 0, "errmsg": "ok"}
    assert fake.quota_used(COMP, COMPONENT_TOKEN_PATH) == 0
    for _ in range(3):
        component_token(fake)
    v2 = {"component_appid": COMP, "appsecret": SECRET}
    assert post(fake, COMPONENT_CLEAR_QUOTA_V2_PATH, v2) == {"errcode": 0, "errmsg": "ok"}
    assert "component_access_token" in fetch_component_token(fake)
    default = FakeWeChat(start=START)
    default.add_component(COMP, SECRET, token=TOKEN, encoding_aes_key=KEY)
    ctoken = component_token(default)
    quota = post(
        default,
        "/cgi-bin/openapi/quota/get",
        {"cgi_path": COMPONENT_TOKEN_PATH},
        access_token=ctoken,
    )
    assert quota["quota"]["daily_limit"] == 10000


def test_clear_quota_budget_is_10_a_month(fake: FakeWeChat) -> None:
    """The component's clear_quota calls share 10 a month, then 48006."""
    v2 = {"component_appid": COMP, "appsecret": SECRET}
    for _ in range(10):
        assert errcode(post(fake, COMPONENT_CLEAR_QUOTA_V2_PATH, v2)) == 0
    assert errcode(post(fake, COMPONENT_CLEAR_QUOTA_V2_PATH, v2)) == 48006


def test_fail_next_on_component_paths(fake: FakeWeChat) -> None:
    """``on="component"``, one kind such as ``"authorizer_token"``, a component path, and
    ``"token"`` (component and authorizer tokens are token fetches)."""
    fake.fail_next(on="authorizer_token", errcode=-1)
    fake.fail_next(on=PRE_AUTH_CODE_PATH, errcode=45009)
    ctoken = component_token(fake)  # neither fault matches it
    refresh_token = fake.add_authorizers(COMP, [AUTHZ])[AUTHZ]
    busy = refresh(fake, ctoken, AUTHZ, refresh_token)
    assert errcode(busy) == -1
    assert busy["errmsg"].startswith("system error")
    body = {"component_appid": COMP}
    assert errcode(post(fake, PRE_AUTH_CODE_PATH, body, component_access_token=ctoken)) == 45009
    fake.fail_next(on="token", errcode=-1)
    assert errcode(fetch_component_token(fake)) == -1
    fake.fail_next(on="component", status=502)
    reply = fake.handle(
        Request("POST", PRE_AUTH_CODE_PATH, {"component_access_token": ctoken}, b"{}")
    )
    assert reply.status == 502
    fake.fail_next(on="api", errcode=-1)  # "api" leaves component paths alone
    assert "pre_auth_code" in post(fake, PRE_AUTH_CODE_PATH, body, component_access_token=ctoken)
    assert [c.fault for c in fake.calls if c.fault] == [
        "errcode -1",
        "errcode 45009",
        "errcode -1",
        "http 502",
    ]


def test_unmodelled_component_paths_check_the_token_then_answer(fake: FakeWeChat) -> None:
    """Any other ``/cgi-bin/component/`` path: the component token check, then the
    ``add_api`` answer (or ok)."""
    path = "/cgi-bin/component/fastregisterweapp"
    fake.add_api(path, json={"errcode": 0, "errmsg": "ok", "unique_id": "x"})
    assert errcode(post(fake, path, {}, component_access_token="bad")) == 40001
    ctoken = component_token(fake)
    assert post(fake, path, {}, component_access_token=ctoken)["unique_id"] == "x"
    assert fake.count(kind="component_api", path=path, errcode=0) == 1
    with pytest.raises(ValueError, match="emulated by FakeWeChat"):
        fake.add_api(AUTHORIZER_TOKEN_PATH, json={})


# -- inspection and scale ----------------------------------------------------------------------


def test_calls_are_told_apart_and_counted_per_authorizer(fake: FakeWeChat) -> None:
    """Kinds component_token / authorizer_token / component_api; token fetches per owner."""
    ctoken = component_token(fake)
    tokens = fake.add_authorizers(COMP, [AUTHZ, OTHER])
    for _ in range(3):
        refresh(fake, ctoken, AUTHZ, tokens[AUTHZ])
    refresh(fake, ctoken, OTHER, tokens[OTHER])
    post(fake, PRE_AUTH_CODE_PATH, {"component_appid": COMP}, component_access_token=ctoken)
    assert fake.count(kind="component_token") == 1
    assert fake.count(kind="authorizer_token") == 4
    assert fake.count(kind="component_api") == 1
    assert fake.token_fetches == 5
    assert fake.token_fetches_of(AUTHZ) == 3
    assert fake.token_fetches_of(OTHER) == 1
    assert fake.token_fetches_of(COMP) == 1
    assert fake.count(kind="authorizer_token", owner=AUTHZ, errcode=0) == 3
    assert fake.errcodes(kind="authorizer_token") == {0: 4}
    fake.assert_token_fetches(4, kind="authorizer_token")


def test_call_history_keeps_counts_without_the_calls() -> None:
    """``call_history=0`` keeps no Call objects; counts still cover every call;
    ``call_history=2`` keeps the latest two; reset_calls forgets counts too."""
    for history, kept in ((0, 0), (2, 2)):
        fake = FakeWeChat(start=START, call_history=history)
        fake.add_component(COMP, SECRET, token=TOKEN, encoding_aes_key=KEY)
        for _ in range(5):
            component_token(fake)
        assert len(fake.calls) == kept
        assert fake.count(kind="component_token", errcode=0) == 5
        assert fake.token_fetches_of(COMP) == 5
        fake.reset_calls()
        assert fake.count() == 0
        assert fake.token_fetches_of(COMP) == 0
    with pytest.raises(ValueError, match="call_history"):
        FakeWeChat(call_history=-1)


def test_forget_tokens_after_drops_dead_tokens() -> None:
    """``forget_tokens_after=N``: a token N seconds past its expiry is forgotten (40014,
    gone from issued_tokens); live tokens and their grace are untouched."""
    fake = FakeWeChat(start=START, forget_tokens_after=60)
    fake.add_component(COMP, SECRET, token=TOKEN, encoding_aes_key=KEY)
    refresh_token = fake.add_authorizers(COMP, [AUTHZ])[AUTHZ]
    ctoken = component_token(fake)
    old = refresh(fake, ctoken, AUTHZ, refresh_token)["authorizer_access_token"]
    fake.advance(7200 + 59)
    ctoken = component_token(fake)  # issuing is when old tokens are forgotten
    assert api(fake, old) == 42001
    fake.advance(1)
    new = refresh(fake, ctoken, AUTHZ, refresh_token)["authorizer_access_token"]
    assert api(fake, old) == 40014
    assert fake.token_status(old) == "unknown"
    assert old not in fake.issued_tokens
    assert api(fake, new) == 0
    with pytest.raises(ValueError, match="forget_tokens_after"):
        FakeWeChat(forget_tokens_after=-1)


def test_a_100k_fleet_is_cheap(fake: FakeWeChat) -> None:
    """100,000 authorizers are added at once; a refresh and a list page stay O(1) in the
    fleet's size (no code is issued, no token until refreshed)."""
    appids = [f"wxf{i:015d}" for i in range(100_000)]
    tokens = fake.add_authorizers(COMP, appids)
    assert len(tokens) == 100_000
    assert len(set(tokens.values())) == 100_000
    assert fake.issued_tokens == []
    ctoken = component_token(fake)
    last = appids[-1]
    assert "authorizer_access_token" in refresh(fake, ctoken, last, tokens[last])
    body = {"component_appid": COMP, "offset": 99_900, "count": 500}
    page = post(fake, AUTHORIZER_LIST_PATH, body, component_access_token=ctoken)
    assert page["total_count"] == 100_000
    assert len(page["list"]) == 100


def test_secrets_stay_out_of_reprs(fake: FakeWeChat) -> None:
    """The component secret, push token, AES key and refresh tokens are never shown."""
    refresh_token = fake.add_authorizers(COMP, [AUTHZ])[AUTHZ]
    component = fake._components[COMP]
    shown = repr(fake) + repr(component) + repr(component.authorizations[AUTHZ])
    for secret in (SECRET, TOKEN, KEY, refresh_token):
        assert secret not in shown
    assert COMP in repr(fake)


def test_add_component_validates(fake: FakeWeChat) -> None:
    """Bad appids, secrets, tokens and keys, and duplicates, are refused."""
    with pytest.raises(ValueError, match="already registered"):
        fake.add_component(COMP, SECRET, token=TOKEN, encoding_aes_key=KEY)
    with pytest.raises(ValueError, match="already registered"):
        fake.add_component(APPID, SECRET, token=TOKEN, encoding_aes_key=KEY)
    with pytest.raises(ValueError, match="already registered"):
        fake.add_app(COMP, "x")
    with pytest.raises(ValueError, match="43 letters"):
        fake.add_component("wxc2", SECRET, token=TOKEN, encoding_aes_key=KEY[:-1])
    with pytest.raises(ValueError, match="token"):
        fake.add_component("wxc2", SECRET, token="", encoding_aes_key=KEY)
    with pytest.raises(ValueError, match="component_appid"):
        fake.add_component("wx c<2>", SECRET, token=TOKEN, encoding_aes_key=KEY)
    with pytest.raises(ValueError, match="no component"):
        fake.new_verify_ticket("wxnope")
    with pytest.raises(ValueError, match="authorizer_appid"):
        fake.add_authorizers(COMP, ["ok", "not ok"])
    assert fake.authorizer_appids(COMP) == []  # nothing half-done


# -- pushes ------------------------------------------------------------------------------------


def test_verify_ticket_push_is_what_wechat_sends(fake: FakeWeChat) -> None:
    """Query signature/timestamp/nonce/encrypt_type/msg_signature, the AppId+Encrypt
    envelope, and the inner XML decrypted with MessageCrypto."""
    query, body = fake.verify_ticket_push(COMP)
    assert list(query) == ["signature", "timestamp", "nonce", "encrypt_type", "msg_signature"]
    assert query["encrypt_type"] == "aes"
    assert query["timestamp"] == str(int(START))
    plain = "".join(sorted([TOKEN, query["timestamp"], query["nonce"]]))
    assert query["signature"] == hashlib.sha1(plain.encode()).hexdigest()  # noqa: S324
    assert body.startswith(
        b"<xml><AppId><![CDATA[" + COMP.encode() + b"]]></AppId><Encrypt><![CDATA["
    )
    crypto = MessageCrypto(TOKEN, KEY, COMP)
    fields = crypto.decrypt_push(query, body)
    ticket = fake.latest_verify_ticket(COMP)
    assert fields == {
        "AppId": COMP,
        "CreateTime": str(int(START)),
        "InfoType": "component_verify_ticket",
        "ComponentVerifyTicket": ticket,
    }
    inner = crypto.decrypt_message(body, query["msg_signature"], query["timestamp"], query["nonce"])
    assert inner == (
        f"<xml><AppId>{COMP}</AppId><CreateTime>{int(START)}</CreateTime>"
        "<InfoType>component_verify_ticket</InfoType>"
        f"<ComponentVerifyTicket>{ticket}</ComponentVerifyTicket></xml>"
    )
    assert "component_access_token" in fetch_component_token(fake, ticket)


def test_verify_ticket_push_with_a_given_ticket_and_time(fake: FakeWeChat) -> None:
    """``ticket=`` pushes that text (not registered: 61006); ``create_time=`` sets
    CreateTime; the text is XML-escaped."""
    query, body = fake.verify_ticket_push(COMP, ticket="ticket@@@<forged&>", create_time=123)
    fields = MessageCrypto(TOKEN, KEY, COMP).decrypt_push(query, body)
    assert fields["ComponentVerifyTicket"] == "ticket@@@<forged&>"
    assert fields["CreateTime"] == "123"
    assert fake.latest_verify_ticket(COMP) is None
    assert errcode(fetch_component_token(fake, "ticket@@@<forged&>")) == 61006


def test_authorization_push_fields(fake: FakeWeChat) -> None:
    """authorized / updateauthorized carry the code, its expiry and a PreAuthCode;
    unauthorized only the AuthorizerAppid."""
    crypto = MessageCrypto(TOKEN, KEY, COMP)
    fields = crypto.decrypt_push(*fake.authorization_push(COMP, AUTHZ))
    assert list(fields) == [
        "AppId",
        "CreateTime",
        "InfoType",
        "AuthorizerAppid",
        "AuthorizationCode",
        "AuthorizationCodeExpiredTime",
        "PreAuthCode",
    ]
    assert fields["InfoType"] == "authorized"
    assert fields["AuthorizationCodeExpiredTime"] == str(int(START) + 600)
    assert fields["PreAuthCode"].startswith("preauthcode@@@")
    ctoken = component_token(fake)
    info = query_auth(fake, ctoken, fields["AuthorizationCode"])["authorization_info"]
    update = crypto.decrypt_push(*fake.authorization_push(COMP, AUTHZ, "updateauthorized"))
    assert update["InfoType"] == "updateauthorized"
    assert errcode(refresh(fake, ctoken, AUTHZ, info["authorizer_refresh_token"])) == 61023
    gone = crypto.decrypt_push(*fake.authorization_push(COMP, AUTHZ, "unauthorized"))
    assert gone == {
        "AppId": COMP,
        "CreateTime": str(int(START)),
        "InfoType": "unauthorized",
        "AuthorizerAppid": AUTHZ,
    }
    with pytest.raises(ValueError, match="does not authorize"):
        fake.authorization_push(COMP, AUTHZ, "updateauthorized")
    with pytest.raises(ValueError, match="info_type"):
        fake.authorization_push(COMP, AUTHZ, "revoked")  # type: ignore[arg-type]


class _Receiver:
    """A tiny real push handler on loopback: verifies and decrypts with MessageCrypto,
    keeps the fields, answers ``success`` (or the status it is told)."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.pushes: list[dict[str, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                query = dict(parse_qsl(urlsplit(self.path).query))
                crypto = MessageCrypto(TOKEN, KEY, COMP)
                receiver.pushes.append(crypto.decrypt_push(query, body))
                answer = b"success" if receiver.status == 200 else b"the secret body"
                self.send_response(receiver.status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/wechat/component?x=1"

    def __enter__(self) -> _Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_push_verify_ticket_posts_a_real_push_to_a_loopback_handler(fake: FakeWeChat) -> None:
    """The handler decrypts the POSTed push; its ticket buys a component token over
    ``fake.serve()``; a handler answering 500 raises PushDeliveryError naming only the status."""
    with _Receiver() as receiver, fake.serve() as url:
        ticket = fake.push_verify_ticket(receiver.url)
        (push,) = receiver.pushes
        assert push["ComponentVerifyTicket"] == ticket == fake.latest_verify_ticket(COMP)
        body = {
            "component_appid": COMP,
            "component_appsecret": SECRET,
            "component_verify_ticket": push["ComponentVerifyTicket"],
        }
        answer = requests.post(url + COMPONENT_TOKEN_PATH, json=body, timeout=5).json()
        assert answer["expires_in"] == 7200
        code = fake.push_authorization(receiver.url, COMP, AUTHZ)
        assert receiver.pushes[-1]["AuthorizationCode"] == code
        assert fake.push_authorization(receiver.url, COMP, AUTHZ, "unauthorized") is None
        receiver.status = 500
        with pytest.raises(PushDeliveryError, match="HTTP 500") as failed:
            fake.push_verify_ticket(receiver.url, COMP)
        assert failed.value.status == 500
        assert "secret body" not in str(failed.value)
        assert len(receiver.pushes) == 4


def test_pushes_go_to_loopback_only(fake: FakeWeChat) -> None:
    """A non-loopback or non-HTTP URL is refused before anything is sent or issued; an
    unreachable handler raises PushDeliveryError."""
    for url in ("https://example.com/push", "http://10.0.0.1/push", "ftp://127.0.0.1/x"):
        with pytest.raises(ValueError, match=r"loopback|http"):
            fake.push_verify_ticket(url, COMP)
    assert fake.latest_verify_ticket(COMP) is None
    with _Receiver() as receiver:
        port = receiver.server.server_address[1]
    with pytest.raises(PushDeliveryError, match="not delivered"):
        fake.push_verify_ticket(f"http://127.0.0.1:{port}/gone")
    fake.add_component("wxcomponent0000002", "s2", token=TOKEN, encoding_aes_key=KEY)
    with pytest.raises(ValueError, match="give component_appid"):
        fake.push_verify_ticket(f"http://127.0.0.1:{port}/gone")


_WITHOUT_CRYPTOGRAPHY = """
import sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "cryptography":
            raise ImportError("No module named 'cryptography'")

sys.meta_path.insert(0, Block())
from wxauth.testing import FakeWeChat

fake = FakeWeChat()
fake.add_component("wxc", "s", token="t", encoding_aes_key="a" * 43)
try:
    fake.verify_ticket_push("wxc")
except ImportError as exc:
    print(exc)
print(fake.latest_verify_ticket("wxc"))
"""


def test_the_emulator_imports_without_cryptography() -> None:
    """Only building a push needs cryptography; without it the push names the extra and
    no ticket was issued."""
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_CRYPTOGRAPHY],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.splitlines() == [
        "the emulator's Open Platform pushes are encrypted with cryptography: "
        "pip install 'wxauth[openplatform]'",
        "None",
    ]


# -- the front ends and WxAuth -------------------------------------------------------------------


@pytest.fixture(params=["intercept", "serve"])
def http(request: pytest.FixtureRequest, fake: FakeWeChat) -> Iterator[Callable[..., Any]]:
    """``http(path, body, **query)``: a POST through one front end; its JSON answer."""
    if request.param == "intercept":
        with fake.intercept():
            yield lambda path, body, **query: requests.post(
                "https://api.weixin.qq.com" + path, params=query, json=body, timeout=5
            ).json()
    else:
        with fake.serve() as url:
            yield lambda path, body, **query: requests.post(
                url + path, params=query, json=body, timeout=5
            ).json()


def test_the_whole_flow_through_both_front_ends(fake: FakeWeChat, http: Callable[..., Any]) -> None:
    """ticket → component token → code → authorizer token → refresh → list → API call."""
    ticket = fake.new_verify_ticket(COMP)
    ctoken = http(
        COMPONENT_TOKEN_PATH,
        {"component_appid": COMP, "component_appsecret": SECRET, "component_verify_ticket": ticket},
    )["component_access_token"]
    code = fake.authorize(COMP, AUTHZ)
    info = http(
        QUERY_AUTH_PATH,
        {"component_appid": COMP, "authorization_code": code},
        component_access_token=ctoken,
    )["authorization_info"]
    again = http(
        AUTHORIZER_TOKEN_PATH,
        {
            "component_appid": COMP,
            "authorizer_appid": AUTHZ,
            "authorizer_refresh_token": info["authorizer_refresh_token"],
        },
        component_access_token=ctoken,
    )
    page = http(
        AUTHORIZER_LIST_PATH,
        {"component_appid": COMP, "offset": 0, "count": 10},
        component_access_token=ctoken,
    )
    assert page["list"][0]["refresh_token"] == info["authorizer_refresh_token"]
    assert http(API, {}, access_token=again["authorizer_access_token"])["errcode"] == 0
    fake.retire(again["authorizer_access_token"])
    assert http(API, {}, access_token=again["authorizer_access_token"])["errcode"] == 40001
    assert [c.kind for c in fake.calls] == [
        "component_token",
        "component_api",
        "authorizer_token",
        "component_api",
        "api",
        "api",
    ]


def test_wxauth_on_an_authorizer_token_heals_a_retired_one(fake: FakeWeChat) -> None:
    """WxAuth with a manager whose source refreshes an authorizer token: a token retired
    by a re-authorization is replaced and the call retried, once."""
    refresh_token = fake.add_authorizers(COMP, [AUTHZ])[AUTHZ]
    url = "https://api.weixin.qq.com"

    def fetch() -> tuple[str, float]:
        ctoken = fake.component_token_of(COMP) or component_token(fake)
        body = {
            "component_appid": COMP,
            "authorizer_appid": AUTHZ,
            "authorizer_refresh_token": fake.refresh_token_of(AUTHZ) or refresh_token,
        }
        answer = requests.post(
            url + AUTHORIZER_TOKEN_PATH,
            params={"component_access_token": ctoken},
            json=body,
            timeout=5,
        ).json()
        return answer["authorizer_access_token"], answer["expires_in"]

    manager = wxauth.TokenManager(AUTHZ, source=fetch, clock=fake.clock, store=wxauth.MemoryStore())
    auth = wxauth.WxAuth(manager=manager)
    with fake.intercept():
        assert requests.post(url + API, json={}, auth=auth, timeout=5).json()["errcode"] == 0
        fake.authorize(COMP, AUTHZ)  # re-authorized: the live authorizer token retires now
        answer = requests.post(url + API, json={}, auth=auth, timeout=5)
    assert answer.json()["errcode"] == 0
    assert len(answer.history) == 1
    assert fake.token_fetches_of(AUTHZ) == 2
    assert fake.errcodes(kind="api") == {0: 2, 40001: 1}


def test_the_emulator_log_masks_component_tokens() -> None:
    """The emulator's request log masks ``component_access_token`` like the other
    credentials in a query."""
    from wxauth.testing._server import redact_target

    line = "POST /cgi-bin/component/api_authorizer_token?component_access_token=CT-secret HTTP/1.1"
    assert "CT-secret" not in redact_target(line)
    assert "component_access_token=***" in redact_target(line)
