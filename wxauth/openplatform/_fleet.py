"""The fleet refresher: every authorizer's token kept fresh ahead of its expiry, by one
process or by many sharing one schedule, so that ``get_token()`` of an authorizer is a
store read in steady state.

The schedule is one due time per authorizer: on a :class:`~wxauth.stores.RedisStore`
a sorted set shared by every worker process on every host (``_fleet_redis``: its keys,
its Lua scripts), on any other store a heap in this process (``_fleet_heap``).

A worker **claims** what is due: up to ``batch`` members whose due time is at or before
now are re-scored to ``now + lease`` and handed to it, atomically (one Lua script on
Redis), so two workers never claim the same member at the same time. It then
refreshes each one under the authorizer's own store lock (the manager's single-flight
lease lock): the stored token is read first, and again under the lock, so a token that
a caller or another worker has just refreshed is never fetched twice. Finally it
re-scores each member to the new token's expiry minus ``margin`` (minus up to
``jitter``, to spread the load). A worker that dies after claiming loses nothing: its
members come due again ``lease`` seconds after the claim and another worker takes them.

A refresh that fails reschedules the member after a growing pause (10 s doubling to
300 s), counted per member in the schedule (a Redis hash beside the set). Members are
never dropped on an error: the platform's registry of authorizers decides
(``_fleet_sync``: the periodic comparison with it, and the re-seeding of a schedule
Redis lost). The defaults, :class:`FleetPlatform` and :class:`FleetStats` are defined
in ``_fleet_base`` and exported from here.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from .._background import Refresher
from .._errors import WxAuthError
from ..stores._redis import RedisStore
from ._fleet_base import (
    BUSY_RETRY,
    DEFAULT_FLEET_BATCH,
    DEFAULT_FLEET_JITTER,
    DEFAULT_FLEET_LEASE,
    DEFAULT_FLEET_MARGIN,
    DEFAULT_SYNC_INTERVAL,
    FAILURE_RETRY_FIRST,
    FAILURE_RETRY_MAX,
    FleetPlatform,
    FleetStats,
    Schedule,
    failure_retry,
)
from ._fleet_heap import MemorySchedule
from ._fleet_redis import RedisSchedule
from ._fleet_sync import FleetSync

if TYPE_CHECKING:
    from .._manager import TokenManager
    from .._token import Token

__all__ = [
    "BUSY_RETRY",
    "DEFAULT_FLEET_BATCH",
    "DEFAULT_FLEET_JITTER",
    "DEFAULT_FLEET_LEASE",
    "DEFAULT_FLEET_MARGIN",
    "DEFAULT_SYNC_INTERVAL",
    "FAILURE_RETRY_FIRST",
    "FAILURE_RETRY_MAX",
    "AuthorizerFleet",
    "FleetPlatform",
    "FleetStats",
]

logger = logging.getLogger("wxauth")


class AuthorizerFleet(FleetSync):
    """Keeps every authorizer's token of one platform fresh ahead of expiry (opt-in).

    :param platform: a :class:`~wxauth.openplatform.ComponentTokenManager` (see
        :class:`FleetPlatform` for what is used).
    :param margin: renew a token this many seconds before it expires (or half its
        life, if shorter). Must exceed ``2 * lease``: a worker that dies right after
        claiming a member leaves it claimed for ``lease`` seconds, and another worker
        takes it up to one poll later, so the token must still have that long to live
        with room to spare for a slow refresh. It must also exceed the authorizer
        managers' ``refresh_margin`` by more than ``lease`` (else a caller can reach
        its own margin first and fetch in the foreground; the fleet logs a warning),
        and, when a caller process keeps a token for the whole of its life, stay
        below ``refresh_margin`` plus the 5 minutes WeChat keeps an old token working
        after a refresh.
    :param jitter: take up to this many seconds more, at random, off each due time.
    :param lease: seconds a claim is exclusive to the worker that made it.
    :param batch: most members taken by one claim.
    :param poll_interval: longest pause of :meth:`start`'s thread between two looks.
    :param sync_interval: seconds between two comparisons of the schedule with the
        platform's registry (new authorizers added, forgotten ones dropped);
        ``None``: only at start and on a lost schedule.
    :param clock: epoch-seconds clock; default the platform's ``clock``, else
        ``time.time``.
    :param seed: seeds the jitter (reproducible tests).
    :param seed_spread: when the schedule is seeded (the first time, or after Redis
        lost it), make the authorizers due at random times over this many seconds
        instead of all at once. With 0 (the default) every authorizer is fetched at
        once, and since their tokens then expire together, every later refresh cycle is
        one burst of N fetches. About one refresh cycle (``6600``) spreads them for
        good; until the fleet reaches an authorizer, a caller that needs its token
        fetches it (under the same lock; the fleet then finds it fresh).

    One process: ``fleet.start()`` (a daemon thread), ``fleet.close()`` to stop. Many
    processes (or hosts) on one :class:`~wxauth.stores.RedisStore`: run a fleet in each,
    or in a few; they share the schedule and never fetch one token twice. On a
    :class:`~wxauth.stores.MemoryStore` or :class:`~wxauth.stores.FileStore` the
    schedule lives in this process: fleets in several processes on one FileStore
    still never fetch one token twice (each refresh is under the store lock), but
    each looks at every authorizer; share a Redis to share the work.
    """

    def __init__(
        self,
        platform: FleetPlatform,
        *,
        margin: float = DEFAULT_FLEET_MARGIN,
        jitter: float = DEFAULT_FLEET_JITTER,
        lease: float = DEFAULT_FLEET_LEASE,
        batch: int = DEFAULT_FLEET_BATCH,
        poll_interval: float = 1.0,
        sync_interval: float | None = DEFAULT_SYNC_INTERVAL,
        clock: Callable[[], float] | None = None,
        seed: int | None = None,
        seed_spread: float = 0.0,
    ) -> None:
        if not 0 < lease < float("inf"):
            raise ValueError("lease must be a finite number > 0")
        if not margin > 2 * lease:
            raise ValueError(
                "margin must exceed 2 * lease: a worker that dies holds its claims for "
                "one lease, and the token must outlive that with room to spare"
            )
        if jitter < 0:
            raise ValueError("jitter must be >= 0")
        if not 0 <= seed_spread < float("inf"):
            raise ValueError("seed_spread must be a finite number >= 0")
        if batch < 1:
            raise ValueError("batch must be >= 1")
        if poll_interval <= 0:
            raise ValueError("poll_interval must be > 0")
        if sync_interval is not None and sync_interval <= 0:
            raise ValueError("sync_interval must be > 0, or None")
        self.platform = platform
        self.component_appid = platform.component_appid
        self.margin = float(margin)
        self.jitter = float(jitter)
        self.seed_spread = float(seed_spread)
        self.lease = float(lease)
        self.batch = int(batch)
        self.poll_interval = float(poll_interval)
        self.sync_interval = None if sync_interval is None else float(sync_interval)
        self.stats = FleetStats()
        self._clock: Callable[[], float] = clock or getattr(platform, "clock", None) or time.time
        self._rng = random.Random(seed)
        store = platform.store
        name = f"openplatform:{self.component_appid}:fleet"
        self._schedule: Schedule = (
            RedisSchedule(store, name) if isinstance(store, RedisStore) else MemorySchedule()
        )
        self._closed = threading.Event()
        self._run_lock = threading.Lock()
        self._refresher: Refresher | None = None
        self._refresher_lock = threading.Lock()
        self._next_sync = float("-inf")
        # The state of the registry comparisons and seeding (FleetSync, _fleet_sync).
        self._next_seed = float("-inf")
        self._seed_failures = 0
        # Members the last reconciliation found missing from the registry: dropped if
        # the next one finds them missing again (a registry being rebuilt is not empty).
        self._absent: set[str] = set()
        self._warned_margin = False

    # -- the schedule ----------------------------------------------------------------

    def add(self, appid: str, due: float | None = None) -> None:
        """Schedule ``appid`` (default: due now). Re-adding a scheduled appid with no
        ``due`` keeps its due time; with one, moves it there."""
        when = self._clock() if due is None else float(due)
        self._schedule.add({appid: when}, only_new=due is None)

    def schedule(self, dues: Mapping[str, float]) -> None:
        """Set the due time (epoch seconds) of each appid in ``dues``, scheduling those
        not yet scheduled: one round trip per 5,000 (to spread a first start, or to
        carry a schedule over from elsewhere)."""
        self._schedule.add({appid: float(due) for appid, due in dues.items()}, only_new=False)

    def remove(self, appid: str) -> None:
        """Stop keeping ``appid``'s token fresh (its authorization was cancelled)."""
        self._schedule.remove([appid])

    def due(self, appid: str) -> float | None:
        """When ``appid`` is due next (epoch seconds), or ``None`` if not scheduled."""
        return self._schedule.score(appid)

    def __len__(self) -> int:
        """How many authorizers the schedule holds."""
        return self._schedule.size()

    # -- running ---------------------------------------------------------------------

    def run_once(self) -> int:
        """Refresh every authorizer that is due now; return how many tokens were
        fetched (authorizers someone else had already renewed are rescheduled, not
        fetched). Claims batch after batch until nothing is due."""
        return self._run()[1]

    def _run(self) -> tuple[int, int]:
        handled = fetched = 0
        with self._run_lock:
            while not self._closed.is_set():
                now = self._clock()
                until = now + self.lease
                claimed = self._schedule.claim(now, until, self.batch)
                if not claimed:
                    break
                done, got = self._handle_batch(claimed, now, until)
                handled += done
                fetched += got
                if len(claimed) < self.batch:
                    break
        return handled, fetched

    def _handle_batch(
        self, claimed: Sequence[tuple[str, float]], now: float, until: float
    ) -> tuple[int, int]:
        stats = self.stats
        stats.claimed += len(claimed)
        for _, score in claimed:
            lag = now - score
            if lag > stats.max_lag:
                stats.max_lag = lag
        dues: dict[str, float] = {}
        succeeded: list[str] = []
        failed: list[str] = []
        fetched = 0
        try:
            for index, (appid, _) in enumerate(claimed):
                if self._closed.is_set() or self._clock() >= until:
                    # The claim ran out: the rest are due again for every worker.
                    stats.abandoned += len(claimed) - index
                    break
                outcome, due = self._refresh_one(appid)
                if outcome == "failed":
                    failed.append(appid)
                    continue
                dues[appid] = due
                if outcome != "unknown":
                    succeeded.append(appid)
                    fetched += outcome == "fetched"
        finally:
            if failed:
                counts = self._schedule.count_failures(failed)
                for appid, count in zip(failed, counts, strict=True):
                    dues[appid] = self._clock() + failure_retry(count)
            self._schedule.finish(dues, succeeded)
        return len(dues), fetched

    def _refresh_one(self, appid: str) -> tuple[str, float]:
        """Refresh one authorizer if it needs it; ``(outcome, next due time)``."""
        window = self.margin + self.jitter
        try:
            manager = self.platform.authorizer(appid)
            self._check_margin(manager)
            current = manager.peek()
            now = self._clock()
            if current is not None and not current.needs_refresh(now, window):
                self.stats.fresh += 1
                return "fresh", self._due_after(current)
            before = manager.stats.fetches
            token = manager._refresh(current, margin=window, stopped=self._closed.is_set)
        except WxAuthError as exc:
            if getattr(exc, "errcode", None) == 61003 and not self._still_known(appid):
                # Unauthorized, and forgotten by the platform: look again much later;
                # the next comparisons with the registry drop it (unless it comes back).
                self.stats.unknown += 1
                logger.info(
                    "fleet: authorizer %s does not authorize component %s (61003)",
                    appid,
                    self.component_appid,
                )
                return "unknown", self._clock() + FAILURE_RETRY_MAX
            self.stats.failures += 1
            logger.warning("fleet: refreshing authorizer %s failed (%s)", appid, exc)
            return "failed", 0.0
        except Exception as exc:  # a bug or a broken store: keep the member, back off
            self.stats.failures += 1
            logger.warning("fleet: refreshing authorizer %s failed (%s)", appid, type(exc).__name__)
            return "failed", 0.0
        if token.needs_refresh(self._clock(), window):
            # Not renewed: another holder has the lock (a caller fetching it).
            self.stats.busy += 1
            return "busy", self._clock() + BUSY_RETRY
        if manager.stats.fetches > before:
            self.stats.fetched += 1
            return "fetched", self._due_after(token)
        self.stats.fresh += 1
        return "fresh", self._due_after(token)

    def _still_known(self, appid: str) -> bool:
        """Whether the platform's registry still has ``appid`` (61003 said it should
        not: a registry that kept it means the answer was about something else, and
        the member is kept with a backoff until the registry says otherwise)."""
        known = getattr(self.platform, "has_authorizer", None)
        if known is not None:
            return bool(known(appid))
        return appid in set(self.platform.authorizer_appids())

    def _due_after(self, token: Token) -> float:
        """When ``token`` is due for renewal: ``margin`` plus some jitter before its
        expiry, never more than half its life before it (as the refresh check)."""
        ahead = self.margin + self._rng.uniform(0.0, self.jitter)
        return token.expires_at - min(ahead, token.lifetime / 2)

    def _check_margin(self, manager: TokenManager) -> None:
        if self._warned_margin or manager.refresh_margin < self.margin - self.lease:
            return
        self._warned_margin = True
        logger.warning(
            "fleet of component %s: margin=%.0f does not exceed the authorizer managers' "
            "refresh_margin=%.0f by more than lease=%.0f; callers may fetch tokens themselves",
            self.component_appid,
            self.margin,
            manager.refresh_margin,
            self.lease,
        )

    def next_due(self) -> float | None:
        """The earliest due time in the schedule (epoch seconds), or ``None``."""
        return self._schedule.next_due()

    def step(self) -> float:
        """One look, as :meth:`start`'s thread and :meth:`run_forever` take it: compare
        with the registry when :attr:`sync_interval` has passed or the schedule was
        lost, refresh everything due; return the seconds until the next due time
        (``0`` after work was done: look again at once)."""
        return self._background_step(self._closed.is_set)

    def _background_step(self, stopped: Callable[[], bool]) -> float:
        now = self._clock()
        if now >= self._next_sync or not self._schedule.seeded():
            self.sync()
            self._next_sync = (
                float("inf") if self.sync_interval is None else now + self.sync_interval
            )
        handled, _ = self._run()
        if handled or stopped():
            return 0.0
        upcoming = self._schedule.next_due()
        return self.poll_interval if upcoming is None else max(upcoming - self._clock(), 0.0)

    def run_forever(self, stop: threading.Event) -> None:
        """Run in the calling thread until ``stop`` is set (a worker process's main
        loop). A failed look (Redis unreachable) is logged and retried after a pause
        of 1 s doubling to 60 s."""
        failures = 0
        while not stop.is_set():
            try:
                delay = self._background_step(stop.is_set)
                failures = 0
            except Exception as exc:
                failures += 1
                delay = min(2.0 ** (failures - 1), 60.0)
                logger.warning("fleet of component %s: %s", self.component_appid, exc)
                stop.wait(delay)
                continue
            if delay > 0:
                stop.wait(min(delay, self.poll_interval))

    def start(self) -> None:
        """Run the fleet in a daemon thread (idempotent); :meth:`close` stops it."""
        self._closed.clear()
        with self._refresher_lock:
            if self._refresher is None:
                self._refresher = Refresher(
                    self,
                    "_background_step",
                    name=f"wxauth-fleet-{self.component_appid}",
                    label=f"the fleet of component {self.component_appid}",
                    poll=self.poll_interval,
                    backoff=1.0,
                )
                self._refresher.start()

    def sync_background(self, timeout: float = 5.0) -> bool:
        """Wake the thread of :meth:`start` and wait until it has looked once more (for
        tests that move a fake clock); ``False`` on timeout or when none runs."""
        refresher = self._refresher
        return refresher.sync(timeout) if refresher is not None else False

    def close(self) -> None:
        """Stop the thread of :meth:`start`. A refresh in progress is not waited for:
        its token is not stored, and its claim comes due again after ``lease``."""
        self._closed.set()
        with self._refresher_lock:
            refresher, self._refresher = self._refresher, None
        if refresher is not None:
            refresher.stop()

    def __enter__(self) -> AuthorizerFleet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"AuthorizerFleet(component_appid={self.component_appid!r}, "
            f"schedule={self._schedule!r}, margin={self.margin!r}, lease={self.lease!r})"
        )
