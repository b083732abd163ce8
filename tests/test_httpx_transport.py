"""The httpx transports have the duties of RequestsTransport: a total deadline, no
redirects, a size cap, decoded bodies, and failures worded alike with no secret in them
nor in any frame left on their traceback.

Every behaviour runs on the three transports (``requests`` and ``httpx`` from a worker
thread, ``httpx-async`` in the event loop), under asyncio and trio, against a real
server on 127.0.0.1: the emulator's (``fake.serve()``) or a scripted one
(``tests/_loopback.py``) for raw HTTP the emulator does not speak.
"""

from __future__ import annotations

import functools
import gzip
import threading
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import anyio
import httpx
import pytest
import requests
from _loopback import Scripted
from test_frame_locals import SECRET, closed_port, leaks, secret_locals
from test_sources import answer, trickle

from wxauth._httpx_transport import AsyncHttpxTransport, HttpxTransport
from wxauth._protocol import MAX_ANSWER_BYTES, TokenRequest, classic_token_request
from wxauth._secret import Secret
from wxauth.testing import FakeWeChat
from wxauth.transport import HTTPAnswer, RequestsTransport, TransportError

APPID = "wxhttpx0000000001"

Send = Callable[[TokenRequest, float], Awaitable[HTTPAnswer]]
Script = Callable[[BaseHTTPRequestHandler], None]


def token_request(api_base: str) -> TokenRequest:
    return classic_token_request(APPID, Secret(SECRET), api_base)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


#: Each transport under the event loops worth trying it under: a sync one runs from a
#: worker thread (one loop is enough), the async one in the loop, on asyncio and trio.
every_transport = pytest.mark.parametrize(
    ("kind", "anyio_backend"),
    [
        ("requests", "asyncio"),
        ("httpx", "asyncio"),
        ("httpx-async", "asyncio"),
        ("httpx-async", "trio"),
    ],
)


@pytest.fixture
async def send(kind: str, anyio_backend: str) -> AsyncIterator[Send]:
    """``await send(token_request, timeout)`` on the transport named ``kind``."""
    if kind == "httpx-async":
        async with httpx.AsyncClient() as client:
            transport = AsyncHttpxTransport(client)
            yield lambda token_request, timeout: transport.send(token_request, timeout=timeout)
        return
    session: requests.Session | httpx.Client
    if kind == "requests":
        session = requests.Session()
        sync: RequestsTransport | HttpxTransport = RequestsTransport(session)
    else:
        session = httpx.Client()
        sync = HttpxTransport(session)

    async def in_a_thread(token_request: TokenRequest, timeout: float) -> HTTPAnswer:
        call = functools.partial(sync.send, token_request, timeout=timeout)
        return await anyio.to_thread.run_sync(call)

    with session:
        yield in_a_thread


@pytest.fixture
def serve() -> Iterator[Callable[[Script], Scripted]]:
    """Start scripted loopback servers, stopped and joined when the test ends."""
    servers: list[Scripted] = []

    def start(script: Script) -> Scripted:
        server = Scripted(script)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def fake(fake_wechat: FakeWeChat) -> FakeWeChat:
    fake_wechat.add_app(APPID, SECRET)
    return fake_wechat


def break_off(handler: BaseHTTPRequestHandler) -> None:
    """Promise 100 bytes, send 10, hang up."""
    handler.send_response(200)
    handler.send_header("Content-Length", "100")
    handler.end_headers()
    handler.wfile.write(b'{"errcode"')
    handler.wfile.flush()
    handler.close_connection = True


async def failure_of(call: Awaitable[HTTPAnswer]) -> TransportError:
    with pytest.raises(TransportError) as info:
        await call
    error = info.value
    assert not leaks(str(error))
    assert error.__cause__ is None
    assert error.__context__ is None
    return error


# -- answers -----------------------------------------------------------------------------------


@pytest.mark.anyio
@every_transport
async def test_a_token_answer_comes_back_whole(send: Send, fake: FakeWeChat) -> None:
    """The emulator's answer: status, case-insensitive headers, the JSON body."""
    with fake.serve() as url:
        got = await send(token_request(url), 5)
    assert got.status == 200
    assert got.headers["content-type"].startswith("application/json")
    assert b'"access_token"' in got.body
    fake.assert_token_fetches(1)


@pytest.mark.anyio
@every_transport
async def test_a_5xx_is_an_answer_not_a_transport_error(send: Send, fake: FakeWeChat) -> None:
    """HTTP 502 is returned for the protocol core to judge (it retries it)."""
    fake.fail_next(status=502)
    with fake.serve() as url:
        got = await send(token_request(url), 5)
    assert got.status == 502
    assert b"Bad Gateway" in got.body


@pytest.mark.anyio
@every_transport
async def test_a_redirect_is_returned_not_followed(
    send: Send, serve: Callable[[Script], Scripted]
) -> None:
    """A 302 comes back as it is, its Location shown without the query; the place it
    points to is never asked (it would get the secret)."""
    elsewhere = serve(lambda h: answer(h, 200, b'{"access_token": "STOLEN"}'))
    endpoint = serve(lambda h: answer(h, 302, b"moved", Location=elsewhere.url + h.path))
    got = await send(token_request(endpoint.url), 5)
    assert got.status == 302
    assert got.headers["Location"] == elsewhere.url + "/cgi-bin/token?…"
    assert got.body == b""
    assert elsewhere.hits == []
    assert len(endpoint.hits) == 1


@pytest.mark.anyio
@every_transport
async def test_a_redirect_whose_body_never_ends_comes_back_at_once(
    send: Send, serve: Callable[[Script], Scripted]
) -> None:
    """A redirect's body is not read: the answer is back long before the deadline."""
    endpoint = serve(lambda h: trickle(h, 302, Location="http://127.0.0.1:9/cgi-bin/token"))
    started = time.monotonic()
    got = await send(token_request(endpoint.url), 5)
    assert got.status == 302
    assert time.monotonic() - started < 1.5


@pytest.mark.anyio
@every_transport
async def test_a_gzip_answer_is_decoded(send: Send, serve: Callable[[Script], Scripted]) -> None:
    """The body is the decoded one, as ``response.content`` would have it."""
    plain = b'{"access_token": "GZIPPED_TOKEN", "expires_in": 7200}'
    endpoint = serve(lambda h: answer(h, 200, gzip.compress(plain), Content_Encoding="gzip"))
    got = await send(token_request(endpoint.url), 5)
    assert got.body == plain


@pytest.mark.anyio
@every_transport
async def test_at_most_one_byte_past_the_cap_is_read(
    send: Send, serve: Callable[[Script], Scripted]
) -> None:
    """A body over 64 KiB is cut at ``MAX_ANSWER_BYTES + 1``: enough to tell it is too long."""
    endpoint = serve(lambda h: answer(h, 200, b"x" * 200_000))
    got = await send(token_request(endpoint.url), 5)
    assert len(got.body) == MAX_ANSWER_BYTES + 1


# -- failures ----------------------------------------------------------------------------------


@pytest.mark.anyio
@every_transport
async def test_a_refused_connection_is_retryable(send: Send) -> None:
    """Nobody listens: "could not be reached", and a retry may help."""
    error = await failure_of(send(token_request(f"http://127.0.0.1:{closed_port()}"), 5))
    assert error.message.startswith("could not be reached: ")
    assert error.retryable


@pytest.mark.anyio
@every_transport
async def test_a_trickled_body_is_cut_at_the_deadline(
    send: Send, serve: Callable[[Script], Scripted]
) -> None:
    """A byte every 0.2 s satisfies any per-read timeout for ever; the whole exchange
    still ends at ``timeout``, and a retry would not help."""
    endpoint = serve(trickle)
    started = time.monotonic()
    error = await failure_of(send(token_request(endpoint.url), 1.0))
    elapsed = time.monotonic() - started
    assert error.message == "did not finish within 1.0s"
    assert not error.retryable
    assert 0.9 < elapsed < 2.5, elapsed


@pytest.mark.anyio
@every_transport
async def test_a_body_that_stalls_near_the_deadline_fails_at_the_deadline(
    send: Send, serve: Callable[[Script], Scripted]
) -> None:
    """A byte every 0.8 s: with timeout=1 the read waiting since 0.8 s is cut at 1 s,
    not when the next byte comes (httpx keeps one read timeout for a whole body)."""

    def stall(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "100")
        handler.end_headers()
        stop = handler.server.stop  # type: ignore[attr-defined]
        while not stop.wait(0.8):  # the wfile is unbuffered: each byte goes out at once
            handler.wfile.write(b"{")

    endpoint = serve(stall)
    started = time.monotonic()
    error = await failure_of(send(token_request(endpoint.url), 1.0))
    elapsed = time.monotonic() - started
    assert error.message == "did not finish within 1.0s"
    assert 0.95 < elapsed < 1.45, elapsed


@pytest.mark.anyio
@every_transport
async def test_a_hung_endpoint_times_out(send: Send, fake: FakeWeChat) -> None:
    """No headers at all: the timeout fires, not retryable."""
    fake.fail_next(hang=10)
    with fake.serve() as url:
        error = await failure_of(send(token_request(url), 0.5))
    assert error.message.startswith(("timed out after 0.5s: ", "did not finish within 0.5s"))
    assert not error.retryable


@pytest.mark.anyio
@every_transport
async def test_an_answer_that_breaks_off_is_retryable(
    send: Send, serve: Callable[[Script], Scripted]
) -> None:
    """The connection closed mid-body, long before the deadline: "answer broke off"."""
    endpoint = serve(break_off)
    error = await failure_of(send(token_request(endpoint.url), 5))
    assert error.message.startswith("answer broke off: ")
    assert error.retryable


@pytest.mark.anyio
@every_transport
async def test_a_request_that_cannot_be_built_says_so(send: Send) -> None:
    """An api_base the HTTP library refuses: no request is sent."""
    error = await failure_of(send(token_request("http://[::1"), 5))
    assert error.message.startswith("could not be built into a request: ")
    assert not error.retryable


# -- the secret stays in no frame ----------------------------------------------------------------

FAILURES: dict[str, Callable[[Callable[[Script], Scripted], FakeWeChat, str], str]] = {
    "refused": lambda serve, fake, url: f"http://127.0.0.1:{closed_port()}",
    "hang": lambda serve, fake, url: (fake.fail_next(hang=10), url)[1],
    "trickle": lambda serve, fake, url: serve(trickle).url,
    "broken": lambda serve, fake, url: serve(break_off).url,
    "unbuildable": lambda serve, fake, url: "http://[::1",
}


@pytest.mark.anyio
@every_transport
@pytest.mark.parametrize("failure", FAILURES)
async def test_no_frame_on_the_traceback_holds_the_secret(
    send: Send, serve: Callable[[Script], Scripted], fake: FakeWeChat, failure: str
) -> None:
    """Walk the frames of the TransportError's traceback (there is no cause or context)
    and render it with its locals: the secret is in neither."""
    with fake.serve() as url:
        api_base = FAILURES[failure](serve, fake, url)
        error = await failure_of(send(token_request(api_base), 0.5))
    assert secret_locals(error) == []
    rendered = "".join(
        traceback.TracebackException.from_exception(error, capture_locals=True).format()
    )
    assert "request = TokenRequest(GET /cgi-bin/token)" in rendered  # locals were rendered
    assert not leaks(rendered)


# -- async only -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_cancelling_the_caller_cancels_the_request(
    anyio_backend: str, fake: FakeWeChat
) -> None:
    """A cancellation is no TransportError: it reaches the scope that cancelled."""
    fake.fail_next(hang=10)
    with fake.serve() as url:
        async with httpx.AsyncClient() as client:
            transport = AsyncHttpxTransport(client)
            with anyio.move_on_after(0.3) as scope:
                await transport.send(token_request(url), timeout=5)
    assert scope.cancelled_caught


@pytest.mark.parametrize("transport", [HttpxTransport, AsyncHttpxTransport])
def test_reprs_name_the_client_only(transport: Callable[[Any], object]) -> None:
    """A transport's repr shows the kind of its client, nothing of its configuration."""
    client = httpx.Client(base_url="http://user:pw@127.0.0.1")
    assert repr(transport(client)).endswith("(Client)")
    client.close()
