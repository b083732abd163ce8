"""``@with_access_token``: pass the token into a function, and retry it once when
WeChat says the token is bad."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

import requests
import wrapt

from ._auth import WxAuth
from ._errors import EXPIRED_ERRCODES, WeChatAPIError
from ._manager import TokenManager
from ._protocol import mapping_expired_errcode
from ._redact import redact_token
from ._response import expired_errcode
from .sources import TokenProvider

__all__ = ["TokenProvider", "with_access_token"]

logger = logging.getLogger("wxauth")

F = TypeVar("F", bound=Callable[..., Any])


def _rejected_code(outcome: object) -> int | None:
    """The expired errcode ``outcome`` (a result or an exception) reports, if any."""
    # dict before Mapping: the usual result, recognised without the slower ABC check.
    if isinstance(outcome, (dict, Mapping)):
        return mapping_expired_errcode(outcome)
    if isinstance(outcome, WeChatAPIError):
        return outcome.errcode if outcome.errcode in EXPIRED_ERRCODES else None
    if isinstance(outcome, requests.Response):
        return expired_errcode(outcome)
    return None


def _token_given(
    wrapped: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], param: str
) -> bool:
    """Whether the caller passed ``param`` themselves, by keyword or by position."""
    if param in kwargs:
        return True
    if not args:
        return False
    try:
        bound = inspect.signature(wrapped).bind_partial(*args)
    except (TypeError, ValueError):  # no signature, or too many arguments: not ours
        return False
    return param in bound.arguments


def _may_come_by_position(func: Callable[..., Any], param: str) -> bool:
    """Whether a positional argument could fill ``param`` of ``func``; decided once at
    decoration time, so a keyword-only ``param`` (the usual case) skips the per-call
    signature binding of :func:`_token_given`, which costs tens of microseconds.
    ``True`` when the signature cannot be read (the per-call check then decides)."""
    try:
        # __func__: a classmethod/staticmethod object or a bound method; binding drops
        # the first parameter but changes no parameter's kind.
        parameters = inspect.signature(getattr(func, "__func__", func)).parameters
    except (TypeError, ValueError):
        return True
    kind = parameters[param].kind if param in parameters else None
    return kind in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.VAR_POSITIONAL,
    )


def _is_async_callable(func: Callable[..., Any]) -> bool:
    """Whether calling ``func`` is known, before any call, to give a coroutine: an
    ``async def`` (also as a method, a class or static method, or marked with
    ``inspect.markcoroutinefunction``), a ``functools.partial`` of one, or an object
    whose ``__call__`` is one. A plain function that merely returns a coroutine cannot
    be told apart; :func:`with_access_token` recognises those by their result."""
    target: Any = getattr(func, "__func__", func)
    for _ in range(32):  # partials of partials; bounded against a cycle
        if inspect.iscoroutinefunction(target):
            return True
        if isinstance(target, functools.partial):
            target = target.func
            continue
        if callable(target) and not inspect.isroutine(target) and not isinstance(target, type):
            return inspect.iscoroutinefunction(type(target).__call__)
        return False
    return False


def _warn_unmarked(wrapped: Callable[..., Any]) -> None:
    name = getattr(wrapped, "__qualname__", None) or type(wrapped).__name__
    warnings.warn(
        f"{name} returned an awaitable but is not a coroutine function, so "
        "with_access_token fetched its token on the calling thread (on an event loop, "
        "a fetch blocks the loop). Declare it `async def`, or mark it with "
        "inspect.markcoroutinefunction() (Python 3.12+), and every fetch runs in a "
        "worker thread.",
        RuntimeWarning,
        stacklevel=4,
    )


def _warn_retry(name: str, code: int, token: str) -> None:
    logger.warning(
        "%s got errcode %d with token %s; refreshing and calling it once more",
        name,
        code,
        redact_token(token),
    )


def with_access_token(
    source: TokenManager | WxAuth | TokenProvider, *, param: str = "access_token"
) -> Callable[[F], F]:
    """Decorate a function that takes the access token as keyword ``param``.

    The token comes from ``source`` (a :class:`TokenManager`, a :class:`WxAuth` or any
    object with ``get_token()`` and ``invalidate(token)``). When the call raises
    :class:`WeChatAPIError` with errcode 40001/40014/42001, or returns a mapping or a
    :class:`requests.Response` that carries one, the token is invalidated and the
    function is called once more with a fresh one; a second failure is returned or
    raised as it is. A caller that passes ``param`` explicitly (by keyword or by
    position) gets exactly that token and no retry. Works on functions, methods, static
    and class methods and ``async def`` functions (their token fetches run in a worker
    thread, so the event loop is never blocked by one); a ``functools.partial`` of an
    async function, an object with an async ``__call__`` and a function marked with
    ``inspect.markcoroutinefunction`` count as async too. A plain function that returns
    a coroutine is recognised only by its result: its call returns an awaitable that
    still retries (off the loop), but its first token was fetched on the calling
    thread, and a ``RuntimeWarning`` says how to declare it async.
    """
    # A manager whose get_token() is a coroutine (AsyncTokenManager), or an auth that
    # carries one (wxauth.httpx.WxAuth): async functions await it on the loop.
    native: Any = getattr(source, "async_manager", None)
    if inspect.iscoroutinefunction(getattr(source, "get_token", None)):
        native, source = source, _AsyncOnly(source)
    provider: TokenProvider = (
        cast(Any, source).manager if isinstance(source, WxAuth) or native is not None else source
    )
    if not callable(getattr(provider, "get_token", None)) or not callable(
        getattr(provider, "invalidate", None)
    ):
        raise TypeError(
            "with_access_token() needs a TokenManager, a WxAuth or an object with "
            f"get_token() and invalidate(token), not {type(source).__name__}"
        )
    if not param.isidentifier():
        raise ValueError(f"param must be a keyword argument name, not {param!r}")
    fast = provider if isinstance(provider, TokenManager) else None

    get_token = provider.get_token

    def call_sync(wrapped: Callable[..., Any], args: Any, kwargs: dict[str, Any]) -> Any:
        token = get_token()
        # wrapt hands every call a dict of its own: adding the token to it is safe
        # and spares a copy on every call.
        kwargs[param] = token
        failure: WeChatAPIError | None = None
        result: Any = None
        try:
            result = wrapped(*args, **kwargs)
        except WeChatAPIError as exc:
            if exc.errcode not in EXPIRED_ERRCODES:
                raise
            code, failure = exc.errcode, exc
        else:
            if type(result) is dict:
                errcode = result.get("errcode")
                if errcode is None or errcode == 0:  # the usual answer, decided at once
                    return result
            elif inspect.isawaitable(result):
                # A plain function that returned a coroutine: judge its result once it
                # is awaited; the refresh, if one is needed, runs off the event loop.
                _warn_unmarked(wrapped)
                return finish_async(wrapped, args, kwargs, token, result)
            code_or_none = _rejected_code(result)
            if code_or_none is None:
                return result
            code = code_or_none
        # Out of the except block: a second failure is raised as it is, without the
        # first one chained to it.
        provider.invalidate(token)
        fresh = get_token()
        if fresh == token:
            # The manager holds this token back (its replacements keep being rejected,
            # and it said why): the first answer stands; calling again would only
            # repeat it.
            if failure is not None:
                raise failure
            return result
        _warn_retry(getattr(wrapped, "__qualname__", "function"), code, token)
        kwargs[param] = fresh
        return wrapped(*args, **kwargs)

    async def get_token_async() -> str:
        if native is not None:
            token: str = await native.get_token()
            return token
        if fast is not None:
            cached = fast.cached_token()
            if cached is not None:
                return cached
        return await asyncio.to_thread(provider.get_token)

    async def call_async(wrapped: Callable[..., Any], args: Any, kwargs: dict[str, Any]) -> Any:
        token = await get_token_async()
        return await finish_async(
            wrapped, args, kwargs, token, wrapped(*args, **{**kwargs, param: token})
        )

    async def finish_async(
        wrapped: Callable[..., Any],
        args: Any,
        kwargs: dict[str, Any],
        token: str,
        awaitable: Any,
    ) -> Any:
        failure: WeChatAPIError | None = None
        result: Any = None
        try:
            result = await awaitable
        except WeChatAPIError as exc:
            if exc.errcode not in EXPIRED_ERRCODES:
                raise
            code, failure = exc.errcode, exc
        else:
            code_or_none = _rejected_code(result)
            if code_or_none is None:
                return result
            code = code_or_none
        if native is not None:
            await native.invalidate(token)
        else:
            await asyncio.to_thread(provider.invalidate, token)
        fresh = await get_token_async()
        if fresh == token:  # held back by the manager: the first answer stands
            if failure is not None:
                raise failure
            return result
        _warn_retry(getattr(wrapped, "__qualname__", "function"), code, token)
        again = wrapped(*args, **{**kwargs, param: fresh})
        return await again if inspect.isawaitable(again) else again

    def decorate(func: F) -> F:
        by_position = _may_come_by_position(func, param)
        # Known at decoration time (a method's binding does not change it); asking on
        # every call cost a third of a microsecond.
        is_async = _is_async_callable(func)
        if not is_async and isinstance(provider, _AsyncOnly):
            raise TypeError(
                f"with_access_token({type(native).__name__}) decorates async functions "
                f"only; {getattr(func, '__qualname__', func)!r} is not one (use a "
                "TokenManager for plain functions)"
            )
        call = call_async if is_async else call_sync

        @wrapt.decorator
        def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
            if param in kwargs or (by_position and _token_given(wrapped, args, kwargs, param)):
                return wrapped(*args, **kwargs)
            return call(wrapped, args, kwargs)

        return cast(F, wrapper(func))

    return decorate


class _AsyncOnly:
    """The sync side of an async manager given to :func:`with_access_token`: there is
    none, so only async functions may be decorated with it."""

    def __init__(self, manager: Any) -> None:
        self.manager = self

    def get_token(self) -> str:
        raise TypeError("an async manager's token is awaited, not fetched in a thread")

    def invalidate(self, token: str) -> bool:
        raise TypeError("an async manager's token is awaited, not fetched in a thread")
