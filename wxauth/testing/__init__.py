"""A faithful WeChat token-server emulator for tests, demos and local development.

:class:`FakeWeChat` is the model (apps, tokens, clock, quotas, counters); it has two
front ends: :meth:`FakeWeChat.intercept` answers ``requests`` calls in process (needs
``responses``), and :meth:`FakeWeChat.serve` runs a real HTTP server on ``127.0.0.1``
(stdlib only). The pytest plugin provides a fresh emulator per test as the
``fake_wechat`` fixture. See ``docs/testing.md`` for the rules it covers.

Importing this package never imports ``responses``, ``http.server`` or pytest: the two
front ends load when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._fake import (
    AUTHORIZER_LIST_PATH,
    AUTHORIZER_TOKEN_PATH,
    CLEAR_QUOTA_PATH,
    CLEAR_QUOTA_V2_PATH,
    COMPONENT_TOKEN_PATH,
    DEFAULT_DAILY_QUOTA,
    DEFAULT_EXPIRES_IN,
    DEFAULT_GRACE,
    QUERY_AUTH_PATH,
    QUOTA_GET_PATH,
    STABLE_TOKEN_PATH,
    TOKEN_PATH,
    WECOM_TOKEN_PATH,
    Call,
    FakeWeChat,
    PushDeliveryError,
)

if TYPE_CHECKING:
    from ._responses import WeChatInterceptor
    from ._server import EmulatorServer

__all__ = [
    "AUTHORIZER_LIST_PATH",
    "AUTHORIZER_TOKEN_PATH",
    "CLEAR_QUOTA_PATH",
    "CLEAR_QUOTA_V2_PATH",
    "COMPONENT_TOKEN_PATH",
    "DEFAULT_DAILY_QUOTA",
    "DEFAULT_EXPIRES_IN",
    "DEFAULT_GRACE",
    "QUERY_AUTH_PATH",
    "QUOTA_GET_PATH",
    "STABLE_TOKEN_PATH",
    "TOKEN_PATH",
    "WECOM_TOKEN_PATH",
    "Call",
    "EmulatorServer",
    "FakeWeChat",
    "PushDeliveryError",
    "WeChatInterceptor",
]


def __getattr__(name: str) -> Any:
    # The front ends load lazily: responses is optional, http.server is not free.
    if name == "EmulatorServer":
        from ._server import EmulatorServer

        return EmulatorServer
    if name == "WeChatInterceptor":
        from ._responses import WeChatInterceptor

        return WeChatInterceptor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
