"""WeChat Open Platform (third-party platform, 第三方平台): pushes and component tokens.

Needs the ``openplatform`` extra (``cryptography``, ``defusedxml``);
:class:`AsyncComponentTokenManager` needs the ``httpx`` extra too, and is imported on
first use.
"""

from importlib import import_module as _import_module
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from ._authorizer import AuthorizerTokenSource
from ._component import (
    Authorization,
    ComponentTokenManager,
    ComponentTokenSource,
    PushEvent,
)
from ._crypto import MAX_PUSH_BYTES, MessageCrypto
from ._errors import (
    OPEN_PLATFORM_ERRCODES,
    AuthorizationCodeError,
    AuthorizerNotAuthorizedError,
    ComponentTicketError,
    OpenPlatformError,
    PushAppIdError,
    PushDecryptError,
    PushError,
    PushFormatError,
    PushReplayError,
    PushSignatureError,
    RefreshTokenError,
    error_for_component_errcode,
)
from ._fleet import AuthorizerFleet, FleetPlatform, FleetStats
from ._protocol import PreAuthCode, authorization_url
from ._xml import parse_xml_fields

if _TYPE_CHECKING:
    from ._async_component import AsyncComponentTokenManager

__all__ = [
    "MAX_PUSH_BYTES",
    "OPEN_PLATFORM_ERRCODES",
    "AsyncComponentTokenManager",
    "Authorization",
    "AuthorizationCodeError",
    "AuthorizerFleet",
    "AuthorizerNotAuthorizedError",
    "AuthorizerTokenSource",
    "ComponentTicketError",
    "ComponentTokenManager",
    "ComponentTokenSource",
    "FleetPlatform",
    "FleetStats",
    "MessageCrypto",
    "OpenPlatformError",
    "PreAuthCode",
    "PushAppIdError",
    "PushDecryptError",
    "PushError",
    "PushEvent",
    "PushFormatError",
    "PushReplayError",
    "PushSignatureError",
    "RefreshTokenError",
    "authorization_url",
    "error_for_component_errcode",
    "parse_xml_fields",
]


def __getattr__(name: str) -> _Any:
    if name == "AsyncComponentTokenManager":
        try:
            module = _import_module("._async_component", __name__)
        except ImportError as exc:
            raise ImportError(
                f"wxauth.openplatform.{name} needs the 'httpx' extra too: "
                f"pip install 'wxauth[openplatform,httpx]' ({exc})"
            ) from None
        return module.AsyncComponentTokenManager
    raise AttributeError(f"module 'wxauth.openplatform' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"AsyncComponentTokenManager"})
