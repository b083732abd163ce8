"""How the handlers get a token without tying up the event loop: a fresh one is
answered from memory; otherwise one worker thread per resource (a *flight*) gets it and
every concurrent read shares that flight, answering the token last handed out while it
is still valid. Worker threads are bounded per resource, and every wait by the
configured ``request_timeout``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup

from .._errors import WxAuthError
from .._token import Token
from ._responses import RefusalError, error, unavailable
from ._service import Resource

__all__ = ["THREADS_PER_RESOURCE", "TokenReads"]

logger = logging.getLogger("wxauth.server")

#: Worker threads one app's token (or ticket) may hold at once: an app whose fetch hangs
#: cannot take the threads the other apps' requests need.
THREADS_PER_RESOURCE = 8
#: After a failed flight, a resource with a valid remembered token waits this many
#: seconds before the next one (a store that refuses is not asked on every read).
_FLIGHT_RETRY = 1.0

_T = TypeVar("_T")


class _Flight:
    """One worker thread getting a resource's token, and the reads waiting for it."""

    __slots__ = ("done", "error", "timeout_logged", "token")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.token: Token | None = None
        self.error: BaseException | None = None
        self.timeout_logged = False


class TokenReads:
    """The handlers' way to get a resource's token (:meth:`get`) and to run a blocking
    call in a worker thread (:meth:`in_thread`), each bounded by ``request_timeout``."""

    def __init__(self, request_timeout: float) -> None:
        self.request_timeout = request_timeout
        self._limiters: dict[str, anyio.CapacityLimiter] = {}
        #: Started by the lifespan: runs the flights (None: no lifespan, a thread a read).
        self.tasks: TaskGroup | None = None
        self._flights: dict[str, _Flight] = {}
        # Monotonic time before which a resource whose last flight failed gets no new
        # one while its remembered token is valid (a down store is asked once a second).
        self._retry_at: dict[str, float] = {}

    def _limiter(self, resource: Resource) -> anyio.CapacityLimiter:
        limiter = self._limiters.get(resource.label)
        if limiter is None:  # created here: a limiter needs the running event loop
            limiter = anyio.CapacityLimiter(THREADS_PER_RESOURCE)
            self._limiters[resource.label] = limiter
        return limiter

    async def in_thread(
        self, func: Callable[..., _T], *args: Any, resource: Resource | None = None
    ) -> _T:
        """Run ``func`` in a worker thread (one of ``resource``'s own, if given),
        giving up after ``request_timeout``."""
        limiter = None if resource is None else self._limiter(resource)
        with anyio.fail_after(self.request_timeout):
            return await anyio.to_thread.run_sync(
                func, *args, abandon_on_cancel=True, limiter=limiter
            )

    async def get(self, resource: Resource) -> Token:
        """The token to answer: fresh from memory on the event loop, or from the
        resource's one flight (a worker thread every concurrent read shares, so a
        WeChat hang or a hung store costs one thread, not one per read). While a
        flight runs, or a failed one waits to be retried, the token last handed out
        is answered if still valid; else the read waits up to ``request_timeout``."""
        token = resource.cached()
        if token is not None:
            return token
        if self.tasks is None:
            try:
                return await self.in_thread(resource.get, resource=resource)
            except (WxAuthError, TimeoutError) as exc:
                raise RefusalError(unavailable(exc, resource.label)) from None
        label = resource.label
        remembered = resource.remembered()
        flight = self._flights.get(label)
        if flight is None and (
            remembered is None or time.monotonic() >= self._retry_at.get(label, 0.0)
        ):
            flight = self._flights[label] = _Flight()
            self.tasks.start_soon(self._fly, resource, flight)
        if remembered is not None:
            return remembered
        assert flight is not None
        with anyio.move_on_after(self.request_timeout):
            await flight.done.wait()
        if flight.token is not None:
            return flight.token
        if flight.error is None or not flight.done.is_set():
            log, flight.timeout_logged = not flight.timeout_logged, True
            raise RefusalError(unavailable(TimeoutError(), label, log=log))
        if not isinstance(flight.error, WxAuthError):
            raise RefusalError(error(500, "internal_error", "internal error; see the server log"))
        raise RefusalError(unavailable(flight.error, label, log=False))

    async def _fly(self, resource: Resource, flight: _Flight) -> None:
        """Get ``resource``'s token in a worker thread for every read waiting on
        ``flight``; log a failure once."""
        label = resource.label
        try:
            flight.token = await anyio.to_thread.run_sync(
                resource.get, abandon_on_cancel=True, limiter=self._limiter(resource)
            )
        except WxAuthError as exc:
            flight.error = exc
            unavailable(exc, label)
        except Exception as exc:
            flight.error = exc
            logger.error("%s: getting the token failed", label, exc_info=exc)
        finally:
            if flight.token is None or not resource.store_ok:
                # Failed, or answered from memory because the store did: the next try
                # waits (a store that refuses at once is not asked on every read).
                self._retry_at[label] = time.monotonic() + _FLIGHT_RETRY
            else:
                self._retry_at.pop(label, None)
            if self._flights.get(label) is flight:
                del self._flights[label]
            flight.done.set()
