"""``fake.intercept()`` for httpx: the default transports of ``httpx.Client`` and
``httpx.AsyncClient`` answer WeChat's hosts from the emulator while an interceptor runs.

The patch is on the classes ``httpx.HTTPTransport`` and ``httpx.AsyncHTTPTransport``
(``handle_request`` / ``handle_async_request``), so clients made before the interceptor
started are covered too, as ``responses`` covers every ``requests`` session. A client
given its own transport (``transport=`` or ``mounts=``) is left alone. While several
interceptors run, the one started last answers; the patch is removed when the last one
stops. A URL that is neither a WeChat host, loopback nor in ``passthru`` raises
``httpx.ConnectError``: tests never reach the real network.

This module is imported only when httpx is installed.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import httpx

from ._httpx import EmulatorTransport

if TYPE_CHECKING:
    from ._fake import FakeWeChat

__all__ = ["HttpxInterception"]

_SyncHandler = Callable[[httpx.HTTPTransport, httpx.Request], httpx.Response]
_AsyncHandler = Callable[[httpx.AsyncHTTPTransport, httpx.Request], Any]

_LOCK = threading.Lock()
#: The interceptions running, oldest first; the last one answers.
_ACTIVE: list[HttpxInterception] = []
#: The transports' own methods while the patch is on.
_ORIGINAL: dict[str, Any] = {}


class HttpxInterception:
    """One interceptor's hold on httpx: :meth:`start` and :meth:`stop`."""

    def __init__(
        self,
        fake: FakeWeChat,
        *,
        client_ip: str,
        wechat: re.Pattern[str],
        loopback: re.Pattern[str],
        passthru: Iterable[str | re.Pattern[str]] = (),
    ) -> None:
        self.transport = EmulatorTransport(fake, client_ip=client_ip)
        self._wechat = wechat
        self._loopback = loopback
        self._passthru = tuple(passthru)

    def _route(self, request: httpx.Request) -> bool:
        """Whether ``request`` goes to the emulator (``True``) or to the network
        (``False``); raise ``httpx.ConnectError`` for any other host."""
        url = str(request.url)
        if self._wechat.match(url):
            return True
        if self._loopback.match(url) or any(_passes(rule, url) for rule in self._passthru):
            return False
        raise httpx.ConnectError(
            f"wxauth.testing: {request.url.scheme}://{request.url.host} is not intercepted "
            "and not loopback (add it to intercept(passthru=...) to reach it)",
            request=request,
        )

    def start(self) -> None:
        """Begin answering httpx's requests to WeChat hosts."""
        with _LOCK:
            if not _ACTIVE:
                _patch()
            _ACTIVE.append(self)

    def stop(self) -> None:
        """Stop; the patch goes when no interception is left."""
        with _LOCK:
            if self in _ACTIVE:
                _ACTIVE.remove(self)
            if not _ACTIVE:
                _unpatch()


def _passes(rule: str | re.Pattern[str], url: str) -> bool:
    return bool(rule.match(url)) if isinstance(rule, re.Pattern) else url.startswith(rule)


def _current() -> HttpxInterception | None:
    with _LOCK:
        return _ACTIVE[-1] if _ACTIVE else None


def _patch() -> None:
    original_sync: _SyncHandler = httpx.HTTPTransport.handle_request
    original_async: _AsyncHandler = httpx.AsyncHTTPTransport.handle_async_request

    def handle_request(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        interception = _current()
        if interception is not None and interception._route(request):
            return interception.transport.handle_request(request)
        return original_sync(self, request)

    async def handle_async_request(
        self: httpx.AsyncHTTPTransport, request: httpx.Request
    ) -> httpx.Response:
        interception = _current()
        if interception is not None and interception._route(request):
            return await interception.transport.handle_async_request(request)
        response: httpx.Response = await original_async(self, request)
        return response

    _ORIGINAL["sync"], _ORIGINAL["async"] = original_sync, original_async
    httpx.HTTPTransport.handle_request = handle_request  # type: ignore[method-assign]
    httpx.AsyncHTTPTransport.handle_async_request = handle_async_request  # type: ignore[method-assign]


def _unpatch() -> None:
    if _ORIGINAL:
        httpx.HTTPTransport.handle_request = _ORIGINAL.pop("sync")  # type: ignore[method-assign]
        httpx.AsyncHTTPTransport.handle_async_request = _ORIGINAL.pop("async")  # type: ignore[method-assign]
