"""Helpers for the token service's tests (``tests/test_server_*.py``), and the tests of
the helpers themselves: the service runs on a real uvicorn on a free loopback port in
a thread, against the emulator served on another (``FakeWeChat.serve()``)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from wxauth.server import ServerConfig, create_app, hash_key, parse_config
from wxauth.server._cli import listen_socket
from wxauth.testing import FakeWeChat

APPID = "wx1234567890"
SECRET = "the-app-secret-0123456789abcdef"
SECRET_ENV = "WXAUTH_TEST_SECRET_MAIN"
OTHER_APPID = "wx0000000002"
OTHER_SECRET = "the-other-secret-0123456789abcd"
KEY = "wxk_billing-key-0123456789abcdefghijklmnopqrstu"
OTHER_KEY = "wxk_reports-key-0123456789abcdefghijklmnopqrstu"
ADMIN_KEY = "wxk_admin-key-0123456789abcdefghijklmnopqrstuvw"
ENV = {SECRET_ENV: SECRET, "WXAUTH_TEST_SECRET_OTHER": OTHER_SECRET}
#: Seconds a test waits for the service to start or to become ready.
PATIENCE = 10.0


def auth(key: str = KEY) -> dict[str, str]:
    """The header a client sends."""
    return {"Authorization": f"Bearer {key}"}


def config_text(api_base: str, *, server: str = "", app: str = "", tickets: str = "") -> str:
    """A config of two apps and three clients: ``billing`` (KEY) may read APPID,
    ``reports`` (OTHER_KEY) OTHER_APPID, ``admin`` (ADMIN_KEY) every app. ``server``
    and ``app`` are lines added to ``[server]`` and to APPID's table."""
    return f"""
[server]
{server}

[[apps]]
appid = "{APPID}"
secret_env = "{SECRET_ENV}"
api_base = "{api_base}"
backoff = 0.01
tickets = [{tickets}]
{app}

[[apps]]
appid = "{OTHER_APPID}"
secret_env = "WXAUTH_TEST_SECRET_OTHER"
api_base = "{api_base}"

[[clients]]
name = "billing"
key_sha256 = "{hash_key(KEY)}"
apps = ["{APPID}"]

[[clients]]
name = "reports"
key_sha256 = "{hash_key(OTHER_KEY)}"
apps = ["{OTHER_APPID}"]

[[clients]]
name = "admin"
key_sha256 = "{hash_key(ADMIN_KEY)}"
apps = ["*"]
"""


def make_config(api_base: str, **parts: str) -> ServerConfig:
    """:func:`config_text`, parsed with the test secrets in the environment."""
    return parse_config(config_text(api_base, **parts), environ=ENV)


def new_fake(**options: Any) -> FakeWeChat:
    """An emulator that knows both apps."""
    fake = FakeWeChat(**options)
    fake.add_app(APPID, SECRET)
    fake.add_app(OTHER_APPID, OTHER_SECRET)
    return fake


def token_fetches(fake: FakeWeChat) -> int:
    """Requests to the classic token endpoint so far."""
    return fake.count(path="/cgi-bin/token")


@contextlib.contextmanager
def serve_app(
    app: Any, *, certfile: str | None = None, keyfile: str | None = None, **options: Any
) -> Iterator[str]:
    """Run ``app`` on uvicorn on a free loopback port in a thread (lifespan included);
    yield its base URL. Stops the server (and so the app's lifespan) on exit.
    ``options`` are more ``uvicorn.Config`` arguments."""
    import uvicorn

    # As `wxauth serve` makes it: TCP_NODELAY (a socket.socket() would make every
    # keep-alive answer wait out a 40 ms delayed ACK).
    sock = listen_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    settings: dict[str, Any] = {
        "log_config": None,
        "access_log": False,
        "lifespan": "on",
        "ssl_certfile": certfile,
        "ssl_keyfile": keyfile,
        "timeout_graceful_shutdown": 2,
        **options,
    }
    config = uvicorn.Config(app, **settings)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + PATIENCE
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    scheme = "https" if certfile else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(PATIENCE)
        sock.close()


def wait_until(check: Callable[[], bool], what: str) -> None:
    """Poll ``check`` (every 10 ms) until it holds; fail after :data:`PATIENCE`."""
    deadline = time.monotonic() + PATIENCE
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def wait_ready(client: httpx.Client) -> None:
    """Wait until ``/readyz`` answers 200 (every app has its first token)."""
    wait_until(lambda: client.get("/readyz").status_code == 200, "/readyz")


@contextlib.contextmanager
def running_service(**parts: str) -> Iterator[tuple[FakeWeChat, httpx.Client, Any]]:
    """The emulator, a ready service on it (``parts`` as :func:`config_text`), an
    httpx client on the service, and the Starlette app."""
    with new_fake() as fake, fake.serve() as api_base:
        app = create_app(make_config(api_base, **parts))
        with serve_app(app) as url, httpx.Client(base_url=url, timeout=PATIENCE) as client:
            wait_ready(client)
            yield fake, client, app


def test_the_service_starts_fetches_and_stops_its_refreshers() -> None:
    """Under uvicorn the lifespan starts one background refresher per app (each app's
    first token is fetched without any request) and stops them on shutdown."""
    with new_fake() as fake, fake.serve() as api_base:
        app = create_app(make_config(api_base))
        service = app.state.service
        with serve_app(app) as url, httpx.Client(base_url=url) as client:
            wait_ready(client)
            assert token_fetches(fake) == 2
            names = {t.name for t in threading.enumerate()}
            assert {f"wxauth-refresh-{APPID}", f"wxauth-refresh-{OTHER_APPID}"} <= names
        for resource in service.resources():
            assert not resource.manager.sync_background(0.1)  # no refresher left


def test_serve_app_gives_a_loopback_url() -> None:
    """The helper binds 127.0.0.1 and answers /healthz."""
    with new_fake() as fake, fake.serve() as api_base:
        app = create_app(make_config(api_base))
        with serve_app(app) as url:
            assert url.startswith("http://127.0.0.1:")
            assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
