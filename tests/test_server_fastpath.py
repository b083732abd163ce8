"""The fast path of a token read (``wxauth/server/_fastpath.py``) answers exactly what
Starlette answers: the same status line, headers and body bytes, the same access line
and the same request count, for every kind of request that reaches it, on a real
uvicorn. Each request is sent twice, once with the fast path and once with it turned
off (``app.fast_path = None``), and the two exchanges are compared."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from test_server_support import (
    ADMIN_KEY,
    APPID,
    KEY,
    OTHER_APPID,
    OTHER_KEY,
    PATIENCE,
    auth,
    make_config,
    new_fake,
    serve_app,
    wait_ready,
    wait_until,
)

from wxauth.server import create_app
from wxauth.server._fastpath import TokenFastPath
from wxauth.testing import FakeWeChat

TOKEN = f"/v1/apps/{APPID}/token"

# (name, request line, extra header lines): every way a request can come near the fast
# path, the ones it answers and the ones it must leave to Starlette.
REQUESTS: list[tuple[str, str, list[str]]] = [
    ("read", f"GET {TOKEN}", [f"Authorization: Bearer {KEY}"]),
    ("admin read", f"GET {TOKEN}", [f"Authorization: Bearer {ADMIN_KEY}"]),
    (
        "admin, other app",
        f"GET /v1/apps/{OTHER_APPID}/token",
        [f"Authorization: Bearer {ADMIN_KEY}"],
    ),
    ("query string", f"GET {TOKEN}?access_token=x&n=1", [f"Authorization: Bearer {KEY}"]),
    ("scheme in lower case", f"GET {TOKEN}", [f"Authorization: bearer {KEY}"]),
    ("spaces around the key", f"GET {TOKEN}", [f"Authorization: Bearer   {KEY}  "]),
    ("no key", f"GET {TOKEN}", []),
    ("empty header", f"GET {TOKEN}", ["Authorization: "]),
    ("unknown key", f"GET {TOKEN}", ["Authorization: Bearer wxk_nobody"]),
    ("basic scheme", f"GET {TOKEN}", [f"Authorization: Basic {KEY}"]),
    (
        "good key second",
        f"GET {TOKEN}",
        ["Authorization: Bearer wxk_x", f"Authorization: Bearer {KEY}"],
    ),
    (
        "good key first",
        f"GET {TOKEN}",
        [f"Authorization: Bearer {KEY}", "Authorization: Bearer wxk_x"],
    ),
    ("out of scope", f"GET {TOKEN}", [f"Authorization: Bearer {OTHER_KEY}"]),
    ("unknown app, scoped", "GET /v1/apps/wxnosuchapp/token", [f"Authorization: Bearer {KEY}"]),
    (
        "unknown app, admin",
        "GET /v1/apps/wxnosuchapp/token",
        [f"Authorization: Bearer {ADMIN_KEY}"],
    ),
    ("bad app id", "GET /v1/apps/wx.bad/token", [f"Authorization: Bearer {KEY}"]),
    ("encoded app id", "GET /v1/apps/wx%2E1/token", [f"Authorization: Bearer {ADMIN_KEY}"]),
    ("app id too long", f"GET /v1/apps/{'a' * 65}/token", [f"Authorization: Bearer {ADMIN_KEY}"]),
    ("trailing slash", f"GET {TOKEN}/", [f"Authorization: Bearer {KEY}"]),
    ("double slash", f"GET /v1/apps//{APPID}/token", [f"Authorization: Bearer {KEY}"]),
    ("HEAD", f"HEAD {TOKEN}", [f"Authorization: Bearer {KEY}"]),
    ("POST", f"POST {TOKEN}", [f"Authorization: Bearer {KEY}", "Content-Length: 0"]),
    ("odd method", f"PURGE {TOKEN}", [f"Authorization: Bearer {KEY}"]),
    ("ticket", f"GET /v1/apps/{APPID}/ticket/jsapi", [f"Authorization: Bearer {KEY}"]),
    ("healthz", "GET /healthz", []),
    ("latin-1 junk in the key", f"GET {TOKEN}", ["Authorization: Bearer \xe9t\xe9"]),
]


def exchange(url: str, request_line: str, headers: list[str]) -> tuple[bytes, list[bytes], bytes]:
    """Send one HTTP/1.1 request on a new connection; the status line, the header lines
    (but ``date``) in order, and the body."""
    host, port = url.removeprefix("http://").split(":")
    lines = [f"{request_line} HTTP/1.1", f"Host: {host}:{port}", *headers, "Connection: close"]
    with socket.create_connection((host, int(port)), timeout=PATIENCE) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *fields = head.split(b"\r\n")
    return status, [f for f in fields if not f.lower().startswith(b"date:")], body


#: Sent after each exchange: once its access line is logged, the exchange's is too
#: (uvicorn runs one request at a time on the event loop, and logs it before the next).
MARKER = ("OPTIONS /healthz", [])


def settled(url: str, caplog: pytest.LogCaptureFixture) -> list[str]:
    """The access lines logged since the last call, without durations (the marker's
    and what came before it: a line is logged just after the answer is written, so it
    may arrive after the client read the answer)."""
    exchange(url, *MARKER)
    wait_until(lambda: any("method=OPTIONS" in line for line in lines(caplog)), "the marker")
    found = [line for line in lines(caplog) if "method=OPTIONS" not in line]
    caplog.clear()
    return found


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        re.sub(r" duration_ms=[\d.]+$", "", r.getMessage())
        for r in caplog.records
        if r.name == "wxauth.server.access"
    ]


@contextlib.contextmanager
def service(caplog: pytest.LogCaptureFixture) -> Iterator[tuple[FakeWeChat, str, Any]]:
    """A ready service on the emulator's fake clock (``expires_in`` holds still), its
    token and ticket read once (the first read of each waits for a flight)."""
    caplog.set_level(logging.INFO, logger="wxauth.server.access")
    with new_fake() as fake, fake.serve() as api_base:
        app = create_app(make_config(api_base, tickets='"jsapi"'), clock=fake.clock)
        with serve_app(app) as url, httpx.Client(base_url=url, timeout=PATIENCE) as client:
            wait_ready(client)
            for path in (TOKEN, f"/v1/apps/{APPID}/ticket/jsapi"):
                assert client.get(path, headers=auth()).status_code == 200
            settled(url, caplog)
            yield fake, url, app


def counted(fast_path: TokenFastPath) -> dict[tuple[str, ...], float]:
    """The service's ``wxauth_server_requests_total`` samples (but the markers')."""
    (family,) = fast_path.metrics.collect()
    return {
        tuple(s.labels.values()): s.value for s in family.samples if s.labels["method"] != "OPTIONS"
    }


@pytest.mark.parametrize(
    ("name", "request_line", "headers"), REQUESTS, ids=[r[0] for r in REQUESTS]
)
def test_the_fast_path_answers_logs_and_counts_what_starlette_does(
    name: str, request_line: str, headers: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    """With and without the fast path: the same bytes on the wire (but the Date
    header), the same access line and the same request count."""
    with service(caplog) as (_fake, url, app):
        fast_path = app.fast_path
        seen = []
        for fast in (fast_path, None, fast_path):
            app.fast_path = fast
            before = counted(fast_path)
            answer = exchange(url, request_line, headers)
            logged = settled(url, caplog)
            after = counted(fast_path)
            delta = {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k)}
            seen.append((answer, logged, delta))
        assert seen[0] == seen[1] == seen[2]
        (status, _, body), logged, delta = seen[0]
        assert len(logged) == 1
        assert list(delta.values()) == [1.0]
        if name == "read":
            assert status == b"HTTP/1.1 200 OK"
            assert json.loads(body)["expires_in"] > 7000
            assert logged == [f"client=billing method=GET path={TOKEN} status=200"]


def test_the_fast_path_serves_fresh_reads_and_only_those(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A read of a fresh token never reaches Starlette's route; a refusal does (the
    fast path left it alone)."""
    with service(caplog) as (_fake, url, app):
        served: list[str] = []
        route = next(r for r in app.routes if getattr(r, "path", "") == "/v1/apps/{app_id}/token")
        endpoint = route.app

        async def counting(scope: Any, receive: Any, send: Any) -> None:
            served.append(scope["path"])
            await endpoint(scope, receive, send)

        route.app = counting
        with httpx.Client(base_url=url, timeout=PATIENCE) as client:
            for _ in range(3):
                assert client.get(TOKEN, headers=auth()).status_code == 200
            assert served == []
            assert client.get(TOKEN, headers=auth(OTHER_KEY)).status_code == 403
            assert served == [TOKEN]


def test_expires_in_counts_down_and_a_new_token_is_answered_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The fast path keeps one answer per token and second: after a second it answers
    one second less, and the token that replaced a reported one at once."""
    with (
        service(caplog) as (fake, url, _app),
        httpx.Client(base_url=url, timeout=PATIENCE) as client,
    ):
        headers = {"Authorization": f"Bearer {KEY}"}
        first = client.get(TOKEN, headers=headers).json()
        assert client.get(TOKEN, headers=headers).json() == first
        fake.advance(1.0)
        later = client.get(TOKEN, headers=headers).json()
        assert later == {**first, "expires_in": first["expires_in"] - 1}
        reported = client.post(
            f"{TOKEN}/invalidate", json={"access_token": first["access_token"]}, headers=headers
        ).json()
        assert reported["invalidated"] is True
        fresh = client.get(TOKEN, headers=headers).json()
        assert fresh["access_token"] == reported["access_token"] != first["access_token"]
