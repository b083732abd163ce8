"""The two front ends themselves: interception, passthrough, the server's life cycle and
log, and imports that must stay light."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import responses

from wxauth.testing import EmulatorServer, FakeWeChat, WeChatInterceptor

ROOT = Path(__file__).resolve().parents[1]
APPID, SECRET = "wx0123456789abcdef", "app-secret-1"
QUERY = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
WECHAT = "https://api.weixin.qq.com"


@pytest.fixture
def fake() -> Iterator[FakeWeChat]:
    emulator = FakeWeChat(start=1_700_000_000.0)
    emulator.add_app(APPID, SECRET)
    try:
        yield emulator
    finally:
        emulator.close()


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


# -- in process ----------------------------------------------------------------------------


def test_intercept_as_decorator(fake: FakeWeChat) -> None:
    """@fake.intercept() turns interception on for the call only."""

    @fake.intercept()
    def fetch() -> int:
        return int(requests.get(f"{WECHAT}/cgi-bin/token", params=QUERY, timeout=5).status_code)

    assert fetch() == 200
    fake.assert_token_fetches(1)


def test_intercept_start_and_stop(fake: FakeWeChat) -> None:
    """start()/stop() bracket interception; after stop the emulator sees nothing."""
    interceptor = fake.intercept()
    assert isinstance(interceptor, WeChatInterceptor)
    interceptor.start()
    try:
        requests.get(f"{WECHAT}/cgi-bin/token", params=QUERY, timeout=5)
    finally:
        interceptor.stop()
    # An empty responses mock proves the call no longer reaches the emulator (and keeps
    # this test off the real network).
    with responses.RequestsMock() as guard:
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{WECHAT}/cgi-bin/token", params=QUERY, timeout=5)
        assert len(guard.calls) == 1
    fake.assert_token_fetches(1)


def test_intercept_covers_qyapi_and_both_methods(fake: FakeWeChat) -> None:
    """qyapi.weixin.qq.com is intercepted too, and POST bodies reach the model."""
    fake.add_wecom_app("ww1", "cs")
    with fake.intercept():
        body = requests.get(
            "https://qyapi.weixin.qq.com/cgi-bin/gettoken",
            params={"corpid": "ww1", "corpsecret": "cs"},
            timeout=5,
        ).json()
        stable = requests.post(
            f"{WECHAT}/cgi-bin/stable_token",
            json={"grant_type": "client_credential", "appid": APPID, "secret": SECRET},
            timeout=5,
        ).json()
    assert body["errcode"] == 0
    assert stable["expires_in"] == 7200


def test_intercept_blocks_other_hosts(fake: FakeWeChat) -> None:
    """Any other host raises ConnectionError instead of reaching the network."""
    with fake.intercept(), pytest.raises(requests.ConnectionError):
        requests.get("https://example.com/", timeout=5)


def test_intercept_passes_loopback_through_to_the_server(fake: FakeWeChat) -> None:
    """The interceptor and the loopback server work together."""
    with fake.serve() as url, fake.intercept():
        served = requests.get(f"{url}/cgi-bin/token", params=QUERY, timeout=5)
        intercepted = requests.get(f"{WECHAT}/cgi-bin/token", params=QUERY, timeout=5)
    assert "access_token" in served.json()
    assert "access_token" in intercepted.json()
    fake.assert_token_fetches(2)


def test_intercept_client_ip_feeds_the_allowlist(fake: FakeWeChat) -> None:
    """client_ip= is the caller IP the allowlist sees in process."""
    fake.add_app("wxip", "s", ip_allowlist=["203.0.113.9"])
    query = {"grant_type": "client_credential", "appid": "wxip", "secret": "s"}
    with fake.intercept(client_ip="203.0.113.9"):
        ok = requests.get(f"{WECHAT}/cgi-bin/token", params=query, timeout=5).json()
    with fake.intercept(client_ip="198.51.100.1"):
        refused = requests.get(f"{WECHAT}/cgi-bin/token", params=query, timeout=5).json()
    assert "access_token" in ok
    assert refused["errcode"] == 40164
    assert "invalid ip 198.51.100.1 ipv6 ::ffff:198.51.100.1" in refused["errmsg"]


def test_intercept_exposes_the_responses_mock(fake: FakeWeChat) -> None:
    """.mock is the responses.RequestsMock, with its own call list."""
    with fake.intercept() as interceptor:
        requests.get(f"{WECHAT}/cgi-bin/token", params=QUERY, timeout=5)
        assert len(interceptor.mock.calls) == 1


# -- loopback server -----------------------------------------------------------------------


def test_serve_yields_a_loopback_base_url_and_closes_the_port(fake: FakeWeChat) -> None:
    """serve() binds 127.0.0.1 on a free port; after the block the port is closed."""
    with fake.serve() as url:
        assert url.startswith("http://127.0.0.1:")
        assert requests.get(f"{url}/cgi-bin/token", params=QUERY, timeout=5).ok
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/cgi-bin/token", params=QUERY, timeout=5)


def test_server_is_silent_by_default(fake: FakeWeChat, capfd: pytest.CaptureFixture[str]) -> None:
    """http.server's per-request stderr log is off."""
    with fake.serve() as url:
        requests.get(f"{url}/cgi-bin/token", params=QUERY, timeout=5)
    out, err = capfd.readouterr()
    assert out == ""
    assert err == ""


def test_server_log_masks_secrets_and_tokens(fake: FakeWeChat) -> None:
    """With log= the request lines are written with secret and access_token masked."""
    log = io.StringIO()
    with EmulatorServer(fake, log=log) as server:
        value = requests.get(f"{server.url}/cgi-bin/token", params=QUERY, timeout=5).json()[
            "access_token"
        ]
        requests.get(f"{server.url}/cgi-bin/user/get?access_token={value}", timeout=5)
    text = log.getvalue()
    assert "GET /cgi-bin/token?" in text
    assert "secret=***" in text
    assert "access_token=***" in text
    assert SECRET not in text
    assert value not in text


def test_closing_the_fake_releases_a_hanging_request(fake: FakeWeChat) -> None:
    """A hang ends (with 504) when the fake is closed, so no test waits it out."""
    fake.fail_next(hang=600)
    result: list[int] = []
    with fake.serve() as url:
        thread = threading.Thread(
            target=lambda: result.append(
                requests.get(f"{url}/cgi-bin/token", params=QUERY, timeout=60).status_code
            )
        )
        thread.start()
        while fake.token_fetches == 0:  # wait until the server holds the request
            threading.Event().wait(0.005)
        fake.close()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert result == [504]


def test_server_start_stop_is_idempotent(fake: FakeWeChat) -> None:
    """stop() twice is harmless; fake.close() stops servers it still runs."""
    server = EmulatorServer(fake).start()
    assert server.url == f"http://127.0.0.1:{server.port}"
    fake.close()
    server.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.url}/cgi-bin/token", params=QUERY, timeout=5)


def raw_exchange(url: str, request: bytes) -> bytes:
    """Send ``request`` on a raw socket to the server at ``url``; return all it answers."""
    import socket

    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    "length",
    ["abc", "-5", "1e3", "+5", "0x10", "", "99999999999999999999", str(1024 * 1024 + 1), "5, 6"],
    ids=[
        "word",
        "negative",
        "float",
        "signed",
        "hex",
        "empty",
        "huge",
        "over-1-MiB",
        "list",
    ],
)
def test_a_malformed_or_huge_content_length_gets_400_and_no_traceback(
    fake: FakeWeChat, capfd: pytest.CaptureFixture[str], length: str
) -> None:
    """A Content-Length that is not a number, is negative, or announces more than 1 MiB
    is answered 400 without reading a body, with nothing on stderr, and the server goes
    on serving."""
    with fake.serve() as url:
        answer = raw_exchange(
            url,
            b"POST /cgi-bin/stable_token HTTP/1.1\r\nHost: x\r\n"
            + f"Content-Length: {length}\r\n\r\n".encode()
            + b'{"grant_type": "client_credential"}',
        )
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
        assert b"Content-Length" in answer
        assert requests.get(f"{url}/cgi-bin/token", params=QUERY, timeout=5).ok
    assert fake.token_fetches == 1  # the refused request never reached the emulator
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_two_different_content_lengths_get_400(
    fake: FakeWeChat, capfd: pytest.CaptureFixture[str]
) -> None:
    """Two Content-Length headers that disagree are refused too (a smuggling shape)."""
    with fake.serve() as url:
        answer = raw_exchange(
            url,
            b"POST /cgi-bin/token HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 2\r\nContent-Length: 4\r\n\r\n{}{}",
        )
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert capfd.readouterr() == ("", "")


def test_a_valid_content_length_still_reads_the_body(fake: FakeWeChat) -> None:
    """The stable_token body (JSON, with the secret) is read as declared."""
    body = json.dumps(
        {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
    ).encode()
    with fake.serve() as url:
        answer = raw_exchange(
            url,
            b"POST /cgi-bin/stable_token HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body,
        )
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b'"access_token"' in answer


# -- imports -------------------------------------------------------------------------------


def test_importing_the_package_and_plugin_stays_light() -> None:
    """wxauth.testing and its pytest plugin import neither responses nor http.server."""
    result = run_python(
        "import sys, wxauth.testing, wxauth.testing._plugin;"
        "print(sorted(m for m in ('responses', 'http.server') if m in sys.modules))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_server_works_without_responses_installed() -> None:
    """With responses missing, serve() works and intercept() says what to install."""
    code = """
import sys
sys.modules['responses'] = None
import requests
from wxauth.testing import FakeWeChat
fake = FakeWeChat()
fake.add_app('wx1', 's')
with fake.serve() as url:
    q = {'grant_type': 'client_credential', 'appid': 'wx1', 'secret': 's'}
    assert 'access_token' in requests.get(url + '/cgi-bin/token', params=q, timeout=5).json()
try:
    fake.intercept()
except ImportError as exc:
    print(exc)
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert "pip install 'wxauth[testing]'" in result.stdout


def test_public_names_match_all() -> None:
    """Everything in wxauth.testing.__all__ resolves, and lazily loaded names too."""
    import wxauth.testing as testing

    for name in testing.__all__:
        assert getattr(testing, name) is not None
    with pytest.raises(AttributeError):
        _ = testing.Nope


def test_stopped_server_drops_kept_alive_connections(fake: FakeWeChat) -> None:
    """After serve() ends, a Session's pooled connection is not answered any more."""
    with requests.Session() as session:
        with fake.serve() as url:
            assert session.get(f"{url}/cgi-bin/token", params=QUERY, timeout=5).ok
        with pytest.raises(requests.ConnectionError):
            session.get(f"{url}/cgi-bin/token", params=QUERY, timeout=5)
    fake.assert_token_fetches(1)
