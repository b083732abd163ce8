"""Secrets stay secret: the appsecret and whole access tokens never reach log output
(urllib3's DEBUG request lines included), exception messages, tracebacks with their
causes and contexts, or any repr/str."""

from __future__ import annotations

import hashlib
import io
import logging
import socket
import traceback
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
import requests
import responses

import wxauth
from wxauth._redact import RedactingFilter, redact_token, redact_url_text
from wxauth.sources import FetchContext
from wxauth.testing import FakeWeChat

APPID = "wxsecrets00000001"
SECRET = "9f86d081884c7d659a2feaa0c55ad015"  # shaped like a real 32-hex AppSecret
TOKEN_URL = "https://api.weixin.qq.com/cgi-bin/token"
SEND_PATH = "/cgi-bin/message/custom/send"
RID = "6792f178-0c5b09a3-12eeecac"
WINDOW = 12  # no run of this many characters of a secret or a token may show
# Real tokens look random: so must this one, or a shared prefix would hide a leak.
_DIGEST = hashlib.sha256(b"token-7").hexdigest()
TOKEN = f"07_{_DIGEST}{_DIGEST[::-1]}".upper()


def leaks(text: str, secrets: Iterable[str]) -> list[str]:
    """The secrets of which ``text`` shows ``WINDOW`` or more consecutive characters."""
    found = []
    for secret in secrets:
        windows = {secret[i : i + WINDOW] for i in range(len(secret) - WINDOW + 1)}
        if any(window in text for window in windows):
            found.append(secret)
    return found


def full_chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and every cause and context, shown or suppressed."""
    todo, seen = [exc], set()
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)


def everything_said_by(exc: BaseException) -> str:
    """What a user, a log handler or an error tracker could show of ``exc``."""
    parts = ["".join(traceback.format_exception(type(exc), exc, exc.__traceback__))]
    for link in full_chain(exc):
        parts += [str(link), repr(link), repr(link.args)]
    return "\n".join(parts)


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    """Every record at DEBUG, formatted by a real handler on the root logger as well."""
    caplog.set_level(logging.DEBUG)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


def log_text(caplog: pytest.LogCaptureFixture, stream: io.StringIO) -> str:
    records = "\n".join(f"{r.getMessage()} | {r.msg!s} | {r.args!r}" for r in caplog.records)
    return "\n".join([caplog.text, stream.getvalue(), records])


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- logs ------------------------------------------------------------------------------------------


def test_no_secret_or_token_in_debug_logs_of_a_real_round_trip(
    fake_wechat: FakeWeChat, caplog: pytest.LogCaptureFixture, all_logs: io.StringIO
) -> None:
    """Fetch, 40001, refresh, re-send and a decorated call over real HTTP, everything
    logged at DEBUG: urllib3's request lines are there, with the secret masked and each
    token shown as its first characters and its length."""
    fake_wechat.add_app(APPID, SECRET)
    with fake_wechat.serve() as base:
        tokens = wxauth.TokenManager(APPID, SECRET, api_base=base, backoff=0)
        session = requests.Session()
        session.auth = wxauth.WxAuth(manager=tokens)
        tokens.get_token()
        fake_wechat.retire_all()  # WeChat retires token 1: the next call answers 40001
        response = session.post(base + SEND_PATH, json={"touser": "OPENID"})
        assert response.json()["errcode"] == 0
        assert len(response.history) == 1

        @wxauth.with_access_token(tokens)
        def get_menu(access_token: str) -> dict[str, Any]:
            url = base + "/cgi-bin/get_current_selfmenu_info"
            return requests.get(url, params={"access_token": access_token}).json()  # type: ignore[no-any-return]

        assert get_menu()["errcode"] == 0
    issued = fake_wechat.issued_tokens
    assert len(issued) == 2

    text = log_text(caplog, all_logs)
    url_lines = [r.getMessage() for r in caplog.records if r.name == "urllib3.connectionpool"]
    # not vacuous: the lines that would leak were really logged
    assert any("/cgi-bin/token" in line for line in url_lines), url_lines
    assert any(SEND_PATH in line for line in url_lines), url_lines
    assert "secret=***" in text
    for token in issued:
        assert f"access_token={redact_token(token)}" in text
    assert leaks(text, [SECRET, *issued]) == []
    # wxauth's own lines: INFO per fetch, WARNING for the retry
    ours = [r for r in caplog.records if r.name == "wxauth"]
    assert any(r.levelno == logging.INFO and "7200" in r.getMessage() for r in ours)
    assert any(r.levelno == logging.WARNING and SEND_PATH in r.getMessage() for r in ours)


def test_redacting_filter_is_on_urllib3_loggers() -> None:
    """Importing wxauth installs the filter where urllib3 logs URLs."""
    for name in ("urllib3.connectionpool", "urllib3.util.retry", "urllib3.poolmanager"):
        assert any(isinstance(f, RedactingFilter) for f in logging.getLogger(name).filters)
    wxauth._redact.install_log_redaction()  # idempotent
    filters = logging.getLogger("urllib3.connectionpool").filters
    assert sum(isinstance(f, RedactingFilter) for f in filters) == 1


def test_redacting_filter_formats_args_before_scrubbing(
    caplog: pytest.LogCaptureFixture, all_logs: io.StringIO
) -> None:
    """A record whose URL arrives in ``args`` is scrubbed, and its args cleared so no
    handler can format the raw values again."""
    caplog.set_level(logging.DEBUG)
    token = TOKEN
    logging.getLogger("urllib3.connectionpool").debug(
        '%s://%s:%s "%s %s %s" %s %s',
        "https",
        "api.weixin.qq.com",
        443,
        "GET",
        f"/cgi-bin/token?grant_type=client_credential&appid={APPID}&secret={SECRET}",
        "HTTP/1.1",
        200,
        None,
    )
    logging.getLogger("urllib3.util.retry").debug(
        "Incremented Retry for (url='%s'): %r", f"/cgi-bin/menu/get?access_token={token}", None
    )
    assert leaks(log_text(caplog, all_logs), [SECRET, token]) == []
    assert all(r.args is None for r in caplog.records if r.name.startswith("urllib3"))


def test_redacting_filter_lets_broken_records_through() -> None:
    """A record whose message cannot be formatted is left to logging's own error path."""
    record = logging.LogRecord(
        "urllib3.connectionpool", logging.DEBUG, __file__, 1, "%d", ("not a number",), None
    )
    assert RedactingFilter().filter(record) is True


@pytest.mark.parametrize(
    "text",
    [
        "GET /cgi-bin/token?grant_type=client_credential&appid=wx1&secret={secret}",
        "GET /cgi-bin/token?secret={secret}&appid=wx1",
        "GET /cgi-bin/gettoken?corpid=ww1&corpsecret={secret} HTTP/1.1",
        "url: /x?appsecret={secret}#frag",
        '{{"appid": "wx1", "secret": "{secret}", "force_refresh": false}}',
        "{{'grant_type': 'client_credential', 'secret': '{secret}'}}",
        "https://api.weixin.qq.com/cgi-bin/menu/get?access_token={token}&lang=en",
        '{{"access_token":"{token}","expires_in":7200}}',
        "(url='/cgi-bin/menu/get?access_token={token}')",
        "{{'access_token': '{token}', 'expires_in': 7200}}",
        "/cgi-bin/component/api_create_preauthcode?component_access_token={token} HTTP/1.1",
        "/cgi-bin/service/get_pre_auth_code?suite_access_token={token}",
        "/cgi-bin/message/send?authorizer_access_token={token}&lang=en",
        '{{"component_appid": "wx1", "component_appsecret": "{secret}"}}',
        '{{"suite_id": "ww1", "suite_secret": "{secret}", "suite_ticket": "t"}}',
        '{{"authorizer_refresh_token": "{token}"}}',
        "GET /x?ACCESS_TOKEN={token}",
    ],
)
def test_redact_url_text(text: str) -> None:
    """Query strings, JSON bodies and dict reprs lose their secrets and tokens, also
    under the prefixed names of WeCom and third-party platforms, and without being
    told the literal secret."""
    token = TOKEN
    raw = text.format(secret=SECRET, token=token)
    assert leaks(redact_url_text(raw), [SECRET, token]) == []
    assert leaks(redact_url_text(raw, SECRET), [SECRET, token]) == []


def test_redact_url_text_leaves_other_text_alone() -> None:
    """Names that merely contain the words, and ordinary parameters, are kept."""
    text = "GET /x?lang=en&openid=o1&x_access_token_type=bearer&secretary=bob HTTP/1.1"
    assert redact_url_text(text) == text


def test_redact_token_shows_prefix_and_length_only() -> None:
    """Long tokens keep 6 characters and their length; short ones only their length."""
    token = TOKEN
    assert redact_token(token) == f"{token[:6]}…(len={len(token)})"
    assert redact_token("short") == "…(len=5)"
    assert redact_token("") == "''"


# -- exceptions and tracebacks ---------------------------------------------------------------------


def test_a_short_secret_does_not_mangle_wechats_errmsg(fake_wechat: FakeWeChat) -> None:
    """Literal masking is for real-length secrets: "s" must not make "system" "***ystem"."""
    fake_wechat.add_app(APPID, "s")
    with fake_wechat.serve() as base:
        manager = wxauth.TokenManager(APPID, "s", api_base=base, retries=0)
        fake_wechat.fail_next(on="token", errcode=-1)
        with pytest.raises(wxauth.TokenFetchError) as caught:
            manager.get_token()
    assert "system" in str(caught.value)


def test_connection_error_traceback_holds_no_secret(
    caplog: pytest.LogCaptureFixture, all_logs: io.StringIO
) -> None:
    """requests.ConnectionError's message carries the full URL; the TokenFetchError the
    user sees, its traceback, its cause/context chain and the retry warnings do not."""
    tokens = wxauth.TokenManager(
        APPID, SECRET, api_base=f"http://127.0.0.1:{closed_port()}", retries=1, backoff=0
    )
    with pytest.raises(wxauth.TokenFetchError) as info:
        tokens.get_token()
    said = everything_said_by(info.value)
    assert "could not be reached" in said
    assert "/cgi-bin/token" in said
    assert leaks(said, [SECRET]) == []
    assert leaks(log_text(caplog, all_logs), [SECRET]) == []
    for link in full_chain(info.value):
        assert isinstance(link, wxauth.WxAuthError)


def test_connection_error_through_wxauth_and_the_decorator_holds_no_secret() -> None:
    """The same failure surfacing from session.get() and from a decorated call."""
    base = f"http://127.0.0.1:{closed_port()}"
    auth = wxauth.WxAuth(APPID, SECRET, api_base=base, retries=0)

    @wxauth.with_access_token(auth)
    def call(access_token: str) -> str:
        return access_token

    # The API call goes to the api_base's own origin: WxAuth adds a token (and so
    # fetches one) only for the origins of its api_base.
    for attempt in (lambda: requests.get(base + "/x", auth=auth), call):
        with pytest.raises(wxauth.TokenFetchError) as info:
            attempt()
        assert leaks(everything_said_by(info.value), [SECRET]) == []


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        (
            {"json": {"errcode": 40125, "errmsg": f"invalid appsecret {SECRET} rid: {RID}"}},
            wxauth.CredentialError,
        ),
        (
            {"json": {"errcode": 40001, "errmsg": f"invalid credential, secret={SECRET}"}},
            wxauth.CredentialError,
        ),
        (
            {"json": {"errcode": -1, "errmsg": f"system error for {SECRET}"}},
            wxauth.TokenFetchError,
        ),
        (
            {
                "body": "<html><h1>502 Bad Gateway</h1>GET /cgi-bin/token?grant_type="
                f"client_credential&appid={APPID}&secret={SECRET}</html>",
                "status": 502,
                "content_type": "text/html",
            },
            wxauth.TokenFetchError,
        ),
        (
            {
                "body": f"<html>proxy denied /cgi-bin/token?appid={APPID}&secret={SECRET}</html>",
                "content_type": "text/html",
            },
            wxauth.TokenFetchError,
        ),
        (
            {
                "body": requests.ConnectionError(
                    f"Max retries exceeded with url: /cgi-bin/token?grant_type=client_credential"
                    f"&appid={APPID}&secret={SECRET} (Caused by NewConnectionError)"
                )
            },
            wxauth.TokenFetchError,
        ),
        (
            {"body": requests.ReadTimeout(f"Read timed out. (url=/cgi-bin/token?secret={SECRET})")},
            wxauth.TokenFetchError,
        ),
    ],
    ids=["40125-echo", "40001-echo", "busy-echo", "502-page", "html-page", "conn", "timeout"],
)
def test_token_endpoint_failures_hold_no_secret(
    kwargs: dict[str, Any],
    error: type[Exception],
    caplog: pytest.LogCaptureFixture,
    all_logs: io.StringIO,
) -> None:
    """Whatever the token endpoint (or a proxy in front of it) echoes, the error raised
    and the warnings logged do not carry the secret."""
    with responses.RequestsMock() as rsps:
        rsps.get(TOKEN_URL, **kwargs)
        tokens = wxauth.TokenManager(APPID, SECRET, retries=1, backoff=0)
        with pytest.raises(error) as info:
            tokens.get_token()
    assert leaks(everything_said_by(info.value), [SECRET]) == []
    assert leaks(log_text(caplog, all_logs), [SECRET]) == []


def test_token_in_a_malformed_answer_is_not_shown() -> None:
    """A token answer that cannot be used never shows the token in the error."""
    token = TOKEN
    with responses.RequestsMock() as rsps:
        rsps.get(TOKEN_URL, json={"access_token": token, "expires_in": "soon"})
        with pytest.raises(wxauth.TokenFetchError) as info:
            wxauth.TokenManager(APPID, SECRET).get_token()
    assert leaks(everything_said_by(info.value), [token]) == []


@pytest.mark.parametrize("status", [200, 503])
@pytest.mark.parametrize("what", ["token", "secret"])
def test_error_excerpts_are_redacted_before_they_are_cut(status: int, what: str) -> None:
    """An error page quoting a JSON body (as proxies and gateways do) shows neither the
    secret nor a token, also when the 80-character excerpt ends inside one."""
    value = TOKEN if what == "token" else SECRET
    key = "access_token" if what == "token" else "secret"
    quoted = f'upstream said {{"{key}":"'
    body = "<html><pre>" + quoted.rjust(60 - len("<html><pre>"), "-") + f'{value}"}}</pre></html>'
    with responses.RequestsMock() as rsps:
        rsps.get(TOKEN_URL, body=body, status=status, content_type="text/html")
        with pytest.raises(wxauth.TokenFetchError) as info:
            wxauth.TokenManager(APPID, SECRET, retries=0).get_token()
    assert leaks(everything_said_by(info.value), [value]) == []


# -- repr and str ----------------------------------------------------------------------------------


def test_reprs_and_strs_hide_secret_and_token(fake_wechat: FakeWeChat) -> None:
    """Nothing that holds the secret or a token shows it in repr() or str()."""
    fake_wechat.add_app(APPID, SECRET)
    with fake_wechat.serve() as base:
        tokens = wxauth.TokenManager(APPID, SECRET, api_base=base)
        auth = wxauth.WxAuth(manager=tokens)
        token = tokens.get_token()
    stored = tokens.peek()
    assert stored is not None

    @wxauth.with_access_token(auth)
    def call(access_token: str) -> None:
        pass

    objects: list[object] = [
        tokens,
        auth,
        tokens.source,
        tokens.store,
        stored,
        tokens.stats,
        call,
        wxauth.Token.issued(token, 7200, 0),
        wxauth.WxAuth(APPID, SECRET),
        wxauth.ClassicTokenSource(APPID, SECRET),
        wxauth.StableTokenSource(APPID, SECRET),
        wxauth.WeComTokenSource("ww0123456789abcdef", SECRET),
        wxauth.CredentialError(40164, "invalid ip 1.2.3.4, not in whitelist"),
        wxauth.TokenFetchError("/cgi-bin/token could not be reached"),
    ]
    for obj in objects:
        shown = f"{obj!r}\n{obj!s}"
        assert leaks(shown, [SECRET, token]) == [], type(obj).__name__
    assert APPID in repr(tokens)
    assert APPID in repr(auth)
    assert redact_token(token) in repr(stored)


def test_fetch_context_repr_hides_the_rejected_token() -> None:
    """FetchContext (public: custom sources receive it) does not show the token."""
    token = TOKEN
    ctx = FetchContext(
        session=requests.Session(),
        timeout=1.0,
        clock=lambda: 0.0,
        store=wxauth.MemoryStore(),
        rejected=token,
    )
    assert leaks(f"{ctx!r}\n{ctx!s}", [token]) == []


# -- the Secret value type -------------------------------------------------------------------------


def test_secret_hides_its_value_but_compares_by_it() -> None:
    """repr/str/format show a mask; equality and hashing use the value; it cannot be
    pickled or changed, and reveal() unwraps it (also inside a mapping)."""
    import copy
    import pickle

    from wxauth._secret import Secret, reveal

    secret = Secret(SECRET)
    mapping = {"secret": secret}
    shown = f"{secret!r} {secret!s} {secret} {secret:>40} {[secret]} {mapping}"
    assert leaks(shown, [SECRET]) == []
    assert repr(secret) == "Secret('**********')"
    assert secret.get_secret_value() == SECRET
    assert secret == Secret(SECRET)
    assert hash(secret) == hash(Secret(SECRET))
    assert secret != Secret(SECRET[::-1])
    assert secret != SECRET  # a Secret is not a str
    assert Secret(secret) == secret
    assert len(secret) == len(SECRET)
    assert secret
    assert copy.copy(secret) is secret
    assert copy.deepcopy(secret) is secret
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    with pytest.raises(AttributeError):
        secret._value = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Secret(123)  # type: ignore[arg-type]
    assert reveal({"a": 1, "secret": secret}) == {"a": 1, "secret": SECRET}
    assert reveal(None) is None


def test_sources_hold_the_secret_as_a_secret() -> None:
    """The sources keep the AppSecret as a Secret, and accept one as well as a str."""
    from wxauth._secret import Secret

    for source in (
        wxauth.ClassicTokenSource(APPID, SECRET),
        wxauth.StableTokenSource(APPID, Secret(SECRET)),
        wxauth.WeComTokenSource("ww0123456789abcdef", SECRET),
    ):
        assert isinstance(source._secret, Secret)
        assert source._secret.get_secret_value() == SECRET
        assert leaks(repr(vars(source)), [SECRET]) == []
    assert wxauth.WeComTokenSource("ww1", Secret(SECRET)).key == (
        wxauth.WeComTokenSource("ww1", SECRET).key
    )
    with pytest.raises(ValueError, match="secret"):
        wxauth.ClassicTokenSource(APPID, Secret("  "))
