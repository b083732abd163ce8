"""The guards that keep an outage or a fight over the AppSecret from turning into
a request storm or a burnt quota. Each keeps its state in a meta record of the store,
so every process that shares the store shares the guard.

- :class:`FailureBackoff`: after consecutive failed fetches (a network outage, HTTP 5xx,
  ``-1 system busy``, a refused credential), the next try waits a growing pause, capped
  at about one second: WeChat sees at most about one token request a second per app,
  callers get the last failure's error at once, and the first try after the endpoint
  recovers comes within a second.
- :class:`FetchBudget`: ``max_fetches_per_minute`` and ``max_fetches_per_day``, counted
  over the tokens actually fetched, so a bug or a misconfigured peer cannot burn the
  day's 2000 fetches.
- :class:`RejectionStreak`: when the token fetched to replace a rejected one is itself
  rejected within minutes, something else is retiring our tokens (another system
  fetching with the same AppSecret). Refetching on every call would burn the day's 2000
  fetches, so the next refetch waits, with growing delays.

The guards are rules with no I/O: each method takes the record's text as the store
returned it (``None`` when there is none) and returns the text to write back, if any.
The sync and the async manager do the store I/O around them, so both follow the same
rules from the same code.

Pauses are measured on the manager's clock and, for the failure backoff, on the wall
clock too: the pause ends as soon as either has moved past it (a test that moves a fake
clock, or real time passing), and a clock stepped back does not stretch a pause beyond
its cap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from ._errors import (
    RefreshBudgetError,
    TokenFetchError,
    WeChatAPIError,
    WxAuthError,
    error_for_token_endpoint,
)
from ._token import Token
from ._window import DAY, StoreWindow

__all__ = [
    "BUDGET_WINDOW",
    "FAILURE_BACKOFF_FIRST",
    "FAILURE_BACKOFF_MAX",
    "RECORD_TTL",
    "REJECTION_DELAY_FIRST",
    "REJECTION_DELAY_MAX",
    "REJECTION_RESET_AGE",
    "REJECTION_WINDOW",
    "FailureBackoff",
    "FetchBudget",
    "RejectionStreak",
]

logger = logging.getLogger("wxauth")

#: Pause after the second failed fetch in a row (the first failure is retried at once:
#: errors are never cached); it doubles with each further failure...
FAILURE_BACKOFF_FIRST = 0.25
#: ...up to this many seconds: about one token request a second per app in an outage.
FAILURE_BACKOFF_MAX = 1.0
#: A replacement token rejected within this many seconds of its fetch starts a streak.
REJECTION_WINDOW = 300.0
#: Hold before the second refetch of a streak; it doubles with each further one...
REJECTION_DELAY_FIRST = 30.0
#: ...up to this many seconds (about 50 fetches a day when every token is rejected).
REJECTION_DELAY_MAX = 1800.0
#: A replacement token must live this long before its rejection ends a streak: one
#: rejected sooner (but after ``REJECTION_WINDOW``) is healed at once and the streak goes
#: on, so a caller alternating late and early reports cannot reset the growing hold
#: (before, that cost about 520 fetches a day; now about 100).
REJECTION_RESET_AGE = REJECTION_DELAY_MAX
#: How long the guards' records are kept in the store (seconds).
RECORD_TTL = 86400.0
#: The sliding window of ``max_fetches_per_minute``, in seconds.
BUDGET_WINDOW = 60.0


def _parse(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        record = json.loads(raw)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _dump(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"))


def _num(record: dict[str, Any], name: str, default: float = 0.0) -> float:
    try:
        return float(record.get(name, default))
    except (TypeError, ValueError):
        return default


class FailureBackoff:
    """Consecutive failed fetches of one token (record under :attr:`key`), and the
    pause they impose."""

    #: The record to write after a fetch succeeded: the streak of failures is over.
    RECOVERED = "{}"

    def __init__(self, key: str, clock: Callable[[], float]) -> None:
        self.key = key
        self.clock = clock

    @staticmethod
    def pause(failures: int) -> float:
        """The pause after ``failures`` failed fetches in a row."""
        if failures <= 1:
            return 0.0
        return float(min(FAILURE_BACKOFF_FIRST * 2.0 ** (failures - 2), FAILURE_BACKOFF_MAX))

    def check(self, raw: str | None) -> int:
        """Return how many fetches in a row have failed; raise the last failure's error
        (a fresh copy, saying when the next try comes) while the pause runs."""
        record = _parse(raw)
        failures = int(_num(record, "n"))
        if failures <= 0:
            return 0
        left_clock = _num(record, "until") - self.clock()
        left_wall = _num(record, "until_wall") - time.time()
        left = min(left_clock, left_wall)
        if 0 < left <= FAILURE_BACKOFF_MAX:
            raise self._error(record, failures, left)
        return failures

    @staticmethod
    def _error(record: dict[str, Any], failures: int, left: float) -> WxAuthError:
        errcode = record.get("errcode")
        message = str(record.get("message", "the token endpoint failed"))
        if record.get("kind") == "api" and isinstance(errcode, int):
            return error_for_token_endpoint(errcode, message, url_path=record.get("path"))
        return TokenFetchError(
            f"{message} [{failures} fetches in a row failed; next try in {left:.2f}s]",
            errcode=errcode if isinstance(errcode, int) else None,
        )

    def failed(self, previous: int, error: WxAuthError) -> str:
        """The record after one more failed fetch (after ``previous`` ones), which
        starts its pause. Error messages are already free of secrets and tokens."""
        failures = previous + 1
        pause = self.pause(failures)
        record: dict[str, Any] = {
            "n": failures,
            "until": self.clock() + pause,
            "until_wall": time.time() + pause,
        }
        if isinstance(error, WeChatAPIError):
            record.update(kind="api", errcode=error.errcode, message=error.errmsg)
            record["path"] = error.url_path
        else:
            record.update(kind="fetch", message=str(error).split(" [", 1)[0])
            record["errcode"] = getattr(error, "errcode", None)
        return _dump(record)


class FetchBudget:
    """Tokens fetched per minute and per China-time day (record under :attr:`key`),
    and the refusal past them."""

    def __init__(
        self, key: str, appid: str, *, per_minute: int | None, per_day: int | None
    ) -> None:
        self.key = key
        self.appid = appid
        self.per_minute = per_minute
        self.per_day = per_day
        self.window = StoreWindow(
            key,
            sliding=() if per_minute is None else ((per_minute, BUDGET_WINDOW),),
            per_day=per_day,
        )

    def check(self, raw: str | None, now: float) -> None:
        """Raise :class:`~wxauth.RefreshBudgetError` if one more fetch is not allowed."""
        retry_after = self.window.retry_after(raw, now)
        if retry_after is None:
            return
        if self.per_day is not None and self.window.count_today(raw, now) >= self.per_day:
            raise RefreshBudgetError(self.appid, self.per_day, DAY, retry_after)
        assert self.per_minute is not None
        raise RefreshBudgetError(self.appid, self.per_minute, BUDGET_WINDOW, retry_after)

    def spent(self, raw: str | None, now: float) -> str:
        """The record with one more fetched token counted."""
        return self.window.recorded(raw, now)


def _tag(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:16]


class RejectionStreak:
    """Replacement tokens that WeChat rejected soon after their fetch (record under
    :attr:`key`)."""

    def __init__(self, key: str, appid: str) -> None:
        self.key = key
        self.appid = appid

    def hold(self, raw: str | None, rejected: Token, now: float) -> tuple[bool, str | None]:
        """Whether to keep ``rejected`` for now instead of dropping it, and the record
        to write (``None``: unchanged). Called with the stored token a caller reports
        rejected, before it is dropped."""
        record = _parse(raw)
        tag = _tag(rejected.value)
        if record.get("held") == tag:
            left = _num(record, "not_before") - now
            return 0 < left <= REJECTION_DELAY_MAX, None
        streak = int(_num(record, "streak"))
        since_drop = rejected.fetched_at - _num(record, "dropped_at", float("-inf"))
        age = now - rejected.fetched_at
        if streak < 1 or not 0 <= since_drop < REJECTION_WINDOW or not age < REJECTION_WINDOW:
            return False, None  # the first rejection of this token: heal at once
        streak += 1
        delay = min(REJECTION_DELAY_FIRST * 2 ** (streak - 2), REJECTION_DELAY_MAX)
        record.update(streak=streak, held=tag, not_before=now + delay)
        logger.warning(
            "appid=%s: WeChat rejected the token fetched %.0fs ago to replace a rejected "
            "one (%d rejections in a row). Something else is probably fetching tokens for "
            "this app and retiring ours: another server, script or platform using the same "
            "AppSecret (give them one token source), or the AppSecret was reset. Not "
            "fetching again for %.0fs; callers get WeChat's answer meanwhile",
            self.appid,
            max(age, 0.0),
            streak,
            delay,
        )
        return True, _dump(record)

    def dropped(self, raw: str | None, rejected: Token, now: float) -> str:
        """The record after ``rejected`` was dropped: the next token fetched replaces
        it. The streak goes on when ``rejected`` was held, or was itself a replacement
        that lived less than :data:`REJECTION_RESET_AGE`; any other token starts over."""
        record = _parse(raw)
        streak = int(_num(record, "streak"))
        since_drop = rejected.fetched_at - _num(record, "dropped_at", float("-inf"))
        replacement = 0 <= since_drop < REJECTION_WINDOW
        short_lived = now - rejected.fetched_at < REJECTION_RESET_AGE
        if record.get("held") != _tag(rejected.value) and not (replacement and short_lived):
            streak = 1
        return _dump({"streak": max(streak, 1), "dropped_at": now})
