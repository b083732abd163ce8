"""How an :class:`~wxauth.AsyncTokenManager` fetches once it has decided to: a layer
of it, the twin of :mod:`wxauth._fetcher` on an event loop.

One fetch at a time: first single flight across the tasks of this thread's event loop
(:mod:`wxauth._async_flight`; a caller that holds a still-valid token does not wait for
a refresh ahead, the others share its outcome, a cancelled leader leaves no flight
behind, and the flight has one deadline for its leader and every waiter), then the
store's lease lock across processes, a re-read under that lock, the source's fetch
behind the failure backoff and the fetch budget (a flow driven here, a callable awaited,
a sync ``fetch`` in a worker thread), and the write of the new token and its
bookkeeping, shielded from cancellation. When to fetch is the manager's
(:mod:`wxauth._async_manager`); the decisions taken here with a token in hand are
:class:`~wxauth._core.ManagerCore`'s.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from ._async_flight import FETCHING, Flight, Slot, afetch_token_answer, copy_error, slot_of
from ._core import ManagerCore
from ._errors import StoreError, TokenFetchError, WxAuthError
from ._guards import RECORD_TTL, FailureBackoff
from ._httpx_transport import AsyncHttpxTransport
from ._protocol import TokenRequest
from ._token import Token
from .sources import CallableTokenSource, FetchContext, ReadMeta, TokenFlow
from .stores._async import AsyncStoreLock, AsyncTokenStore
from .stores._memory import MemoryStore
from .transport import AsyncTransport

if TYPE_CHECKING:
    import httpx

__all__ = ["AsyncTokenFetcher"]

logger = logging.getLogger("wxauth")


class AsyncTokenFetcher(ManagerCore):
    """The fetch of :class:`~wxauth.AsyncTokenManager`'s token (see the module doc): a
    layer of it, which sets the attributes below."""

    #: Where the token is kept.
    store: AsyncTokenStore
    #: The client given, if any; else the private one, made on first use.
    _client: httpx.AsyncClient | None
    _own_client: httpx.AsyncClient | None
    #: What sends token requests (made on first use when none was given).
    _transport: AsyncTransport | None
    #: The flight slot of the thread last seen (the registry takes a lock to look up).
    _slot_cache: tuple[int, Slot] | None

    def _transport_now(self) -> AsyncTransport:
        """The transport token requests go through (made once; the private client on
        first use, so a manager built outside an event loop does not make one)."""
        if self._transport is None:
            client = self._client
            if client is None:
                import httpx

                client = self._own_client = httpx.AsyncClient()
            self._transport = AsyncHttpxTransport(client)
        return self._transport

    # -- single flight ------------------------------------------------------------------

    async def _refresh(
        self,
        current: Token | None,
        *,
        force: bool = False,
        margin: float | None = None,
        background: bool = False,
    ) -> Token:
        now = self._clock()
        usable = current if current is not None and not current.is_expired(now) else None
        fetching = FETCHING.get()
        if self._key in fetching:
            raise WxAuthError(
                f"fetching the token of appid={self.appid} needed that same token: the "
                "client given to AsyncTokenManager must not carry a WxAuth of the same app"
            )
        while True:
            # One flight per event loop (its Event belongs to that loop); managers in
            # other threads' loops are kept apart by the store lock.
            thread = threading.get_ident()
            cached = self._slot_cache
            if cached is not None and cached[0] == thread:
                slot = cached[1]
            else:
                slot = slot_of(self.store, self._key)
                self._slot_cache = (thread, slot)
            with slot.lock:
                flight, leader = slot.flight, slot.flight is None
                if flight is None:
                    flight = slot.flight = Flight()
            if leader:
                break
            if usable is not None and not force:
                return usable  # a refresh-ahead is running: the old token still works
            await flight.wait()
            if flight.cancelled:
                continue  # its leader was cancelled: try again, perhaps as the leader
            if flight.error is not None:
                raise copy_error(flight.error) from None
            assert flight.token is not None
            return flight.token
        marker = FETCHING.set(fetching | {self._key})
        try:
            # The flight's deadline, for its leader and every waiter at once.
            waited = self.lock_timeout + self.lease
            with anyio.move_on_after(waited) as deadline:
                # Yield once before the fetch's synchronous setup (store records, the
                # request, the connection): it then runs in a turn of the loop of its
                # own, not in the turn that started every task that asked at once.
                await anyio.lowlevel.checkpoint()
                token = await self._fetch_under_store_lock(
                    usable,
                    force=force,
                    margin=self.refresh_margin if margin is None else margin,
                    background=background,
                )
            if deadline.cancelled_caught:
                raise TokenFetchError(f"gave up after {waited:.1f}s waiting for a token fetch")
        except anyio.get_cancelled_exc_class():
            flight.cancelled = True
            raise
        except BaseException as exc:
            flight.error = exc
            raise
        else:
            flight.token = token
            return token
        finally:
            FETCHING.reset(marker)
            with slot.lock:
                if slot.flight is flight:
                    slot.flight = None
            with anyio.CancelScope(shield=True):
                await flight.finish()

    # -- under the store lock -----------------------------------------------------------

    async def _fetch_under_store_lock(
        self, usable: Token | None, *, force: bool, margin: float, background: bool
    ) -> Token:
        lock = self.store.lock(self._key, lease=self.lease)
        if usable is not None and not force:
            if not await lock.acquire(blocking=False):
                return usable  # another process refreshes: keep serving the valid token
        elif not await lock.acquire(timeout=self.lock_timeout):
            raise TokenFetchError(
                f"gave up after {self.lock_timeout:.1f}s waiting for the token lock of "
                f"appid={self.appid} held by another process"
            )
        try:
            stored = await self.store.get(self._key)
            if self._settled_by_another(stored, usable, force=force, margin=margin):
                assert stored is not None
                self._keep(stored)
                return stored  # someone refreshed while we waited for the lock
            try:
                return await self._fetch(lock, self._clock(), background=background)
            except WxAuthError as exc:
                if background or force:
                    raise
                if usable is not None and not usable.is_expired(self._clock()):
                    return self._ahead_failed(usable, exc)
                raise
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await lock.release()
                except StoreError as exc:
                    logger.warning("%s; the token lock will expire after its lease", exc)

    async def _fetch(self, lock: AsyncStoreLock, now: float, *, background: bool) -> Token:
        store = self.store
        failures = self._failures.check(await store.get_meta(self._failures.key))
        self._budget.check(await store.get_meta(self._budget.key), now)
        rejected = self._rejected or await store.get_meta(f"{self._key}:rejected")
        self.stats.fetches += 1
        if background:
            self.stats.background_fetches += 1
        try:
            value, expires_in = await self._run_source(rejected, 0 if failures else self.retries)
        except WxAuthError as exc:
            self.stats.failures += 1
            record = self._failures.failed(failures, exc)
            await store.set_meta(self._failures.key, record, ttl=RECORD_TTL)
            raise
        except BaseException:
            self.stats.failures += 1
            raise
        token = Token.issued(value, expires_in, self._clock(), fence=lock.fence)
        self._fetched(expires_in, background)
        with anyio.CancelScope(shield=True):  # a token WeChat issued is not thrown away
            await self._store_fetched(token, lock, failures)
        return token

    async def _run_source(self, rejected: str | None, retries: int) -> tuple[str, float]:
        source = self.source
        flow = source.flow(rejected=rejected, clock=self._clock)
        if flow is not None:
            return await self._drive(flow, retries)
        if isinstance(source, CallableTokenSource):
            return await source.afetch()
        afetch_with = getattr(source, "afetch_with", None)
        if afetch_with is not None:  # a source that sends through this manager (tickets)

            async def send(request: TokenRequest) -> dict[str, Any]:
                return await afetch_token_answer(
                    self._transport_now(),
                    request,
                    timeout=self.timeout,
                    retries=retries,
                    backoff=self.backoff,
                )

            result: tuple[str, float] = await afetch_with(send)
            return result
        # A source with only a sync fetch(): run it in a worker thread.
        ctx = FetchContext(
            session=_requests_session(),
            timeout=self.timeout,
            clock=self._clock,
            store=self.store.sync_store or MemoryStore(),
            rejected=rejected,
            retries=retries,
            backoff=self.backoff,
        )
        return await anyio.to_thread.run_sync(source.fetch, ctx)

    async def _drive(self, flow: TokenFlow, retries: int) -> tuple[str, float]:
        """The async driver of a source's flow (:func:`wxauth.sources.drive`'s twin)."""
        reply: Any = None
        while True:
            try:
                step = flow.send(reply)
            except StopIteration as done:
                result: tuple[str, float] = done.value
                return result
            if isinstance(step, TokenRequest):
                reply = await afetch_token_answer(
                    self._transport_now(),
                    step,
                    timeout=self.timeout,
                    retries=retries,
                    backoff=self.backoff,
                )
            elif isinstance(step, ReadMeta):
                reply = await self.store.get_meta(step.key)
            else:
                await self.store.set_meta(step.key, step.value, ttl=step.ttl)
                reply = None

    async def _store_fetched(self, token: Token, lock: AsyncStoreLock, failures: int) -> None:
        store = self.store
        try:
            budget = self._budget
            spent = budget.spent(await store.get_meta(budget.key), token.fetched_at)
            await store.set_meta(budget.key, spent, ttl=RECORD_TTL)
            if failures:
                await store.set_meta(self._failures.key, FailureBackoff.RECOVERED, ttl=RECORD_TTL)
            if await lock.held():
                await store.set(self._key, token)
            else:
                logger.warning(
                    "the token lock of appid=%s ran out during the fetch and may have been "
                    "taken over; not writing this token over the store's",
                    self.appid,
                )
        except StoreError as exc:
            logger.warning(
                "fetched a token for appid=%s but could not store it (%s); using it in "
                "this process",
                self.appid,
                exc,
            )
            self._local.keep(token, token.refresh_at(self.refresh_margin))
            return
        self._keep(token)


def _requests_session() -> Any:
    import requests

    return requests.Session()
