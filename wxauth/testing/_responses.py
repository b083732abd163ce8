"""Front end 1: the emulator inside the test process, on the ``responses`` library.

:class:`WeChatInterceptor` patches ``requests`` so that calls to
``https://api.weixin.qq.com`` and ``https://qyapi.weixin.qq.com`` are answered by a
:class:`~wxauth.testing.FakeWeChat`; code under test runs unchanged. When httpx is
installed, the default transports of ``httpx.Client`` and ``httpx.AsyncClient`` are
patched the same way (see ``_httpx_intercept``). Loopback URLs pass through, so the
interceptor and :meth:`FakeWeChat.serve` can be used together. This is the only module
of :mod:`wxauth.testing` that needs ``responses``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import requests

try:
    import responses
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "FakeWeChat.intercept() needs the 'responses' package: "
        "pip install 'wxauth[testing]' (or use FakeWeChat.serve(), which needs nothing)"
    ) from exc

from ._fake import Request

if TYPE_CHECKING:
    from ._fake import FakeWeChat
    from ._httpx_intercept import HttpxInterception

__all__ = ["LOOPBACK_PASSTHRU", "WECHAT_URL", "WeChatInterceptor"]

#: The hosts the interceptor answers for.
WECHAT_URL = re.compile(r"https?://(?:api|qyapi)\.weixin\.qq\.com(?::\d+)?/")
#: URLs left to the real network, so a loopback emulator server keeps working.
LOOPBACK_PASSTHRU = re.compile(r"https?://(?:127\.0\.0\.1|localhost|\[::1\])(?::\d+)?(?:/|$)")

_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")
_F = TypeVar("_F", bound=Callable[..., Any])


class WeChatInterceptor:
    """Answers ``requests`` calls to WeChat hosts from a :class:`FakeWeChat`, and
    ``httpx`` calls too when httpx is installed (``httpx.Client`` and
    ``httpx.AsyncClient`` with their default transport; under asyncio or trio).

    Usable three ways, like ``responses`` itself::

        with fake.intercept():
            ...

        @fake.intercept()
        def test_something(): ...

        interceptor = fake.intercept()
        interceptor.start()
        ...
        interceptor.stop()

    A request to any other host that is neither loopback nor in ``passthru`` raises
    ``requests.exceptions.ConnectionError`` (``httpx.ConnectError`` from httpx): tests
    never reach the real network. An injected ``hang`` raises
    ``requests.exceptions.ReadTimeout`` (``httpx.ReadTimeout``) at once, as if the
    client's timeout had fired; ``token_latency`` is awaited by an async client, so its
    event loop runs on. ``client_ip`` is the caller IP the allowlist sees.
    """

    def __init__(
        self, fake: FakeWeChat, *, client_ip: str = "127.0.0.1", passthru: Iterable[str] = ()
    ) -> None:
        self.fake = fake
        self.client_ip = client_ip
        self._mock = responses.RequestsMock(assert_all_requests_are_fired=False)
        for method in _METHODS:
            self._mock.add_callback(method, WECHAT_URL, callback=self._callback, content_type=None)
        self._mock.add_passthru(LOOPBACK_PASSTHRU)
        passthru = tuple(passthru)
        for prefix in passthru:
            self._mock.add_passthru(prefix)
        self._httpx = _httpx_interception(fake, client_ip, passthru)

    @property
    def mock(self) -> responses.RequestsMock:
        """The underlying ``responses.RequestsMock`` (for its ``calls``, or to add URLs)."""
        return self._mock

    def _callback(
        self, request: requests.PreparedRequest
    ) -> Exception | tuple[int, Mapping[str, str], bytes]:
        body = request.body
        if body is None:
            raw = b""
        elif isinstance(body, str):
            raw = body.encode()
        else:
            raw = bytes(body)
        method = request.method or "GET"
        reply = self.fake.handle(
            Request.from_target(method, request.url or "", raw, self.client_ip)
        )
        if reply.delay > 0:
            self.fake._pause(reply.delay)
        if reply.hang is not None:
            return requests.exceptions.ReadTimeout(
                "emulated hang: WeChat did not answer (wxauth.testing fault injection)",
                request=request,
            )
        return reply.status, {"Content-Type": reply.content_type}, reply.body

    def start(self) -> None:
        """Begin intercepting."""
        self._mock.start()
        if self._httpx is not None:
            self._httpx.start()

    def stop(self) -> None:
        """Stop intercepting."""
        if self._httpx is not None:
            self._httpx.stop()
        self._mock.stop(allow_assert=False)
        self._mock.calls.reset()

    def __enter__(self) -> WeChatInterceptor:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __call__(self, func: _F) -> _F:
        """Decorate a function so it runs with interception on."""

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self:
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


def _httpx_interception(
    fake: FakeWeChat, client_ip: str, passthru: tuple[str, ...]
) -> HttpxInterception | None:
    """The httpx half of an interceptor, or ``None`` when httpx is not installed."""
    try:
        from ._httpx_intercept import HttpxInterception
    except ImportError:
        return None
    return HttpxInterception(
        fake,
        client_ip=client_ip,
        wechat=WECHAT_URL,
        loopback=LOOPBACK_PASSTHRU,
        passthru=passthru,
    )
