"""The fleet refresher: every authorizer's token kept fresh ahead of its expiry, by one
process or by many sharing one schedule, so that ``get_token()`` of an authorizer is a
store read in steady state.

The schedule is one due time per authorizer. On a :class:`~wxauth.stores.RedisStore`
it is a sorted set, ``{prefix}openplatform:{component_appid}:fleet:due`` (member: the
authorizer appid, score: its due time in epoch seconds), shared by every worker process
on every host; on any other store it is a heap in this process.

A worker **claims** what is due with one Lua script: up to ``batch`` members whose
score is at or before now are re-scored to ``now + lease`` and handed to it, atomically,
so two workers never claim the same member at the same time. It then refreshes each
one under the authorizer's own store lock (the manager's single-flight lease lock):
the stored token is read first, and again under the lock, so a token that a caller or
another worker has just refreshed is never fetched twice. Finally it re-scores each
member to the new token's expiry minus ``margin`` (minus up to ``jitter``, to spread
the load). A worker that dies after claiming loses nothing: its members come due again
``lease`` seconds after the claim and another worker takes them.

A refresh that fails reschedules the member after a growing pause (10 s doubling to
300 s), counted per member in the schedule (a Redis hash beside the set). Members are
never dropped on an error: the platform's registry of authorizers decides. A periodic
comparison (``sync_interval``) schedules the authorizers it lacks and drops those the
registry lacked twice in a row (a cancelled authorization; a registry being rebuilt
after a loss lacks some for a moment, an empty one is taken for a lost one).

After Redis loses its data (a flush, a restart without persistence), the set is gone
with the tokens and refresh tokens. A ``seeded`` marker key goes with them: a worker
that finds it missing re-seeds the set from the platform's registry of authorizers,
or, when that is empty too, from the platform's recovery
(``api_get_authorizer_list``), under a short Redis lock so one worker does it.
"""

from __future__ import annotations

import heapq
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from .._background import Refresher
from .._errors import StoreError, WxAuthError
from ..stores._base import TokenStore
from ..stores._redis import RedisStore
from ..stores._redis_common import RELEASE, error_message, new_owner

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

#: Seconds before an authorizer token's expiry at which the fleet renews it: the
#: default ``refresh_margin`` of a manager (300 s) plus two minutes, so a caller never
#: reaches its own margin, and less than the old token's 5 minutes of grace after a
#: refresh, so a caller still holding the old token in its process is not refused.
DEFAULT_FLEET_MARGIN = 420.0
#: Up to this many seconds more are taken off each due time, at random, so that
#: authorizers added together do not stay due together for ever.
DEFAULT_FLEET_JITTER = 60.0
#: Seconds a claim is exclusive: a worker that dies gives its claims up after that.
DEFAULT_FLEET_LEASE = 60.0
#: Most members one claim takes.
DEFAULT_FLEET_BATCH = 100
#: Seconds between two comparisons of the schedule with the platform's registry.
DEFAULT_SYNC_INTERVAL = 600.0
#: Another holder had the authorizer's lock (a caller refreshing it): look again after.
BUSY_RETRY = 5.0
#: Pause after the first failed refresh of a member; it doubles with each further one...
FAILURE_RETRY_FIRST = 10.0
#: ...up to this many seconds.
FAILURE_RETRY_MAX = 300.0
#: How long the seeding lock is held at most (milliseconds, Redis ``PX``): longer than
#: re-reading 100,000 refresh tokens from api_get_authorizer_list takes (about a minute).
_SEED_LEASE_MS = 300_000

_T = TypeVar("_T")


@runtime_checkable
class FleetPlatform(Protocol):
    """What :class:`AuthorizerFleet` needs of a platform (a
    :class:`~wxauth.openplatform.ComponentTokenManager`, or anything shaped like it).

    Optional: ``recover_authorizers() -> Iterable[str]`` (re-read every authorizer's
    refresh token from WeChat, ``api_get_authorizer_list``, and return their appids),
    called when the schedule and the registry were both lost; ``has_authorizer(appid)
    -> bool`` (whether the registry has it; else ``authorizer_appids()`` is searched);
    ``clock`` (the epoch-seconds clock the fleet then uses by default).
    """

    @property
    def component_appid(self) -> str:
        """The platform's component appid (names the schedule's keys)."""
        ...

    @property
    def store(self) -> TokenStore:
        """The store the authorizers' tokens are kept in."""
        ...

    def authorizer(self, appid: str) -> TokenManager:
        """The token manager of one authorizer (the same object for the same appid)."""
        ...

    def authorizer_appids(self) -> Iterable[str]:
        """Every authorizer the platform knows (has a refresh token for)."""
        ...


@dataclass
class FleetStats:
    """Counters of one :class:`AuthorizerFleet` (this process only)."""

    #: Members claimed from the schedule.
    claimed: int = 0
    #: Authorizer tokens fetched by this fleet.
    fetched: int = 0
    #: Claimed members whose token someone else had already renewed: no fetch.
    fresh: int = 0
    #: Claimed members whose lock another holder had: looked at again after
    #: :data:`BUSY_RETRY`.
    busy: int = 0
    #: Refreshes that raised (rescheduled with backoff).
    failures: int = 0
    #: Refreshes WeChat answered 61003 for (not authorized) of authorizers the
    #: platform has forgotten: looked at again after :data:`FAILURE_RETRY_MAX`.
    unknown: int = 0
    #: Members dropped because two comparisons in a row found them missing from the
    #: platform's registry (cancelled authorizations).
    removed: int = 0
    #: Members claimed but left to expire their claim (the claim ran out mid-batch).
    abandoned: int = 0
    #: Largest delay between a member's due time and its claim, in seconds.
    max_lag: float = 0.0
    #: Times the schedule was seeded from the registry or the platform's recovery.
    seeds: int = 0


class AuthorizerFleet:
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
        self.lease = float(lease)
        self.batch = int(batch)
        self.poll_interval = float(poll_interval)
        self.sync_interval = None if sync_interval is None else float(sync_interval)
        self.stats = FleetStats()
        self._clock: Callable[[], float] = clock or getattr(platform, "clock", None) or time.time
        self._rng = random.Random(seed)
        store = platform.store
        name = f"openplatform:{self.component_appid}:fleet"
        self._schedule: _Schedule = (
            _RedisSchedule(store, name) if isinstance(store, RedisStore) else _MemorySchedule()
        )
        self._closed = threading.Event()
        self._run_lock = threading.Lock()
        self._refresher: Refresher | None = None
        self._refresher_lock = threading.Lock()
        self._next_sync = float("-inf")
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

    def sync(self) -> int:
        """Compare the schedule with the platform's registry: schedule (due now) every
        authorizer it lacks, and drop those the registry lacked at this comparison and
        the one before. When the schedule was lost (its ``seeded`` marker is gone) and
        the registry is empty too, ask the platform to recover its authorizers from
        WeChat; if that finds none (or fails), try again after a growing pause (one
        ``lease``, doubling up to an hour). Returns how many were added."""
        now = self._clock()
        if self._schedule.seeded():
            return self._reconcile(now)
        if now < self._next_seed:
            return 0
        owner = self._schedule.begin_seed()
        if owner is None:
            return 0  # another worker is seeding
        try:
            appids = list(self.platform.authorizer_appids())
            recover = getattr(self.platform, "recover_authorizers", None)
            if not appids and recover is not None:
                logger.warning(
                    "fleet of component %s: schedule and registry are empty; recovering "
                    "the authorizers from WeChat",
                    self.component_appid,
                )
                appids = list(recover())
            if not appids:
                # Nothing to seed with (yet): stay unseeded, so the next try recovers.
                self._schedule.abort_seed(owner)
                self._seed_later(now)
                return 0
            added = self._schedule.add(dict.fromkeys(appids, now), only_new=True)
            self._schedule.end_seed(owner)
        except BaseException:
            self._schedule.abort_seed(owner)
            self._seed_later(now)
            raise
        self._seed_failures = 0
        self.stats.seeds += 1
        logger.info(
            "fleet of component %s: seeded %d authorizers (%d new)",
            self.component_appid,
            len(appids),
            added,
        )
        return added

    def _seed_later(self, now: float) -> None:
        self._seed_failures += 1
        pause = min(self.lease * 2 ** (self._seed_failures - 1), 3600.0)
        self._next_seed = now + pause
        logger.warning(
            "fleet of component %s: no authorizers to seed the schedule with; trying "
            "again in %.0fs",
            self.component_appid,
            pause,
        )

    def _reconcile(self, now: float) -> int:
        # The schedule is read before the registry: an authorizer added in between is
        # in the registry snapshot, so it is never dropped by mistake.
        scheduled = set(self._schedule.members())
        known = set(self.platform.authorizer_appids())
        added = self._schedule.add(dict.fromkeys(known - scheduled, now), only_new=True)
        # An empty registry is a lost one, not a platform with no authorizers; and one
        # being rebuilt (api_get_authorizer_list) lacks some for a moment: a member is
        # dropped only when two comparisons in a row found it missing.
        missing = scheduled - known if known else set()
        gone = missing & self._absent
        self._absent = missing - gone
        if gone:
            self._schedule.remove(sorted(gone))
            self.stats.removed += len(gone)
            logger.info(
                "fleet of component %s: dropped %d authorizers the registry no longer has",
                self.component_appid,
                len(gone),
            )
        return added

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
                    dues[appid] = self._clock() + _failure_retry(count)
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


def _failure_retry(failures: int) -> float:
    """Pause before retrying a member after its ``failures``-th failure in a row."""
    return float(min(FAILURE_RETRY_FIRST * 2 ** max(failures - 1, 0), FAILURE_RETRY_MAX))


# -- schedules -------------------------------------------------------------------------


class _Schedule(Protocol):
    """The due times of a fleet: a Redis sorted set, or a heap in this process."""

    def add(self, dues: Mapping[str, float], *, only_new: bool) -> int: ...
    def remove(self, members: Sequence[str]) -> None: ...
    def score(self, member: str) -> float | None: ...
    def size(self) -> int: ...
    def members(self) -> list[str]: ...
    def next_due(self) -> float | None: ...
    def claim(self, now: float, until: float, batch: int) -> list[tuple[str, float]]: ...
    def count_failures(self, members: Sequence[str]) -> list[int]: ...
    def finish(self, dues: Mapping[str, float], succeeded: Sequence[str]) -> None: ...
    def seeded(self) -> bool: ...
    def begin_seed(self) -> str | None: ...
    def end_seed(self, owner: str) -> None: ...
    def abort_seed(self, owner: str) -> None: ...


# KEYS[1] the due set; ARGV[1] now, ARGV[2] the claim's end (now + lease), ARGV[3] batch.
# Takes up to `batch` members due at or before now, moves them to the claim's end, and
# returns them with their due scores: one atomic step, so no two workers share one.
CLAIM = """
local due = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0,
                       tonumber(ARGV[3]), 'WITHSCORES')
if #due == 0 then
  return due
end
local args = {}
for i = 1, #due, 2 do
  args[#args + 1] = ARGV[2]
  args[#args + 1] = due[i]
end
redis.call('ZADD', KEYS[1], 'XX', unpack(args))
return due
"""

# KEYS[1] the seeded marker, KEYS[2] the seeding lock; ARGV[1] owner. Sets the marker
# (the members are in: a seeding that outlasted its lock counts too) and frees the
# lock if this owner still holds it.
END_SEED = """
redis.call('SET', KEYS[1], '1')
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return 1
"""


class _RedisSchedule:
    """The schedule in Redis: ``{prefix}{name}:due`` (sorted set), ``:failures`` (hash
    of consecutive failures), ``:seeded`` (marker), ``:seeding`` (lock)."""

    def __init__(self, store: RedisStore, name: str) -> None:
        self._store = store
        client: Any = store.client  # redis-py's stubs vary by version: replies are checked
        self._client = client
        base = f"{store.prefix}{name}"
        self._due = f"{base}:due"
        self._failures = f"{base}:failures"
        self._seeded = f"{base}:seeded"
        self._seeding = f"{base}:seeding"
        self._claim = client.register_script(CLAIM)
        self._end_seed = client.register_script(END_SEED)
        # Giving up the seeding lock is a lock release: the stores' own script.
        self._abort_seed = client.register_script(RELEASE)

    def _call(self, what: str, op: Callable[[], _T]) -> _T:
        try:
            return op()
        except self._store._redis_error as exc:
            message = error_message(what, self._due, exc)
        raise StoreError(message)

    def add(self, dues: Mapping[str, float], *, only_new: bool) -> int:
        if not dues:
            return 0
        items = list(dues.items())
        added = 0
        for start in range(0, len(items), 5000):
            chunk = dict(items[start : start + 5000])
            added += int(self._call("schedule authorizers", self._zadd(chunk, nx=only_new)))
        return added

    def _zadd(self, chunk: dict[str, float], *, nx: bool) -> Callable[[], Any]:
        return lambda: self._client.zadd(self._due, chunk, nx=nx)

    def remove(self, members: Sequence[str]) -> None:
        if not members:
            return

        def op() -> Any:
            pipe = self._client.pipeline(transaction=False)
            pipe.zrem(self._due, *members)
            pipe.hdel(self._failures, *members)
            return pipe.execute()

        self._call("unschedule authorizers", op)

    def score(self, member: str) -> float | None:
        value = self._call("read a due time", lambda: self._client.zscore(self._due, member))
        return None if value is None else float(value)

    def size(self) -> int:
        return int(self._call("count the schedule", lambda: self._client.zcard(self._due)))

    def members(self) -> list[str]:
        raw = self._call("list the schedule", lambda: self._client.zrange(self._due, 0, -1))
        return [_text(member) for member in raw]

    def next_due(self) -> float | None:
        first = self._call(
            "read the next due time",
            lambda: self._client.zrange(self._due, 0, 0, withscores=True),
        )
        return float(first[0][1]) if first else None

    def claim(self, now: float, until: float, batch: int) -> list[tuple[str, float]]:
        reply = self._call(
            "claim due authorizers",
            lambda: self._claim(keys=[self._due], args=[repr(now), repr(until), batch]),
        )
        return [(_text(reply[i]), float(reply[i + 1])) for i in range(0, len(reply), 2)]

    def count_failures(self, members: Sequence[str]) -> list[int]:
        def op() -> Any:
            pipe = self._client.pipeline(transaction=False)
            for member in members:
                pipe.hincrby(self._failures, member, 1)
            return pipe.execute()

        return [int(count) for count in self._call("count failed refreshes", op)]

    def finish(self, dues: Mapping[str, float], succeeded: Sequence[str]) -> None:
        if not dues:
            return

        def op() -> Any:
            pipe = self._client.pipeline(transaction=False)
            # XX: a member removed meanwhile (cancelled authorization) stays out.
            pipe.zadd(self._due, dict(dues), xx=True)
            if succeeded:
                pipe.hdel(self._failures, *succeeded)
            return pipe.execute()

        self._call("reschedule authorizers", op)

    def seeded(self) -> bool:
        return bool(self._call("read the seeded marker", lambda: self._client.exists(self._seeded)))

    def begin_seed(self) -> str | None:
        owner = new_owner()
        taken = self._call(
            "take the seeding lock",
            lambda: self._client.set(self._seeding, owner, nx=True, px=_SEED_LEASE_MS),
        )
        return owner if taken else None

    def end_seed(self, owner: str) -> None:
        self._call(
            "mark the schedule seeded",
            lambda: self._end_seed(keys=[self._seeded, self._seeding], args=[owner]),
        )

    def abort_seed(self, owner: str) -> None:
        try:
            self._call(
                "free the seeding lock",
                lambda: self._abort_seed(keys=[self._seeding], args=[owner]),
            )
        except StoreError as exc:
            logger.warning("%s; the seeding lock will expire after %d ms", exc, _SEED_LEASE_MS)

    def __repr__(self) -> str:
        return f"RedisSchedule({self._due!r})"


class _MemorySchedule:
    """The schedule in this process: a heap of ``(due, appid)`` with lazy deletion
    (an entry whose due time is not the member's current one is skipped)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dues: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._failures: dict[str, int] = {}
        self._seeded = False
        self._seeding = False

    def _set(self, member: str, due: float) -> None:
        self._dues[member] = due
        heapq.heappush(self._heap, (due, member))

    def add(self, dues: Mapping[str, float], *, only_new: bool) -> int:
        added = 0
        with self._lock:
            for member, due in dues.items():
                new = member not in self._dues
                if new or not only_new:
                    self._set(member, float(due))
                added += new
        return added

    def remove(self, members: Sequence[str]) -> None:
        with self._lock:
            for member in members:
                self._dues.pop(member, None)
                self._failures.pop(member, None)

    def score(self, member: str) -> float | None:
        with self._lock:
            return self._dues.get(member)

    def size(self) -> int:
        with self._lock:
            return len(self._dues)

    def members(self) -> list[str]:
        with self._lock:
            return list(self._dues)

    def _top(self) -> tuple[float, str] | None:
        heap = self._heap
        while heap:
            due, member = heap[0]
            if self._dues.get(member) == due:
                return heap[0]
            heapq.heappop(heap)
        return None

    def next_due(self) -> float | None:
        with self._lock:
            top = self._top()
            return None if top is None else top[0]

    def claim(self, now: float, until: float, batch: int) -> list[tuple[str, float]]:
        claimed: list[tuple[str, float]] = []
        with self._lock:
            while len(claimed) < batch:
                top = self._top()
                if top is None or top[0] > now:
                    break
                heapq.heappop(self._heap)
                claimed.append((top[1], top[0]))
            for member, _ in claimed:
                self._set(member, until)
        return claimed

    def count_failures(self, members: Sequence[str]) -> list[int]:
        with self._lock:
            counts = []
            for member in members:
                self._failures[member] = count = self._failures.get(member, 0) + 1
                counts.append(count)
            return counts

    def finish(self, dues: Mapping[str, float], succeeded: Sequence[str]) -> None:
        with self._lock:
            for member, due in dues.items():
                if member in self._dues:
                    self._set(member, due)
            for member in succeeded:
                self._failures.pop(member, None)

    def seeded(self) -> bool:
        return self._seeded

    def begin_seed(self) -> str | None:
        with self._lock:
            if self._seeding:
                return None
            self._seeding = True
            return "local"

    def end_seed(self, owner: str) -> None:
        with self._lock:
            self._seeded, self._seeding = True, False

    def abort_seed(self, owner: str) -> None:
        with self._lock:
            self._seeding = False

    def __repr__(self) -> str:
        return "MemorySchedule()"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
