"""the WeChat ``access_token`` as a non-problem.

``session.auth = wxauth.WxAuth(appid, secret)`` adds the token to every request of a
``requests.Session`` and heals 40001/40014/42001 with one refresh and one re-send;
``@wxauth.with_access_token(manager)`` does the same for any function that takes an
``access_token`` argument. Tokens are cached behind a store, fetched once however many
threads ask, and never logged.
"""

from importlib import import_module as _import_module
from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from ._auth import WxAuth
from ._config import ManagerStats
from ._decorator import with_access_token
from ._errors import (
    EXPIRED_ERRCODES,
    CredentialError,
    QuotaError,
    RefreshBudgetError,
    StoreError,
    TokenFetchError,
    WeChatAPIError,
    WxAuthError,
    raise_for_errcode,
)
from ._jssdk import agent_config, card_signature, jssdk_config, jssdk_signature
from ._manager import TokenManager
from ._redact import install_log_redaction as _install_log_redaction
from ._secret import Secret
from ._token import Token
from .sources import (
    CallableTokenSource,
    ClassicTokenSource,
    FetchContext,
    RemoteSource,
    StableTokenSource,
    TokenProvider,
    TokenSource,
    WeComTokenSource,
)
from .stores import (
    FileStore,
    MemoryStore,
    RedisStore,
    StoreLock,
    TokenStore,
    reset_default_store,
)
from .tickets import AsyncTicketManager, TicketManager

try:
    __version__ = _version("wxauth")
except _PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "EXPIRED_ERRCODES",
    "AsyncComponentTokenManager",
    "AsyncTicketManager",
    "AsyncTokenManager",
    "AuthorizationCodeError",
    "AuthorizerFleet",
    "AuthorizerNotAuthorizedError",
    "CallableTokenSource",
    "ClassicTokenSource",
    "ComponentTicketError",
    "ComponentTokenManager",
    "CredentialError",
    "FetchContext",
    "FileStore",
    "ManagerStats",
    "MemoryStore",
    "MessageCrypto",
    "OpenPlatformError",
    "PushError",
    "PushEvent",
    "PushReplayError",
    "QuotaError",
    "RedisStore",
    "RefreshBudgetError",
    "RefreshTokenError",
    "RemoteSource",
    "Secret",
    "StableTokenSource",
    "StoreError",
    "StoreLock",
    "TicketManager",
    "Token",
    "TokenFetchError",
    "TokenManager",
    "TokenProvider",
    "TokenSource",
    "TokenStore",
    "WeChatAPIError",
    "WeComTokenSource",
    "WxAuth",
    "WxAuthError",
    "__version__",
    "agent_config",
    "card_signature",
    "jssdk_config",
    "jssdk_signature",
    "raise_for_errcode",
    "reset_default_store",
    "with_access_token",
]

# urllib3 logs every request line at DEBUG, query string included: the classic token
# endpoint's secret and every API call's token would land in the user's logs.
_install_log_redaction()


if _TYPE_CHECKING:
    from ._async_manager import AsyncTokenManager
    from .openplatform import (
        AuthorizationCodeError,
        AuthorizerFleet,
        AuthorizerNotAuthorizedError,
        ComponentTicketError,
        ComponentTokenManager,
        MessageCrypto,
        OpenPlatformError,
        PushError,
        PushEvent,
        PushReplayError,
        RefreshTokenError,
    )
    from .openplatform._async_component import AsyncComponentTokenManager

#: Exported names that need an extra, imported on first use so that ``import wxauth``
#: works with the core dependencies alone: name -> (module, extra).
_LAZY: dict[str, tuple[str, str]] = {
    "AsyncTokenManager": ("._async_manager", "httpx"),
    "AsyncComponentTokenManager": (".openplatform", "openplatform,httpx"),
    "MessageCrypto": (".openplatform", "openplatform"),
    "AuthorizationCodeError": (".openplatform", "openplatform"),
    "AuthorizerFleet": (".openplatform", "openplatform"),
    "AuthorizerNotAuthorizedError": (".openplatform", "openplatform"),
    "ComponentTicketError": (".openplatform", "openplatform"),
    "ComponentTokenManager": (".openplatform", "openplatform"),
    "OpenPlatformError": (".openplatform", "openplatform"),
    "PushError": (".openplatform", "openplatform"),
    "PushEvent": (".openplatform", "openplatform"),
    "PushReplayError": (".openplatform", "openplatform"),
    "RefreshTokenError": (".openplatform", "openplatform"),
}


def __getattr__(name: str) -> _Any:
    if name in _LAZY:
        module, extra = _LAZY[name]
        try:
            value = getattr(_import_module(module, __name__), name)
        except ImportError as exc:
            raise ImportError(
                f"wxauth.{name} needs the {extra!r} extra: pip install 'wxauth[{extra}]' ({exc})"
            ) from None
        return value
    raise AttributeError(f"module 'wxauth' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
