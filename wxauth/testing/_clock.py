"""The emulator's own time: :meth:`Clock.clock`, and the controls that move it forward.

Time stands still until the test calls :meth:`Clock.advance`, or follows a base clock
given as ``FakeWeChat(clock=...)``: the emulator's time is the base (the frozen start, or
the base clock's reading) plus every advance so far. Give the same clock to the client
under test (``TokenManager(..., clock=fake.clock)``) so both sides agree on expiry. The
daily quotas reset at midnight Beijing time on this clock (the calendar is in
:mod:`._state`).
"""

from __future__ import annotations

from collections.abc import Callable

from ._state import EmulatorState

__all__ = ["Clock"]


class Clock(EmulatorState):
    """The clock of :class:`~wxauth.testing.FakeWeChat`: read it, move it forward."""

    #: The base clock given as ``clock=``; ``None`` for a frozen clock.
    _base_clock: Callable[[], float] | None
    #: Where the frozen clock stands (``start=``); unused with a base clock.
    _frozen: float
    #: Seconds :meth:`advance` added so far.
    _offset: float

    def clock(self) -> float:
        """The emulator's time in epoch seconds; pass ``fake.clock`` to the client."""
        base = self._base_clock() if self._base_clock is not None else self._frozen
        return base + self._offset

    def advance(self, seconds: float) -> float:
        """Move the emulator clock forward by ``seconds``; returns the new time."""
        if seconds < 0:
            raise ValueError("the emulator clock only moves forward")
        with self._lock:
            self._offset += float(seconds)
        return self.clock()

    def seconds_to_next_day(self) -> float:
        """Seconds until the daily quotas reset (midnight Beijing time, emulator clock)."""
        return self._seconds_to_next_day(self.clock())

    def advance_to_next_day(self) -> float:
        """Move the clock to the next quota reset; returns the new time."""
        return self.advance(self.seconds_to_next_day())
