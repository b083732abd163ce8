"""The background refresher: a daemon thread that calls a step function and sleeps for
as long as the step says, with backoff after a failure.

It knows nothing of tokens: the manager hands it ``step(stopped) -> seconds until the
next look``, where ``stopped()`` tells the step that :meth:`Refresher.stop` was called
(a fetch that finishes after that must not be written anywhere). The step is looked up
through a weak reference, so a manager dropped without ``close()`` still lets the
thread end.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable

__all__ = ["MAX_BACKOFF", "Refresher"]

logger = logging.getLogger("wxauth")

#: Longest pause after consecutive failed steps (seconds).
MAX_BACKOFF = 60.0

Step = Callable[[Callable[[], bool]], float]


class Refresher:
    """Runs ``owner.<method>(stopped)`` in a daemon thread until stopped.

    ``poll`` caps every pause between two looks (a due time is re-checked at least that
    often, since a test may move the clock), except a backoff after a failure, which is
    waited out in full: ``backoff`` seconds, doubling up to :data:`MAX_BACKOFF`.
    """

    def __init__(
        self,
        owner: object,
        method: str,
        *,
        name: str,
        label: str,
        poll: float,
        backoff: float,
    ) -> None:
        self._owner = weakref.ref(owner)
        self._method = method
        self._label = label
        self._poll = poll
        self._backoff = max(backoff, 1.0)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._cond = threading.Condition()
        self._started = 0
        self._completed = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop.is_set()

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self, timeout: float = 0.5) -> None:
        """Ask the thread to end and wait up to ``timeout`` seconds for it. A step that
        is in the middle of a fetch is not waited for: it sees ``stopped()`` and writes
        nothing."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def sync(self, timeout: float) -> bool:
        """Wake the thread and wait until one more step has completed since this call;
        ``False`` on timeout or once stopped."""
        with self._cond:
            target = self._started + 1
            self._wake.set()
            return (
                self._cond.wait_for(
                    lambda: self._completed >= target or self._stop.is_set(), timeout
                )
                and not self._stop.is_set()
            )

    def _step(self) -> float | None:
        owner = self._owner()
        if owner is None:
            return None
        step: Step = getattr(owner, self._method)
        del owner
        return step(self._stop.is_set)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            with self._cond:
                self._started += 1
                self._wake.clear()
            delay, failed = self._poll, False
            try:
                try:
                    next_look = self._step()
                    if next_look is None:
                        return
                    delay = next_look
                    failures = 0
                except Exception as exc:
                    failures += 1
                    failed = True
                    delay = min(self._backoff * 2 ** (failures - 1), MAX_BACKOFF)
                    if not self._stop.is_set():
                        logger.warning(
                            "background refresh for %s failed (%s); retrying in %.0fs",
                            self._label,
                            exc,
                            delay,
                        )
            finally:
                with self._cond:
                    self._completed += 1
                    self._cond.notify_all()
            self._wake.wait(delay if failed else min(delay, self._poll))
