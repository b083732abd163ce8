"""The token service under attack and in outages: each test here failed before the fix
it guards (see the commit that added it). Clients that leave mid-body, reads during a
WeChat hang or a hung Redis, a client that reports every token it gets for a simulated
day, shutdown with many apps, secrets in traceback frames, keys in uvicorn's log, and
sockets without TCP_NODELAY."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_server_support import (
    APPID,
    ENV,
    KEY,
    PATIENCE,
    auth,
    config_text,
    make_config,
    new_fake,
    serve_app,
    wait_ready,
    wait_until,
)

from wxauth.server import ConfigError, create_app, load_config, parse_config
from wxauth.server._cli import listen_socket
from wxauth.server._service import Resource
from wxauth.testing import FakeWeChat

TOKEN = f"/v1/apps/{APPID}/token"
INVALIDATE = f"{TOKEN}/invalidate"


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_a_client_leaving_mid_body_is_no_server_error(caplog: pytest.LogCaptureFixture) -> None:
    """A client that sends half an invalidation body and hangs up: no 500, no error
    traceback (whose frames would hold the half-read body, token included), the token
    stays."""
    caplog.set_level(logging.INFO)
    with new_fake() as fake, fake.serve() as api_base:
        app = create_app(make_config(api_base))
        with serve_app(app) as url, httpx.Client(base_url=url, timeout=PATIENCE) as client:
            wait_ready(client)
            token = client.get(TOKEN, headers=auth()).json()["access_token"]
            with socket.create_connection(("127.0.0.1", _port(url))) as sock:
                sock.sendall(
                    f"POST {INVALIDATE} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                    f'Content-Length: 500\r\n\r\n{{"access_token": "{token[:20]}'.encode()
                )
            wait_until(lambda: "path=" + INVALIDATE in caplog.text, "the request's end")
            assert client.get(TOKEN, headers=auth()).json()["access_token"] == token
    lines = [r.getMessage() for r in caplog.records if INVALIDATE in r.getMessage()]
    assert lines
    assert "status=400" in lines[0], lines
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


class Blackhole:
    """A loopback "WeChat" that accepts connections and never answers."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.accepted.append(self._sock.accept()[0])

    def __enter__(self) -> Blackhole:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()
        for conn in self.accepted:
            conn.close()


@contextlib.contextmanager
def blackhole() -> Iterator[str]:
    """A :class:`Blackhole`'s base URL."""
    with Blackhole() as hole:
        yield hole.url


def threads_in(code: object) -> int:
    """Threads whose stack is inside ``code`` now."""
    count = 0
    for frame in sys._current_frames().values():
        while frame is not None:
            if frame.f_code is code:
                count += 1
                break
            frame = frame.f_back  # type: ignore[assignment]
    return count


def concurrently(n: int, call: object) -> list[httpx.Response]:
    """``call()`` from ``n`` threads at once; the answers."""
    answers: list[httpx.Response] = []
    barrier = threading.Barrier(n)

    def run() -> None:
        barrier.wait()
        answers.append(call())  # type: ignore[operator]

    threads = [threading.Thread(target=run) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PATIENCE)
    return answers


def test_reads_during_a_wechat_hang_share_one_worker_thread() -> None:
    """WeChat accepts and never answers, and there is no token yet: 60 concurrent
    reads all answer 503 after request_timeout, and only one worker thread waits for
    the token on their behalf (not one per read, left running after each read gave up:
    a thread pile-up that grows with the request rate)."""
    with new_fake() as fake, fake.serve() as api_base, blackhole() as silent:
        text = config_text(api_base, server="request_timeout = 0.3", app="timeout = 5")
        text = text.replace(f'api_base = "{api_base}"', f'api_base = "{silent}"', 1)
        with serve_app(create_app(parse_config(text, environ=ENV))) as url:
            shared = httpx.Client(
                base_url=url, timeout=PATIENCE, limits=httpx.Limits(max_connections=80)
            )
            with shared:
                answers = concurrently(60, lambda: shared.get(TOKEN, headers=auth()))
                assert [a.status_code for a in answers] == [503] * 60
                assert {a.json()["error"] for a in answers} == {"wechat_unavailable"}
                assert threads_in(Resource.get.__code__) == 1


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """A redis-server of this test's own (it gets SIGSTOPped): its pid and URL."""
    from conftest import start_redis_server, stop_redis_server

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server binary not found")
    proc, url = start_redis_server(tmp_path)
    try:
        yield proc.pid, url
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        stop_redis_server(proc)


@pytest.mark.redis
def test_a_hung_redis_past_the_refresh_point_still_answers_at_once(
    own_redis: tuple[int, str],
) -> None:
    """Redis hangs (SIGSTOP; each store call then costs its 1 s socket timeout, twice)
    while the token is past its refresh point but valid: 32 concurrent reads with a
    1 s request_timeout all answer that token at once, instead of queueing behind
    worker threads that each wait 2 s on Redis and answering 503."""
    pid, redis_url = own_redis
    with new_fake() as fake, fake.serve() as api_base:
        config = make_config(api_base, server=f'store = "{redis_url}"\nrequest_timeout = 1')
        with serve_app(create_app(config, clock=fake.clock)) as url:
            shared = httpx.Client(
                base_url=url, timeout=PATIENCE, limits=httpx.Limits(max_connections=40)
            )
            with shared:
                wait_ready(shared)
                token = shared.get(TOKEN, headers=auth()).json()["access_token"]
                os.kill(pid, signal.SIGSTOP)
                fake.advance(7200 - 200)  # inside the refresh margin, still valid
                answers = concurrently(32, lambda: shared.get(TOKEN, headers=auth()))
                assert [a.status_code for a in answers] == [200] * 32
                assert {a.json()["access_token"] for a in answers} == {token}
                assert all(0 < a.json()["expires_in"] <= 200 for a in answers)


def test_sigterm_during_a_wechat_hang_stops_100_apps_at_once() -> None:
    """100 apps whose refreshers all wait on a WeChat that never answers: the
    lifespan's shutdown (what SIGTERM starts) takes about one refresher's half-second
    grace, not half a second per app (50 s: past a service manager's stop timeout)."""
    with Blackhole() as hole:
        apps = "".join(
            f'[[apps]]\nappid = "wx{i:010d}"\nsecret_env = "S"\napi_base = "{hole.url}"\n'
            "timeout = 30\n"
            for i in range(100)
        )
        text = f'{apps}[[clients]]\nname = "c"\nkey_sha256 = "{"0" * 64}"\napps = ["*"]\n'
        app = create_app(parse_config(text, environ={"S": "s" * 32}))
        with serve_app(app):
            wait_until(lambda: len(hole.accepted) == 100, "100 fetches under way")
            started = time.monotonic()
        stopped = time.monotonic() - started
    assert stopped < 5.0, f"shutdown took {stopped:.1f}s"


def spend_a_day(client: httpx.Client, fake: FakeWeChat, *, alternate: bool) -> int:
    """A client that reports every token it gets as rejected, for one simulated day,
    as fast as the service lets it: each token at once, or (``alternate``) one token
    once it is five minutes old and the next at once, which resets the manager's
    rejection streak half the time. It waits out every 429's Retry-After to the
    second and retries a held token every two minutes. Returns its requests."""
    end = fake.clock() + 86400
    token = client.get(TOKEN, headers=auth()).json()
    aged = alternate
    requests = 0
    while fake.clock() < end:
        if aged:
            age = fake.clock() - (token["expires_at"] - 7200)
            fake.advance(max(301 - age, 0))
        answer = client.post(INVALIDATE, json={"access_token": token["access_token"]},
                             headers=auth())  # fmt: skip
        requests += 1
        if answer.status_code == 429:
            fake.advance(int(answer.headers["retry-after"]))
            continue
        assert answer.status_code == 200, answer.text
        body = answer.json()
        if body["invalidated"]:
            aged = alternate and not aged
        elif body["access_token"] == token["access_token"]:
            fake.advance(120)  # held by the rejection streak
        token = body
    return requests


@pytest.mark.parametrize("alternate", [False, True], ids=["at-once", "alternating"])
def test_a_client_reporting_every_token_for_a_day_costs_a_bounded_number_of_fetches(
    alternate: bool,
) -> None:
    """End to end with the emulator and a simulated day: one client reporting every
    token it is handed costs at most invalidations_per_day (20) fetches, plus the
    day's ordinary renewals (one per ~6800 s token life: 13). Before the daily cap the
    at-once client cost 53 fetches (the manager's rejection streak held it) and the
    alternating one 523, more than the default fetch budget of a day (500), after
    which the service could not renew its tokens for anyone; the manager's streak now
    outlasts alternating reports too (about 90 a day without the cap)."""
    with new_fake() as fake, fake.serve() as api_base:
        config = make_config(api_base)
        app = create_app(config, clock=fake.clock, limiter_clock=fake.clock)
        with serve_app(app) as url, httpx.Client(base_url=url, timeout=PATIENCE) as client:
            wait_ready(client)
            before = fake.token_fetches_of(APPID)
            requests = spend_a_day(client, fake, alternate=alternate)
            fetches = fake.token_fetches_of(APPID) - before
    assert requests > 20
    assert config.invalidations_per_day == 20
    assert fetches <= 20 + 13, fetches


# -- the config: secrets in frames, odd secret files, one table per app ----------------

INLINE = "5e884898da28047151d0e56f8dc62927"  # shaped like a real AppSecret


def frame_values(exc: BaseException) -> Iterator[object]:
    """Every local of every wxauth frame on ``exc``'s traceback (what an error
    tracker records), and of its causes and contexts."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        link = todo.pop()
        if id(link) in seen:
            continue
        seen.add(id(link))
        tb = link.__traceback__
        while tb is not None:
            if f"{os.sep}wxauth{os.sep}" in tb.tb_frame.f_code.co_filename:
                yield from tb.tb_frame.f_locals.values()
            tb = tb.tb_next
        todo.extend(e for e in (link.__cause__, link.__context__) if e is not None)


def shows(value: object, secret: str, depth: int = 0) -> bool:
    """Whether ``value`` (a string, bytes, container, or anything's repr) shows it."""
    if depth > 10:
        return False
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        return secret in value
    if isinstance(value, dict):
        return any(shows(k, secret, depth + 1) or shows(v, secret, depth + 1)
                   for k, v in value.items())  # fmt: skip
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(shows(v, secret, depth + 1) for v in value)
    try:
        return secret in repr(value)
    except Exception:
        return False


MINIMAL = f"""
[[apps]]
appid = "{APPID}"
secret_file = "secret"

[[clients]]
name = "billing"
key_sha256 = "{"0" * 64}"
apps = ["{APPID}"]
"""


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (f"{INLINE}\n" + "x" * 5000, "too large"),
        (f"{INLINE}\nWECHAT_SECRET_SHOP=other\n", "not one line"),
        (f"WECHAT_SECRET_MAIN = {INLINE}", "not one line"),
        (INLINE.encode() + b"\xff", "not UTF-8"),
    ],
)
def test_a_bad_secret_file_is_refused_without_its_content_in_any_frame(
    tmp_path: Path, content: str | bytes, says: str
) -> None:
    """A secret file too large, of several lines (an env file, the wrong file), with
    spaces, or not UTF-8: a ConfigError that neither says nor keeps in any frame of
    its traceback what the file holds (error trackers record every frame's locals)."""
    secret = tmp_path / "secret"
    secret.write_bytes(content if isinstance(content, bytes) else content.encode())
    (tmp_path / "svc.toml").write_text(MINIMAL)
    with pytest.raises(ConfigError, match=says) as caught:
        load_config(tmp_path / "svc.toml", environ={})
    assert INLINE not in str(caught.value)
    assert not [v for v in frame_values(caught.value) if shows(v, INLINE)]


def test_an_inline_secret_is_in_no_frame_of_the_refusal(tmp_path: Path) -> None:
    """`secret = "..."` in the TOML: refused, and no frame of the ConfigError (the
    file's text, the parsed tables) keeps the secret it names."""
    (tmp_path / "svc.toml").write_text(
        MINIMAL.replace('secret_file = "secret"', f'appsecret = "{INLINE}"')
    )
    with pytest.raises(ConfigError, match="inline secrets are refused") as caught:
        load_config(tmp_path / "svc.toml", environ={})
    assert not [v for v in frame_values(caught.value) if shows(v, INLINE)]
    text = MINIMAL.replace('secret_file = "secret"', f'secret = "{INLINE}"')
    with pytest.raises(ConfigError) as caught:
        parse_config(text, environ={})
    del text
    assert not [v for v in frame_values(caught.value) if shows(v, INLINE)]


def test_a_secret_file_that_is_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    """A FIFO (or a device) named as the secret file: a ConfigError at once, where
    opening it blocked the start for good, waiting for a writer."""
    os.mkfifo(tmp_path / "secret")
    (tmp_path / "svc.toml").write_text(MINIMAL)
    outcome: list[BaseException] = []

    def load() -> None:
        try:
            load_config(tmp_path / "svc.toml", environ={})
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(5)
    if thread.is_alive():  # free the blocked open() so the thread ends
        with open(tmp_path / "secret", "wb"):
            pass
        thread.join(5)
        pytest.fail("load_config blocked on a FIFO")
    assert len(outcome) == 1
    assert isinstance(outcome[0], ConfigError)
    assert "not a regular file" in str(outcome[0])


def test_a_secret_file_readable_by_everyone_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Mode 0644: the service starts, and logs a warning naming the file (never its
    content); 0600: no warning. A symlink to the file is followed (Kubernetes)."""
    caplog.set_level(logging.WARNING, logger="wxauth.server")
    secret = tmp_path / "real-secret"
    secret.write_text(INLINE + "\n")
    (tmp_path / "secret").symlink_to(secret)
    (tmp_path / "svc.toml").write_text(MINIMAL)
    secret.chmod(0o644)
    config = load_config(tmp_path / "svc.toml", environ={})
    assert config.apps[0].secret.get_secret_value() == INLINE
    assert "readable by every user" in caplog.text
    assert INLINE not in caplog.text
    caplog.clear()
    secret.chmod(0o600)
    load_config(tmp_path / "svc.toml", environ={})
    assert "readable by every user" not in caplog.text


def test_a_secret_env_of_several_words_is_refused_unquoted() -> None:
    """A variable holding more than the secret (two lines, `KEY = value` pasted
    whole): a ConfigError naming the variable, not its value."""
    text = MINIMAL.replace('secret_file = "secret"', 'secret_env = "S"')
    for value in (f"{INLINE}\nother", f"S = {INLINE}"):
        with pytest.raises(ConfigError, match="variable S is not one line") as caught:
            parse_config(text, environ={"S": value})
        assert INLINE not in str(caught.value)
    assert parse_config(text, environ={"S": f" {INLINE}\n"}).apps[0].secret.get_secret_value() == (
        INLINE
    )


@pytest.mark.parametrize(
    ("second", "refused"),
    [
        (f'appid = "{APPID}"\nid = "again"\nsecret_env = "S"', True),
        (f'appid = "{APPID}"\nid = "stable"\nsecret_env = "S"\nsource = "stable"', True),
        ('appid = "wwcorp"\nid = "agent2"\nsecret_env = "T"\nsource = "wecom"', False),
        ('appid = "wwcorp"\nid = "agent2"\nsecret_env = "S"\nsource = "wecom"', True),
    ],
)
def test_two_tables_for_one_app_are_refused(second: str, refused: bool) -> None:
    """The same appid twice (under another id, or another source): refused, since two
    managers would each fetch its token and retire the other's. WeCom applications
    of one corp with distinct secrets are distinct apps."""
    first = 'appid = "wwcorp"\nid = "agent1"\nsecret_env = "S"\nsource = "wecom"'
    text = MINIMAL.replace('secret_file = "secret"', 'secret_env = "S"').replace(
        "[[clients]]", f"[[apps]]\n{first}\n\n[[apps]]\n{second}\n\n[[clients]]"
    )
    environ = {"S": INLINE, "T": INLINE[::-1]}
    if refused:
        with pytest.raises(ConfigError, match=r"apps\[2\]: the same app as apps\[\d\]") as caught:
            parse_config(text, environ=environ)
        assert INLINE not in str(caught.value)
    else:
        assert len(parse_config(text, environ=environ).apps) == 3


def test_a_client_key_in_a_url_is_masked_in_uvicorns_log(caplog: pytest.LogCaptureFixture) -> None:
    """uvicorn's own access log on (plain `uvicorn --factory`, gunicorn): a key a
    client put in the query (`?key=`, `?authorization=Bearer ...`) or in the path is
    masked, as tokens there already were."""
    caplog.set_level(logging.INFO, logger="uvicorn")
    with new_fake() as fake, fake.serve() as api_base:
        app = create_app(make_config(api_base))
        with serve_app(app, access_log=True) as url, httpx.Client(base_url=url) as client:
            wait_ready(client)
            for target in (
                f"{TOKEN}?key={KEY}",
                f"{TOKEN}?authorization=Bearer%20{KEY}",
                f"/v1/apps/{KEY}/token",
                f"{TOKEN}?x=1&api_key={KEY[4:]}",
                f"{TOKEN}?auth=Bearer+{KEY[4:]}",
            ):
                client.get(target, headers=auth())
    lines = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
    assert len(lines) >= 5
    assert not [line for line in lines if KEY[4:] in line]


def accepted_nodelay(sock: socket.socket) -> int:
    """TCP_NODELAY of a connection that asyncio (as uvicorn does) accepted on ``sock``."""
    import asyncio

    async def main() -> int:
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            raw = writer.get_extra_info("socket")
            seen.set_result(raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(handle, sock=sock)
        async with server:
            _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
            value = await asyncio.wait_for(seen, PATIENCE)
            writer.close()
        return value

    return asyncio.run(main())


def test_wxauth_serve_listens_on_a_socket_whose_connections_have_tcp_nodelay() -> None:
    """The socket `wxauth serve` (and the tests' uvicorn) listens on gives accepted
    connections TCP_NODELAY; a bare socket.socket(), as a pre-created socket often
    is, does not (each keep-alive answer then waits ~40 ms: Nagle and delayed ACK)."""
    assert accepted_nodelay(listen_socket("127.0.0.1", 0)) != 0
    bare = socket.socket()
    bare.bind(("127.0.0.1", 0))
    assert accepted_nodelay(bare) == 0


def test_wxauth_serve_on_a_busy_port_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A port already taken: exit status 1 and one line naming it."""
    from wxauth._cli import main

    monkeypatch.setenv("S", "s" * 32)
    (tmp_path / "svc.toml").write_text(
        MINIMAL.replace('secret_file = "secret"', 'secret_env = "S"')
    )
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        assert main(["serve", "--config", str(tmp_path / "svc.toml"), "--port", port]) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


@pytest.mark.parametrize(
    "body",
    [b'{"access_token": "', b'{"pad": "' + b"x" * 5000],
    ids=["slow", "too-large"],
)
def test_a_refused_body_ends_its_connection(body: bytes) -> None:
    """A body that trickles in past request_timeout, or runs past the 4 KiB limit while
    its Content-Length claimed less: the 4xx comes, then the service hangs up, instead of
    keeping the connection open for whatever the client still sends. No worker thread
    is involved at any point (the body is read on the event loop)."""
    with new_fake() as fake, fake.serve() as api_base:
        app = create_app(make_config(api_base, server="request_timeout = 0.3"))
        with serve_app(app) as url, httpx.Client(base_url=url, timeout=PATIENCE) as client:
            wait_ready(client)
            with socket.create_connection(("127.0.0.1", _port(url))) as sock:
                sock.settimeout(PATIENCE)
                sock.sendall(
                    f"POST {INVALIDATE} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n".encode()
                    + f"{len(body):x}\r\n".encode()
                    + body
                    + b"\r\n"
                )
                received = b""
                while chunk := sock.recv(65536):  # b"": the service closed it
                    received += chunk
            assert received.split(b" ", 2)[1] in (b"400", b"413")
            assert b"connection: close" in received.lower()


@pytest.mark.redis
def test_a_refusing_redis_is_asked_once_a_second_not_once_a_read(
    own_redis: tuple[int, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Redis stopped (connections refused at once) with the token past its refresh
    point: 200 reads answer the remembered token, and the store is tried (and the
    outage logged) about once a second, not once per read."""
    pid, redis_url = own_redis
    caplog.set_level(logging.WARNING, logger="wxauth.server")
    with new_fake() as fake, fake.serve() as api_base:
        config = make_config(api_base, server=f'store = "{redis_url}"')
        with (
            serve_app(create_app(config, clock=fake.clock)) as url,
            httpx.Client(base_url=url, timeout=PATIENCE) as client,
        ):
            wait_ready(client)
            token = client.get(TOKEN, headers=auth()).json()["access_token"]
            os.kill(pid, signal.SIGTERM)
            wait_until(lambda: not _answers(redis_url), "Redis to stop")
            fake.advance(7200 - 200)
            started = time.monotonic()
            for _ in range(200):
                assert client.get(TOKEN, headers=auth()).json()["access_token"] == token
            elapsed = time.monotonic() - started
    tries = [r for r in caplog.records if "the store is unavailable" in r.getMessage()
             and APPID in r.getMessage()]  # fmt: skip
    assert 1 <= len(tries) <= elapsed + 2, (len(tries), elapsed)


def _answers(redis_url: str) -> bool:
    with contextlib.suppress(OSError):
        port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    return False
