"""The token service's main flows on a real uvicorn: reading the token, compare-and-
invalidate (a thousand reporters, one fetch), the per-client limit, tickets, health,
readiness, metrics, and WeChat failing."""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Held
from test_server_support import (
    ADMIN_KEY,
    APPID,
    ENV,
    KEY,
    OTHER_APPID,
    OTHER_KEY,
    PATIENCE,
    SECRET,
    auth,
    config_text,
    make_config,
    new_fake,
    running_service,
    serve_app,
    token_fetches,
    wait_ready,
    wait_until,
)

from wxauth.server import create_app, hash_key, parse_config
from wxauth.testing import FakeWeChat

TICKET_PATH = "/cgi-bin/ticket/getticket"
TOKEN = f"/v1/apps/{APPID}/token"
INVALIDATE = f"/v1/apps/{APPID}/token/invalidate"
MONITOR_KEY = "wxk_monitor-key-0123456789abcdefghijklmnopqrstu"


def report(client: httpx.Client, token: str, key: str = KEY) -> httpx.Response:
    return client.post(INVALIDATE, json={"access_token": token}, headers=auth(key))


@pytest.fixture
def service() -> Iterator[tuple[FakeWeChat, httpx.Client]]:
    with running_service() as (fake, client, _app):
        yield fake, client


def test_get_answers_the_token_with_its_expiry(service: tuple[FakeWeChat, httpx.Client]) -> None:
    """GET answers the emulator's current token, expires_in (int seconds left) and
    expires_at (int epoch), fetched once in the background: reads never fetch."""
    fake, client = service
    before = time.time()
    answers = [client.get(TOKEN, headers=auth()) for _ in range(5)]
    for answer in answers:
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/json"
        assert answer.headers["cache-control"] == "no-store"
    body = answers[0].json()
    assert set(body) == {"access_token", "expires_in", "expires_at"}
    assert body["access_token"] == fake.latest_token(APPID)
    assert isinstance(body["expires_in"], int)
    assert isinstance(body["expires_at"], int)
    assert 7100 < body["expires_in"] <= 7200
    assert before + 7100 < body["expires_at"] <= time.time() + 7200
    assert token_fetches(fake) == 2  # one per app, by the refreshers


def test_twenty_reporters_of_one_token_cause_one_fetch(
    service: tuple[FakeWeChat, httpx.Client],
) -> None:
    """20 concurrent invalidations of the current token: one drop, one fetch at the
    emulator, and every reporter gets the same fresh token."""
    fake, client = service
    old = client.get(TOKEN, headers=auth()).json()["access_token"]
    fetches = token_fetches(fake)
    barrier = threading.Barrier(20)
    answers: list[httpx.Response] = []

    shared = httpx.Client(
        base_url=str(client.base_url), timeout=PATIENCE, limits=httpx.Limits(max_connections=40)
    )

    def reporter() -> None:
        barrier.wait()
        answers.append(report(shared, old))

    threads = [threading.Thread(target=reporter) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PATIENCE)
    shared.close()
    assert [a.status_code for a in answers] == [200] * 20
    bodies = [a.json() for a in answers]
    assert sum(b["invalidated"] for b in bodies) == 1
    fresh = {b["access_token"] for b in bodies}
    assert fresh == {fake.latest_token(APPID)}
    assert old not in fresh
    assert token_fetches(fake) == fetches + 1
    assert set(bodies[0]) == {"access_token", "expires_in", "expires_at", "invalidated"}


def test_reporting_a_replaced_token_changes_nothing(
    service: tuple[FakeWeChat, httpx.Client],
) -> None:
    """A token that was already replaced: invalidated false, the current token, no fetch."""
    fake, client = service
    old = client.get(TOKEN, headers=auth()).json()["access_token"]
    fresh = report(client, old).json()["access_token"]
    fetches = token_fetches(fake)
    for _ in range(10):
        answer = report(client, old)
        assert answer.status_code == 200
        assert answer.json()["invalidated"] is False
        assert answer.json()["access_token"] == fresh
    assert report(client, "never-issued-token").json()["invalidated"] is False
    assert token_fetches(fake) == fetches


def test_a_flood_of_invalidations_is_refused_per_client() -> None:
    """Past its burst, a client that reports the current token gets 429 with
    Retry-After and nothing is dropped; other clients are not limited by it; a stale
    report still answers 200; the bucket refills with time."""
    now = [1000.0]
    with new_fake() as fake, fake.serve() as api_base:
        config = make_config(
            api_base, server="invalidations_per_minute = 1\ninvalidation_burst = 1"
        )
        app = create_app(config, limiter_clock=lambda: now[0])
        with serve_app(app) as url, httpx.Client(base_url=url, timeout=PATIENCE) as client:
            wait_ready(client)
            first = client.get(TOKEN, headers=auth()).json()["access_token"]
            second = report(client, first).json()["access_token"]
            fetches = token_fetches(fake)
            refused = report(client, second)
            assert refused.status_code == 429
            assert refused.json()["error"] == "too_many_invalidations"
            assert refused.headers["retry-after"] == "60"
            assert client.get(TOKEN, headers=auth()).json()["access_token"] == second
            stale = report(client, first)
            assert stale.status_code == 200
            assert stale.json()["invalidated"] is False
            assert report(client, second, ADMIN_KEY).status_code == 200  # another client
            now[0] += 61
            assert report(client, fake.latest_token(APPID) or "").status_code == 200
    # The admin's report was the second rejection in a row: the manager held it.
    assert token_fetches(fake) == fetches


def test_tickets_are_served_and_invalidated() -> None:
    """GET /ticket/jsapi answers the ticket; POST .../invalidate with {"ticket": ...}
    drops it once and answers the next; a kind not enabled is 404 unknown_ticket."""
    with running_service(tickets='"jsapi"') as (fake, client, _app):
        path = f"/v1/apps/{APPID}/ticket/jsapi"
        wait_until(lambda: fake.count(path=TICKET_PATH) == 1, "the first ticket")
        body = client.get(path, headers=auth()).json()
        assert set(body) == {"ticket", "expires_in", "expires_at"}
        assert 7100 < body["expires_in"] <= 7200
        answer = client.post(f"{path}/invalidate", json={"ticket": body["ticket"]}, headers=auth())
        assert answer.json()["invalidated"] is True
        assert answer.json()["ticket"] != body["ticket"]
        again = client.post(f"{path}/invalidate", json={"ticket": body["ticket"]}, headers=auth())
        assert again.json()["invalidated"] is False
        assert fake.count(path=TICKET_PATH) == 2
        wrong_field = client.post(
            f"{path}/invalidate", json={"access_token": body["ticket"]}, headers=auth()
        )
        assert wrong_field.status_code == 400
        for kind, status in (("wx_card", 404), ("agent_config", 404), ("JSAPI", 400)):
            answer = client.get(f"/v1/apps/{APPID}/ticket/{kind}", headers=auth())
            assert answer.status_code == status, kind
            assert answer.json()["error"] == ("unknown_ticket" if status == 404 else "bad_request")
        other = client.get(f"/v1/apps/{OTHER_APPID}/ticket/jsapi", headers=auth(OTHER_KEY))
        assert other.status_code == 404


def test_healthz_and_readyz_before_the_first_token() -> None:
    """While the first fetch is held: /healthz 200, /readyz 503 not_ready with
    Retry-After, and a read gives up after request_timeout with 503; once WeChat
    answers, ready."""
    fake = new_fake()
    with fake, fake.serve() as api_base, Held(fake) as held:
        config = make_config(api_base, server="request_timeout = 0.3")
        with serve_app(create_app(config)) as url, httpx.Client(base_url=url) as client:
            assert held.arrived.wait(PATIENCE)
            assert client.get("/healthz").json() == {"status": "ok"}
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["error"] == "not_ready"
            assert ready.json()["apps_ready"] == 0
            assert "retry-after" in ready.headers
            read = client.get(TOKEN, headers=auth())
            assert read.status_code == 503
            assert read.json()["error"] == "wechat_unavailable"
            assert int(read.headers["retry-after"]) > 0
            held.release()
            wait_ready(client)
            assert client.get(TOKEN, headers=auth()).status_code == 200


def test_wechat_refusing_is_a_503_without_the_secret(caplog: pytest.LogCaptureFixture) -> None:
    """A refused AppSecret: reads answer 503 wechat_unavailable naming the errcode; no
    answer and no log line shows the secret."""
    caplog.set_level(logging.DEBUG)
    fake = FakeWeChat()
    fake.add_app(APPID, "a-different-secret-0123456789abc")
    fake.add_app(OTHER_APPID, "another-different-secret-012345")
    with fake, fake.serve() as api_base:
        config = make_config(api_base)
        with serve_app(create_app(config)) as url, httpx.Client(base_url=url) as client:
            wait_until(lambda: token_fetches(fake) >= 2, "the refreshers' first tries")
            answer = client.get(TOKEN, headers=auth())
            assert answer.status_code == 503
            assert answer.json()["error"] == "wechat_unavailable"
            assert "40125" in answer.json()["message"]
            assert int(answer.headers["retry-after"]) >= 1
            assert client.get("/readyz").status_code == 503
            metrics = client.get("/metrics", headers=auth(ADMIN_KEY)).text
            texts = [answer.text, metrics, client.get("/readyz").text]
    assert SECRET not in caplog.text
    assert not any(SECRET in text for text in texts)


def test_metrics_name_fetches_ages_and_requests_but_no_secret(
    service: tuple[FakeWeChat, httpx.Client],
) -> None:
    """/metrics: Prometheus text with fetches, failures, invalidations, token age and
    request counts by status and client; no token, key or secret."""
    fake, client = service
    token = client.get(TOKEN, headers=auth()).json()["access_token"]
    report(client, token)
    client.get(TOKEN, headers=auth("wrong"))
    text = client.get("/metrics", headers=auth(ADMIN_KEY)).text
    assert (
        client.get("/metrics", headers=auth(ADMIN_KEY))
        .headers["content-type"]
        .startswith("text/plain")
    )
    for line in (
        f'wxauth_server_fetches_total{{app="{APPID}",kind="access_token"}} 2.0',
        f'wxauth_server_fetch_failures_total{{app="{APPID}",kind="access_token"}} 0.0',
        f'wxauth_server_invalidations_total{{app="{APPID}",kind="access_token"}} 1.0',
        "wxauth_server_store_up 1.0",
        'wxauth_server_requests_total{client="billing",method="GET",'
        'route="/v1/apps/{app_id}/token",status="200"} 1.0',
        'wxauth_server_requests_total{client="-",method="GET",'
        'route="/v1/apps/{app_id}/token",status="401"} 1.0',
    ):
        assert line in text, line
    assert f'wxauth_server_token_age_seconds{{app="{APPID}",kind="access_token"}}' in text
    for secret in (SECRET, KEY, *fake.issued_tokens):
        assert secret not in text


def test_metrics_need_a_key_and_show_a_client_only_its_apps() -> None:
    """By default /metrics answers 401 without a key; a client of some apps reads only
    the series of its apps and its own requests (the metrics name app ids: 403-not-404
    must still protect them); a client of every app, or of none (a monitoring key),
    reads every series. public_metrics = true opens them to anyone."""
    text = config_text("http://127.0.0.1:9").replace(
        "[[clients]]",
        f'[[clients]]\nname = "prometheus"\nkey_sha256 = "{hash_key(MONITOR_KEY)}"\n'
        "apps = []\n\n[[clients]]",
        1,
    )
    app = create_app(parse_config(text, environ=ENV))
    with serve_app(app) as url, httpx.Client(base_url=url) as client:
        assert client.get("/metrics").status_code == 401
        scoped = client.get("/metrics", headers=auth())
        full = client.get("/metrics", headers=auth(ADMIN_KEY))
        assert scoped.status_code == full.status_code == 200
        assert f'app="{APPID}"' in scoped.text
        apps_seen = set(re.findall(r'app="([^"]*)"', full.text))
        monitor = client.get("/metrics", headers=auth(MONITOR_KEY)).text
        assert set(re.findall(r'app="([^"]*)"', monitor)) == apps_seen
        scoped = client.get("/metrics", headers=auth())  # the first scoped read counted
        clients_seen = set(re.findall(r'client="([^"]*)"', scoped.text))
        assert len(apps_seen) > 1, "the config should have an app out of the client's scope"
        assert set(re.findall(r'app="([^"]*)"', scoped.text)) == {APPID}
        assert clients_seen == {"billing"}
        assert "-" in set(re.findall(r'client="([^"]*)"', full.text))
        assert "# TYPE wxauth_server_fetches_total counter" in scoped.text
        assert client.get(TOKEN, headers=auth(MONITOR_KEY)).status_code == 403
    with running_service(server="public_metrics = true") as (_fake, client, _app):
        assert client.get("/metrics").status_code == 200


def test_secret_and_tokens_never_reach_the_logs_or_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """At DEBUG, through reads, invalidations and errors: no log line holds the
    secret, a client key or a whole token; the access log names the client."""
    caplog.set_level(logging.DEBUG)
    with running_service() as (fake, client, _app):
        token = client.get(TOKEN, headers=auth()).json()["access_token"]
        report(client, token)
        report(client, token)
        client.get(f"{TOKEN}?access_token={token}", headers=auth())
        client.get(TOKEN, headers=auth(OTHER_KEY))
        client.get(f"/v1/apps/{token[:60]}/token", headers=auth())
        client.post(INVALIDATE, content=b"{" + token.encode(), headers=auth())
        answers = [
            client.get(p, headers=auth(ADMIN_KEY)).text for p in ("/healthz", "/readyz", "/metrics")
        ]
        issued = fake.issued_tokens
    log = caplog.text
    assert "client=billing method=GET path=/v1/apps/wx1234567890/token status=200" in log
    assert "client=reports method=GET" in log
    assert "status=403" in log
    for secret in (SECRET, KEY, OTHER_KEY, *issued):
        assert secret not in log
        assert not any(secret in answer for answer in answers)
    server_log = "\n".join(
        r.getMessage() for r in caplog.records if r.name.startswith(("wxauth", "uvicorn"))
    )
    assert token[:60] not in server_log  # a path with junk in it is not logged


def test_a_file_store_serves_and_is_ready(tmp_path: Path) -> None:
    """`store = "file:///dir"`: the tokens are files there; ready, reads answer them."""
    with running_service(server=f'store = "file://{tmp_path}/store"') as (fake, client, _app):
        body = client.get(TOKEN, headers=auth()).json()
        assert body["access_token"] == fake.latest_token(APPID)
    assert any(name.endswith(".token") for name in os.listdir(tmp_path / "store"))


class InFlight:
    """ASGI middleware of the test: counts the requests of ``path`` that arrived."""

    def __init__(self, app: Any, path: str) -> None:
        self.app, self.path, self.arrived = app, path, 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == self.path:
            self.arrived += 1
        await self.app(scope, receive, send)


def test_an_app_whose_fetch_hangs_does_not_hold_up_the_others() -> None:
    """App A's token endpoint never answers: with 60 reads of A waiting (more than
    anyio's 40 default worker threads), B's invalidation (a drop and a fetch, in
    worker threads) is still answered, because each app has threads of its own; the
    reads of A answer 503 after request_timeout."""
    with (
        new_fake() as fake,
        fake.serve() as api_base,
        socket.create_server(("127.0.0.1", 0)) as blackhole,  # accepts, never answers
    ):
        silent = f"http://127.0.0.1:{blackhole.getsockname()[1]}"
        text = config_text(api_base, server="request_timeout = 1", app="timeout = 5")
        text = text.replace(f'api_base = "{api_base}"', f'api_base = "{silent}"', 1)
        app = InFlight(create_app(parse_config(text, environ=ENV)), TOKEN)
        with serve_app(app) as url, httpx.Client(base_url=url) as client:
            other = f"/v1/apps/{OTHER_APPID}/token"
            wait_until(lambda: client.get(other, headers=auth(OTHER_KEY)).status_code == 200,
                       "app B's token")  # fmt: skip
            old = client.get(other, headers=auth(OTHER_KEY)).json()["access_token"]
            # One client for the readers (a client per thread would spend seconds
            # loading CA bundles); its pool lets all 60 requests out at once.
            readers = httpx.Client(
                base_url=url, timeout=PATIENCE, limits=httpx.Limits(max_connections=100)
            )
            statuses: list[int] = []
            threads = [
                threading.Thread(
                    target=lambda: statuses.append(readers.get(TOKEN, headers=auth()).status_code)
                )
                for _ in range(60)
            ]
            for thread in threads:
                thread.start()
            wait_until(lambda: app.arrived == 60, "60 reads of A in the service")
            started = time.monotonic()
            answer = client.post(
                f"{other}/invalidate", json={"access_token": old}, headers=auth(OTHER_KEY)
            )
            elapsed = time.monotonic() - started
            for thread in threads:
                thread.join(PATIENCE)
            readers.close()
            assert answer.status_code == 200, answer.text
            assert answer.json()["invalidated"] is True
            assert elapsed < 0.5  # not queued behind A's requests
            assert statuses == [503] * 60
