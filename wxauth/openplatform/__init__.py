"""WeChat Open Platform (third-party platform, 第三方平台): pushes and component tokens.

Needs the ``openplatform`` extra (``cryptography``, ``defusedxml``).
"""

from ._authorizer import AuthorizerTokenSource
from ._component import (
    Authorization,
    ComponentTokenManager,
    ComponentTokenSource,
    PushEvent,
    PushReplayError,
)
from ._crypto import MAX_PUSH_BYTES, MessageCrypto
from ._fleet import AuthorizerFleet, FleetPlatform, FleetStats
from ._xml import parse_xml_fields

__all__ = [
    "MAX_PUSH_BYTES",
    "Authorization",
    "AuthorizerFleet",
    "AuthorizerTokenSource",
    "ComponentTokenManager",
    "ComponentTokenSource",
    "FleetPlatform",
    "FleetStats",
    "MessageCrypto",
    "PushEvent",
    "PushReplayError",
    "parse_xml_fields",
]
