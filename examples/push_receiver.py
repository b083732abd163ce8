"""The push receiver of a WeChat third-party platform, as a WSGI app on the standard
library's ``wsgiref`` (any WSGI server runs it: gunicorn, uWSGI, waitress).

WeChat POSTs the ``component_verify_ticket`` (every 10 minutes) and the authorization
notices to the platform's 授权事件接收 URL. The app hands each one to
``ComponentTokenManager.handle_push`` and answers ``success``; a push that is forged,
tampered with, replayed or not for this platform gets a 400 and changes nothing.

Run it against the WeChat emulator, on loopback only (it pushes a ticket and an
authorization to the receiver, then calls an API as the authorizer)::

    python examples/push_receiver.py --demo

Run it for real (the settings come from the environment; the store must be durable and
shared with the processes that call the APIs: a directory for a FileStore, or Redis)::

    WXAUTH_COMPONENT_APPID=wx... WXAUTH_COMPONENT_SECRET=... \\
    WXAUTH_PUSH_TOKEN=... WXAUTH_ENCODING_AES_KEY=... \\
    WXAUTH_REDIS_URL=redis://localhost:6379/0 \\
    python examples/push_receiver.py --host 0.0.0.0 --port 8080
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import requests

import wxauth
from wxauth.openplatform import MAX_PUSH_BYTES, ComponentTokenManager, PushError

logger = logging.getLogger("push_receiver")

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def make_app(platform: ComponentTokenManager) -> WSGIApp:
    """The WSGI app that feeds ``platform`` the pushes POSTed to it."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        def answer(status: str, text: str) -> list[bytes]:
            body = text.encode("utf-8")
            headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
            start_response(status, headers)
            return [body]

        if environ["REQUEST_METHOD"] != "POST":
            return answer("405 Method Not Allowed", "POST only")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return answer("400 Bad Request", "bad Content-Length")
        if not 0 < length <= MAX_PUSH_BYTES:
            return answer("413 Content Too Large", "no body, or too large")
        body = environ["wsgi.input"].read(length)
        # The first of each query parameter: the signature covers the values used.
        query: dict[str, str] = {}
        for name, value in parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True):
            query.setdefault(name, value)
        try:
            event = platform.handle_push(query, body)
        except PushError as exc:
            logger.warning("refused a push: %s", exc)  # never holds a ticket or a code
            return answer("400 Bad Request", "refused")
        except wxauth.WxAuthError as exc:
            # WeChat, the store or the network failed (a code exchange): answer 503 so
            # WeChat pushes it again.
            logger.error("could not handle a push: %s", exc)
            return answer("503 Service Unavailable", "try again")
        logger.info("handled %r", event)
        return answer("200 OK", "success")

    return app


class QuietHandler(WSGIRequestHandler):
    """wsgiref's handler without its access log on stderr (the query holds nothing
    secret, but the demo's output stays readable)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(app: WSGIApp, host: str, port: int) -> WSGIServer:
    """A wsgiref server for ``app`` on ``host:port`` (port 0: any free one)."""
    return make_server(host, port, app, handler_class=QuietHandler)


def platform_from_environment() -> ComponentTokenManager:
    """The platform the ``WXAUTH_*`` environment variables describe."""
    env = os.environ
    missing = [
        name
        for name in (
            "WXAUTH_COMPONENT_APPID",
            "WXAUTH_COMPONENT_SECRET",
            "WXAUTH_PUSH_TOKEN",
            "WXAUTH_ENCODING_AES_KEY",
        )
        if not env.get(name)
    ]
    if missing or not (env.get("WXAUTH_REDIS_URL") or env.get("WXAUTH_STORE_DIR")):
        raise SystemExit(
            "set "
            + ", ".join(missing or [])
            + (" and " if missing else "")
            + "WXAUTH_REDIS_URL or WXAUTH_STORE_DIR (or run with --demo)"
        )
    store: wxauth.TokenStore
    if env.get("WXAUTH_REDIS_URL"):
        store = wxauth.RedisStore.from_url(env["WXAUTH_REDIS_URL"])
    else:
        store = wxauth.FileStore(env["WXAUTH_STORE_DIR"])
    return ComponentTokenManager(
        env["WXAUTH_COMPONENT_APPID"],
        env["WXAUTH_COMPONENT_SECRET"],
        token=env["WXAUTH_PUSH_TOKEN"],
        encoding_aes_key=env["WXAUTH_ENCODING_AES_KEY"],
        store=store,
    )


def demo() -> int:
    """Receive an emulated ticket and authorization push, then call an API as the
    authorizer; every address is loopback."""
    from wxauth.testing import FakeWeChat

    component, secret = "wxdemocomponent01", "demo-component-secret"
    token, key = "demo-push-token", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
    authorizer = "wxdemoauthorizer1"
    fake = FakeWeChat()
    fake.add_component(component, secret, token=token, encoding_aes_key=key)
    with fake.serve() as api, tempfile.TemporaryDirectory() as directory:
        platform = ComponentTokenManager(
            component,
            secret,
            token=token,
            encoding_aes_key=key,
            store=wxauth.FileStore(directory),
            api_base=api,
            clock=fake.clock,
        )
        server = serve(make_app(platform), "127.0.0.1", 0)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{server.server_address[1]}/wechat/push"
        try:
            print(f"push receiver on {url}; WeChat emulator on {api}")
            fake.push_verify_ticket(url, component)
            print("1. ticket pushed and stored; component token:", bool(platform.get_token()))
            fake.push_authorization(url, component, authorizer)
            print(
                f"2. {authorizer} authorized; refresh tokens stored:", platform.authorizer_appids()
            )
            session = requests.Session()
            session.auth = wxauth.WxAuth(manager=platform.authorizer(authorizer))
            answer = session.get(f"{api}/cgi-bin/get_api_domain_ip", timeout=10).json()
            print("3. an API call as the authorizer answered errcode", answer.get("errcode"))
            forged = requests.post(
                url,
                params={"msg_signature": "0" * 40, "timestamp": "1", "nonce": "1"},
                data=b"<xml/>",
                timeout=10,
            )
            print("4. a forged push got HTTP", forged.status_code)
            ok = answer.get("errcode") == 0 and forged.status_code == 400
        finally:
            server.shutdown()
            server.server_close()
            platform.close()
    print("demo done" if ok else "demo FAILED")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--demo", action="store_true", help="run against the emulator")
    args = parser.parse_args(argv)
    level = logging.WARNING if args.demo else logging.INFO  # the demo tells its own story
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if args.demo:
        return demo()
    server = serve(make_app(platform_from_environment()), args.host, args.port)
    print(f"receiving pushes on http://{args.host}:{server.server_address[1]}/")
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
