"""``AsyncComponentTokenManager``: a third-party platform for ``async`` code.

The platform's rules live in :class:`~wxauth.openplatform.ComponentTokenManager`; this
is its face for an event loop (asyncio or trio, through anyio), in two parts:

- **Tokens, the hot path, are native.** ``get_token()`` of the component token and of
  each authorizer (``authorizer(appid)``, an :class:`~wxauth.AsyncTokenManager`) read
  the store without a thread when the store allows it (a ``MemoryStore``) and wait for
  a fetch another task makes on an ``anyio.Event``, with the single flight, margins and
  guards of the sync managers (they are their async twins, on the same store and keys).
- **Platform operations run in a worker thread**: a push (decrypt, check, record the
  ticket, exchange an authorization code), ``query_auth``, a pre-authorization code,
  ``start_push_ticket``. They are rare (a push every 10 minutes, an authorization now
  and then), they take the store's locks, and they are exactly the sync platform's
  code, so sync and async services of one platform cannot disagree on a rule.

A cancelled caller stops waiting at once; an operation already running in its thread
finishes (a push half-recorded would be worse than one recorded after its caller left).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import anyio.to_thread
from cachetools import LRUCache

from .._async_manager import AsyncTokenManager
from .._secret import Secret
from ..stores import TokenStore
from ._authorizations import Authorization
from ._component import ComponentTokenManager
from ._protocol import PreAuthCode
from ._pushes import PushEvent

__all__ = ["AsyncComponentTokenManager"]

_T = TypeVar("_T")


class AsyncComponentTokenManager:
    """The component token of one third-party platform, its pushes and its authorizers'
    tokens, for ``async`` code. Takes the arguments of
    :class:`~wxauth.openplatform.ComponentTokenManager` (and builds one, :attr:`sync`),
    or wraps one with :meth:`from_sync`.

    :param client: an ``httpx.AsyncClient`` for the token managers' requests (default:
        one of their own each).
    """

    def __init__(
        self,
        component_appid: str,
        component_secret: str | Secret,
        *,
        token: str | Secret,
        encoding_aes_key: str | Secret,
        store: TokenStore | None = None,
        client: Any = None,
        **options: Any,
    ) -> None:
        platform = ComponentTokenManager(
            component_appid,
            component_secret,
            token=token,
            encoding_aes_key=encoding_aes_key,
            store=store,
            **options,
        )
        self._bind(platform, client)
        self._owns_sync = True

    @classmethod
    def from_sync(
        cls, platform: ComponentTokenManager, *, client: Any = None
    ) -> AsyncComponentTokenManager:
        """The async face of ``platform``: the same store, keys and settings (a sync
        and an async service of one platform share its tokens and records)."""
        if not isinstance(platform, ComponentTokenManager):
            raise TypeError(
                f"platform must be a ComponentTokenManager, not {type(platform).__name__}"
            )
        self = cls.__new__(cls)
        self._bind(platform, client)
        self._owns_sync = False  # the caller's platform: closed by the caller
        return self

    def _bind(self, platform: ComponentTokenManager, client: Any) -> None:
        #: The synchronous platform underneath (its operations run in worker threads).
        self.sync = platform
        self._client = client
        self.tokens = AsyncTokenManager.from_sync(platform.tokens, client=client)
        self._authorizers: LRUCache[str, AsyncTokenManager] = LRUCache(
            maxsize=platform._managers.maxsize
        )
        self._lock = threading.Lock()

    @property
    def component_appid(self) -> str:
        """The platform's appid."""
        return self.sync.component_appid

    # -- tokens: native async ---------------------------------------------------------

    async def get_token(self) -> str:
        """Return a valid ``component_access_token`` (see
        :meth:`ComponentTokenManager.get_token`)."""
        return await self.tokens.get_token()

    async def invalidate(self, token: str) -> bool:
        """Drop the stored component token only if it is still ``token``."""
        return await self.tokens.invalidate(token)

    async def refresh(self) -> str:
        """Fetch a new component token now."""
        return await self.tokens.refresh()

    def authorizer(self, authorizer_appid: str) -> AsyncTokenManager:
        """The :class:`~wxauth.AsyncTokenManager` of an authorizer's access token, usable
        wherever one is (``wxauth.httpx.WxAuth(manager=...)``,
        ``with_access_token(...)``); the async twin of
        :meth:`ComponentTokenManager.authorizer`, kept built like it."""
        with self._lock:
            manager = self._authorizers.get(authorizer_appid)
            if manager is None:
                sync = self.sync.authorizer(authorizer_appid)
                manager = AsyncTokenManager.from_sync(sync, client=self._client)
                self._authorizers[authorizer_appid] = manager
            return manager

    # -- platform operations: the sync platform's code, in a worker thread ---------------

    async def handle_push(self, query: Mapping[str, Any], body: bytes | str) -> PushEvent:
        """Verify, decrypt and act on a push (see
        :meth:`ComponentTokenManager.handle_push`; the same errors)."""
        return await self._run(self.sync.handle_push, query, body)

    async def query_auth(self, authorization_code: str | Secret) -> Authorization:
        """Exchange an authorization code (see :meth:`ComponentTokenManager.query_auth`)."""
        return await self._run(self.sync.query_auth, authorization_code)

    async def create_pre_auth_code(self) -> PreAuthCode:
        """A new pre-authorization code (see
        :meth:`ComponentTokenManager.create_pre_auth_code`)."""
        return await self._run(self.sync.create_pre_auth_code)

    async def authorization_url(
        self,
        redirect_uri: str,
        *,
        auth_type: int = 3,
        biz_appid: str | None = None,
        mobile: bool = False,
    ) -> str:
        """A new pre-authorization code in the authorization page's URL (see
        :meth:`ComponentTokenManager.authorization_url`)."""
        call = functools.partial(
            self.sync.authorization_url,
            redirect_uri,
            auth_type=auth_type,
            biz_appid=biz_appid,
            mobile=mobile,
        )
        return await self._run(call)

    async def start_push_ticket(self) -> None:
        """Ask WeChat to (re)start pushing ``component_verify_ticket``."""
        await self._run(self.sync.start_push_ticket)

    @staticmethod
    async def _run(func: Callable[..., _T], *args: Any) -> _T:
        return await anyio.to_thread.run_sync(func, *args, abandon_on_cancel=True)

    # -- lifecycle ----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the async managers (their own HTTP clients), and the sync platform
        if this object built it (not one given to :meth:`from_sync`)."""
        with self._lock:
            managers = [self.tokens, *self._authorizers.values()]
            self._authorizers.clear()
        for manager in managers:
            await manager.aclose()
        if self._owns_sync:
            await self._run(self.sync.close)

    async def __aenter__(self) -> AsyncComponentTokenManager:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncComponentTokenManager(component_appid={self.component_appid!r})"
