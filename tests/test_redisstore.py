"""RedisStore specifics beyond the store contract: key layout and TTLs, waiters that do
not spin hot, and a clear StoreError (never a private fetch) when Redis is down."""

from __future__ import annotations

import logging
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from wxauth import RedisStore, StoreError, Token, TokenManager
from wxauth.testing import FakeWeChat

pytestmark = pytest.mark.redis

KEY = "token:classic:wxredis0001"
VALUE = "REDIS-TOKEN-VALUE-0123456789"


def token(value: str = VALUE, fetched_at: float = 1_800_000_000.0) -> Token:
    return Token(value, expires_at=fetched_at + 7200, fetched_at=fetched_at)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def store(client: redis.Redis) -> RedisStore:
    return RedisStore(client, prefix="app1:")


def test_keys_and_ttls(store: RedisStore, client: redis.Redis) -> None:
    """Tokens live their lifetime, meta records their ttl, locks their lease, each
    under its own namespace of the prefix; the fence counter has no TTL."""
    store.set(KEY, Token("v", expires_at=1000.0 + 600, fetched_at=1000.0))
    store.set_meta(KEY, "m", ttl=30)
    lock = store.lock(KEY, lease=12)
    assert lock.acquire()
    assert sorted(client.keys("*")) == [
        f"app1:fence:{KEY}".encode(),
        f"app1:lock:{KEY}".encode(),
        f"app1:meta:{KEY}".encode(),
        f"app1:token:{KEY}".encode(),
    ]
    assert 590_000 < client.pttl(f"app1:token:{KEY}") <= 600_000
    assert 29_000 < client.pttl(f"app1:meta:{KEY}") <= 30_000
    assert 11_000 < client.pttl(f"app1:lock:{KEY}") <= 12_000
    assert client.pttl(f"app1:fence:{KEY}") == -1
    lock.release()
    assert client.exists(f"app1:lock:{KEY}") == 0


def test_prefixes_keep_deployments_apart(store: RedisStore, client: redis.Redis) -> None:
    """Two prefixes on one Redis never see each other's tokens or locks."""
    other = RedisStore(client, prefix="app2:")
    store.set(KEY, token())
    assert other.get(KEY) is None
    with store.lock(KEY, lease=30):
        lock = other.lock(KEY, lease=30)
        assert lock.acquire(blocking=False)
        lock.release()


def test_works_with_decode_responses(redis_url: str) -> None:
    """A client with decode_responses=True (str replies) behaves the same."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    store = RedisStore(client)
    assert store.set(KEY, token()) is True
    assert store.get(KEY) == token()
    assert store.set(KEY, token("older", 1.0)) is False
    store.set_meta(KEY, "m", ttl=30)
    assert store.get_meta(KEY) == "m"
    with store.lock(KEY, lease=30):
        assert not store.lock(KEY, lease=30).acquire(blocking=False)
    assert store.delete_if(KEY, VALUE) is True
    client.close()


def test_a_malformed_record_is_a_miss_and_is_overwritten(
    store: RedisStore, client: redis.Redis
) -> None:
    """A value that is not a token record reads as None and never blocks a write."""
    client.set(f"app1:token:{KEY}", b"\xff not json")
    assert store.get(KEY) is None
    assert store.delete_if(KEY, VALUE) is False
    assert store.set(KEY, token()) is True
    assert store.get(KEY) == token()


def test_a_waiter_polls_gently(store: RedisStore, client: redis.Redis) -> None:
    """Waiting 1 s for a held lock costs a few dozen SET NX, not a hot loop."""
    holder = store.lock(KEY, lease=30)
    assert holder.acquire()
    client.config_resetstat()
    assert store.lock(KEY, lease=30).acquire(timeout=1.0) is False
    calls = client.info("commandstats").get("cmdstat_set", {}).get("calls", 0)
    assert 5 <= calls <= 60
    holder.release()


def _dead_url() -> str:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def test_redis_down_is_a_clear_store_error_on_every_operation() -> None:
    """Every operation raises StoreError naming what failed, without the token."""
    store = RedisStore.from_url(_dead_url(), socket_connect_timeout=0.5)
    operations: dict[str, Callable[[], object]] = {
        "read the token": lambda: store.get(KEY),
        "write the token": lambda: store.set(KEY, token()),
        "invalidate the token": lambda: store.delete_if(KEY, VALUE),
        "take the token lock": lambda: store.lock(KEY, lease=5).acquire(timeout=1),
        "read a meta record": lambda: store.get_meta(KEY),
        "write a meta record": lambda: store.set_meta(KEY, "m", ttl=5),
    }
    for what, operation in operations.items():
        with pytest.raises(StoreError) as info:
            operation()
        message = str(info.value)
        assert f"failed to {what}" in message
        assert "ConnectionError" in message
        assert VALUE not in message
        assert info.value.__cause__ is None
        assert info.value.__context__ is None


def test_redis_down_never_falls_back_to_a_private_fetch() -> None:
    """The manager raises StoreError and WeChat sees no token request: a private fetch
    would retire the token every other host is using."""
    fake = FakeWeChat()
    fake.add_app("wxredis0001", "redis-down-secret")
    with fake.serve() as url:
        store = RedisStore.from_url(_dead_url(), socket_connect_timeout=0.5)
        manager = TokenManager("wxredis0001", "redis-down-secret", api_base=url, store=store)
        with pytest.raises(StoreError):
            manager.get_token()
        manager.close()
    fake.close()
    assert fake.token_fetches == 0


def test_redis_stopping_mid_use_is_a_store_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that goes away after the first writes turns into StoreError, and a
    lock whose release cannot reach Redis only logs (its lease frees it)."""
    from conftest import start_redis_server, stop_redis_server

    proc, url = start_redis_server(tmp_path)
    try:
        store = RedisStore.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        store.set(KEY, token())
        lock = store.lock(KEY, lease=5)
        assert lock.acquire()
    finally:
        stop_redis_server(proc)
    with pytest.raises(StoreError, match="failed to read the token"):
        store.get(KEY)
    with caplog.at_level(logging.WARNING, logger="wxauth"):
        lock.release()
    assert "expire after its lease" in caplog.text


def test_no_secret_in_redis_after_a_real_fetch(store: RedisStore, client: redis.Redis) -> None:
    """Keys name the appid; neither keys nor values hold the secret."""
    secret = "redis-store-secret-0123456789"
    fake = FakeWeChat()
    fake.add_app("wxredis0001", secret)
    with fake.serve() as url:
        manager = TokenManager("wxredis0001", secret, api_base=url, store=store)
        value = manager.get_token()
        manager.close()
    fake.close()
    keys = client.keys("*")
    assert manager.key.startswith(KEY)  # plus a tag of the emulator's api_base
    assert f"app1:token:{manager.key}".encode() in keys
    for key in keys:
        assert secret.encode() not in key
        if client.type(key) == b"string":
            assert secret.encode() not in (client.get(key) or b"")
    stored = store.get(manager.key)
    assert stored is not None
    assert stored.value == value


def test_threads_share_one_store_safely(store: RedisStore) -> None:
    """One RedisStore used by 8 threads at once: every write-unless-newer resolves."""
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def write(i: int) -> None:
        barrier.wait(10)
        results.append(store.set(KEY, token(f"T{i}", 1_800_000_000.0 + i)))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results) == 8
    assert store.get(KEY) == token("T7", 1_800_000_007.0)


def test_repr_shows_the_prefix_only(store: RedisStore) -> None:
    """repr names the prefix; no address, password or token."""
    assert repr(store) == "RedisStore(prefix='app1:')"


def test_without_redis_py_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """import wxauth works without redis-py; using RedisStore says which extra to add."""
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ImportError, match=r"wxauth\[redis\]"):
        RedisStore.from_url("redis://127.0.0.1:1/0")
