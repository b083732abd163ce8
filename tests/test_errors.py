"""The error tree: how token-endpoint answers map onto exceptions, ``raise_for_errcode``,
the rid and IP parsing, and argument validation."""

from __future__ import annotations

import json
import logging
import pickle
import re
from collections.abc import Iterator

import pytest
import requests
import responses

import wxauth
from wxauth.testing import FakeWeChat

APPID = "wxerrors000000001"
SECRET = "errors-secret-5f2c9a1e7b3d4c6a"
TOKEN_URL = "https://api.weixin.qq.com/cgi-bin/token"
API_URL = "https://api.weixin.qq.com/cgi-bin/menu/get"
RID = "6792f178-0c5b09a3-12eeecac"
GOOD = {"access_token": "ACCESS_TOKEN_errors_" + "t" * 100, "expires_in": 7200}


def manager(**options: object) -> wxauth.TokenManager:
    options.setdefault("backoff", 0)
    return wxauth.TokenManager(APPID, SECRET, **options)  # type: ignore[arg-type]


def shown_chain(exc: BaseException | None) -> Iterator[BaseException]:
    """The exception and the causes a traceback shows (``raise ... from None`` hides a
    context; ``test_secrets`` checks hidden contexts too)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)


def assert_no_foreign_exception_in_chain(exc: BaseException) -> None:
    """A wxauth error never shows a JSONDecodeError/KeyError/requests exception as its
    cause: the user sees one clear message."""
    for link in shown_chain(exc):
        assert isinstance(link, wxauth.WxAuthError), f"{type(link).__name__} in the chain"


# -- the tree --------------------------------------------------------------------------


def test_exception_tree() -> None:
    """Every exception derives from WxAuthError; the two WeChat verdicts derive from
    WeChatAPIError; transport failures do not."""
    assert issubclass(wxauth.WeChatAPIError, wxauth.WxAuthError)
    assert issubclass(wxauth.CredentialError, wxauth.WeChatAPIError)
    assert issubclass(wxauth.QuotaError, wxauth.WeChatAPIError)
    assert issubclass(wxauth.TokenFetchError, wxauth.WxAuthError)
    assert not issubclass(wxauth.TokenFetchError, wxauth.WeChatAPIError)
    assert not issubclass(wxauth.CredentialError, wxauth.QuotaError)
    assert issubclass(wxauth.WxAuthError, Exception)


def test_expired_errcodes_constant() -> None:
    """EXPIRED_ERRCODES is exactly the three "token is bad" codes, immutable."""
    assert frozenset({40001, 40014, 42001}) == wxauth.EXPIRED_ERRCODES
    assert isinstance(wxauth.EXPIRED_ERRCODES, frozenset)


def test_wechat_api_error_attributes_and_str() -> None:
    """WeChatAPIError(errcode, errmsg) keeps both, parses the rid and shows them in str."""
    exc = wxauth.WeChatAPIError(40001, f"invalid credential rid: {RID}")
    assert exc.errcode == 40001
    assert exc.errmsg == f"invalid credential rid: {RID}"
    assert exc.rid == RID
    assert "40001" in str(exc)
    assert "invalid credential" in str(exc)
    assert "40001" in repr(exc)


@pytest.mark.parametrize(
    "exc",
    [
        wxauth.WeChatAPIError(40001, f"invalid credential rid: {RID}"),
        wxauth.CredentialError(40164, "invalid ip 1.2.3.4, not in whitelist"),
        wxauth.QuotaError(45009, "reach max api daily quota limit"),
        wxauth.TokenFetchError("/cgi-bin/token answered errcode -1", errcode=-1),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_errors_survive_pickling(exc: wxauth.WxAuthError) -> None:
    """Errors cross process boundaries (multiprocessing, futures) with their fields."""
    clone = pickle.loads(pickle.dumps(exc))  # noqa: S301 - our own bytes
    assert type(clone) is type(exc)
    assert str(clone) == str(exc)
    assert getattr(clone, "errcode", None) == getattr(exc, "errcode", None)
    assert getattr(clone, "rid", None) == getattr(exc, "rid", None)


# -- rid -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("errmsg", "rid"),
    [
        (f"invalid credential, access_token is invalid or not latest rid: {RID}", RID),
        (f"invalid credential, access_token is invalid or not latest, rid: {RID}", RID),
        (
            "invalid credential, access_token is invalid or not latest, could get "
            "access_token by getStableAccessToken, more details at "
            f"https://mmbizurl.cn/s/JtxxFh33r rid: {RID}",
            RID,
        ),
        (
            "invalid credential, access_token is invalid or not latest hint: [w1QcUA02648876!]",
            "w1QcUA02648876!",
        ),
        (
            "invalid credential, hint: [1704941403120931704370802], from ip: 1.2.3.4, "
            "more info at https://open.work.weixin.qq.com/devtool/query?e=40014",
            "1704941403120931704370802",
        ),
        ("access_token expired", None),
        ("", None),
    ],
)
def test_rid_is_parsed_from_the_errmsg_suffix(errmsg: str, rid: str | None) -> None:
    """``.rid`` comes from `` rid: ...``, ``, rid: ...`` or the older `` hint: [...]``."""
    assert wxauth.WeChatAPIError(40001, errmsg).rid == rid


# -- the token endpoint's errcodes -------------------------------------------------------

CREDENTIAL_ERRCODES = [40001, 40002, 40013, 40125, 41002, 41004, 40164, 40243, 89503, 89506, 89507]


@pytest.mark.parametrize("errcode", CREDENTIAL_ERRCODES)
def test_credential_errcodes_raise_credential_error_without_retry(
    rsps: responses.RequestsMock, errcode: int
) -> None:
    """Each credential/IP/account refusal raises CredentialError after exactly one call."""
    errmsg = f"refused by the token endpoint rid: {RID}"
    rsps.get(TOKEN_URL, json={"errcode": errcode, "errmsg": errmsg})
    with pytest.raises(wxauth.CredentialError) as info:
        manager().get_token()
    assert info.value.errcode == errcode
    assert info.value.errmsg == errmsg
    assert info.value.rid == RID
    assert len(rsps.calls) == 1
    assert_no_foreign_exception_in_chain(info.value)


@pytest.mark.parametrize("errcode", [45009, 45011])
def test_quota_errcodes_raise_quota_error_without_retry(
    rsps: responses.RequestsMock, errcode: int
) -> None:
    """45009 (daily) and 45011 (minute) raise QuotaError, not CredentialError, once."""
    rsps.get(TOKEN_URL, json={"errcode": errcode, "errmsg": "quota"})
    with pytest.raises(wxauth.QuotaError) as info:
        manager().get_token()
    assert not isinstance(info.value, wxauth.CredentialError)
    assert info.value.errcode == errcode
    assert len(rsps.calls) == 1


def test_unknown_token_endpoint_errcode_is_a_plain_wechat_api_error(
    rsps: responses.RequestsMock,
) -> None:
    """An errcode outside the table (50002 user limited) is a WeChatAPIError, not retried."""
    rsps.get(TOKEN_URL, json={"errcode": 50002, "errmsg": "user limited"})
    with pytest.raises(wxauth.WeChatAPIError) as info:
        manager().get_token()
    assert type(info.value) is wxauth.WeChatAPIError
    assert len(rsps.calls) == 1


def test_error_body_served_as_text_plain_is_still_understood(
    rsps: responses.RequestsMock,
) -> None:
    """WeChat sometimes labels its JSON text/plain; the errcode still decides."""
    rsps.get(
        TOKEN_URL,
        body=json.dumps({"errcode": 40013, "errmsg": "invalid appid"}),
        content_type="text/plain",
    )
    with pytest.raises(wxauth.CredentialError) as info:
        manager().get_token()
    assert info.value.errcode == 40013


@pytest.mark.parametrize("busy", [-1, -1000])
def test_system_busy_is_retried_then_succeeds(rsps: responses.RequestsMock, busy: int) -> None:
    """-1 system busy is retried with backoff; a later success is returned."""
    rsps.get(TOKEN_URL, json={"errcode": busy, "errmsg": "system error"})
    rsps.get(TOKEN_URL, json=GOOD)
    assert manager().get_token() == GOOD["access_token"]
    assert len(rsps.calls) == 2


def test_system_busy_that_outlasts_the_retries_is_a_token_fetch_error(
    rsps: responses.RequestsMock,
) -> None:
    """-1 on every attempt: 1 + retries calls, then TokenFetchError carrying errcode -1."""
    rsps.get(TOKEN_URL, json={"errcode": -1, "errmsg": "system error"})
    with pytest.raises(wxauth.TokenFetchError) as info:
        manager(retries=2).get_token()
    assert len(rsps.calls) == 3
    assert info.value.errcode == -1
    assert "-1" in str(info.value)
    assert_no_foreign_exception_in_chain(info.value)


def test_retries_zero_means_one_attempt(rsps: responses.RequestsMock) -> None:
    """retries=0 turns the bounded retry off."""
    rsps.get(TOKEN_URL, json={"errcode": -1, "errmsg": "system error"})
    with pytest.raises(wxauth.TokenFetchError):
        manager(retries=0).get_token()
    assert len(rsps.calls) == 1


def test_backoff_doubles_between_retries(
    rsps: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    """The delays between retries start at ``backoff`` and double; each retry is a
    WARNING on the ``wxauth`` logger."""
    caplog.set_level(logging.WARNING, logger="wxauth")
    rsps.get(TOKEN_URL, json={"errcode": -1, "errmsg": "system error"})
    with pytest.raises(wxauth.TokenFetchError):
        manager(retries=3, backoff=0.01).get_token()
    delays = [
        float(m.group(1))
        for r in caplog.records
        if r.name == "wxauth" and r.levelno == logging.WARNING
        for m in [re.search(r"retrying in ([0-9.]+)s", r.getMessage())]
        if m
    ]
    assert delays == [0.01, 0.02, 0.04]


@pytest.mark.parametrize(
    ("status", "body", "content_type", "phrase"),
    [
        (200, "<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html", "JSON"),
        (200, "system busy, try later", "text/plain", "JSON"),
        (200, "", "application/json", "JSON"),
        (200, "[1, 2, 3]", "application/json", "JSON"),
        (404, "<html>not found</html>", "text/html", "404"),
        (200, json.dumps({"expires_in": 7200}), "application/json", "access_token"),
        (
            200,
            json.dumps({"access_token": "", "expires_in": 7200}),
            "application/json",
            "access_token",
        ),
        (200, json.dumps({"access_token": "T" * 40}), "application/json", "expires_in"),
        (
            200,
            json.dumps({"access_token": "T" * 40, "expires_in": "soon"}),
            "application/json",
            "expires_in",
        ),
        (200, json.dumps({"errcode": "oops", "errmsg": "?"}), "application/json", "errcode"),
    ],
    ids=[
        "html",
        "text",
        "empty",
        "json-array",
        "http-404",
        "no-access_token",
        "empty-access_token",
        "no-expires_in",
        "bad-expires_in",
        "bad-errcode",
    ],
)
def test_unexpected_bodies_are_token_fetch_errors_with_a_clear_message(
    rsps: responses.RequestsMock, status: int, body: str, content_type: str, phrase: str
) -> None:
    """Bodies that are not the expected JSON raise TokenFetchError naming the problem,
    never a bare JSONDecodeError or KeyError (and none chained either)."""
    rsps.get(TOKEN_URL, body=body, status=status, content_type=content_type)
    with pytest.raises(wxauth.TokenFetchError) as info:
        manager().get_token()
    message = str(info.value)
    assert phrase in message
    assert "/cgi-bin/token" in message
    assert_no_foreign_exception_in_chain(info.value)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_http_5xx_is_retried_then_a_token_fetch_error(
    rsps: responses.RequestsMock, status: int
) -> None:
    """An HTTP 5xx is retried, and when it persists raises TokenFetchError naming it."""
    rsps.get(
        TOKEN_URL, body="<html>gateway trouble</html>", status=status, content_type="text/html"
    )
    with pytest.raises(wxauth.TokenFetchError) as info:
        manager(retries=2).get_token()
    assert f"HTTP {status}" in str(info.value)
    assert len(rsps.calls) == 3
    assert_no_foreign_exception_in_chain(info.value)


def test_http_5xx_then_success(rsps: responses.RequestsMock) -> None:
    """A transient 502 heals on the retry."""
    rsps.get(TOKEN_URL, body="bad gateway", status=502)
    rsps.get(TOKEN_URL, json=GOOD)
    assert manager().get_token() == GOOD["access_token"]
    assert len(rsps.calls) == 2


def test_connection_error_is_retried_then_a_token_fetch_error(
    rsps: responses.RequestsMock,
) -> None:
    """requests.ConnectionError becomes TokenFetchError ("could not be reached"), not chained."""
    rsps.get(TOKEN_URL, body=requests.ConnectionError("connection refused"))
    with pytest.raises(wxauth.TokenFetchError) as info:
        manager(retries=1).get_token()
    assert "could not be reached" in str(info.value)
    assert len(rsps.calls) == 2
    assert_no_foreign_exception_in_chain(info.value)


def test_timeout_is_a_token_fetch_error(rsps: responses.RequestsMock) -> None:
    """A timeout becomes TokenFetchError saying so; it is not retried (the caller has
    already waited ``timeout`` seconds)."""
    rsps.get(TOKEN_URL, body=requests.ReadTimeout("read timed out"))
    with pytest.raises(wxauth.TokenFetchError) as info:
        manager(timeout=3.0).get_token()
    assert "timed out" in str(info.value)
    assert len(rsps.calls) == 1
    assert_no_foreign_exception_in_chain(info.value)


# -- 40164: which IP to whitelist ----------------------------------------------------------


@pytest.mark.parametrize(
    ("errcode", "errmsg", "ip"),
    [
        (40164, f"invalid ip 1.2.3.4 ipv6 ::ffff:1.2.3.4, not in whitelist rid: {RID}", "1.2.3.4"),
        (40164, "invalid ip 61.135.17.2, not in whitelist hint: [xZ0DeA0712ge11]", "61.135.17.2"),
        (40164, "invalid ip 240e:3b7:3272:d8d0::1, not in whitelist", "240e:3b7:3272:d8d0::1"),
        (
            60020,
            "not allow to access from your ip, hint: [1704941403], from ip: 9.8.7.6, "
            "more info at https://open.work.weixin.qq.com/devtool/query?e=60020",
            "9.8.7.6",
        ),
    ],
)
def test_ip_whitelist_error_names_the_ip(
    rsps: responses.RequestsMock, errcode: int, errmsg: str, ip: str
) -> None:
    """40164 (and WeCom's 60020) is a CredentialError whose ``ip`` is the address to
    whitelist, and whose message says so beyond WeChat's own errmsg."""
    rsps.get(TOKEN_URL, json={"errcode": errcode, "errmsg": errmsg})
    with pytest.raises(wxauth.CredentialError) as info:
        manager().get_token()
    exc = info.value
    assert exc.ip == ip
    added = str(exc).split(errmsg, 1)[1]
    assert ip in added
    assert "whitelist" in added


def test_credential_error_without_an_ip() -> None:
    """Other credential errors have ``ip`` None and no whitelist advice."""
    exc = wxauth.CredentialError(40125, "invalid appsecret")
    assert exc.ip is None
    assert "whitelist" not in str(exc)


def test_wecom_wrong_secret_does_not_blame_the_ip_whitelist(fake_wechat: FakeWeChat) -> None:
    """WeCom answers a wrong corpsecret with 40001: a CredentialError with no ``ip`` and
    no whitelist advice, though its errmsg names the caller's IP as WeCom's 60020 does."""
    fake_wechat.add_wecom_app("ww1", "corp-secret")
    with fake_wechat.serve() as url:
        manager = wxauth.TokenManager("ww1", "wrong-corp-secret", source="wecom", api_base=url)
        with pytest.raises(wxauth.CredentialError) as caught:
            manager.get_token()
    assert caught.value.errcode == 40001
    assert caught.value.ip is None
    assert "whitelist" not in str(caught.value)


# -- raise_for_errcode -------------------------------------------------------------------------


def test_raise_for_errcode_returns_the_dict_on_success() -> None:
    """errcode 0, or no errcode at all, is success: the decoded dict comes back."""
    ok = {"errcode": 0, "errmsg": "ok", "menu": {"button": []}}
    assert wxauth.raise_for_errcode(ok) == ok
    assert wxauth.raise_for_errcode({"menu": {}}) == {"menu": {}}


@pytest.mark.parametrize("errcode", [40001, 40014, 42001, 41001, 40013, 47001])
def test_raise_for_errcode_raises_wechat_api_error(errcode: int) -> None:
    """A non-zero errcode of an ordinary API raises a plain WeChatAPIError (40001 here
    is an expired token, not a credential problem)."""
    with pytest.raises(wxauth.WeChatAPIError) as info:
        wxauth.raise_for_errcode({"errcode": errcode, "errmsg": f"bad rid: {RID}"})
    assert type(info.value) is wxauth.WeChatAPIError
    assert info.value.errcode == errcode
    assert info.value.errmsg == f"bad rid: {RID}"
    assert info.value.rid == RID


@pytest.mark.parametrize("errcode", [45009, 45011])
def test_raise_for_errcode_quota_codes(errcode: int) -> None:
    """45009/45011 raise QuotaError."""
    with pytest.raises(wxauth.QuotaError):
        wxauth.raise_for_errcode({"errcode": errcode, "errmsg": "quota"})


def test_raise_for_errcode_accepts_a_numeric_string_errcode() -> None:
    """An errcode sent as a string is still read as a number."""
    with pytest.raises(wxauth.WeChatAPIError) as info:
        wxauth.raise_for_errcode({"errcode": "40014", "errmsg": "invalid access_token"})
    assert info.value.errcode == 40014


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_raise_for_errcode_on_a_response(rsps: responses.RequestsMock, content_type: str) -> None:
    """A requests.Response is decoded (JSON or text/plain) and judged the same way."""
    rsps.get(API_URL, body=json.dumps({"errcode": 0, "menu": {}}), content_type=content_type)
    rsps.get(
        API_URL,
        body=json.dumps({"errcode": 42001, "errmsg": "access_token expired"}),
        content_type=content_type,
    )
    assert wxauth.raise_for_errcode(requests.get(API_URL)) == {"errcode": 0, "menu": {}}
    with pytest.raises(wxauth.WeChatAPIError) as info:
        wxauth.raise_for_errcode(requests.get(API_URL))
    assert info.value.errcode == 42001


@pytest.mark.parametrize("body", ["<html>oops</html>", "[1, 2]", ""])
def test_raise_for_errcode_on_a_non_json_response(rsps: responses.RequestsMock, body: str) -> None:
    """A body that is not a JSON object raises a WxAuthError, not a JSONDecodeError."""
    rsps.get(API_URL, body=body, content_type="text/html")
    with pytest.raises(wxauth.WxAuthError) as info:
        wxauth.raise_for_errcode(requests.get(API_URL))
    assert not isinstance(info.value, ValueError)
    assert_no_foreign_exception_in_chain(info.value)


@pytest.mark.parametrize("errcode", ["abc", [40001], {"code": 1}])
def test_raise_for_errcode_with_a_non_numeric_errcode(errcode: object) -> None:
    """An errcode that is not a number is a WxAuthError, not a ValueError/TypeError."""
    with pytest.raises(wxauth.WxAuthError) as info:
        wxauth.raise_for_errcode({"errcode": errcode})
    assert not isinstance(info.value, (ValueError, TypeError))


def test_raise_for_errcode_rejects_other_types() -> None:
    """Anything but a mapping or a Response is a TypeError."""
    with pytest.raises(TypeError):
        wxauth.raise_for_errcode('{"errcode": 0}')  # type: ignore[arg-type]


# -- argument validation -------------------------------------------------------------------

BAD_CREDENTIALS = [
    ("", SECRET),
    ("   ", SECRET),
    (None, SECRET),
    (12345, SECRET),
    (APPID, ""),
    (APPID, None),
    (APPID, b"bytes-secret-value"),
    (APPID, 42),
]


@pytest.mark.parametrize(("appid", "secret"), BAD_CREDENTIALS)
def test_token_manager_rejects_bad_credentials(appid: object, secret: object) -> None:
    """Empty or non-str appid/secret: ValueError at construction, not at first use, and
    the message does not echo the value."""
    with pytest.raises(ValueError) as info:
        wxauth.TokenManager(appid, secret)  # type: ignore[arg-type]
    assert "bytes-secret-value" not in str(info.value)


@pytest.mark.parametrize(("appid", "secret"), BAD_CREDENTIALS)
def test_wxauth_rejects_bad_credentials(appid: object, secret: object) -> None:
    """WxAuth validates the same way."""
    with pytest.raises(ValueError):
        wxauth.WxAuth(appid, secret)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "options",
    [{"refresh_margin": -1}, {"timeout": 0}, {"timeout": -5}, {"retries": -1}, {"backoff": -0.5}],
)
def test_token_manager_rejects_bad_options(options: dict[str, float]) -> None:
    """Nonsensical numbers are refused at construction."""
    with pytest.raises(ValueError):
        wxauth.TokenManager(APPID, SECRET, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(("appid", "secret"), [("", SECRET), (APPID, ""), (APPID, None)])
def test_classic_token_source_rejects_bad_credentials(appid: object, secret: object) -> None:
    """The public ClassicTokenSource validates its credentials like TokenManager."""
    with pytest.raises(ValueError):
        wxauth.ClassicTokenSource(appid, secret)  # type: ignore[arg-type]
