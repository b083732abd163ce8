"""RemoteSource: tokens read from a wxauth token service over real loopback HTTP.

The service here is a small contract server of this file (:class:`ContractService`):
it speaks the service's wire format and keeps the app's token with a TokenManager on
the emulator served on loopback. It stands in for ``wxauth serve``; it is not what is
under test (``test_server_replicas.py`` runs the real service)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import requests
from _async_helpers import leaks

import wxauth
from wxauth.httpx import HttpxTransport
from wxauth.sources import FetchContext, RemoteSource
from wxauth.testing import FakeWeChat

APPID = "wxremote000000001"
SECRET = "5d0c3b1a9e8f7a6b5c4d3e2f1a0b9c8d"
KEY = "wxk_Remote-Client-Key_0123456789abcdefABCDEF"
OTHER_KEY = "wxk_Other-Client-Key_fedcba9876543210FEDCBA"
API_PATH = "/cgi-bin/user/info"
TOKEN_PATH = f"/v1/apps/{APPID}/token"
INVALIDATE_PATH = TOKEN_PATH + "/invalidate"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class ContractService(ThreadingHTTPServer):
    """The token service's wire format on 127.0.0.1, backed by a TokenManager on the
    emulator. ``script(handler)`` may answer a request itself (a fault) and return
    True; ``asked`` records (method, path, Authorization, JSON body)."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, fake: FakeWeChat, emulator_url: str, margin: float = 300.0) -> None:
        super().__init__(("127.0.0.1", 0), _ContractHandler)
        self.fake = fake
        self.manager = wxauth.TokenManager(
            APPID,
            SECRET,
            api_base=emulator_url,
            store=wxauth.MemoryStore(),
            clock=fake.clock,
            refresh_margin=margin,
        )
        #: sha256 of a key -> the appids that client may read.
        self.clients: dict[str, set[str]] = {sha256(KEY): {APPID}, sha256(OTHER_KEY): set()}
        self.script: Callable[[BaseHTTPRequestHandler], bool] | None = None
        self.asked: list[tuple[str, str, str, Any]] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def paths(self) -> list[str]:
        with self._lock:
            return [f"{method} {path}" for method, path, _, _ in self.asked]

    def record(self, entry: tuple[str, str, str, Any]) -> None:
        with self._lock:
            self.asked.append(entry)


class _ContractHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ContractService

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve(None)

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw
        self._serve(body)

    def reply(self, status: int, data: Any, **headers: str) -> None:
        payload = data if isinstance(data, bytes) else json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", headers.pop("content_type", "application/json"))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(payload)

    def _serve(self, body: Any) -> None:
        service = self.server
        service.record((self.command, self.path, self.headers.get("Authorization", ""), body))
        if service.script is not None and service.script(self):
            return None
        auth = self.headers.get("Authorization", "")
        appids = service.clients.get(sha256(auth.removeprefix("Bearer ")))
        if not auth.startswith("Bearer ") or appids is None:
            return self.reply(401, {"error": "unauthorized", "message": "unknown client key"})
        path = self.path.split("?")[0]
        if path not in (TOKEN_PATH, INVALIDATE_PATH):
            return self.reply(404, {"error": "unknown_app", "message": "no such app here"})
        if APPID not in appids:
            return self.reply(403, {"error": "forbidden", "message": "not this client's app"})
        manager = service.manager
        extra: dict[str, Any] = {}
        if path == INVALIDATE_PATH:
            if self.command != "POST" or not isinstance(body, dict):
                return self.reply(400, {"error": "bad_request", "message": "POST a JSON object"})
            extra["invalidated"] = manager.invalidate(str(body.get("access_token")))
        token = manager.get()
        now = service.fake.clock()
        answer = {
            "access_token": token.value,
            "expires_in": int(token.expires_at - now),
            "expires_at": int(token.expires_at),
        }
        self.reply(200, {**answer, **extra})
        return None


@pytest.fixture
def fake() -> Iterator[FakeWeChat]:
    fake = FakeWeChat(start=1_800_000_000.0)
    fake.add_app(APPID, SECRET)
    yield fake
    fake.close()


@pytest.fixture
def emulator(fake: FakeWeChat) -> Iterator[str]:
    with fake.serve() as url:
        yield url


@contextlib.contextmanager
def contract_service(fake: FakeWeChat, emulator: str, **options: Any) -> Iterator[ContractService]:
    service = ContractService(fake, emulator, **options)
    thread = threading.Thread(target=service.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield service
    finally:
        service.stop.set()
        service.shutdown()
        service.server_close()
        service.manager.close()
        thread.join(5)


@pytest.fixture
def service(fake: FakeWeChat, emulator: str) -> Iterator[ContractService]:
    with contract_service(fake, emulator) as service:
        yield service


@pytest.fixture
def second(fake: FakeWeChat, emulator: str) -> Iterator[ContractService]:
    """Another replica: its own manager, but the same emulator app."""
    with contract_service(fake, emulator) as service:
        yield service


def refused_url() -> str:
    """A loopback URL nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def client(fake: FakeWeChat, *urls: str, key: str = KEY, **options: Any) -> wxauth.TokenManager:
    """A client's manager on the service, on the emulator's clock, with no sleeps."""
    options.setdefault("backoff", 0.0)
    source = RemoteSource(list(urls), key=key, timeout=options.pop("source_timeout", 5.0))
    return wxauth.TokenManager(
        APPID, source=source, store=wxauth.MemoryStore(), clock=fake.clock, **options
    )


def answers(status: int, data: Any, **headers: str) -> Callable[[BaseHTTPRequestHandler], bool]:
    """A script: answer every request with ``status`` and ``data``."""

    def script(handler: BaseHTTPRequestHandler) -> bool:
        assert isinstance(handler, _ContractHandler)
        handler.reply(status, data, **headers)
        return True

    return script


# -- reading ---------------------------------------------------------------------------


def test_reads_the_token_from_the_service(fake: FakeWeChat, service: ContractService) -> None:
    """get_token() GETs the app's token with the client key as a Bearer, and caches it."""
    with client(fake, service.url) as tokens:
        first = tokens.get_token()
        assert tokens.get_token() == first
    assert first == fake.latest_token(APPID)
    assert service.asked == [("GET", TOKEN_PATH, f"Bearer {KEY}", None)]
    fake.assert_token_fetches(1)


def test_the_lifetime_is_the_services_expires_in(
    fake: FakeWeChat, service: ContractService
) -> None:
    """The client's token expires when the service said, not a full 7200 s later."""
    service.manager.get_token()
    fake.advance(1000)
    with client(fake, service.url) as tokens:
        token = tokens.get()
    assert token.expires_at == service.manager.peek().expires_at  # type: ignore[union-attr]
    assert token.lifetime == 6200


def test_a_token_with_less_than_the_margin_left_is_not_refetched_every_call(
    fake: FakeWeChat, emulator: str
) -> None:
    """A token handed out with 100 s left (less than the client's 300 s margin) is used
    until it nearly expires: a handful of reads, not one per call."""
    with contract_service(fake, emulator, margin=0.0) as service:
        service.manager.get_token()
        fake.advance(7100)  # the service's token has 100 s left; it does not refresh
        with client(fake, service.url) as tokens:
            seen = set()
            for _ in range(99):
                seen.add(tokens.get_token())
                fake.advance(1)
        reads = service.paths().count(f"GET {TOKEN_PATH}")
    assert len(seen) == 1  # the same, still valid token throughout
    assert 3 <= reads <= 8, reads  # halving what is left: ~log2(100)
    fake.assert_token_fetches(1)


def test_binds_to_the_managers_appid() -> None:
    """The source has no appid until a manager binds it; its key names the app and a
    digest of the URLs in any order, and holds neither key nor URL."""
    source = RemoteSource(["http://b:1/", "https://a:2"], key=KEY)
    assert repr(source) == "RemoteSource(appid=None, urls=['http://b:1', 'https://a:2'])"
    with pytest.raises(ValueError, match="not bound"):
        source.key  # noqa: B018
    manager = wxauth.TokenManager(APPID, source=source, store=wxauth.MemoryStore())
    bound = manager.source
    assert isinstance(bound, RemoteSource)
    assert bound is not source
    assert bound.appid == APPID
    assert source.appid == ""  # the original stays unbound, for other managers
    reordered = RemoteSource(["https://a:2", "http://b:1"], key=OTHER_KEY).for_app(APPID)
    assert bound.key == reordered.key
    assert bound.key.startswith(f"token:remote:{APPID}@")
    assert "a:2" not in bound.key
    assert bound.for_app(APPID) is bound
    with pytest.raises(ValueError, match="serves appid"):
        wxauth.TokenManager("wxsomeoneelse", source=bound)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://tokens:21", "http:// or https://"),
        ("tokens:8700", "http:// or https://"),
        ("http://user:pw@tokens:8700", "user info"),
        ("http://tokens:8700/?key=1", "no query"),
        ("http://tokens:notaport", "not a token service URL"),
        ([], "at least one URL"),
    ],
)
def test_refuses_urls_that_are_not_a_services(url: Any, problem: str) -> None:
    """Only http(s) base URLs without user info, query or fragment."""
    with pytest.raises(ValueError, match=problem) as caught:
        RemoteSource(url, key=KEY)
    assert "pw" not in str(caught.value)


def test_refuses_a_blank_key_and_a_bad_timeout() -> None:
    """The key must be a non-blank str or Secret; the timeout a finite positive number."""
    with pytest.raises(ValueError, match="key"):
        RemoteSource("http://tokens", key=" ")
    with pytest.raises(ValueError, match="timeout"):
        RemoteSource("http://tokens", key=KEY, timeout=0)
    assert RemoteSource("http://tokens", key=wxauth.Secret(KEY)).timeout == 5.0


# -- rejected tokens -----------------------------------------------------------------------


def test_wxauth_heals_a_40001_through_the_invalidate_endpoint(
    fake: FakeWeChat, emulator: str, service: ContractService
) -> None:
    """A 40001 from WeChat makes the client POST the rejected token to the service,
    which refetches; the request is re-sent with the fresh token."""
    fake.add_api(API_PATH, json={"errcode": 0, "nickname": "x"})
    with client(fake, service.url) as tokens, requests.Session() as session:
        session.auth = wxauth.WxAuth(manager=tokens, extra_hosts=[emulator])
        assert session.get(emulator + API_PATH).json()["nickname"] == "x"
        rejected = tokens.get_token()
        fake.retire_all()
        answer = session.get(emulator + API_PATH)
        assert answer.json()["nickname"] == "x"
        assert len(answer.history) == 1
        fresh = tokens.get_token()
    assert fresh != rejected
    assert fresh == fake.latest_token(APPID)
    report = ("POST", INVALIDATE_PATH, f"Bearer {KEY}", {"access_token": rejected})
    assert service.asked[-1] == report
    fake.assert_token_fetches(2)


def test_invalidate_alone_reports_nothing(fake: FakeWeChat, service: ContractService) -> None:
    """invalidate() only drops the client's copy; the report goes with the next fetch."""
    with client(fake, service.url) as tokens:
        token = tokens.get_token()
        assert tokens.invalidate(token)
        assert service.paths() == [f"GET {TOKEN_PATH}"]
        tokens.get_token()
    assert service.paths()[-1] == f"POST {INVALIDATE_PATH}"


def test_too_many_invalidations_reads_the_token_instead(
    fake: FakeWeChat, service: ContractService
) -> None:
    """A 429 to the report is no failure: the client reads the current token."""
    with client(fake, service.url) as tokens:
        token = tokens.get_token()
        tokens.invalidate(token)
        refuse = answers(429, {"error": "too_many_invalidations", "message": "slow down"})

        def script(handler: BaseHTTPRequestHandler) -> bool:
            return handler.command == "POST" and refuse(handler)

        service.script = script
        assert tokens.get_token() == token
    assert service.paths()[-2:] == [f"POST {INVALIDATE_PATH}", f"GET {TOKEN_PATH}"]


# -- failover ------------------------------------------------------------------------------


def test_fails_over_when_the_first_url_refuses_connections(
    fake: FakeWeChat, service: ContractService
) -> None:
    """A refused connection moves on to the next URL at once, and the next fetch starts
    at the URL that answered."""
    with client(fake, refused_url(), service.url) as tokens:
        assert tokens.get_token() == fake.latest_token(APPID)
        tokens.invalidate(tokens.get_token())
        tokens.get_token()
    assert service.paths() == [f"GET {TOKEN_PATH}", f"POST {INVALIDATE_PATH}"]


def test_fails_over_on_a_503(
    fake: FakeWeChat, service: ContractService, second: ContractService
) -> None:
    """store_unavailable from one replica: the next one answers."""
    unavailable = {"error": "store_unavailable", "message": "Redis is not answering"}
    service.script = answers(503, unavailable, Retry_After="1")
    with client(fake, service.url, second.url) as tokens:
        assert tokens.get_token() == fake.latest_token(APPID)
    assert service.paths() == [f"GET {TOKEN_PATH}"]
    assert second.paths() == [f"GET {TOKEN_PATH}"]


def test_fails_over_when_the_first_url_times_out(
    fake: FakeWeChat, service: ContractService, second: ContractService
) -> None:
    """A replica that does not answer within the source's timeout is left for the next."""

    def hang(handler: BaseHTTPRequestHandler) -> bool:
        service.stop.wait(10)
        return True

    service.script = hang
    started = time.monotonic()
    with client(fake, service.url, second.url, source_timeout=0.3) as tokens:
        assert tokens.get_token() == fake.latest_token(APPID)
    assert time.monotonic() - started < 3
    assert second.paths() == [f"GET {TOKEN_PATH}"]


def test_every_url_failing_names_each_failure(fake: FakeWeChat, service: ContractService) -> None:
    """When no URL gives a token: one TokenFetchError naming each URL's failure, after
    the manager's retries; nothing of the key."""
    dead = refused_url()
    service.script = answers(503, {"error": "wechat_unavailable", "message": "WeChat is down"})
    with (
        client(fake, dead, service.url, retries=1) as tokens,
        pytest.raises(wxauth.TokenFetchError) as caught,
    ):
        tokens.get_token()
    text = str(caught.value)
    assert f"{dead}{TOKEN_PATH} could not be reached" in text
    assert f"{service.url}{TOKEN_PATH} answered HTTP 503 wechat_unavailable: WeChat is down" in text
    assert service.paths() == [f"GET {TOKEN_PATH}"] * 2  # two passes
    assert not leaks(text, [KEY])
    assert caught.value.__context__ is None


@pytest.mark.parametrize(
    ("key", "path_appid", "status", "errcode", "words"),
    [
        (OTHER_KEY + "x", APPID, 401, 40125, "does not know this client key sha256:"),
        (OTHER_KEY, APPID, 403, 40013, "403 forbidden: not this client's app"),
        (KEY, "wxunknown", 404, 40013, "404 unknown_app"),
    ],
)
def test_verdicts_are_credential_errors_without_failover(
    fake: FakeWeChat,
    service: ContractService,
    second: ContractService,
    key: str,
    path_appid: str,
    status: int,
    errcode: int,
    words: str,
) -> None:
    """401, 403 and 404 from the service are its verdict: a CredentialError naming the
    client key by fingerprint; the second URL is not asked."""
    source = RemoteSource([service.url, second.url], key=key)
    with (
        wxauth.TokenManager(path_appid, source=source, store=wxauth.MemoryStore()) as tokens,
        pytest.raises(wxauth.CredentialError) as caught,
    ):
        tokens.get_token()
    error = caught.value
    assert error.errcode == errcode
    assert words in str(error)
    assert f"HTTP {status}" in str(error)
    assert second.asked == []
    assert len(service.asked) == 1
    assert not leaks(str(error) + repr(error), [key])
    if status == 401:
        assert hashlib.sha256(key.encode()).hexdigest()[:12] in str(error)


@pytest.mark.parametrize(
    ("status", "body", "content_type", "words"),
    [
        (200, b"<html>captive portal</html>", "text/html", "not the token service's JSON"),
        (200, b'{"expires_in": 7200}', "application/json", "without an access_token"),
        (200, b'{"access_token": "t", "expires_in": 1e400}', "application/json", "expires_in"),
        (200, b"[" * (70 * 1024), "application/json", "more than 65536 bytes"),
        (502, b"<html>bad gateway</html>", "text/html", "HTTP 502"),
        (404, b"<html>nginx 404</html>", "text/html", "HTTP 404"),
    ],
)
def test_bad_answers_are_fetch_errors(
    fake: FakeWeChat,
    service: ContractService,
    status: int,
    body: bytes,
    content_type: str,
    words: str,
) -> None:
    """Bodies that are not the service's answer: TokenFetchError saying what came."""
    service.script = answers(status, body, content_type=content_type)
    with (
        client(fake, service.url, retries=0) as tokens,
        pytest.raises(wxauth.TokenFetchError, match=words),
    ):
        tokens.get_token()


def test_a_redirect_is_not_followed(fake: FakeWeChat, service: ContractService) -> None:
    """A 3xx is a failure: the key is not carried to wherever it points."""
    service.script = answers(302, b"", Location=f"{refused_url()}/steal?x=1")
    with (
        client(fake, service.url, retries=0) as tokens,
        pytest.raises(wxauth.TokenFetchError, match=r"redirect to .*\(not followed\)"),
    ):
        tokens.get_token()
    assert len(service.asked) == 1


# -- secrets --------------------------------------------------------------------------------


def test_the_key_is_never_logged_shown_or_raised(
    fake: FakeWeChat, service: ContractService, caplog: pytest.LogCaptureFixture
) -> None:
    """Across reads, reports, failovers and failures (DEBUG logs of wxauth and urllib3
    included), neither the client key nor a token shows in logs, reprs or errors."""
    caplog.set_level(logging.DEBUG)
    shown: list[str] = []
    with client(fake, refused_url(), service.url) as tokens:
        token = tokens.get_token()
        tokens.invalidate(token)
        fresh = tokens.get_token()
        shown += [repr(tokens), repr(tokens.source), str(tokens.source.__dict__)]
    # A service that echoes the key it refused: the message is scrubbed of it.
    service.script = answers(401, {"error": "unauthorized", "message": f"bad key {KEY}"})
    with client(fake, service.url) as tokens, pytest.raises(wxauth.CredentialError) as caught:
        tokens.get_token()
    shown += [str(caught.value), repr(caught.value)]
    text = caplog.text + "\n".join(shown)
    assert "urllib3" in caplog.text or "Starting new HTTP" in caplog.text
    assert not leaks(text, [KEY, OTHER_KEY, token, fresh])


# -- transports and the async manager ---------------------------------------------------------


def test_sends_the_key_through_an_httpx_transport(
    fake: FakeWeChat, service: ContractService
) -> None:
    """TokenManager(transport=HttpxTransport(...)) carries the Authorization header, and
    the client's own auth does not replace it."""
    with (
        httpx.Client(auth=("someone", "else")) as http,
        client(fake, service.url, transport=HttpxTransport(http)) as tokens,
    ):
        assert tokens.get_token() == fake.latest_token(APPID)
    assert service.asked[0][2] == f"Bearer {KEY}"


def test_a_sessions_auth_does_not_replace_the_key(
    fake: FakeWeChat, service: ContractService
) -> None:
    """A token session that carries an auth of its own still sends the client key."""
    with requests.Session() as session:
        session.auth = ("someone", "else")
        with client(fake, service.url, session=session) as tokens:
            tokens.get_token()
    assert service.asked[0][2] == f"Bearer {KEY}"


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.anyio
async def test_async_manager_reads_and_reports(
    fake: FakeWeChat, service: ContractService, second: ContractService
) -> None:
    """AsyncTokenManager(appid, source=RemoteSource(...)) reads, fails over and reports
    a rejected token like the sync one (its fetch runs in a worker thread)."""
    service.script = answers(503, {"error": "store_unavailable", "message": "down"})
    source = RemoteSource([service.url, second.url], key=KEY)
    async with wxauth.AsyncTokenManager(
        APPID, source=source, store=wxauth.MemoryStore(), clock=fake.clock
    ) as tokens:
        token = await tokens.get_token()
        assert token == fake.latest_token(APPID)
        await tokens.invalidate(token)
        fresh = await tokens.get_token()
    assert fresh != token
    assert fresh == fake.latest_token(APPID)
    assert second.paths() == [f"GET {TOKEN_PATH}", f"POST {INVALIDATE_PATH}"]


def test_fetch_needs_a_bound_source() -> None:
    """Calling fetch() on an unbound source is a clear error, not a request to /apps//."""
    ctx = FetchContext(
        session=requests.Session(), timeout=1.0, clock=time.time, store=wxauth.MemoryStore()
    )
    with pytest.raises(ValueError, match="not bound"):
        RemoteSource("http://127.0.0.1:9", key=KEY).fetch(ctx)


# -- against the real service (wxauth.server on uvicorn) -------------------------------------

ADMIN_KEY = "wxk_Admin-Client-Key_00112233445566778899aabb"
SECRET_ENV = "WXAUTH_REMOTE_TEST_SECRET"


@contextlib.contextmanager
def real_service(fake: FakeWeChat, emulator: str) -> Iterator[str]:
    """``wxauth.server.create_app`` on uvicorn, in a thread on a free loopback port:
    KEY may read APPID, OTHER_KEY nothing, ADMIN_KEY every app. Yields its URL."""
    import uvicorn

    from wxauth.server import create_app, hash_key, parse_config
    from wxauth.server._cli import listen_socket

    config = parse_config(
        f'[[apps]]\nappid = "{APPID}"\nsecret_env = "{SECRET_ENV}"\napi_base = "{emulator}"\n'
        f'[[clients]]\nname = "app"\nkey_sha256 = "{hash_key(KEY)}"\napps = ["{APPID}"]\n'
        f'[[clients]]\nname = "other"\nkey_sha256 = "{hash_key(OTHER_KEY)}"\napps = []\n'
        f'[[clients]]\nname = "admin"\nkey_sha256 = "{hash_key(ADMIN_KEY)}"\napps = ["*"]\n',
        environ={SECRET_ENV: SECRET},
    )
    # With TCP_NODELAY: on a bare socket.socket() each keep-alive answer waits ~40 ms
    # for the client's delayed ACK.
    sock = listen_socket("127.0.0.1", 0)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config, clock=fake.clock), log_config=None, lifespan="on", access_log=False
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    deadline = time.monotonic() + 10
    while not server.started or requests.get(url + "/readyz", timeout=2).status_code != 200:
        assert thread.is_alive(), "the service did not start"
        assert time.monotonic() < deadline, "the service was not ready in time"
        time.sleep(0.01)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_heals_a_40001_through_the_real_service(fake: FakeWeChat, emulator: str) -> None:
    """Against wxauth.server: a read, then a 40001 reported to its invalidate endpoint,
    which fetches once; a second client then reads the fresh token."""
    fake.add_api(API_PATH, json={"errcode": 0, "nickname": "x"})
    with real_service(fake, emulator) as url:
        with client(fake, url) as tokens, requests.Session() as session:
            session.auth = wxauth.WxAuth(manager=tokens, extra_hosts=[emulator])
            rejected = tokens.get_token()
            fake.retire_all()
            answer = session.get(emulator + API_PATH)
            assert answer.json()["nickname"] == "x"
            assert len(answer.history) == 1
            fresh = tokens.get_token()
        with client(fake, url) as later:
            assert later.get_token() == fresh
    assert fresh != rejected
    assert fresh == fake.latest_token(APPID)
    fake.assert_token_fetches(2)


@pytest.mark.parametrize(
    ("key", "appid", "errcode", "words"),
    [
        (KEY + "x", APPID, 40125, "HTTP 401 unauthorized"),
        (OTHER_KEY, APPID, 40013, "HTTP 403 forbidden"),
        (ADMIN_KEY, "wxnotconfigured", 40013, "HTTP 404 unknown_app"),
    ],
)
def test_the_real_services_verdicts(
    fake: FakeWeChat, emulator: str, key: str, appid: str, errcode: int, words: str
) -> None:
    """wxauth.server's 401, 403 and 404 are CredentialErrors naming the key's
    fingerprint, and are not failed over to the next URL."""
    dead = refused_url()
    with real_service(fake, emulator) as url:
        source = RemoteSource([url, dead], key=key)
        with (
            wxauth.TokenManager(appid, source=source, store=wxauth.MemoryStore()) as tokens,
            pytest.raises(wxauth.CredentialError) as caught,
        ):
            tokens.get_token()
    assert caught.value.errcode == errcode
    assert words in str(caught.value)
    assert hashlib.sha256(key.encode()).hexdigest()[:12] in str(caught.value)
    assert dead not in str(caught.value)
