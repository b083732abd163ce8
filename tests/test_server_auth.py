"""Who gets what from the token service, and what bad input gets: the 401/403/404
matrix, constant-time key checks, path tricks, malformed bodies, all on a real
uvicorn. Every refusal is a JSON 4xx with a stable ``error`` and changes nothing."""

from __future__ import annotations

import hmac
import json
import logging
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from test_server_support import (
    ADMIN_KEY,
    APPID,
    KEY,
    OTHER_APPID,
    OTHER_KEY,
    PATIENCE,
    SECRET,
    auth,
    make_config,
    new_fake,
    running_service,
    serve_app,
    token_fetches,
    wait_ready,
)

from wxauth.server import create_app, hash_key
from wxauth.server._clients import ClientDirectory
from wxauth.testing import FakeWeChat

TOKEN = f"/v1/apps/{APPID}/token"
INVALIDATE = f"/v1/apps/{APPID}/token/invalidate"


@pytest.fixture(scope="module")
def service() -> Iterator[tuple[FakeWeChat, httpx.Client]]:
    """One service for the module: every test here checks that it changes nothing."""
    with running_service() as (fake, client, _app):
        yield fake, client


@pytest.fixture
def unchanged(service: tuple[FakeWeChat, httpx.Client]) -> Iterator[httpx.Client]:
    """The service's client; after the test, the token and the fetch count are the
    same as before it."""
    fake, client = service
    before = (client.get(TOKEN, headers=auth()).json()["access_token"], token_fetches(fake))
    yield client
    after = (client.get(TOKEN, headers=auth()).json()["access_token"], token_fetches(fake))
    assert after == before


def raw(client: httpx.Client, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send a request exactly as written (no client-side path normalisation); return
    the status and the body."""
    address = urlsplit(str(client.base_url))
    with socket.create_connection((address.hostname, address.port), timeout=PATIENCE) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode("latin-1") + b"\r\n" + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head_part, _, payload = data.partition(b"\r\n\r\n")
    return int(head_part.split(b" ", 2)[1]), payload


@pytest.mark.parametrize(
    ("path", "key", "status", "code"),
    [
        (TOKEN, None, 401, "unauthorized"),
        (TOKEN, "wxk_not-a-key", 401, "unauthorized"),
        (TOKEN, KEY + "x", 401, "unauthorized"),
        (TOKEN, KEY[:-1], 401, "unauthorized"),
        (TOKEN, KEY, 200, None),
        (f"/v1/apps/{OTHER_APPID}/token", KEY, 403, "forbidden"),
        ("/v1/apps/wx404notthere/token", KEY, 403, "forbidden"),
        (f"/v1/apps/{OTHER_APPID}/token", OTHER_KEY, 200, None),
        (TOKEN, OTHER_KEY, 403, "forbidden"),
        (TOKEN, ADMIN_KEY, 200, None),
        (f"/v1/apps/{OTHER_APPID}/token", ADMIN_KEY, 200, None),
        ("/v1/apps/wx404notthere/token", ADMIN_KEY, 404, "unknown_app"),
        ("/v1/apps/wx404notthere/token", None, 401, "unauthorized"),
        (f"/v1/apps/{APPID}/ticket/jsapi", None, 401, "unauthorized"),
    ],
)
def test_the_auth_matrix(
    unchanged: httpx.Client, path: str, key: str | None, status: int, code: str | None
) -> None:
    """No key or a bad one: 401; another client's app, known or not: 403; an unknown
    app for a client that may read all: 404; else the token."""
    answer = unchanged.get(path, headers=auth(key) if key else {})
    assert answer.status_code == status
    body = answer.json()
    if code is None:
        assert "access_token" in body
    else:
        assert body["error"] == code
        assert body["message"]
        assert "access_token" not in body
    if status == 401:
        assert answer.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    [f"Basic {KEY}", f"bearer{KEY}", KEY, "Bearer", f"Bearer {KEY} extra", "Bearer " + "k" * 300],
)
def test_malformed_authorization_is_401(unchanged: httpx.Client, header: str) -> None:
    """Another scheme, no separator, junk after the key, a huge key: 401."""
    answer = unchanged.get(TOKEN, headers={"Authorization": header})
    assert answer.status_code == 401
    assert answer.json()["error"] == "unauthorized"


def test_invalidation_needs_a_key_and_the_scope(unchanged: httpx.Client) -> None:
    """POST invalidate without a key is 401 and with another client's key 403; the
    token stays (checked by the fixture)."""
    token = unchanged.get(TOKEN, headers=auth()).json()["access_token"]
    for headers, status in (({}, 401), (auth(OTHER_KEY), 403), (auth("nope"), 401)):
        answer = unchanged.post(INVALIDATE, json={"access_token": token}, headers=headers)
        assert answer.status_code == status


def test_keys_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A presented key is hashed and compared with every client's hash by
    hmac.compare_digest, matching or not, first client or last."""
    from test_server_support import make_config as config_for

    clients = config_for("http://127.0.0.1:9").clients
    directory = ClientDirectory(clients)
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    for key, name in ((KEY, "billing"), (ADMIN_KEY, "admin"), ("wxk_unknown", None)):
        calls.clear()
        found = directory.authenticate(f"Bearer {key}")
        assert (found.name if found else None) == name
        assert len(calls) == len(clients)
        assert all(len(a) == len(b) == 32 for a, b in calls)  # digests, never the key
    assert directory.authenticate(None) is None
    assert directory.authenticate("Bearer " + "x" * 1000) is None


def test_the_config_holds_only_hashes() -> None:
    """The parsed config keeps the key's sha256, never the key."""
    config = make_config("http://127.0.0.1:9")
    assert config.clients[0].key_sha256 == hash_key(KEY)
    assert KEY not in repr(config)


@pytest.mark.parametrize(
    ("target", "status", "code"),
    [
        ("/v1/apps/../token", 400, "bad_request"),
        ("/v1/apps/%2E%2E/token", 400, "bad_request"),
        ("/v1/apps/wx1234567890%2F..%2Fwx0000000002/token", 404, "not_found"),
        ("/v1/apps/wx1234567890/../wx0000000002/token", 404, "not_found"),
        ("/v1/apps/" + "w" * 65 + "/token", 400, "bad_request"),
        ("/v1/apps/" + "w" * 5000 + "/token", 400, "bad_request"),
        ("/v1/apps/%E4%B8%AD%E6%96%87/token", 400, "bad_request"),
        ("/v1/apps/wx1234567890%00/token", 400, "bad_request"),
        ("/v1/apps/wx1234567890%20/token", 400, "bad_request"),
        ("/v1/apps/wx1234567890/token/", 404, "not_found"),
        ("/v1/apps//token", 404, "not_found"),
        ("/v1/apps/wx1234567890/ticket/..", 400, "bad_request"),
        ("/v1/apps/wx1234567890/ticket/%2E%2E%2Ftoken", 404, "not_found"),
        ("/V1/apps/wx1234567890/token", 404, "not_found"),
    ],
)
def test_path_tricks_are_a_clear_4xx(
    unchanged: httpx.Client, target: str, status: int, code: str
) -> None:
    """Dot segments, encoded slashes, NUL, unicode, very long ids, trailing slashes:
    400 or 404 with a JSON error, never a token and never a redirect."""
    got, payload = raw(
        unchanged,
        f"GET {target} HTTP/1.1\nHost: x\nAuthorization: Bearer {ADMIN_KEY}\nConnection: close\n",
    )
    body = json.loads(payload)
    assert (got, body["error"]) == (status, code)
    assert "access_token" not in body


def test_the_wrong_method_is_405(unchanged: httpx.Client) -> None:
    """GET on invalidate, POST on the token: 405 method_not_allowed with Allow."""
    answer = unchanged.get(INVALIDATE, headers=auth())
    assert answer.status_code == 405
    assert answer.json()["error"] == "method_not_allowed"
    assert answer.headers["allow"] == "POST"
    assert unchanged.post(TOKEN, headers=auth()).status_code == 405


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"not json",
        b"[]",
        b'"access_token"',
        b"{}",
        b'{"access_token": 5}',
        b'{"access_token": null}',
        b'{"access_token": ["a"]}',
        b'{"access_token": ""}',
        b'{"access_token": "has space"}',
        b'{"access_token": "' + "\u4e2d".encode() + b'"}',
        b'{"access_token": "' + b"a" * 2049 + b'"}',
        b'{"access_token": "a", "force": true}',
        b'{"access_token": "a", "access_token": "b"}',
        b'{"ticket": "a"}',
        b'{"access_token": NaN}',
        b"\xff\xfe{}",
        b"[" * 2000 + b"]" * 2000,
    ],
)
def test_bad_bodies_are_400(unchanged: httpx.Client, body: bytes) -> None:
    """Malformed JSON, wrong types, empty or odd tokens, unknown or duplicate fields:
    400 bad_request, nothing dropped (the fixture checks)."""
    answer = unchanged.post(INVALIDATE, content=body, headers=auth())
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "bad_request"


def test_huge_bodies_are_413_unread(unchanged: httpx.Client) -> None:
    """1 MiB, declared or streamed without a length: 413 body_too_large."""
    token = unchanged.get(TOKEN, headers=auth()).json()["access_token"]
    big = json.dumps({"access_token": token, "pad": "x" * (1 << 20)}).encode()
    answer = unchanged.post(INVALIDATE, content=big, headers=auth())
    assert (answer.status_code, answer.json()["error"]) == (413, "body_too_large")

    def chunks() -> Iterator[bytes]:
        yield b'{"access_token": "' + token.encode() + b'", "pad": "'
        for _ in range(64):
            yield b"x" * 16384
        yield b'"}'

    streamed = unchanged.post(INVALIDATE, content=chunks(), headers=auth())
    assert (streamed.status_code, streamed.json()["error"]) == (413, "body_too_large")
    # uvicorn refuses a negative length itself (plain text), before the service.
    status, _ = raw(
        unchanged,
        f"POST {INVALIDATE} HTTP/1.1\nHost: x\nAuthorization: Bearer {KEY}\n"
        "Content-Length: -5\nConnection: close\n",
    )
    assert status == 400


def test_curl_style_form_content_type_is_accepted(
    service: tuple[FakeWeChat, httpx.Client],
) -> None:
    """`curl -d '{...}'` sends application/x-www-form-urlencoded: the JSON body is
    still read (the content type is not what is checked)."""
    _fake, client = service
    answer = client.post(
        INVALIDATE,
        content=b'{"access_token": "a-token-that-was-never-issued"}',
        headers={**auth(), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200
    assert answer.json()["invalidated"] is False


def test_uvicorns_access_log_masks_a_token_in_the_query(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With uvicorn's own access log on, a token a client put in the query string is
    masked (the service installs wxauth's redacting filter on it)."""
    caplog.set_level(logging.INFO, logger="uvicorn.access")
    with new_fake() as fake, fake.serve() as api_base:
        app = create_app(make_config(api_base))
        with serve_app(app, access_log=True) as url, httpx.Client(base_url=url) as client:
            wait_ready(client)
            token = client.get(TOKEN, headers=auth()).json()["access_token"]
            client.get(f"{TOKEN}?access_token={token}&secret={SECRET}", headers=auth())
    lines = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
    assert any("access_token=" in line for line in lines)
    assert not any(token in line or SECRET in line for line in lines)
