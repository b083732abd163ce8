"""The fleet's schedule kept in line with the platform's registry of authorizers: a
layer of :class:`~wxauth.openplatform.AuthorizerFleet`.

Members are never dropped on an error: the registry decides. A periodic comparison
(``sync_interval``) schedules the authorizers the schedule lacks and drops those the
registry lacked twice in a row (a cancelled authorization; a registry being rebuilt
after a loss lacks some for a moment, an empty one is taken for a lost one).

After Redis loses its data (a flush, a restart without persistence), the set is gone
with the tokens and refresh tokens. A ``seeded`` marker key goes with them: a worker
that finds it missing re-seeds the set from the platform's registry of authorizers,
or, when that is empty too, from the platform's recovery
(``api_get_authorizer_list``), under a short Redis lock so one worker does it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from ._fleet_base import FleetPlatform, FleetStats, Schedule

__all__ = ["FleetSync"]

logger = logging.getLogger("wxauth")


class FleetSync:
    """The comparisons of the schedule with the platform's registry, and the seeding of
    a lost schedule: a layer of :class:`~wxauth.openplatform.AuthorizerFleet`."""

    platform: FleetPlatform
    component_appid: str
    lease: float
    seed_spread: float
    stats: FleetStats
    _schedule: Schedule
    _clock: Callable[[], float]
    _rng: random.Random
    #: When a seeding that found nobody to seed with may be tried again.
    _next_seed: float
    #: Seedings in a row that found nobody to seed with (the pause doubles).
    _seed_failures: int
    #: Members the last reconciliation found missing from the registry.
    _absent: set[str]

    def sync(self) -> int:
        """Compare the schedule with the platform's registry: schedule (due now) every
        authorizer it lacks, and drop those the registry lacked at this comparison and
        the one before. When the schedule was lost (its ``seeded`` marker is gone),
        seed it from the registry (due over ``seed_spread`` seconds); when the registry
        is empty too, ask the platform to recover its authorizers from
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
            added = self._schedule.add(self._seed_dues(appids, now), only_new=True)
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

    def _seed_dues(self, appids: list[str], now: float) -> dict[str, float]:
        """Due times for a seeding: all ``now``, or spread at random over
        ``seed_spread`` seconds from now (so that the tokens do not all fall due
        together again in every later cycle)."""
        if self.seed_spread <= 0:
            return dict.fromkeys(appids, now)
        return {appid: now + self._rng.uniform(0.0, self.seed_spread) for appid in appids}

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
