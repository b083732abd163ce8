"""The token service under attack and in outages: each test here failed before the fix
it guards (see the commit that added it). Clients that leave mid-body, reads during a
WeChat hang or a hung Redis, a client that reports every token it gets for a simulated
day, shutdown with many apps, secrets in traceback frames, keys in uvicorn's log, and
sockets without TCP_NODELAY."""

from __future__ import annotations

import logging
import socket

import httpx
import pytest
from test_server_support import (
    APPID,
    KEY,
    PATIENCE,
    auth,
    make_config,
    new_fake,
    serve_app,
    wait_ready,
    wait_until,
)

from wxauth.server import create_app

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
