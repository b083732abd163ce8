"""Single flight: at most one fetch of a token in flight per process; the callers that
arrive meanwhile wait for it and share its outcome.

Managers of the same token in the same store share one :class:`FlightSlot`, so however
many managers a process builds for one app, one fetch runs at a time. A thread that
asks for the token it is itself fetching (a token request sent through a session that
carries this manager's own auth) is told so at once instead of waiting for itself.
"""

from __future__ import annotations

import contextlib
import copy
import os
import threading
import weakref
from collections.abc import Iterator

from ._errors import TokenFetchError, WxAuthError
from ._token import Token
from .stores._base import TokenStore

__all__ = ["Flight", "FlightSlot", "fetching", "flight_slot"]


class Flight:
    """One fetch in progress."""

    __slots__ = ("done", "error", "owner", "token")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.token: Token | None = None
        self.error: BaseException | None = None
        #: The thread making the fetch.
        self.owner = threading.get_ident()

    def wait(self, timeout: float) -> Token:
        """Wait for the outcome: the token, or a copy of the fetch's error."""
        if self.owner == threading.get_ident():
            raise WxAuthError(
                "a token fetch asked for the token it is fetching: the session given to "
                "TokenManager(session=...) sends token requests through a WxAuth of the "
                "same app; give the manager a session without that auth"
            )
        if not self.done.wait(timeout):
            raise TokenFetchError(f"gave up after {timeout:.1f}s waiting for a token fetch")
        if self.error is not None:
            # Each waiter raises its own copy: re-raising the one object from many
            # threads would pile every thread's frames onto one shared traceback.
            try:
                error = copy.copy(self.error).with_traceback(None)
            except Exception:  # an exception class that cannot be copied
                raise self.error from None
            raise error from None
        assert self.token is not None
        return self.token


class FlightSlot:
    """The single-flight state shared by every manager of one token in one store."""

    __slots__ = ("__weakref__", "flight", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.flight: Flight | None = None

    def begin(self) -> tuple[Flight, bool]:
        """Join the fetch in flight, or start one; say whether the caller leads it."""
        with self.lock:
            if self.flight is not None:
                return self.flight, False
            flight = self.flight = Flight()
            return flight, True

    def end(self, flight: Flight) -> None:
        """Close the leader's flight and wake its waiters."""
        with self.lock:
            if self.flight is flight:
                self.flight = None
        flight.done.set()

    def reset(self) -> None:
        """Forget any flight (in a forked child, where its thread does not exist)."""
        self.lock = threading.Lock()
        self.flight = None


# The store keys each thread is fetching right now.
_FETCHING = threading.local()


@contextlib.contextmanager
def fetching(key: str, appid: str) -> Iterator[None]:
    """Mark this thread as fetching ``key`` for the ``with`` block. Raises at once if it
    already is: a token request that needs the token being fetched (a session carrying
    the manager's own WxAuth, even through another manager or store) would wait for
    itself."""
    keys: set[str] = _FETCHING.__dict__.setdefault("keys", set())
    if key in keys:
        raise WxAuthError(
            f"fetching the token of appid={appid} needed that same token: the session "
            "given to TokenManager(session=...) must not carry a WxAuth of the same app"
        )
    keys.add(key)
    try:
        yield
    finally:
        keys.discard(key)


_REGISTRY_LOCK = threading.Lock()
# Slots are held weakly: a slot lives exactly as long as some manager uses it.
_SLOTS: weakref.WeakValueDictionary[tuple[int, str], FlightSlot] = weakref.WeakValueDictionary()


def flight_slot(store: TokenStore, key: str) -> FlightSlot:
    """The slot of ``key`` in ``store`` (one per store object and key)."""
    with _REGISTRY_LOCK:
        slot = _SLOTS.get((id(store), key))
        if slot is None:
            slot = _SLOTS[(id(store), key)] = FlightSlot()
        return slot


def _reset_after_fork() -> None:
    global _REGISTRY_LOCK
    _REGISTRY_LOCK = threading.Lock()
    for slot in list(_SLOTS.values()):
        slot.reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
