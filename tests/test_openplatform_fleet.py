"""The fleet refresher (wxauth.openplatform.AuthorizerFleet): claims, leases, due times,
failures, lost schedules, and many fleets on one real redis-server.

The scheduler tests drive real TokenManagers whose source is a counting callable (the
platform here is a small stand-in with the shape AuthorizerFleet needs); the scale test
runs the real platform against the emulator. Time is a fake clock moved by the test.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from requests.structures import CaseInsensitiveDict

from wxauth import MemoryStore, RedisStore, TokenManager, TokenStore, WxAuthError
from wxauth._secret import reveal
from wxauth.openplatform._errors import AuthorizerNotAuthorizedError
from wxauth.openplatform._fleet import (
    BUSY_RETRY,
    FAILURE_RETRY_FIRST,
    FAILURE_RETRY_MAX,
    AuthorizerFleet,
    FleetPlatform,
)
from wxauth.testing import FakeWeChat
from wxauth.testing._fake import AUTHORIZER_TOKEN_PATH, Request
from wxauth.transport import HTTPAnswer, TokenRequest

COMPONENT = "wxcomponent000001"
START = 1_800_000_000.0
LIFETIME = 7200.0


class Clock:
    """A fake epoch clock the test moves."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Fetches:
    """Every token fetch of every stand-in platform of a test: (appid, time)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.log: list[tuple[str, float]] = []
        self.failing: set[str] = set()
        self.lock = threading.Lock()

    def source(self, appid: str) -> Any:
        def fetch() -> tuple[str, float]:
            if appid in self.failing:
                raise WxAuthError(f"scripted failure for {appid}")
            with self.lock:
                self.log.append((appid, self.clock()))
                return f"tok-{appid}-{len(self.log)}", LIFETIME

        return fetch

    def count(self) -> Counter[str]:
        return Counter(appid for appid, _ in self.log)


class Platform:
    """The shape AuthorizerFleet needs: a registry and one manager per authorizer."""

    def __init__(self, store: TokenStore, fetches: Fetches, appids: Iterable[str] = ()) -> None:
        self.component_appid = COMPONENT
        self.store = store
        self.clock = fetches.clock
        self.fetches = fetches
        self.registry: set[str] = set(appids)
        self.recoveries = 0
        self.recoverable: set[str] = set()
        self._managers: dict[str, TokenManager] = {}

    def authorizer(self, appid: str) -> TokenManager:
        manager = self._managers.get(appid)
        if manager is None:
            manager = self._managers[appid] = TokenManager(
                appid,
                source=self.fetches.source(appid),
                store=self.store,
                clock=self.clock,
                refresh_margin=300,
                max_fetches_per_minute=None,
            )
        return manager

    def authorizer_appids(self) -> list[str]:
        return sorted(self.registry)

    def recover_authorizers(self) -> list[str]:
        self.recoveries += 1
        self.registry |= self.recoverable
        return sorted(self.recoverable)


def appids(n: int) -> list[str]:
    return [f"wxa{i:015d}" for i in range(n)]


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.redis), "memory"])
def store_factory(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Builds stores of one kind: each call a new client on one Redis database, or the
    one MemoryStore."""
    if request.param == "memory":
        memory = MemoryStore()
        yield lambda: memory
        return
    url = request.getfixturevalue("redis_url")
    stores: list[RedisStore] = []

    def make() -> RedisStore:
        store = RedisStore.from_url(url)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fetches(clock: Clock) -> Fetches:
    return Fetches(clock)


def fleet_on(platform: Platform, **options: Any) -> AuthorizerFleet:
    options.setdefault("jitter", 0.0)
    return AuthorizerFleet(platform, **options)


# -- options ------------------------------------------------------------------------------


def test_margin_must_exceed_two_leases(fetches: Fetches) -> None:
    """margin <= 2 * lease is refused: a dead worker's claims would outlive the token."""
    platform = Platform(MemoryStore(), fetches)
    with pytest.raises(ValueError, match="2 \\* lease"):
        AuthorizerFleet(platform, margin=120, lease=60)
    for bad in ({"lease": 0}, {"jitter": -1}, {"batch": 0}, {"poll_interval": 0}):
        with pytest.raises(ValueError):
            AuthorizerFleet(platform, **bad)  # type: ignore[arg-type]


def test_the_stand_in_has_the_platform_shape(fetches: Fetches) -> None:
    """The stand-in platform satisfies FleetPlatform (so the tests test the real contract)."""
    assert isinstance(Platform(MemoryStore(), fetches), FleetPlatform)


# -- scheduling ---------------------------------------------------------------------------


def test_due_authorizers_are_fetched_and_rescheduled_at_expiry_minus_margin(
    store_factory: Any, fetches: Fetches, clock: Clock
) -> None:
    """run_once fetches each due authorizer once and reschedules it margin before expiry."""
    platform = Platform(store_factory(), fetches, appids(5))
    fleet = fleet_on(platform, margin=420)
    assert fleet.sync() == 5
    assert fleet.run_once() == 5
    assert fleet.run_once() == 0
    for appid in appids(5):
        assert fleet.due(appid) == START + LIFETIME - 420
    clock.advance(LIFETIME - 421)
    assert fleet.run_once() == 0
    clock.advance(1)
    assert fleet.run_once() == 5
    assert fetches.count() == Counter(dict.fromkeys(appids(5), 2))
    assert fleet.stats.max_lag == 0


def test_jitter_spreads_due_times_within_the_window(
    store_factory: Any, fetches: Fetches, clock: Clock
) -> None:
    """Due times fall between expiry - margin - jitter and expiry - margin, and differ."""
    platform = Platform(store_factory(), fetches, appids(50))
    fleet = AuthorizerFleet(platform, margin=420, jitter=60, seed=7)
    fleet.sync()
    fleet.run_once()
    dues = [fleet.due(appid) for appid in appids(50)]
    expires = START + LIFETIME
    assert all(d is not None and expires - 480 <= d <= expires - 420 for d in dues)
    assert len(set(dues)) > 40
    # The earliest jittered due time is still a real due time: the token is renewed.
    clock.now = min(d for d in dues if d is not None)
    assert fleet.run_once() >= 1


def test_a_token_renewed_by_someone_else_is_not_fetched_again(
    store_factory: Any, fetches: Fetches, clock: Clock
) -> None:
    """At its due time, a token a caller already renewed is only rescheduled."""
    platform = Platform(store_factory(), fetches, appids(1))
    fleet = fleet_on(platform)
    fleet.sync()
    fleet.run_once()
    (appid,) = appids(1)
    clock.advance(LIFETIME - 500)
    platform.authorizer(appid).refresh()  # a caller (or another worker) renewed it
    clock.advance(80)  # the fleet's due time for the old token
    assert fleet.run_once() == 0
    assert fleet.stats.fresh == 1
    assert fetches.count()[appid] == 2
    assert fleet.due(appid) == START + LIFETIME - 500 + LIFETIME - 420


def test_a_lock_held_by_a_caller_is_looked_at_again_shortly(
    store_factory: Any, fetches: Fetches, clock: Clock
) -> None:
    """A due token whose lock another holder has is not waited for: retried in BUSY_RETRY."""
    store = store_factory()
    platform = Platform(store, fetches, appids(1))
    fleet = fleet_on(platform)
    fleet.sync()
    fleet.run_once()
    (appid,) = appids(1)
    manager = platform.authorizer(appid)
    clock.advance(LIFETIME - 420)
    lock = store.lock(manager.key, lease=30)
    assert lock.acquire(blocking=False)
    try:
        assert fleet.run_once() == 0
    finally:
        lock.release()
    assert fleet.stats.busy == 1
    assert fleet.due(appid) == clock.now + BUSY_RETRY
    clock.advance(BUSY_RETRY)
    assert fleet.run_once() == 1


def test_a_failed_refresh_backs_off_and_keeps_the_member(
    store_factory: Any, fetches: Fetches, clock: Clock
) -> None:
    """Failures reschedule after 10 s, then 20 s; a success clears the count."""
    platform = Platform(store_factory(), fetches, appids(2))
    fleet = fleet_on(platform)
    fleet.sync()
    bad, _ = appids(2)
    fetches.failing.add(bad)
    assert fleet.run_once() == 1
    assert fleet.due(bad) == clock.now + FAILURE_RETRY_FIRST
    clock.advance(FAILURE_RETRY_FIRST)
    assert fleet.run_once() == 0
    assert fleet.due(bad) == clock.now + 2 * FAILURE_RETRY_FIRST
    assert fleet.stats.failures == 2
    fetches.failing.clear()
    clock.advance(2 * FAILURE_RETRY_FIRST)
    assert fleet.run_once() == 1
    assert fleet.due(bad) == clock.now + LIFETIME - fleet.margin
    fetches.failing.add(bad)
    clock.now = fleet.due(bad) or 0.0
    fleet.run_once()
    assert fleet.due(bad) == clock.now + FAILURE_RETRY_FIRST  # the count started afresh
    assert len(fleet) == 2


def test_not_authorized_is_looked_at_later_and_dropped_by_the_registry(
    store_factory: Any, fetches: Fetches, clock: Clock
) -> None:
    """61003 for an authorizer the registry forgot: looked at again after 300 s, and
    dropped by two comparisons with the registry; one it still has backs off as usual."""
    platform = Platform(store_factory(), fetches, appids(2))
    fleet = fleet_on(platform)
    fleet.sync()
    kept, gone = appids(2)

    def refused() -> tuple[str, float]:
        raise AuthorizerNotAuthorizedError(61003, "component is not authorized by this account")

    for appid in (kept, gone):
        platform.authorizer(appid).source.func = refused  # type: ignore[attr-defined]
    platform.registry.discard(gone)
    fleet.run_once()
    assert fleet.due(gone) == clock.now + FAILURE_RETRY_MAX
    assert fleet.due(kept) == clock.now + FAILURE_RETRY_FIRST
    assert fleet.stats.unknown == 1
    fleet.sync()
    assert fleet.due(gone) is not None  # missing once: a registry being rebuilt?
    fleet.sync()
    assert fleet.due(gone) is None
    assert fleet.due(kept) is not None
    assert fleet.stats.removed == 1


# -- many workers -------------------------------------------------------------------------


@pytest.mark.redis
def test_concurrent_fleets_on_one_redis_fetch_each_authorizer_once(
    redis_url: str, fetches: Fetches
) -> None:
    """Two fleets claiming at once from one Redis never fetch one authorizer twice."""
    names = appids(400)
    platforms = [Platform(RedisStore.from_url(redis_url), fetches, names) for _ in range(2)]
    fleets = [fleet_on(p, batch=7) for p in platforms]
    fleets[0].sync()
    barrier = threading.Barrier(2)
    results: list[int] = []

    def work(fleet: AuthorizerFleet) -> None:
        barrier.wait()
        results.append(fleet.run_once())

    threads = [threading.Thread(target=work, args=(f,)) for f in fleets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert fetches.count() == Counter(dict.fromkeys(names, 1))
    assert sorted(results) != [0, 400]  # both took part
    assert sum(results) == 400
    assert sum(f.stats.claimed for f in fleets) == 400
    for platform in platforms:
        platform.store.close()


@pytest.mark.redis
def test_claims_are_exclusive_until_their_lease_runs_out(redis_url: str, fetches: Fetches) -> None:
    """A worker that claims and dies holds its members for one lease; then another takes them."""
    names = appids(30)
    dead, alive = (Platform(RedisStore.from_url(redis_url), fetches, names) for _ in range(2))
    dead_fleet, fleet = fleet_on(dead, lease=60), fleet_on(alive, lease=60)
    fleet.sync()
    clock = fetches.clock
    claimed = dead_fleet._schedule.claim(clock(), clock() + 60, 100)  # and never finishes
    assert len(claimed) == 30
    assert fleet.run_once() == 0
    clock.advance(59)
    assert fleet.run_once() == 0
    clock.advance(1)
    assert fleet.run_once() == 30
    assert fleet.stats.max_lag == 0  # claimed at the dead claim's end, exactly
    assert fetches.count() == Counter(dict.fromkeys(names, 1))
    dead.store.close()
    alive.store.close()


@pytest.mark.redis
def test_a_claim_that_runs_out_mid_batch_is_left_to_the_others(
    redis_url: str, fetches: Fetches, clock: Clock
) -> None:
    """A worker stops working a batch once its claim ran out: the rest is due again."""
    names = appids(5)
    platform = Platform(RedisStore.from_url(redis_url), fetches, names)
    fleet = fleet_on(platform, lease=60)
    fleet.sync()
    slow = fetches.source(names[1])

    def slow_fetch() -> tuple[str, float]:
        clock.advance(61)  # this fetch took longer than the whole claim
        return slow()  # type: ignore[no-any-return]

    platform.authorizer(names[1]).source.func = slow_fetch  # type: ignore[attr-defined]
    assert fleet.run_once() == 2
    assert fleet.stats.abandoned == 3
    assert fleet.run_once() == 3  # due again at once (the claim's end has passed)
    assert fetches.count() == Counter(dict.fromkeys(names, 1))
    platform.store.close()


# -- lost schedules -----------------------------------------------------------------------


@pytest.mark.redis
def test_a_flushed_schedule_is_reseeded_from_the_registry(
    redis_url: str, fetches: Fetches, clock: Clock
) -> None:
    """After FLUSHDB the next sync re-adds every registered authorizer, due now."""
    names = appids(20)
    store = RedisStore.from_url(redis_url)
    platform = Platform(store, fetches, names)
    fleet = fleet_on(platform)
    fleet.sync()
    fleet.run_once()
    store.client.flushdb()
    assert len(fleet) == 0
    clock.advance(100)
    assert fleet.sync() == 20
    assert fleet.run_once() == 20  # the tokens went with the flush
    assert platform.recoveries == 0
    store.close()


def test_seed_spread_makes_a_seeding_due_over_time(
    store_factory: Any, fetches: Fetches, clock: Clock
) -> None:
    """seed_spread=600: the seeded authorizers fall due at random over 600 s, not all
    now; stepping through those 600 s fetches each exactly once, and their next due
    times are as spread (each its fetch time plus the refresh cycle), so the next
    cycle is no single burst either."""
    names = appids(200)
    platform = Platform(store_factory(), fetches, names)
    fleet = fleet_on(platform, seed_spread=600.0, seed=7)
    assert fleet.sync() == 200
    dues = [fleet.due(name) for name in names]
    assert all(due is not None and START <= due <= START + 600 for due in dues)
    assert len({round(due or 0) for due in dues}) > 150  # not one burst
    first = fleet.run_once()
    assert first < 20  # only those due at once
    for _ in range(20):
        clock.advance(30)
        fleet.run_once()
    assert fetches.count() == Counter(dict.fromkeys(names, 1))
    next_dues = sorted(fleet.due(name) or 0 for name in names)
    assert next_dues[-1] - next_dues[0] > 500
    with pytest.raises(ValueError, match="seed_spread"):
        fleet_on(platform, seed_spread=-1.0)


@pytest.mark.redis
def test_schedule_and_registry_lost_recover_once_across_workers(
    redis_url: str, fetches: Fetches
) -> None:
    """Both lost: one worker recovers the authorizers from WeChat, the others wait."""
    names = appids(10)
    platforms = [Platform(RedisStore.from_url(redis_url), fetches) for _ in range(2)]
    for platform in platforms:
        platform.recoverable = set(names)
    first, second = (fleet_on(p) for p in platforms)
    owner = second._schedule.begin_seed()  # a worker in the middle of seeding
    assert owner is not None
    assert first.sync() == 0  # it waits for that worker
    second._schedule.abort_seed(owner)  # which died
    assert first.sync() == 10
    assert second.sync() == 0  # seeded: only reconciled
    assert [p.recoveries for p in platforms] == [1, 0]
    for platform in platforms:
        platform.store.close()


@pytest.mark.redis
def test_a_seeding_that_outlasted_its_lock_still_counts(redis_url: str, fetches: Fetches) -> None:
    """A seeder whose lock expired mid-way still marks the schedule seeded, and never
    frees a lock another seeder took since."""
    platform = Platform(RedisStore.from_url(redis_url), fetches, appids(3))
    fleet = fleet_on(platform)
    schedule = fleet._schedule
    owner = schedule.begin_seed()
    assert owner is not None
    platform.store.client.delete(f"wxauth:openplatform:{COMPONENT}:fleet:seeding")  # expired
    other = schedule.begin_seed()
    assert other is not None
    schedule.end_seed(owner)
    assert schedule.seeded()
    assert schedule.begin_seed() is None  # the other seeder's lock stands
    platform.store.close()


def test_schedule_sets_many_due_times(store_factory: Any, fetches: Fetches, clock: Clock) -> None:
    """schedule() adds or moves many members at once; run_once takes those due."""
    platform = Platform(store_factory(), fetches, appids(3))
    fleet = fleet_on(platform)
    first, second, third = appids(3)
    fleet.schedule({first: clock.now, second: clock.now + 100, third: clock.now + 200})
    assert fleet.run_once() == 1
    fleet.schedule({third: clock.now})
    assert fleet.run_once() == 1
    assert fleet.due(second) == clock.now + 100


def test_sync_adds_new_and_drops_forgotten_authorizers(
    store_factory: Any, fetches: Fetches
) -> None:
    """A later sync schedules new registry entries; entries missing twice in a row go."""
    names = appids(4)
    platform = Platform(store_factory(), fetches, names[:3])
    fleet = fleet_on(platform)
    assert fleet.sync() == 3
    platform.registry = {names[1], names[2], names[3]}
    assert fleet.sync() == 1
    assert fleet.due(names[0]) is not None
    assert fleet.sync() == 0
    assert fleet.due(names[0]) is None
    assert fleet.due(names[3]) is not None
    platform.registry = set()  # an empty registry is a lost one: nothing is dropped
    fleet.sync()
    assert len(fleet) == 3


def test_nothing_to_seed_stays_unseeded_and_tries_again_later(
    store_factory: Any, fetches: Fetches, clock: Clock
) -> None:
    """An empty registry whose recovery finds nobody (or fails) is not taken as seeded:
    seeding is tried again after one lease, then two."""
    platform = Platform(store_factory(), fetches)
    fleet = fleet_on(platform, lease=60)
    assert fleet.sync() == 0
    assert platform.recoveries == 1
    clock.advance(59)
    assert fleet.sync() == 0
    assert platform.recoveries == 1
    clock.advance(1)
    platform.recoverable = {"wxlate"}
    assert fleet.sync() == 1
    assert fleet.due("wxlate") == clock.now
    assert platform.recoveries == 2
    assert fleet.sync() == 0  # seeded: only compared
    assert platform.recoveries == 2


def test_a_failed_recovery_leaves_the_schedule_unseeded(
    store_factory: Any, fetches: Fetches, clock: Clock
) -> None:
    """A recovery that raises frees the seeding for the next try (after a pause)."""
    platform = Platform(store_factory(), fetches)

    def broken() -> list[str]:
        raise WxAuthError("component token unavailable")

    platform.recover_authorizers = broken  # type: ignore[method-assign]
    fleet = fleet_on(platform, lease=60)
    with pytest.raises(WxAuthError):
        fleet.sync()
    del platform.recover_authorizers
    platform.recoverable = {"wxback"}
    clock.advance(60)
    assert fleet.sync() == 1


def test_add_and_remove(store_factory: Any, fetches: Fetches, clock: Clock) -> None:
    """add() schedules (due now unless told), keeps a due time on re-add; remove() drops."""
    platform = Platform(store_factory(), fetches)
    fleet = fleet_on(platform)
    fleet.add("wxnew")
    assert fleet.due("wxnew") == clock.now
    fleet.add("wxnew")
    assert fleet.due("wxnew") == clock.now
    fleet.add("wxnew", due=clock.now + 50)
    assert fleet.due("wxnew") == clock.now + 50
    assert fleet.next_due() == clock.now + 50
    fleet.remove("wxnew")
    assert fleet.due("wxnew") is None
    assert fleet.next_due() is None


# -- callers ------------------------------------------------------------------------------


@pytest.mark.redis
def test_callers_only_read_the_store_while_the_fleet_runs(redis_url: str, fetches: Fetches) -> None:
    """Over 6 simulated hours, callers in another process never fetch; the fleet fetches
    each token once per (lifetime - margin)."""
    names = appids(40)
    worker = Platform(RedisStore.from_url(redis_url), fetches, names)
    caller = Platform(RedisStore.from_url(redis_url), fetches, names)
    fleet = AuthorizerFleet(worker, margin=420, jitter=60, seed=1)
    fleet.sync()
    clock = fetches.clock
    for _ in range(6 * 3600 // 30):
        fleet.run_once()
        for appid in names:
            token = caller.authorizer(appid).get_token()
            assert token.startswith("tok-")
        clock.advance(30)
    assert sum(caller.authorizer(a).stats.fetches for a in names) == 0
    per_authorizer = set(fetches.count().values())
    # 6 h from a cold start: the first fetch, then one every ~6750 s.
    assert per_authorizer == {4}
    worker.store.close()
    caller.store.close()


def test_background_thread_refreshes_on_a_fake_clock(fetches: Fetches, clock: Clock) -> None:
    """start() seeds and refreshes in a daemon thread; close() stops it."""
    platform = Platform(MemoryStore(), fetches, appids(3))
    fleet = fleet_on(platform, poll_interval=0.05)
    fleet.start()
    try:
        assert fleet.sync_background()
        assert fetches.count() == Counter(dict.fromkeys(appids(3), 1))
        clock.advance(LIFETIME - 420)
        assert fleet.sync_background()
        assert fetches.count() == Counter(dict.fromkeys(appids(3), 2))
    finally:
        fleet.close()
    assert not fleet.sync_background()


# -- the real platform against the emulator -------------------------------------------------

PUSH_TOKEN, AES_KEY, COMPONENT_SECRET = "pushtoken", "A" * 43, "component-secret-0123456789"
API_PATH = "/cgi-bin/get_api_domain_ip"
#: Authorizers of the scale test.
AUTHORIZERS = 4_000


class DirectTransport:
    """A wxauth transport that hands each request straight to the emulator's model (no
    HTTP library: the scale test's budget goes to the fleet), and logs every authorizer
    token the emulator issued: (authorizer appid, emulator time)."""

    def __init__(self, fake: FakeWeChat) -> None:
        self.fake = fake
        self.issued: list[tuple[str, float]] = []
        self._lock = threading.Lock()

    def send(self, request: TokenRequest, *, timeout: float) -> HTTPAnswer:
        body = b"" if request.json is None else json.dumps(reveal(request.json)).encode()
        path = urlsplit(request.url).path
        params = {name: reveal(value) for name, value in request.params.items()}
        reply = self.fake.handle(Request(request.method, path, params, body))
        if path == AUTHORIZER_TOKEN_PATH and b"authorizer_access_token" in reply.body:
            with self._lock:
                self.issued.append((json.loads(body)["authorizer_appid"], self.fake.clock()))
        headers = CaseInsensitiveDict({"Content-Type": reply.content_type})
        return HTTPAnswer(reply.status, headers, reply.body)

    def call_api(self, token: str) -> int:
        """An authorizer's API call with ``token``; its errcode."""
        reply = self.fake.handle(Request("GET", API_PATH, {"access_token": token}))
        return int(json.loads(reply.body).get("errcode", 0))


def real_platform(redis_url: str, fake: FakeWeChat, transport: DirectTransport) -> Any:
    from wxauth.openplatform import ComponentTokenManager

    return ComponentTokenManager(
        COMPONENT,
        COMPONENT_SECRET,
        token=PUSH_TOKEN,
        encoding_aes_key=AES_KEY,
        store=RedisStore.from_url(redis_url),
        clock=fake.clock,
        transport=transport,
        max_fetches_per_minute=None,
    )


@pytest.fixture
def emulator() -> FakeWeChat:
    fake = FakeWeChat(start=START, seed=3, call_history=0)
    fake.add_component(COMPONENT, COMPONENT_SECRET, token=PUSH_TOKEN, encoding_aes_key=AES_KEY)
    return fake


def push_ticket(fake: FakeWeChat, platform: Any) -> None:
    query, body = fake.verify_ticket_push(COMPONENT)
    platform.handle_push(query, body)


@pytest.mark.redis
@pytest.mark.slow
def test_thousands_of_authorizers_two_fleets_against_the_emulator(
    redis_url: str, emulator: FakeWeChat
) -> None:
    """4,000 authorizers, 2 fleets on one Redis, 2.5 simulated hours: no expired or
    retired token reaches an API, no double fetch, callers never fetch, and each
    authorizer is fetched at its cold start and once per (lifetime - margin)."""
    # 10,000 (the CI size) take ~30 s here (12 Redis round trips a refresh);
    # benchmarks/openplatform.py --authorizers 10000 runs that size.
    fake = emulator
    names = appids(AUTHORIZERS)
    fake.add_authorizers(COMPONENT, names)
    transport = DirectTransport(fake)
    workers = [real_platform(redis_url, fake, transport) for _ in range(2)]
    caller = real_platform(redis_url, fake, transport)
    push_ticket(fake, caller)
    fleets = [AuthorizerFleet(w, batch=50, seed=i) for i, w in enumerate(workers)]
    fleets[0].sync()  # registry empty: recovered from api_get_authorizer_list
    assert len(fleets[0]) == AUTHORIZERS
    step, sample = 60.0, random.Random(5)
    errcodes: Counter[int] = Counter()
    for minute in range(150):
        if minute % 10 == 0:
            push_ticket(fake, caller)
        threads = [threading.Thread(target=f.step) for f in fleets]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        for appid in sample.sample(names, 20):
            errcodes[transport.call_api(caller.authorizer(appid).get_token())] += 1
        fake.advance(step)
    assert errcodes == Counter({0: 3000})
    fetched = sum(f.stats.fetched for f in fleets)
    assert fetched == len(transport.issued) == fake.count(kind="authorizer_token")
    assert all(f.stats.fetched > AUTHORIZERS / 5 for f in fleets)  # both worked
    times: dict[str, list[float]] = {}
    for appid, at in transport.issued:
        times.setdefault(appid, []).append(at)
    # One cold fetch each, then one ~6750 s later (due 6720..6780 s, found within a step).
    assert {len(t) for t in times.values()} == {2}
    gaps = [t[1] - t[0] for t in times.values()]
    assert min(gaps) >= 7200 - 480
    assert max(gaps) <= 7200 - 420 + step
    for worker in [*workers, caller]:
        worker.store.close()


@pytest.mark.redis
def test_a_flushed_redis_is_recovered_from_the_authorizer_list(
    redis_url: str, emulator: FakeWeChat
) -> None:
    """FLUSHDB loses tokens, refresh tokens and schedule: the fleet re-seeds from
    api_get_authorizer_list and refreshes every authorizer; none is lost."""
    fake = emulator
    names = appids(300)
    fake.add_authorizers(COMPONENT, names)
    transport = DirectTransport(fake)
    platform = real_platform(redis_url, fake, transport)
    push_ticket(fake, platform)
    fleet = AuthorizerFleet(platform)
    fleet.step()
    assert fleet.stats.fetched == 300
    fake.advance(1000)
    platform.store.client.flushdb()
    push_ticket(fake, platform)  # the ticket went with the flush; WeChat pushes again
    fleet.step()
    assert fleet.stats.seeds == 2
    assert len(fleet) == 300
    assert fleet.stats.fetched == 600
    assert platform.authorizer_appids() == names
    for appid in names[:20]:
        assert transport.call_api(platform.authorizer(appid).get_token()) == 0
    platform.store.close()


@pytest.mark.redis
def test_an_authorizer_that_cancelled_is_dropped(redis_url: str, emulator: FakeWeChat) -> None:
    """An authorizer WeChat answers 61003 for is forgotten by the platform, then by the
    fleet's comparisons with the registry."""
    fake = emulator
    names = appids(3)
    fake.add_authorizers(COMPONENT, names)
    transport = DirectTransport(fake)
    platform = real_platform(redis_url, fake, transport)
    push_ticket(fake, platform)
    fleet = AuthorizerFleet(platform, jitter=0)
    fleet.step()
    fake.unauthorize(COMPONENT, names[0])  # and its push never came
    fake.advance(7200 - 420)
    push_ticket(fake, platform)
    fleet.step()
    assert fleet.stats.unknown == 1
    assert not platform.has_authorizer(names[0])  # the platform forgot it on 61003
    fleet.sync()
    fleet.sync()
    assert fleet.due(names[0]) is None
    assert fleet.stats.removed == 1
    assert len(fleet) == 2
    platform.store.close()
