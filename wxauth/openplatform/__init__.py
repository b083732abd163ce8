"""WeChat Open Platform (third-party platform, 第三方平台): pushes and component tokens.

Needs the ``openplatform`` extra (``cryptography``, ``defusedxml``).
"""

from ._crypto import MAX_PUSH_BYTES, MessageCrypto
from ._fleet import AuthorizerFleet, FleetPlatform, FleetStats
from ._xml import parse_xml_fields

__all__ = [
    "MAX_PUSH_BYTES",
    "AuthorizerFleet",
    "FleetPlatform",
    "FleetStats",
    "MessageCrypto",
    "parse_xml_fields",
]
