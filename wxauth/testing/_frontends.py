"""How tests reach a :class:`~wxauth.testing.FakeWeChat`, and how it lets go of them.

The model itself (:mod:`._fake`) knows no transport. :meth:`FrontEnds.intercept` wraps it
in a :class:`~wxauth.testing.WeChatInterceptor` (in process, on ``responses``),
:meth:`FrontEnds.httpx_transport` in an ``EmulatorTransport`` (in process, an httpx
transport) and :meth:`FrontEnds.serve` in an :class:`~wxauth.testing.EmulatorServer`
(loopback HTTP); all load lazily, so importing :mod:`wxauth.testing` imports neither
``responses``, ``httpx`` nor ``http.server``. :meth:`FrontEnds.close` releases every
wait a front end is in (injected hangs, token latency) and stops the servers that
registered with the fake.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar, cast

from ._state import EmulatorState

if TYPE_CHECKING:
    from ._fake import FakeWeChat
    from ._httpx import EmulatorTransport
    from ._responses import WeChatInterceptor
    from ._server import EmulatorServer

__all__ = ["FrontEnds"]

_Self = TypeVar("_Self", bound="FrontEnds")


class FrontEnds(EmulatorState):
    """The front-end half of :class:`~wxauth.testing.FakeWeChat`: attach, wait, close."""

    _closed: threading.Event
    _servers: list[EmulatorServer]

    def intercept(
        self, *, client_ip: str = "127.0.0.1", passthru: Iterable[str] = ()
    ) -> WeChatInterceptor:
        """Intercept ``requests`` calls to api/qyapi.weixin.qq.com (needs ``responses``),
        and ``httpx`` calls too when httpx is installed (sync and async clients with their
        default transport).

        Use the result as a context manager, a decorator, or with ``start()``/``stop()``.
        Loopback URLs pass through to the network; any other unmatched URL raises
        ``ConnectionError`` unless listed in ``passthru``.
        """
        from ._responses import WeChatInterceptor

        return WeChatInterceptor(self._as_fake(), client_ip=client_ip, passthru=passthru)

    def httpx_transport(self, *, client_ip: str = "127.0.0.1") -> EmulatorTransport:
        """An ``httpx.MockTransport`` that answers every request with this fake (needs
        ``httpx``): ``httpx.Client(transport=fake.httpx_transport())``, or ``AsyncClient``.

        Whatever the URL's host, the emulator answers; nothing reaches the network. An
        injected ``hang`` raises ``httpx.ReadTimeout`` at once; ``token_latency`` is
        awaited with ``anyio.sleep`` by an async client, so its event loop runs on.
        """
        from ._httpx import EmulatorTransport

        return EmulatorTransport(self._as_fake(), client_ip=client_ip)

    @contextlib.contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
        """Run a real HTTP server in a thread; yields its base URL for ``api_base``.

        WeChat and WeCom paths are served on the same server. ``port=0`` picks a free port.
        """
        from ._server import EmulatorServer

        with EmulatorServer(self._as_fake(), host, port) as server:
            yield server.url

    def close(self) -> None:
        """Release hangs and latency waits, and stop every server this fake runs."""
        self._closed.set()
        with self._lock:
            servers = list(self._servers)
        for server in servers:
            server.stop()

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed.is_set()

    def _register_server(self, server: EmulatorServer) -> None:
        with self._lock:
            self._servers.append(server)

    def _unregister_server(self, server: EmulatorServer) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._servers.remove(server)

    def _as_fake(self) -> FakeWeChat:
        # This class exists only as a base of FakeWeChat, which the front ends take.
        return cast("FakeWeChat", self)

    def _pause(self, seconds: float) -> None:
        """Wait ``seconds`` of real time, or less if the fake is closed."""
        self._closed.wait(seconds)
