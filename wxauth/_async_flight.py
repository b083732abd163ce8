"""The I/O halves of :class:`~wxauth.AsyncTokenManager` that are not policy: sending a
token request with the bounded retry, and single flight across the tasks of an event
loop (the twins of :func:`wxauth.sources.fetch_token_answer` and :mod:`wxauth._flight`).
"""

from __future__ import annotations

import contextvars
import copy
import logging
import threading
import weakref
from typing import Any

import anyio

from ._errors import TokenFetchError
from ._protocol import Failure, TokenRequest, read_token_answer
from ._token import Token
from .stores._async import AsyncTokenStore
from .transport import AsyncTransport, TransportError

__all__ = [
    "FETCHING",
    "WAKE_BATCH",
    "Flight",
    "Slot",
    "afetch_token_answer",
    "copy_error",
    "slot_of",
]

logger = logging.getLogger("wxauth")


async def afetch_token_answer(
    transport: AsyncTransport,
    request: TokenRequest,
    *,
    timeout: float,
    retries: int,
    backoff: float,
) -> dict[str, Any]:
    """:func:`wxauth.sources.fetch_token_answer` for ``async`` code: send ``request``
    with the bounded retry, waiting with ``anyio.sleep``."""
    attempt = 0
    while True:
        try:
            answer = await transport.send(request, timeout=timeout)
        except TransportError as exc:
            outcome: dict[str, Any] | Failure = Failure(
                TokenFetchError(f"{request.path} {exc.message}"), exc.retryable
            )
        else:
            outcome = read_token_answer(request, answer.status, answer.headers, answer.body)
        if not isinstance(outcome, Failure):
            return outcome
        if not outcome.retryable or attempt >= retries:
            raise outcome.error
        delay = backoff * (2**attempt)
        logger.warning("%s; retrying in %.2fs", outcome.error, delay)
        await anyio.sleep(delay)
        attempt += 1


#: Waiters woken per turn of the event loop when a fetch ends: a thousand tasks resumed
#: in one turn would stall the loop for milliseconds. 1000 waiters cold, CPU time of the
#: loop's longest turn while they wake (median of 6, alternating): 3.7 ms at 64, 2.5 ms
#: at 32, 1.7 ms at 16; waking them all takes the same total either way.
WAKE_BATCH = 16


class Flight:
    """One fetch in progress in an event loop; the tasks that arrive meanwhile wait,
    :data:`WAKE_BATCH` to an event, and the events are set one per turn of the loop."""

    __slots__ = ("cancelled", "done", "error", "seats", "token", "waiters")

    def __init__(self) -> None:
        self.done = False
        self.waiters: list[anyio.Event] = []
        #: Waiters still to seat on the newest event before a new one is made.
        self.seats = 0
        self.token: Token | None = None
        self.error: BaseException | None = None
        #: The leader was cancelled: the waiters try again (one of them leads).
        self.cancelled = False

    async def wait(self) -> None:
        """Wait until the fetch ended. No deadline of its own: the leader's fetch has one
        (a cancel scope per waiter cost a thousand waiters 4 µs each on the loop)."""
        if self.done:
            return
        if self.seats == 0:
            self.waiters.append(anyio.Event())
            self.seats = WAKE_BATCH
        self.seats -= 1
        await self.waiters[-1].wait()

    async def finish(self) -> None:
        """Mark the fetch ended and wake its waiters, one batch per turn of the loop
        (call it shielded from cancellation)."""
        self.done = True
        waiters, self.waiters = self.waiters, []
        for index, event in enumerate(waiters):
            if index:
                await anyio.sleep(0)  # let the loop run what else is due
            event.set()


class Slot:
    """Single-flight state of one token in one store, shared by the async managers of
    this process (a thread lock guards only the bookkeeping, never a wait)."""

    __slots__ = ("__weakref__", "flight", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.flight: Flight | None = None


SLOTS: weakref.WeakValueDictionary[tuple[int, str, int], Slot] = weakref.WeakValueDictionary()
SLOTS_LOCK = threading.Lock()
# The store keys the current task (and the tasks it starts) is fetching: a token
# request that needs the token being fetched would wait for itself.
FETCHING: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "wxauth_fetching", default=frozenset()
)


def slot_of(store: AsyncTokenStore, key: str) -> Slot:
    """The single-flight slot of ``key`` in ``store`` for the event loop of this thread
    (a flight's ``Event`` belongs to one loop: loops in other threads get their own)."""
    ident = (
        id(store.sync_store if store.sync_store is not None else store),
        key,
        threading.get_ident(),
    )
    with SLOTS_LOCK:
        slot = SLOTS.get(ident)
        if slot is None:
            slot = SLOTS[ident] = Slot()
        return slot


def copy_error(error: BaseException) -> BaseException:
    """A copy of a shared fetch's error for one waiter, without the leader's frames."""
    try:
        return copy.copy(error).with_traceback(None)
    except Exception:
        return error
