"""Two ``wxauth serve`` processes on one redis-server behave as one token service:
one WeChat fetch per refresh between them (the store's lease lock), and clients that
know both URLs read through the loss of one.

Each replica is a real ``python -m wxauth serve`` subprocess on a free loopback port;
the emulator is served on loopback by this process (its clock is the wall clock, as
the replicas' is); clients are :class:`~wxauth.sources.RemoteSource` fetches."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import requests

import wxauth
from wxauth.httpx import HttpxTransport
from wxauth.server import hash_key
from wxauth.sources import FetchContext, RemoteSource
from wxauth.testing import FakeWeChat

APPID = "wxreplica00000001"
SECRET = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"
SECRET_ENV = "WXAUTH_REPLICA_TEST_SECRET"
KEY = "wxk_replica-test-key-0123456789abcdefghijklmnop"
TOKEN_PATH = "/cgi-bin/token"
#: Reads each of the 200 readers makes while the reports go in.
READS = 3
#: Seconds a replica gets to start and fetch its first token.
PATIENCE = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Replica:
    """One ``wxauth serve`` subprocess."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def ready(self) -> bool:
        try:
            return requests.get(self.url + "/readyz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_replica(config: Path, workdir: Path, index: int) -> Replica:
    port = free_port()
    log = workdir / f"replica-{index}.log"
    listen = ["--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wxauth", "serve", "--config", str(config), *listen],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, SECRET_ENV: SECRET},
        )
    return Replica(proc, f"http://127.0.0.1:{port}", log)


@pytest.fixture
def fake() -> Iterator[FakeWeChat]:
    fake = FakeWeChat(clock=time.time)
    fake.add_app(APPID, SECRET)
    yield fake
    fake.close()


@pytest.fixture
def replicas(redis_url: str, fake: FakeWeChat, tmp_path: Path) -> Iterator[list[Replica]]:
    """Two ready replicas on the test's Redis database and the emulator."""
    with fake.serve() as emulator:
        config = tmp_path / "wxauth-server.toml"
        config.write_text(
            f'[server]\nstore = "{redis_url}"\n\n'
            f'[[apps]]\nappid = "{APPID}"\nsecret_env = "{SECRET_ENV}"\n'
            f'api_base = "{emulator}"\nbackoff = 0.01\n\n'
            f'[[clients]]\nname = "fleet"\nkey_sha256 = "{hash_key(KEY)}"\napps = ["{APPID}"]\n'
        )
        started = [start_replica(config, tmp_path, index) for index in range(2)]
        try:
            deadline = time.monotonic() + PATIENCE
            for replica in started:
                while not replica.ready():
                    if replica.proc.poll() is not None or time.monotonic() > deadline:
                        tail = replica.log.read_text(errors="replace")[-3000:]
                        pytest.fail(f"replica {replica.url} did not become ready:\n{tail}")
                    time.sleep(0.05)
            yield started
        finally:
            for replica in started:
                replica.stop()


@dataclass
class Tally:
    """Reads and failures of many client threads."""

    ok: int = 0
    failed: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, error: str | None) -> None:
        with self.lock:
            if error is None:
                self.ok += 1
            else:
                self.failed.append(error)


#: One TLS context for the readers' clients (httpx builds one per client otherwise,
#: 50 ms each; the URLs are http anyway).
TLS = ssl.create_default_context()


def reader(urls: list[str]) -> Callable[[], tuple[str, float]]:
    """One client's fetch, as its TokenManager would make it: its own connection, both
    URLs. Over httpx, which reads a body in chunks: the requests transport reads it a
    byte at a time (to keep its total deadline), and 200 threads of one process doing
    that contend for the GIL so hard that a read once ran past its 5 s deadline, which
    no real client (one fetch at a time) sees."""
    source = RemoteSource(urls, key=KEY, timeout=5.0).for_app(APPID)
    ctx = FetchContext(
        session=requests.Session(),
        timeout=10.0,
        clock=time.time,
        store=wxauth.MemoryStore(),
        retries=0,
        transport=HttpxTransport(httpx.Client(verify=TLS)),
    )
    return lambda: source.fetch(ctx)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` every 10 ms; fail after :data:`PATIENCE` seconds."""
    deadline = time.monotonic() + PATIENCE
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def read_until(fetch: Callable[[], tuple[str, float]], stop: threading.Event, tally: Tally) -> None:
    while not stop.is_set():
        error: str | None = None
        try:
            fetch()
        except wxauth.WxAuthError as exc:
            error = str(exc)
        tally.add(error)


def test_reports_of_one_rejected_token_to_two_replicas_cause_one_fetch(
    fake: FakeWeChat, replicas: list[Replica]
) -> None:
    """200 readers, and 20 clients reporting the same rejected token at once to both
    replicas: exactly one new token is fetched from WeChat, and every reporter gets it."""
    a, b = (replica.url for replica in replicas)
    assert fake.count(path=TOKEN_PATH) == 1  # the first token: one fetch between both
    rejected = reader([a])()[0]
    fake.retire_all()
    reporters = [
        wxauth.TokenManager(
            APPID,
            source=RemoteSource([a, b] if i % 2 else [b, a], key=KEY),
            store=wxauth.MemoryStore(),
        )
        for i in range(20)
    ]
    for tokens in reporters:
        assert tokens.get_token() == rejected
    fetches = [reader([a, b] if i % 2 else [b, a]) for i in range(200)]
    tally = Tally()
    go = threading.Barrier(len(reporters) + len(fetches))
    fresh: list[str] = []

    def report(tokens: wxauth.TokenManager) -> None:
        go.wait()
        tokens.invalidate(rejected)
        fresh.append(tokens.get_token())

    def read(fetch: Callable[[], tuple[str, float]]) -> None:
        go.wait()
        for _ in range(READS):
            error: str | None = None
            try:
                fetch()
            except wxauth.WxAuthError as exc:
                error = str(exc)
            tally.add(error)

    threads = [threading.Thread(target=report, args=(tokens,)) for tokens in reporters]
    threads += [threading.Thread(target=read, args=(fetch,)) for fetch in fetches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PATIENCE)
    assert fake.count(path=TOKEN_PATH) == 2  # exactly one fetch for 20 reports
    assert len(fresh) == 20
    assert set(fresh) == {fake.latest_token(APPID)}
    assert rejected not in fresh
    assert tally.failed == []
    assert tally.ok == 200 * READS


def test_clients_with_both_urls_read_through_a_killed_replica(replicas: list[Replica]) -> None:
    """SIGKILL one replica while 20 clients read in a loop: not one read fails, and
    400 more reads succeed (from the other replica) after the kill."""
    a, b = replicas
    tally, stop = Tally(), threading.Event()
    threads = [
        threading.Thread(target=read_until, args=(reader([a.url, b.url]), stop, tally))
        for _ in range(20)
    ]
    for thread in threads:
        thread.start()
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(stop.set)
        wait_until(lambda: tally.ok >= 200, "200 reads before the kill")
        os.kill(a.proc.pid, signal.SIGKILL)
        a.proc.wait(5)
        killed_at = tally.ok
        wait_until(lambda: tally.ok >= killed_at + 400, "400 reads after the kill")
    for thread in threads:
        thread.join(PATIENCE)
    assert tally.failed == []
