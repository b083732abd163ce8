"""WeChat Open Platform (third-party platform, 第三方平台): pushes and component tokens.

Needs the ``openplatform`` extra (``cryptography``, ``defusedxml``).
"""

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

__all__ = [
    "MAX_PUSH_BYTES",
    "OPEN_PLATFORM_ERRCODES",
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
