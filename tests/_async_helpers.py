"""Helpers for the async and httpx tests: :class:`Wire`, the emulator as an httpx
transport that records what went out, streams its answers so a test can see whether
they were read, and holds token requests until the test lets them go; plus a leak
check for secrets and tokens."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field

import anyio
import httpx

from wxauth.testing import FakeWeChat

__all__ = ["TOKEN_PATHS", "Body", "Sent", "Wire", "eventually", "leaks"]

#: The paths of the emulator's token endpoints.
TOKEN_PATHS = frozenset({"/cgi-bin/token", "/cgi-bin/stable_token", "/cgi-bin/gettoken"})
#: No run of this many characters of a secret or a token may show.
WINDOW = 12


def leaks(text: str, secrets: Iterable[str]) -> list[str]:
    """The secrets of which ``text`` shows ``WINDOW`` or more consecutive characters."""
    found = []
    for secret in secrets:
        windows = {secret[i : i + WINDOW] for i in range(len(secret) - WINDOW + 1)}
        if any(window in text for window in windows):
            found.append(secret)
    return found


async def eventually(
    condition: Callable[[], Awaitable[bool]], *, timeout: float = 5.0, what: str = "it"
) -> None:
    """Wait until ``await condition()`` is true (polled every 10 ms); fail after
    ``timeout`` seconds. For what a background task does, not for guessing how long
    something takes: the test still states the condition it waits for."""
    with anyio.move_on_after(timeout):
        while not await condition():
            await anyio.sleep(0.01)
        return
    raise AssertionError(f"{what} did not happen within {timeout}s")


class Body(httpx.SyncByteStream, httpx.AsyncByteStream):
    """An answer's body as a stream that says whether anyone read it."""

    def __init__(self, content: bytes) -> None:
        self.content = content
        self.read = False

    def __iter__(self) -> Iterator[bytes]:
        self.read = True
        yield self.content

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.read = True
        yield self.content


@dataclass
class Sent:
    """One request as it reached the emulator."""

    method: str
    url: httpx.URL
    content: bytes
    thread: int
    body: Body | None = field(default=None, repr=False)

    @property
    def path(self) -> str:
        return self.url.path

    @property
    def tokens(self) -> list[str]:
        """The ``access_token`` values of the query."""
        return self.url.params.get_list("access_token")


class _Parked:
    """A held request behind a masked repr."""

    __slots__ = ("request",)

    def __init__(self, request: httpx.Request) -> None:
        self.request = request

    def __repr__(self) -> str:
        return "<held request>"


class Wire(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """``fake.httpx_transport()`` for an ``httpx.Client`` or ``httpx.AsyncClient``:
    records every request in :attr:`sent`, answers with a :class:`Body` stream (so an
    unread answer stays unread), and, after :meth:`hold`, holds token requests of an
    async client before they reach the emulator until :meth:`release`."""

    def __init__(self, fake: FakeWeChat, *, client_ip: str = "127.0.0.1") -> None:
        self.inner = fake.httpx_transport(client_ip=client_ip)
        self.sent: list[Sent] = []
        self._lock = threading.Lock()
        self._holds = 0
        self.arrived: anyio.Event | None = None
        self._released: anyio.Event | None = None

    # -- holding token requests (async clients) ----------------------------------------

    def hold(self, times: int = 1) -> None:
        """Hold the next ``times`` token requests of an async client; call in the loop."""
        self._holds = times
        self.arrived = anyio.Event()
        self._released = anyio.Event()

    def release(self) -> None:
        assert self._released is not None
        self._released.set()

    async def wait_arrived(self, timeout: float = 5.0) -> None:
        assert self.arrived is not None
        with anyio.fail_after(timeout):
            await self.arrived.wait()

    # -- what went out -------------------------------------------------------------------

    def to(self, path: str) -> list[Sent]:
        return [s for s in self.sent if s.path == path]

    @property
    def api(self) -> list[Sent]:
        return [s for s in self.sent if s.path not in TOKEN_PATHS]

    @property
    def token_requests(self) -> list[Sent]:
        return [s for s in self.sent if s.path in TOKEN_PATHS]

    # -- the transport -------------------------------------------------------------------

    @staticmethod
    def _copy(request: httpx.Request, content: bytes) -> httpx.Request:
        # The emulator gets a copy: the request keeps the stream it came with, spent as a
        # network transport leaves it (httpx.MockTransport would buffer it in place, and
        # make a generator body replayable, as it never is on the wire).
        return httpx.Request(request.method, request.url, headers=request.headers, content=content)

    def _streamed(
        self, request: httpx.Request, content: bytes, answer: httpx.Response
    ) -> httpx.Response:
        body = Body(answer.content)
        sent = Sent(request.method, request.url, content, threading.get_ident(), body)
        with self._lock:
            self.sent.append(sent)
        return httpx.Response(answer.status_code, headers=answer.headers, stream=body)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        content = b"".join(request.stream)
        answer = self.inner.handle_request(self._copy(request, content))
        return self._streamed(request, content, answer)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._holds > 0 and request.url.path in TOKEN_PATHS:
            self._holds -= 1
            assert self.arrived is not None
            assert self._released is not None
            # While held, this frame keeps no request (whose URL may hold the secret)
            # in its locals: a traceback through it must show what wxauth leaves there.
            parked = _Parked(request)
            del request
            self.arrived.set()
            await self._released.wait()
            request = parked.request
        assert isinstance(request.stream, httpx.AsyncByteStream)
        content = b"".join([chunk async for chunk in request.stream])
        answer = await self.inner.handle_async_request(self._copy(request, content))
        return self._streamed(request, content, answer)
