"""The store contract: every store (memory, file, Redis) runs this suite unchanged.

``store`` and ``peer`` are two handles on the same data: for a shared store a second
instance, as another process would open it; for the private :class:`MemoryStore` the
same instance. Tests about other processes (a holder killed, a lease overrun) apply to
shared stores only, and say so when they skip. ``tests/test_async_store_contract.py``
runs these same cases against the async stores.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _store_contract_helpers import KEY, OTHER, StoreFactory, token

import wxauth
from wxauth import FileStore, MemoryStore, RedisStore, Token, TokenStore
from wxauth.stores._filelock import stem


@pytest.fixture(params=["memory", "file", pytest.param("redis", marks=pytest.mark.redis)])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def spec(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[str, str]:
    """What a child process needs to open the same store: (kind, path or URL)."""
    if kind == "file":
        return kind, str(tmp_path / "tokens")
    if kind == "redis":
        return kind, str(request.getfixturevalue("redis_url"))
    return kind, ""


@pytest.fixture
def opener(spec: tuple[str, str]) -> Iterator[StoreFactory]:
    """Opens handles on one store; all of them are closed after the test."""
    kind, where = spec
    opened: list[TokenStore] = []
    memory = MemoryStore()

    def open_store() -> TokenStore:
        store: TokenStore
        if kind == "memory":
            store = memory
        elif kind == "file":
            store = FileStore(where)
        else:
            store = RedisStore.from_url(where, prefix="wxauth-contract:")
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()


@pytest.fixture
def store(opener: StoreFactory) -> TokenStore:
    return opener()


@pytest.fixture
def peer(opener: StoreFactory) -> TokenStore:
    return opener()


def needs_shared(store: TokenStore) -> None:
    if not store.shared:
        pytest.skip(f"{type(store).__name__} is private to one process: leases are moot")


# -- tokens ------------------------------------------------------------------------------


def test_get_missing_is_none(store: TokenStore) -> None:
    """A key never written reads as None."""
    assert store.get(KEY) is None


def test_set_then_get_round_trips_exactly(store: TokenStore, peer: TokenStore) -> None:
    """What one handle writes, another reads back field for field (floats exact)."""
    written = Token("v-" + "x" * 600, expires_at=1_800_007_200.123456, fetched_at=1_800_000_000.5)
    assert store.set(KEY, written) is True
    assert peer.get(KEY) == written
    assert peer.get(OTHER) is None


def test_set_unless_newer_keeps_the_newer_token(store: TokenStore, peer: TokenStore) -> None:
    """A slow writer with an older token never overwrites a newer one."""
    newer, older = token("new", 1_800_000_100.0), token("old", 1_800_000_000.0)
    assert store.set(KEY, newer) is True
    assert peer.set(KEY, older) is False
    assert store.get(KEY) == newer
    later = token("later", 1_800_000_200.0)
    assert peer.set(KEY, later) is True
    assert store.get(KEY) == later


def test_set_with_equal_fetched_at_overwrites(store: TokenStore) -> None:
    """Only a strictly newer stored token wins; a tie is written."""
    store.set(KEY, token("a"))
    assert store.set(KEY, token("b")) is True
    stored = store.get(KEY)
    assert stored == token("b")


def test_delete_if_only_deletes_the_value_seen(store: TokenStore, peer: TokenStore) -> None:
    """Compare-and-delete: a stale value changes nothing, the current one is dropped."""
    assert store.delete_if(KEY, "T-1") is False  # nothing stored
    store.set(KEY, token("T-2"))
    assert peer.delete_if(KEY, "T-1") is False
    assert store.get(KEY) == token("T-2")
    assert peer.delete_if(KEY, "T-2") is True
    assert store.get(KEY) is None
    assert peer.delete_if(KEY, "T-2") is False


def test_keys_are_independent(store: TokenStore) -> None:
    """Writing or deleting one key leaves another alone."""
    store.set(KEY, token("one"))
    store.set(OTHER, token("two"))
    assert store.delete_if(KEY, "one") is True
    assert store.get(OTHER) == token("two")


# -- meta --------------------------------------------------------------------------------


def test_meta_round_trip_and_overwrite(store: TokenStore, peer: TokenStore) -> None:
    """Meta records are read back by another handle and replaced by a later write."""
    assert store.get_meta(KEY) is None
    store.set_meta(KEY, '{"n": 1}', ttl=60)
    assert peer.get_meta(KEY) == '{"n": 1}'
    peer.set_meta(KEY, "second", ttl=60)
    assert store.get_meta(KEY) == "second"


def test_meta_never_collides_with_tokens(store: TokenStore) -> None:
    """A meta key and a token key with the same text are different records."""
    store.set(KEY, token("tok"))
    store.set_meta(KEY, "meta", ttl=60)
    assert store.get(KEY) == token("tok")
    assert store.get_meta(KEY) == "meta"
    assert store.delete_if(KEY, "tok") is True
    assert store.get_meta(KEY) == "meta"


def test_meta_expires_after_its_ttl(store: TokenStore) -> None:
    """A meta record is gone once its ttl (real time) has passed; a long one stays."""
    store.set_meta(KEY, "short", ttl=0.05)
    store.set_meta(OTHER, "long", ttl=3600)
    deadline = time.monotonic() + 5.0  # a safety net: the ttl is 50 ms
    while store.get_meta(KEY) is not None:
        assert time.monotonic() < deadline, "the 50 ms meta record outlived 5 s"
        time.sleep(0.01)
    assert store.get_meta(OTHER) == "long"


# -- durable records ---------------------------------------------------------------------

TABLE = "openplatform:wxcomponent0001:refresh"


def test_records_round_trip_between_handles(store: TokenStore, peer: TokenStore) -> None:
    """A record one handle writes, another reads back; a later write replaces it."""
    assert store.get_record(TABLE, "wxa") is None
    store.put_record(TABLE, "wxa", '{"refresh_token": "r-1"}')
    assert peer.get_record(TABLE, "wxa") == '{"refresh_token": "r-1"}'
    peer.put_record(TABLE, "wxa", "second")
    assert store.get_record(TABLE, "wxa") == "second"


def test_records_are_listed_per_table(store: TokenStore, peer: TokenStore) -> None:
    """``records(table)`` holds every record of that table and no other's."""
    assert store.records(TABLE) == {}
    for i in range(5):
        store.put_record(TABLE, f"wx{i}", f"v{i}")
    store.put_record(TABLE + ":other", "wx0", "elsewhere")
    assert peer.records(TABLE) == {f"wx{i}": f"v{i}" for i in range(5)}
    assert peer.records(TABLE + ":other") == {"wx0": "elsewhere"}


def test_records_never_collide_with_tokens_or_meta(store: TokenStore) -> None:
    """A record, a token and a meta record under the same text are three records."""
    store.set(KEY, token("tok"))
    store.set_meta(KEY, "meta", ttl=60)
    store.put_record(KEY, KEY, "record")
    assert store.get(KEY) == token("tok")
    assert store.get_meta(KEY) == "meta"
    assert store.get_record(KEY, KEY) == "record"


def test_replace_record_is_compare_and_set(store: TokenStore, peer: TokenStore) -> None:
    """``replace_record`` writes only over the value the caller saw (``None``: absent)
    and deletes with ``new=None``."""
    assert store.replace_record(TABLE, "wxa", "not-there", "x") is False
    assert store.get_record(TABLE, "wxa") is None
    assert store.replace_record(TABLE, "wxa", None, "r-1") is True
    assert peer.replace_record(TABLE, "wxa", None, "r-other") is False
    assert peer.replace_record(TABLE, "wxa", "r-0", "r-2") is False
    assert peer.replace_record(TABLE, "wxa", "r-1", "r-2") is True
    assert store.get_record(TABLE, "wxa") == "r-2"
    assert store.replace_record(TABLE, "wxa", "r-1", None) is False
    assert store.replace_record(TABLE, "wxa", "r-2", None) is True
    assert peer.get_record(TABLE, "wxa") is None
    assert peer.records(TABLE) == {}
    assert store.replace_record(TABLE, "wxa", None, None) is True  # absent stays absent


def test_records_keep_unusual_names_and_values(store: TokenStore, peer: TokenStore) -> None:
    """Names and values with slashes, quotes, spaces and non-ASCII text round-trip;
    an empty value is a value, not an absence."""
    odd = {"../etc/passwd": 'a b\n"c"', "名字": "值 ✓", "wx:x": ""}
    for name, value in odd.items():
        store.put_record(TABLE, name, value)
    assert peer.records(TABLE) == odd
    assert peer.get_record(TABLE, "wx:x") == ""
    assert peer.replace_record(TABLE, "wx:x", None, "y") is False


def test_records_do_not_expire(
    store: TokenStore, kind: str, request: pytest.FixtureRequest
) -> None:
    """Records carry no expiry; shared stores say they are durable, MemoryStore not."""
    store.put_record(TABLE, "wxa", "kept")
    assert store.durable is (kind != "memory")
    assert type(store).keeps_records()
    if kind == "redis":
        import redis

        client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
        try:
            assert client.ttl(f"wxauth-contract:records:{TABLE}") == -1  # no TTL
        finally:
            client.close()
    assert store.get_record(TABLE, "wxa") == "kept"


def test_racing_compare_and_set_loses_no_update(opener: StoreFactory) -> None:
    """8 threads x 8 read-increment-compare-and-set cycles on two handles: 64."""
    handles = [opener() for _ in range(2)]

    def work(i: int) -> None:
        handle = handles[i % 2]
        for _ in range(8):
            while True:
                seen = handle.get_record(TABLE, "counter")
                if handle.replace_record(TABLE, "counter", seen, str(int(seen or 0) + 1)):
                    break

    run_threads(8, work)
    assert handles[0].get_record(TABLE, "counter") == "64"


def test_a_store_without_records_says_so() -> None:
    """A custom store that implements no records raises NotImplementedError naming
    itself, and ``keeps_records()`` is false."""

    class Bare(TokenStore):
        def get(self, key: str) -> Token | None:
            return None

        def set(self, key: str, token: Token) -> bool:
            return True

        def delete_if(self, key: str, value: str) -> bool:
            return False

        def lock(self, key: str, *, lease: float) -> wxauth.StoreLock:
            raise NotImplementedError

        def get_meta(self, key: str) -> str | None:
            return None

        def set_meta(self, key: str, value: str, *, ttl: float) -> None:
            return None

    assert Bare.keeps_records() is False
    assert Bare().durable is False
    with pytest.raises(NotImplementedError, match="Bare"):
        Bare().get_record(TABLE, "x")


# -- locks -------------------------------------------------------------------------------


def test_lock_is_exclusive_until_released(store: TokenStore, peer: TokenStore) -> None:
    """While one holder has the lock, nobody else gets it; after release, one does."""
    held = store.lock(KEY, lease=30)
    assert held.acquire(blocking=False) is True
    other = peer.lock(KEY, lease=30)
    assert other.acquire(blocking=False) is False
    started = time.monotonic()
    assert other.acquire(timeout=0.2) is False
    assert time.monotonic() - started >= 0.15  # it did wait for its timeout
    independent = peer.lock(OTHER, lease=30)
    assert independent.acquire(blocking=False) is True  # another key: free
    independent.release()
    held.release()
    assert other.acquire(blocking=False) is True
    other.release()


def test_lock_as_context_manager(store: TokenStore, peer: TokenStore) -> None:
    """``with store.lock(...)`` holds the lock inside the block only."""
    with store.lock(KEY, lease=30):
        assert peer.lock(KEY, lease=30).acquire(blocking=False) is False
    again = peer.lock(KEY, lease=30)
    assert again.acquire(blocking=False) is True
    again.release()


def test_release_of_a_lock_not_held_raises(store: TokenStore) -> None:
    """Releasing a lock that was never acquired is a bug, reported as RuntimeError."""
    with pytest.raises(RuntimeError):
        store.lock(KEY, lease=30).release()


def test_waiter_picks_up_the_token_the_holder_wrote(store: TokenStore, peer: TokenStore) -> None:
    """A blocked waiter gets the lock when the holder releases and reads its token."""
    holder = store.lock(KEY, lease=30)
    assert holder.acquire()
    seen: list[Token | None] = []
    waiting = threading.Event()

    def waiter() -> None:
        lock = peer.lock(KEY, lease=30)
        waiting.set()
        assert lock.acquire(timeout=10)
        try:
            seen.append(peer.get(KEY))
        finally:
            lock.release()

    thread = threading.Thread(target=waiter)
    thread.start()
    waiting.wait(5)
    store.set(KEY, token("from-holder"))
    holder.release()
    thread.join(10)
    assert seen == [token("from-holder")]


def test_lease_overrun_is_taken_over_without_freeing_the_successor(
    store: TokenStore, peer: TokenStore
) -> None:
    """A live holder past its lease loses the lock; its late release does not free
    the lock its successor now holds."""
    needs_shared(store)
    stale = store.lock(KEY, lease=0.2)
    assert stale.acquire(blocking=False)
    successor = peer.lock(KEY, lease=30)
    assert successor.acquire(timeout=10) is True  # after the 0.2 s lease
    stale.release()  # too late: must not release the successor's lock
    third = peer.lock(KEY, lease=30)
    assert third.acquire(blocking=False) is False
    successor.release()
    assert third.acquire(blocking=False) is True
    third.release()


def test_fences_grow_with_every_acquisition(store: TokenStore, peer: TokenStore) -> None:
    """Each acquisition, by any handle, gets a larger fence than every earlier one, and
    a fence never falls to or below that of the stored token."""
    fences = []
    for handle in (store, peer, store, peer):
        lock = handle.lock(KEY, lease=30)
        assert lock.fence == 0
        assert lock.acquire(timeout=10)
        fences.append(lock.fence)
        lock.release()
    assert fences == sorted(fences)
    assert len(set(fences)) == 4
    assert fences[0] > 0
    store.set(KEY, Token("planted", 1_800_007_200.0, 1_800_000_000.0, fence=fences[-1] + 50))
    with peer.lock(KEY, lease=30) as lock:
        assert lock.fence > fences[-1] + 50


def test_held_until_released(store: TokenStore) -> None:
    """``held()`` says whether this holder still owns the lock."""
    lock = store.lock(KEY, lease=30)
    assert lock.held() is False
    assert lock.acquire(timeout=10)
    assert lock.held() is True
    lock.release()
    assert lock.held() is False


def test_held_is_false_after_a_takeover(store: TokenStore, peer: TokenStore) -> None:
    """A holder whose lease ran out and was taken over no longer holds the lock."""
    needs_shared(store)
    stale = store.lock(KEY, lease=0.2)
    assert stale.acquire(blocking=False)
    successor = peer.lock(KEY, lease=30)
    assert successor.acquire(timeout=10) is True
    assert stale.held() is False
    assert successor.held() is True
    assert successor.fence > stale.fence
    stale.release()
    successor.release()


def test_a_later_fence_wins_whatever_the_clocks_say(store: TokenStore, peer: TokenStore) -> None:
    """A token fetched under a later fence replaces one with an earlier fence even when
    its host's clock is an hour behind; an earlier fence never replaces a later one."""
    first = Token("first", 1_800_007_200.0, 1_800_000_000.0, fence=7)
    behind = Token("behind", 1_800_003_600.0, 1_799_996_400.0, fence=8)
    assert store.set(KEY, first) is True
    assert peer.set(KEY, behind) is True
    assert store.get(KEY) == behind
    ahead = Token("ahead", 1_800_014_400.0, 1_800_007_200.0, fence=7)
    assert peer.set(KEY, ahead) is False
    assert store.get(KEY) == behind


_HOLDER = """
import sys, time
from wxauth import FileStore, RedisStore
kind, where, key, lease = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
if kind == "file":
    store = FileStore(where)
else:
    store = RedisStore.from_url(where, prefix="wxauth-contract:")
lock = store.lock(key, lease=lease)
assert lock.acquire(blocking=False)
print("held", flush=True)
time.sleep(600)
"""


def test_lock_of_a_killed_holder_is_taken_over_within_the_lease(
    store: TokenStore, spec: tuple[str, str]
) -> None:
    """A holder SIGKILLed while holding the lock does not block the others for longer
    than its lease."""
    needs_shared(store)
    lease = 2.0
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, spec[0], spec[1], KEY, str(lease)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "held"
        assert store.lock(KEY, lease=30).acquire(blocking=False) is False
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        killed = time.monotonic()
        lock = store.lock(KEY, lease=30)
        assert lock.acquire(timeout=lease + 5) is True
        assert time.monotonic() - killed <= lease + 0.5
        lock.release()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)


# -- threads racing ----------------------------------------------------------------------


def run_threads(count: int, target: Callable[[int], None]) -> None:
    start = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            start.wait(10)
            target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads), "a racing thread hung"
    assert not errors, errors


def test_racing_lock_holders_never_overlap(opener: StoreFactory) -> None:
    """8 threads x 8 read-increment-write cycles under the lock lose no increment."""
    handles = [opener() for _ in range(2)]
    inside = threading.Lock()

    def work(i: int) -> None:
        handle = handles[i % 2]
        for _ in range(8):
            with handle.lock(KEY, lease=30):
                assert inside.acquire(blocking=False), "two holders at once"
                try:
                    count = int(handle.get_meta("counter") or 0)
                    handle.set_meta("counter", str(count + 1), ttl=60)
                finally:
                    inside.release()

    run_threads(8, work)
    assert handles[0].get_meta("counter") == "64"


def test_racing_writers_leave_the_newest_token(opener: StoreFactory) -> None:
    """Whatever order 16 concurrent writers land in, the newest token stays."""
    handles = [opener() for _ in range(2)]
    results: dict[int, bool] = {}

    def write(i: int) -> None:
        results[i] = handles[i % 2].set(KEY, token(f"T{i}", 1_800_000_000.0 + i))

    run_threads(16, write)
    assert handles[0].get(KEY) == token("T15", 1_800_000_015.0)
    assert results[15] is True


def test_racing_invalidations_drop_once(opener: StoreFactory) -> None:
    """16 callers reporting the same rejected token: exactly one drop."""
    handles = [opener() for _ in range(2)]
    handles[0].set(KEY, token("rejected"))
    dropped: list[bool] = []

    def invalidate(i: int) -> None:
        dropped.append(handles[i % 2].delete_if(KEY, "rejected"))

    run_threads(16, invalidate)
    assert dropped.count(True) == 1
    assert handles[1].get(KEY) is None


def test_shared_flag_and_safe_repr(store: TokenStore) -> None:
    """Shared stores say so; no repr shows a token."""
    store.set(KEY, token("SECRET-TOKEN-VALUE"))
    assert store.shared is (not isinstance(store, MemoryStore))
    assert "SECRET-TOKEN-VALUE" not in repr(store)
    assert "SECRET-TOKEN-VALUE" not in repr(store.lock(KEY, lease=1))


def test_stores_are_exported() -> None:
    """FileStore and RedisStore are part of the public API."""
    assert {"FileStore", "RedisStore"} <= set(wxauth.__all__)


def test_file_store_refuses_a_planted_records_link(tmp_path: Path) -> None:
    """A symbolic link where a table's record directory goes is refused, never
    followed; a record file that is a link reads as missing."""
    store = FileStore(tmp_path / "tokens")
    store.put_record(TABLE, "wxa", "kept")
    directory = next((tmp_path / "tokens").glob("*.records"))
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    other = FileStore(tmp_path / "tokens")
    planted_table = TABLE + "2"
    planted = (tmp_path / "tokens") / f"{stem(planted_table)}.records"
    planted.symlink_to(target)
    with pytest.raises(wxauth.StoreError, match="not a directory"):
        other.put_record(planted_table, "wxa", "x")
    assert list(target.iterdir()) == []
    record = next(directory.glob("*.rec"))
    record.unlink()
    record.symlink_to(tmp_path / "elsewhere" / "nothing")
    assert other.get_record(TABLE, "wxa") is None
