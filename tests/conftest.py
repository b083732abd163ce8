"""Shared fixtures: the emulator every token test talks to, and a real ``redis-server``
of the test session's own.

``wechat`` is ``wxauth.testing.FakeWeChat`` (the ``fake_wechat`` fixture of the plugin)
answering every ``requests`` call to WeChat's hosts in process; ``wechat_interceptor``
also shows each request as it went out, and ``held`` holds the emulator's answers until
the test lets them go. Tests that need raw HTTP the emulator does not speak use
``tests/_loopback.py``.

The redis server is started once per session on a free loopback port, with persistence off
and its files in a temporary directory, and killed at the end. Tests that need it get
an empty database (flushed before and after each test). Without the ``redis-server``
binary those tests are skipped, except when ``WXAUTH_REQUIRE_REDIS`` (set by ``.ci/run``)
or ``CI`` is set: there a missing binary is an install step that went missing, and
fails the run.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pytest
import responses

import wxauth

if TYPE_CHECKING:
    from wxauth.testing import FakeWeChat, WeChatInterceptor

#: Seconds a fresh redis-server gets to answer PING.
REDIS_START_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def restartable_port() -> int:
    """A free loopback port below the kernel's ephemeral range, for a server that a test
    stops and starts again on the same port: a ``bind(0)`` port lies in that range, and
    while the server is down any outgoing connection may take it as its local port (the
    server then cannot bind it again). Falls back to :func:`_free_port`."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            low = int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(max(low - 12000, 1024), low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return _free_port()


def start_redis_server(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``redis-server`` on a free loopback port; return the process and its URL.

    Raises ``FileNotFoundError`` when the binary is missing and ``RuntimeError`` when it
    does not answer PING in time."""
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server")
    last_log = ""
    for _attempt in range(3):  # a free port can be taken between probe and bind
        port = restartable_port()
        log = workdir / f"redis-{port}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    binary,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(workdir),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        deadline = time.monotonic() + REDIS_START_TIMEOUT
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    if client.ping():
                        return proc, url
                except redis.exceptions.ConnectionError:
                    time.sleep(0.02)
        finally:
            client.close()
        stop_redis_server(proc)
        last_log = log.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"redis-server did not answer PING; its log ends with:\n{last_log}")


def stop_redis_server(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server started by :func:`start_redis_server` (kill if it lingers)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(autouse=True)
def _fresh_default_store() -> Iterator[None]:
    """Each test starts with an empty process-wide default store: managers built
    without ``store=`` share it, and tokens of one test's emulator mean nothing to the
    next."""
    wxauth.reset_default_store()
    yield
    wxauth.reset_default_store()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL (``redis://127.0.0.1:PORT/0``) of this session's own redis-server."""
    try:
        proc, url = start_redis_server(tmp_path_factory.mktemp("redis"))
    except FileNotFoundError:
        message = (
            "redis-server binary not found: install Debian's redis-server package "
            "(.ci/run does) to run the Redis tests"
        )
        if os.environ.get("WXAUTH_REQUIRE_REDIS") or os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield url
    finally:
        stop_redis_server(proc)


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """The session's redis-server URL, with an empty database for this test."""
    import redis

    client = redis.Redis.from_url(redis_server)
    try:
        client.flushdb()
        yield redis_server
        client.flushdb()
    finally:
        client.close()


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    """A ``responses`` mock for wire-level checks; unfired registrations are allowed."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


# -- the emulator ---------------------------------------------------------------------------


@pytest.fixture
def wechat_interceptor(fake_wechat: FakeWeChat) -> Iterator[WeChatInterceptor]:
    """``fake_wechat`` answering ``requests`` calls to api/qyapi.weixin.qq.com in process;
    ``.mock.calls`` lists every request as it went out (URL, headers, body)."""
    with fake_wechat.intercept() as interceptor:
        yield interceptor


@pytest.fixture
def wechat(wechat_interceptor: WeChatInterceptor) -> FakeWeChat:
    """The emulator behind WeChat's hosts for this test: register the test's app with
    ``add_app``; script failures with ``fail_next``, ``retire_all`` and ``add_api``."""
    return wechat_interceptor.fake


class Held:
    """Inside ``with held:`` every request the emulator gets in this process waits, before
    it is answered, until :meth:`release` (or the end of the block).

    ``arrived`` is set when a request comes in; ``waits`` says, for each held request,
    whether it was released within ``patience`` seconds. A forked child's requests pass
    straight through: only the process that held the emulator waits.
    """

    def __init__(self, fake: FakeWeChat, patience: float = 10.0) -> None:
        self.fake = fake
        self.patience = patience
        self.arrived = threading.Event()
        self.released = threading.Event()
        self.waits: list[bool] = []
        self._pid = os.getpid()
        self._handle: Callable[[Any], Any] | None = None

    def release(self) -> None:
        """Let every held request (and every later one) be answered."""
        self.released.set()

    def __enter__(self) -> Held:
        self.arrived.clear()
        self.released.clear()
        self._handle = handle = self.fake.handle

        def held_handle(request: Any) -> Any:
            self.arrived.set()
            if os.getpid() == self._pid:
                self.waits.append(self.released.wait(self.patience))
            return handle(request)

        self.fake.handle = held_handle  # type: ignore[method-assign]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
        del self.fake.handle  # the class's own handle again


@pytest.fixture
def held(wechat: FakeWeChat) -> Held:
    """A :class:`Held` switch on the ``wechat`` emulator (off until ``with held:``)."""
    return Held(wechat)
