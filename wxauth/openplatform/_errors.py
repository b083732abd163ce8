"""The errors of the Open Platform (third-party platform) part of wxauth.

::

    WxAuthError
    ├── PushError                     a push to the platform's URL cannot be accepted
    │   ├── PushSignatureError        msg_signature missing or wrong (forged, tampered)
    │   │   └── PushReplayError       signed right, but already handled or signed too long ago
    │   ├── PushDecryptError          Encrypt is not base64, not AES blocks, bad padding
    │   ├── PushAppIdError            the appid inside the plaintext is not ours
    │   └── PushFormatError           the XML is malformed, too large or hostile
    └── WeChatAPIError
        └── OpenPlatformError         a component endpoint answered an errcode 61xxx
            ├── ComponentTicketError  61005/61006, or no component_verify_ticket stored yet
            ├── AuthorizerNotAuthorizedError   61003, or an authorizer never authorized
            ├── RefreshTokenError     61023: the stored authorizer_refresh_token is refused
            ├── AuthorizationCodeError 61009/61010: the authorization code is bad or old
            └── (other 61xxx: OpenPlatformError itself; 61004 is a CredentialError)

A :class:`PushError` is also a :class:`ValueError`: a web handler answers it with a 4xx.
No error carries the component secret, a ticket, a refresh token or a whole token.
"""

from __future__ import annotations

from .._errors import (
    CredentialError,
    WeChatAPIError,
    WxAuthError,
    error_for_token_endpoint,
    register_errcode_class,
)

__all__ = [
    "OPEN_PLATFORM_ERRCODES",
    "AuthorizationCodeError",
    "AuthorizerNotAuthorizedError",
    "ComponentTicketError",
    "OpenPlatformError",
    "PushAppIdError",
    "PushDecryptError",
    "PushError",
    "PushFormatError",
    "PushReplayError",
    "PushSignatureError",
    "RefreshTokenError",
    "error_for_component_errcode",
]


class PushError(WxAuthError, ValueError):
    """A push (``component_verify_ticket``, an authorization notice, a message) was
    refused: answer the request with a 4xx and keep what is stored."""


class PushSignatureError(PushError):
    """The ``msg_signature`` is missing or does not match ``sha1(sort(token,
    timestamp, nonce, Encrypt))``."""


class PushReplayError(PushSignatureError):
    """A push whose signature is right but which was already handled, or was signed
    more than ``push_max_age`` seconds away from this host's clock: replayed (or this
    host's clock is off)."""


class PushDecryptError(PushError):
    """``Encrypt`` does not decrypt: not base64, not whole AES blocks, bad PKCS#7
    padding (block 32) or a length field that does not fit."""


class PushAppIdError(PushError):
    """The appid at the end of the decrypted plaintext is not this platform's."""


class PushFormatError(PushError):
    """The body is not the XML expected: malformed, too large, hostile (entities,
    DTDs) or missing a field."""


class OpenPlatformError(WeChatAPIError):
    """A component endpoint (``/cgi-bin/component/...``) answered an errcode of the
    61xxx family, or the platform's state cannot serve a call."""


class ComponentTicketError(OpenPlatformError):
    """61005 (ticket expired) / 61006 (ticket invalid), or no ``component_verify_ticket``
    is stored yet: wait for WeChat's next push (every 10 minutes) or call
    ``start_push_ticket()``."""


class AuthorizerNotAuthorizedError(OpenPlatformError):
    """61003: the account has not authorized this platform (or cancelled it), or wxauth
    knows no refresh token for it."""


class RefreshTokenError(OpenPlatformError):
    """61023: WeChat refused the stored ``authorizer_refresh_token`` (stale or lost)."""


class AuthorizationCodeError(OpenPlatformError):
    """61009 / 61010: the authorization code is invalid or expired; the merchant must
    authorize again."""


#: The Open Platform errcodes and the class each maps to.
OPEN_PLATFORM_ERRCODES: dict[int, type[WeChatAPIError]] = {
    61003: AuthorizerNotAuthorizedError,
    61004: CredentialError,  # caller IP not in the platform's whitelist
    61005: ComponentTicketError,
    61006: ComponentTicketError,
    61007: OpenPlatformError,  # the authorizer did not grant this permission set
    61009: AuthorizationCodeError,
    61010: AuthorizationCodeError,
    61011: CredentialError,  # invalid component
    61023: RefreshTokenError,
    61024: OpenPlatformError,  # /cgi-bin/token used for a component
}

# Every error rebuilt from its errcode (the failure backoff re-raising the last failure
# during its pause) is then of the same type as the first: ComponentTicketError, not a
# bare WeChatAPIError.
for _errcode, _cls in OPEN_PLATFORM_ERRCODES.items():
    register_errcode_class(_errcode, _cls)


def error_for_component_errcode(
    errcode: int, errmsg: str, *, url_path: str | None = None
) -> WeChatAPIError:
    """Map an errcode a component endpoint answered onto the exception tree: the
    classes above (registered with the token-endpoint mapping, which also knows
    credentials and quota), and :class:`OpenPlatformError` for any other 61xxx."""
    if 61000 <= errcode < 62000 and errcode not in OPEN_PLATFORM_ERRCODES:
        return OpenPlatformError(errcode, errmsg, url_path=url_path)
    return error_for_token_endpoint(errcode, errmsg, url_path=url_path)
