"""The token service on a real redis-server: tokens kept in Redis, services on one
Redis sharing one fetch, and Redis outages (a hung server, a restarted empty one):
/readyz fails, reads answer the token this process last handed out while it is valid
and 503 store_unavailable after, and everything recovers without a restart."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from test_server_support import (
    ADMIN_KEY,
    APPID,
    PATIENCE,
    auth,
    make_config,
    new_fake,
    serve_app,
    token_fetches,
    wait_ready,
    wait_until,
)

from wxauth.server import create_app

pytestmark = pytest.mark.redis
TOKEN = f"/v1/apps/{APPID}/token"


def test_a_redis_store_keeps_the_token_and_two_services_share_it(redis_url: str) -> None:
    """`store = "redis://..."`: the token lives in Redis, and a second service on the
    same Redis reads it instead of fetching (one fetch per app between them)."""
    with new_fake() as fake, fake.serve() as api_base:
        config = make_config(api_base, server=f'store = "{redis_url}"')
        first, second = create_app(config), create_app(config)
        with (
            serve_app(first) as url_a,
            serve_app(second) as url_b,
            httpx.Client(base_url=url_a) as a,
            httpx.Client(base_url=url_b) as b,
        ):
            wait_ready(a)
            wait_ready(b)
            token = a.get(TOKEN, headers=auth()).json()["access_token"]
            assert b.get(TOKEN, headers=auth()).json()["access_token"] == token
            fresh = b.post(
                f"{TOKEN}/invalidate", json={"access_token": token}, headers=auth()
            ).json()
            assert fresh["invalidated"] is True
            # The other service heals a report of the old token from the store.
            healed = a.post(
                f"{TOKEN}/invalidate", json={"access_token": token}, headers=auth()
            ).json()
            assert healed["invalidated"] is False
            assert healed["access_token"] == fresh["access_token"]
            assert a.get(TOKEN, headers=auth()).json()["access_token"] == healed["access_token"]
        assert token_fetches(fake) == 3  # two apps, one replacement
    client = redis.Redis.from_url(redis_url)
    keys = [k.decode() for k in client.keys("wxauth:token:*")]
    client.close()
    assert any(APPID in key for key in keys)


def _redis_args(port: int, workdir: Path) -> list[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server binary not found")
    return [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
            "no", "--dir", str(workdir)]  # fmt: skip


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A redis-server of this test's own (it gets stopped and restarted)."""
    from conftest import start_redis_server, stop_redis_server

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server binary not found")
    proc, url = start_redis_server(tmp_path)
    try:
        yield proc, url
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
        stop_redis_server(proc)


class Load:
    """Client threads reading the token in a loop; each answer's status is counted."""

    def __init__(self, url: str, threads: int = 4) -> None:
        self.statuses: dict[int, int] = {}
        self.bad: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._read, args=(url,)) for _ in range(threads)]

    def _read(self, url: str) -> None:
        with httpx.Client(base_url=url, timeout=PATIENCE) as client:
            while not self._stop.is_set():
                answer = client.get(TOKEN, headers=auth())
                with self._lock:
                    self.statuses[answer.status_code] = self.statuses.get(answer.status_code, 0) + 1
                    if answer.status_code not in (200, 503) or (
                        answer.status_code == 503
                        and (
                            answer.json()["error"] != "store_unavailable"
                            or "retry-after" not in answer.headers
                        )
                    ):
                        self.bad.append(answer.text)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(PATIENCE)


def test_a_hung_redis_under_load_then_recovery(
    private_redis: tuple[subprocess.Popen[bytes], str],
) -> None:
    """Redis stopped (SIGSTOP) under load: /readyz 503; reads answer the remembered
    token while it is valid (past the refresh point too), then 503 store_unavailable
    with Retry-After once it expired; invalidations 503; no other status, no hang.
    SIGCONT: reads and /readyz recover without a restart."""
    proc, url = private_redis
    with new_fake() as fake, fake.serve() as api_base:
        # A hung Redis costs each operation its socket timeout: keep it short here.
        config = make_config(api_base, server=f'store = "{url}?socket_timeout=0.2"')
        app = create_app(config, clock=fake.clock)
        with serve_app(app) as base, httpx.Client(base_url=base, timeout=PATIENCE) as client:
            wait_ready(client)
            token = client.get(TOKEN, headers=auth()).json()["access_token"]
            with Load(base) as load:
                os.kill(proc.pid, signal.SIGSTOP)
                try:
                    ready = client.get("/readyz")
                    assert ready.status_code == 503
                    assert ready.json()["store"] == "unavailable"
                    assert client.get(TOKEN, headers=auth()).json()["access_token"] == token
                    fake.advance(7200 - 100)  # past the refresh point, still valid
                    late = client.get(TOKEN, headers=auth())
                    assert late.json()["access_token"] == token
                    assert 0 < late.json()["expires_in"] <= 100
                    fake.advance(200)  # expired: nothing valid to answer
                    gone = client.get(TOKEN, headers=auth())
                    assert gone.status_code == 503
                    assert gone.json()["error"] == "store_unavailable"
                    assert gone.headers["retry-after"] == "5"
                    report = client.post(
                        f"{TOKEN}/invalidate", json={"access_token": token}, headers=auth()
                    )
                    assert report.status_code == 503
                    assert (
                        "wxauth_server_store_up 0.0"
                        in client.get("/metrics", headers=auth(ADMIN_KEY)).text
                    )
                finally:
                    os.kill(proc.pid, signal.SIGCONT)
                wait_until(
                    lambda: client.get(TOKEN, headers=auth()).status_code == 200, "reads again"
                )
            assert load.bad == []
            assert load.statuses.get(200, 0) > 0
            assert load.statuses.get(503, 0) > 0
            fresh = client.get(TOKEN, headers=auth()).json()["access_token"]
            assert fresh != token
            assert fresh == fake.latest_token(APPID)
            wait_ready(client)
            assert (
                "wxauth_server_store_up 1.0" in client.get("/metrics", headers=auth(ADMIN_KEY)).text
            )


def test_a_redis_restarted_empty_is_refilled(
    private_redis: tuple[subprocess.Popen[bytes], str], tmp_path: Path
) -> None:
    """Redis killed and restarted empty on the same port: meanwhile reads answer the
    remembered token and /readyz fails; once it is back, /readyz wakes the refreshers,
    which fetch and store a token, and the service is ready again."""
    from conftest import stop_redis_server

    proc, url = private_redis
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with new_fake() as fake, fake.serve() as api_base:
        config = make_config(api_base, server=f'store = "{url}"')
        with serve_app(create_app(config)) as base, httpx.Client(base_url=base) as client:
            wait_ready(client)
            token = client.get(TOKEN, headers=auth()).json()["access_token"]
            stop_redis_server(proc)
            assert client.get("/readyz").status_code == 503
            assert client.get(TOKEN, headers=auth()).json()["access_token"] == token
            restarted = subprocess.Popen(
                _redis_args(port, tmp_path), stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL
            )
            try:
                wait_ready(client)
                probe = redis.Redis(port=port)
                assert probe.keys("wxauth:token:*")
                probe.close()
                assert token_fetches(fake) >= 3  # the two apps' tokens were fetched again
            finally:
                stop_redis_server(restarted)
