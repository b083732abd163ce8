"""Front end 3: the emulator inside the test process, as an httpx transport.

:class:`EmulatorTransport` is an ``httpx.MockTransport`` that answers every request with a
:class:`~wxauth.testing.FakeWeChat`, whatever its host: give it to a client
(``httpx.Client(transport=fake.httpx_transport())``, or ``httpx.AsyncClient``) and that
client talks to the emulator and to nothing else. This is the only module of
:mod:`wxauth.testing` that needs ``httpx``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._wire import Reply, Request

_MISSING = (
    "FakeWeChat.httpx_transport() needs the 'httpx' package: pip install 'wxauth[httpx]' "
    "(or use FakeWeChat.serve(), which needs nothing)"
)
try:
    import anyio
    import httpx
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(_MISSING) from exc

if TYPE_CHECKING:
    from ._fake import FakeWeChat

__all__ = ["EmulatorTransport"]

#: How often an async latency wait looks whether the fake was closed, in seconds.
_CLOSE_POLL = 0.05


class EmulatorTransport(httpx.MockTransport):
    """Answers every request of an ``httpx.Client`` or ``httpx.AsyncClient`` from a
    :class:`FakeWeChat`.

    An injected ``hang`` raises ``httpx.ReadTimeout`` at once, as if the client's timeout
    had fired. ``token_latency`` is real waiting: a sync client's thread waits, an async
    client's task awaits ``anyio.sleep`` (asyncio or trio), so its event loop runs on;
    :meth:`FakeWeChat.close` ends either wait. ``client_ip`` is the caller IP the
    allowlist sees.
    """

    def __init__(self, fake: FakeWeChat, *, client_ip: str = "127.0.0.1") -> None:
        super().__init__(self._answer)
        self.fake = fake
        self.client_ip = client_ip

    def _reply(self, request: httpx.Request) -> Reply:
        target = Request.from_target(
            request.method, str(request.url), request.content, self.client_ip
        )
        return self.fake.handle(target)

    def _response(self, request: httpx.Request, reply: Reply) -> httpx.Response:
        if reply.hang is not None:
            raise httpx.ReadTimeout(
                "emulated hang: WeChat did not answer (wxauth.testing fault injection)",
                request=request,
            )
        headers = {"Content-Type": reply.content_type}
        return httpx.Response(reply.status, headers=headers, content=reply.body, request=request)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        """The handler of a sync client (``MockTransport.handle_request``)."""
        reply = self._reply(request)
        if reply.delay > 0:
            self.fake._pause(reply.delay)
        return self._response(request, reply)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Answer an async client's request; latency is awaited, not slept."""
        await request.aread()
        reply = self._reply(request)
        if reply.delay > 0:
            with anyio.move_on_after(reply.delay):
                while not self.fake.closed:
                    await anyio.sleep(_CLOSE_POLL)
        return self._response(request, reply)

    def __repr__(self) -> str:
        return f"EmulatorTransport({self.fake!r})"
