"""What every part of the fleet refers to: its defaults, the pause after failed
refreshes, what it needs of a platform (:class:`FleetPlatform`) and of a schedule
(:class:`Schedule`), and its counters (:class:`FleetStats`). The fleet itself is
:class:`~wxauth.openplatform.AuthorizerFleet` (``_fleet``, which exports these public
names too); its schedules are in ``_fleet_redis`` (a Redis sorted set) and
``_fleet_heap`` (a heap in this process).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..stores._base import TokenStore

if TYPE_CHECKING:
    from .._manager import TokenManager

__all__ = [
    "BUSY_RETRY",
    "DEFAULT_FLEET_BATCH",
    "DEFAULT_FLEET_JITTER",
    "DEFAULT_FLEET_LEASE",
    "DEFAULT_FLEET_MARGIN",
    "DEFAULT_SYNC_INTERVAL",
    "FAILURE_RETRY_FIRST",
    "FAILURE_RETRY_MAX",
    "FleetPlatform",
    "FleetStats",
    "Schedule",
    "failure_retry",
]

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


def failure_retry(failures: int) -> float:
    """Pause before retrying a member after its ``failures``-th failure in a row."""
    return float(min(FAILURE_RETRY_FIRST * 2 ** max(failures - 1, 0), FAILURE_RETRY_MAX))


@runtime_checkable
class FleetPlatform(Protocol):
    """What :class:`~wxauth.openplatform.AuthorizerFleet` needs of a platform (a
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
    """Counters of one :class:`~wxauth.openplatform.AuthorizerFleet` (this process only)."""

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


class Schedule(Protocol):
    """The due times of a fleet: a Redis sorted set (``_fleet_redis.RedisSchedule``), or
    a heap in this process (``_fleet_heap.MemorySchedule``)."""

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
