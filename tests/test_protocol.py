"""The protocol core: pure functions on URLs, headers and bytes, tested without any HTTP
library; and the sources driven through a transport that is not requests."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from requests.structures import CaseInsensitiveDict

import wxauth
from wxauth import _protocol as protocol
from wxauth._protocol import (
    Failure,
    TokenRequest,
    classic_token_request,
    expired_errcode_in,
    read_token_answer,
    set_access_token,
    stable_token_request,
    wecom_token_request,
)
from wxauth.sources import FetchContext
from wxauth.transport import HTTPAnswer, TransportError

SECRET = wxauth.Secret("the-protocol-secret-0123456789")
BASE = "https://api.weixin.qq.com"


def headers(**items: str) -> CaseInsensitiveDict[str]:
    return CaseInsensitiveDict({k.replace("_", "-"): v for k, v in items.items()})


def answer(
    data: Any, status: int = 200, content_type: str = "application/json"
) -> tuple[int, CaseInsensitiveDict[str], bytes]:
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    return status, headers(Content_Type=content_type), body


# -- token requests -----------------------------------------------------------------------


def test_token_requests_carry_the_secret_masked() -> None:
    """Each source's request names its endpoint, holds the secret only as a Secret, and
    shows neither in its repr."""
    classic = classic_token_request("wxapp", SECRET, BASE)
    assert (classic.method, classic.url, classic.path) == (
        "GET",
        BASE + "/cgi-bin/token",
        "/cgi-bin/token",
    )
    assert classic.params["secret"] is SECRET
    assert classic.params["grant_type"] == "client_credential"
    stable = stable_token_request("wxapp", SECRET, BASE, force=True)
    assert stable.method == "POST"
    assert stable.json is not None
    assert stable.json["force_refresh"] is True
    assert stable.json["secret"] is SECRET
    wecom = wecom_token_request("wwcorp", SECRET, "https://qyapi.weixin.qq.com")
    assert wecom.params == {"corpid": "wwcorp", "corpsecret": SECRET}
    assert 45033 in wecom.retryable_errcodes
    for request in (classic, stable, wecom):
        assert request.secrets == (SECRET,)
        assert SECRET.get_secret_value() not in repr(request)


# -- token answers ------------------------------------------------------------------------


def test_a_good_answer_reads_as_its_json() -> None:
    request = classic_token_request("wxapp", SECRET, BASE)
    data = read_token_answer(request, *answer({"access_token": "T", "expires_in": 7200}))
    assert data == {"access_token": "T", "expires_in": 7200}


@pytest.mark.parametrize(
    ("status", "body", "kind", "retryable", "text"),
    [
        (302, b"", wxauth.TokenFetchError, False, "redirect"),
        (502, b"<html>Bad Gateway</html>", wxauth.TokenFetchError, True, "HTTP 502"),
        (200, b"<html>portal</html>", wxauth.TokenFetchError, False, "not a JSON object"),
        (200, b"[1, 2]", wxauth.TokenFetchError, False, "not a JSON object"),
        (200, b'{"errcode": "x"}', wxauth.TokenFetchError, False, "non-numeric errcode"),
        (200, b'{"errcode": -1, "errmsg": "system error"}', wxauth.TokenFetchError, True, "busy"),
        (
            200,
            b'{"errcode": 40013, "errmsg": "invalid appid"}',
            wxauth.CredentialError,
            False,
            "40013",
        ),
        (
            200,
            b'{"errcode": 45009, "errmsg": "reach max api daily quota limit"}',
            wxauth.QuotaError,
            False,
            "45009",
        ),
        (200, b"x" * (protocol.MAX_ANSWER_BYTES + 1), wxauth.TokenFetchError, False, "more than"),
    ],
)
def test_a_bad_answer_reads_as_a_typed_failure(
    status: int, body: bytes, kind: type[Exception], retryable: bool, text: str
) -> None:
    """Redirects, 5xx, non-JSON, errcodes and oversized bodies become a Failure with the
    right error class and retry verdict; nothing is raised."""
    request = classic_token_request("wxapp", SECRET, BASE)
    outcome = read_token_answer(
        request,
        status,
        headers(Content_Type="text/html", Location="https://x.example/?secret=s"),
        body,
    )
    assert isinstance(outcome, Failure)
    assert type(outcome.error) is kind
    assert outcome.retryable is retryable
    assert text in str(outcome.error)
    assert "secret=s" not in str(outcome.error)


def test_failure_messages_never_hold_the_secret() -> None:
    """An errmsg or an HTML page that echoes the secret is scrubbed in the error."""
    request = classic_token_request("wxapp", SECRET, BASE)
    echo = SECRET.get_secret_value()
    for status, body in (
        (200, json.dumps({"errcode": 40125, "errmsg": f"invalid appsecret {echo}"}).encode()),
        (500, f"<html>secret={echo}</html>".encode()),
        (200, f"not json {echo}".encode()),
    ):
        outcome = read_token_answer(request, status, headers(), body)
        assert isinstance(outcome, Failure)
        assert echo not in str(outcome.error)


# -- API URLs and answers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://h/p", "https://h/p?access_token=T%2B1"),
        ("https://h/p?a=1", "https://h/p?a=1&access_token=T%2B1"),
        ("https://h/p?access_token=old&a=1", "https://h/p?a=1&access_token=T%2B1"),
        ("https://h/p?a=1&access_token=x&access_token=y", "https://h/p?a=1&access_token=T%2B1"),
        ("https://h/p?a=1#frag", "https://h/p?a=1&access_token=T%2B1#frag"),
    ],
)
def test_set_access_token_replaces_never_duplicates(url: str, expected: str) -> None:
    assert set_access_token(url, "T+1") == expected


@pytest.mark.parametrize(
    ("content_type", "body", "code"),
    [
        ("application/json", b'{"errcode":40001,"errmsg":"invalid credential"}', 40001),
        ("text/plain; charset=utf-8", b'{"errcode": 42001, "errmsg": "expired"}', 42001),
        ("application/json", b'{"errcode":40014}', 40014),
        ("application/json", b'{"errcode":0,"errmsg":"ok"}', None),
        ("application/json", b'{"errcode":45009}', None),
        ("image/jpeg", b'{"errcode":40001}', None),
        ("application/json", b"", None),
        ("application/json", b'{"errcode":40001', None),  # not JSON after all
        ("application/json", b'{"note": "say \\"errcode\\": 40001"}', None),
    ],
)
def test_expired_errcode_from_content_type_and_bytes(
    content_type: str, body: bytes, code: int | None
) -> None:
    assert expired_errcode_in(content_type, body) == code


def test_a_large_answer_is_searched_at_its_head_only() -> None:
    """A body over the full-scan limit that mentions 40001 past its first KB is a
    success answer that happens to contain the text, not an error."""
    body = b'{"data": "' + b"x" * protocol.FULL_SCAN_LIMIT + b'", "errcode": 40001}'
    assert expired_errcode_in("application/json", body) is None


# -- a source through a transport that is not requests ---------------------------------------


class ScriptedTransport:
    """A Transport that answers from a script and records what it was asked."""

    def __init__(self, *answers: HTTPAnswer | TransportError) -> None:
        self.answers = list(answers)
        self.sent: list[TokenRequest] = []

    def send(self, request: TokenRequest, *, timeout: float) -> HTTPAnswer:
        self.sent.append(request)
        outcome = self.answers.pop(0)
        if isinstance(outcome, TransportError):
            raise outcome
        return outcome


def json_answer(data: Mapping[str, Any], status: int = 200) -> HTTPAnswer:
    return HTTPAnswer(status, headers(Content_Type="application/json"), json.dumps(data).encode())


def context(transport: ScriptedTransport, **options: Any) -> FetchContext:
    return FetchContext(
        session=None,  # type: ignore[arg-type]  # the transport needs none
        timeout=1.0,
        clock=lambda: 1_800_000_000.0,
        store=wxauth.MemoryStore(),
        transport=transport,
        sleep=lambda _s: None,
        **options,
    )


def test_sources_only_build_requests_and_read_answers() -> None:
    """A classic source fetches through any Transport: a refused connection and a busy
    answer are retried, then the token is read."""
    transport = ScriptedTransport(
        TransportError("could not be reached: refused", retryable=True),
        json_answer({"errcode": -1, "errmsg": "system error"}),
        json_answer({"access_token": "tok-1", "expires_in": 7200}),
    )
    source = wxauth.ClassicTokenSource("wxapp", SECRET.get_secret_value(), api_base=BASE)
    assert source.fetch(context(transport, retries=2)) == ("tok-1", 7200.0)
    assert [r.path for r in transport.sent] == ["/cgi-bin/token"] * 3


def test_a_transport_failure_is_a_token_fetch_error_with_the_path() -> None:
    transport = ScriptedTransport(TransportError("did not finish within 1.0s", retryable=False))
    source = wxauth.StableTokenSource("wxapp", SECRET, api_base=BASE)
    with pytest.raises(wxauth.TokenFetchError, match=r"^/cgi-bin/stable_token did not finish"):
        source.fetch(context(transport))
    assert transport.sent[0].json is not None
    assert transport.sent[0].json["force_refresh"] is False


def test_a_manager_runs_on_a_custom_transport() -> None:
    """TokenManager's source fetches through the transport its FetchContext names, so
    a manager whose source was given a transport never touches requests."""
    transport = ScriptedTransport(json_answer({"access_token": "tok-m", "expires_in": 7200}))

    class OnTransport(wxauth.ClassicTokenSource):
        def fetch(self, ctx: FetchContext) -> tuple[str, float]:
            ctx.transport = transport
            return super().fetch(ctx)

    manager = wxauth.TokenManager("wxapp", source=OnTransport("wxapp", SECRET, api_base=BASE))
    assert manager.get_token() == "tok-m"
    assert len(transport.sent) == 1
