"""A manager on a shared store (file, Redis) under faults: a local copy that heals, a
fetch that outlives its lease, clocks that disagree, a store that cannot be written."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _gated import GatedSource

import wxauth
from wxauth import FileStore, RedisStore, Token, TokenStore
from wxauth.testing import FakeWeChat

APPID, SECRET = "wxsharedfault01", "the-shared-secret"


Opener = Callable[[], TokenStore]


@pytest.fixture
def fake(fake_wechat: FakeWeChat) -> FakeWeChat:
    return fake_wechat


@pytest.fixture(params=["file", pytest.param("redis", marks=pytest.mark.redis)])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens handles on one shared store, as separate processes would."""
    opened: list[TokenStore] = []

    def opener() -> TokenStore:
        store: TokenStore
        if request.param == "file":
            store = FileStore(tmp_path / "tokens")
        else:
            url = request.getfixturevalue("redis_url")
            store = RedisStore.from_url(url, prefix="wxauth-faults:")
        opened.append(store)
        return store

    yield opener
    for store in opened:
        store.close()


class CountingStore(FileStore):
    """A real FileStore that counts token reads."""

    reads = 0

    def get(self, key: str) -> Token | None:
        self.reads += 1
        return super().get(key)


def test_a_shared_store_is_not_read_on_every_request(fake: FakeWeChat, tmp_path: Path) -> None:
    """Once a token is known, get_token() answers from this process's copy until the
    token's refresh point, then reads the store again."""
    fake.add_app(APPID, SECRET)
    store = CountingStore(tmp_path / "tokens")
    with fake.serve() as url:
        tokens = wxauth.TokenManager(APPID, SECRET, api_base=url, store=store, clock=fake.clock)
        first = tokens.get_token()
        reads = store.reads
        for _ in range(1000):
            assert tokens.get_token() == first
        assert store.reads == reads
        fake.advance(7200 - 299)  # past the refresh point
        assert tokens.get_token() != first
        assert store.reads > reads
    fake.assert_token_fetches(2)


def test_a_rejected_local_copy_rereads_the_store(fake: FakeWeChat, open_store: Opener) -> None:
    """Another process replaced the token; this one still holds the old copy. The
    rejection of the old copy drops only the copy, and the next call reads the new
    token from the store instead of fetching one more."""
    fake.add_app(APPID, SECRET)
    with fake.serve() as url:
        here = wxauth.TokenManager(APPID, SECRET, api_base=url, store=open_store())
        there = wxauth.TokenManager(APPID, SECRET, api_base=url, store=open_store())
        old = here.get_token()
        new = there.refresh()
        assert here.get_token() == old  # the local copy, until told otherwise
        assert here.invalidate(old) is False  # the store holds another token
        assert here.get_token() == new
    fake.assert_token_fetches(2)


def test_a_refresh_after_the_clock_stepped_back_replaces_the_token(
    fake: FakeWeChat, open_store: Opener
) -> None:
    """refresh() after the wall clock stepped back an hour still replaces the stored
    token: the store orders tokens by the lock's fence, not by fetched_at."""
    fake.add_app(APPID, SECRET)
    now = [fake.clock()]
    with fake.serve() as url:
        tokens = wxauth.TokenManager(
            APPID, SECRET, api_base=url, store=open_store(), clock=lambda: now[0]
        )
        first = tokens.get_token()
        now[0] -= 3600
        second = tokens.refresh()
        assert second != first
        stored = tokens.peek()
        assert stored is not None
        assert stored.value == second


def test_hosts_an_hour_apart_take_turns(fake: FakeWeChat, open_store: Opener) -> None:
    """Two hosts on one store whose clocks disagree by an hour: each refresh replaces
    the stored token, whichever host's clock is ahead."""
    fake.add_app(APPID, SECRET)
    base = fake.clock()
    with fake.serve() as url:
        ahead = wxauth.TokenManager(
            APPID, SECRET, api_base=url, store=open_store(), clock=lambda: base + 3600
        )
        behind = wxauth.TokenManager(
            APPID, SECRET, api_base=url, store=open_store(), clock=lambda: base
        )
        for host in (ahead, behind, ahead, behind):
            value = host.refresh()
            stored = ahead.peek()
            assert stored is not None
            assert stored.value == value


def test_a_fetch_that_outlived_its_lease_does_not_overwrite(open_store: Opener) -> None:
    """A fetch kept alive past its lease lets another process fetch; when the first one
    finally ends, it does not write its older token over the newer one. Its caller
    still gets the token it fetched (valid for now)."""
    slow_source, fast_source = GatedSource(APPID), GatedSource(APPID, first=101)
    fast_source.release.set()
    slow = wxauth.TokenManager(APPID, source=slow_source, store=open_store())
    slow.lease = 0.3
    fast = wxauth.TokenManager(APPID, source=fast_source, store=open_store())
    result: list[str] = []
    thread = threading.Thread(target=lambda: result.append(slow.refresh()))
    thread.start()
    assert slow_source.started.wait(10)
    newer = fast.refresh()  # waits out the 0.3 s lease, then takes the lock over
    assert newer == "gated-token-101"
    slow_source.release.set()
    thread.join(10)
    assert result == ["gated-token-1"]
    stored = fast.peek()
    assert stored is not None
    assert stored.value == newer


class BrokenWrites(FileStore):
    """A real FileStore on a disk that is full: token writes fail."""

    def set(self, key: str, token: Token) -> bool:
        raise wxauth.StoreError("cannot write the token: No space left on device")


def test_a_token_that_cannot_be_stored_is_still_used(fake: FakeWeChat, tmp_path: Path) -> None:
    """A fetch that succeeded is not thrown away because the store could not be
    written: the caller gets the token and this process keeps using it."""
    fake.add_app(APPID, SECRET)
    with fake.serve() as url:
        tokens = wxauth.TokenManager(
            APPID, SECRET, api_base=url, store=BrokenWrites(tmp_path / "t"), clock=fake.clock
        )
        first = tokens.get_token()
        assert fake.token_status(first) == "valid"
        for _ in range(5):
            assert tokens.get_token() == first
    fake.assert_token_fetches(1)


class SlowReads(FileStore):
    """A real FileStore whose token reads in one chosen thread pause after reading,
    until the test lets them go on: a reader overtaken by an invalidation."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.slow_thread: int | None = None
        self.read_done = threading.Event()
        self.go_on = threading.Event()

    def get(self, key: str) -> Token | None:
        token = super().get(key)
        if threading.get_ident() == self.slow_thread:
            self.read_done.set()
            assert self.go_on.wait(10)
        return token


def test_a_token_dropped_during_a_read_is_not_kept(fake: FakeWeChat, tmp_path: Path) -> None:
    """A thread that read the token just before another thread dropped it as rejected
    does not put it back into the process's copy: the next call gets a new token."""
    fake.add_app(APPID, SECRET)
    store = SlowReads(tmp_path / "tokens")
    with fake.serve() as url:
        tokens = wxauth.TokenManager(APPID, SECRET, api_base=url, store=store, clock=fake.clock)
        rejected = wxauth.TokenManager(APPID, SECRET, api_base=url, store=store).get_token()

        def slow_reader() -> None:
            store.slow_thread = threading.get_ident()
            tokens.get_token()

        reader = threading.Thread(target=slow_reader)
        reader.start()
        assert store.read_done.wait(10)
        assert tokens.invalidate(rejected)  # while the reader holds what it read
        store.go_on.set()
        reader.join(10)
        assert tokens.get_token() != rejected
