"""``wxauth serve`` and ``wxauth keygen``: run the token service, make a client key.

``wxauth serve --config wxauth-server.toml`` serves on 127.0.0.1:8700 unless the config
or ``--host``/``--port`` say otherwise; ``--ssl-certfile``/``--ssl-keyfile`` serve HTTPS.
Secrets come from the environment variables and files the config names.

``wxauth keygen --name billing`` prints a new client key (once: the service keeps only
its sha256) and the ``[[clients]]`` table to add to the config.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import socket
import sys
from typing import Any

from .._errors import StoreError
from ._clients import hash_key, new_key
from ._config import CLIENT_NAME_PATTERN, ConfigError, load_config

__all__ = [
    "DEFAULT_CONFIG",
    "add_keygen_parser",
    "add_serve_parser",
    "listen_socket",
    "run_keygen",
    "run_serve",
]

#: The config file ``wxauth serve`` reads without ``--config`` or ``$WXAUTH_SERVER_CONFIG``.
DEFAULT_CONFIG = "wxauth-server.toml"
_INSTALL = "pip install 'wxauth[server]'"
_DESCRIPTION = __doc__.split("\n\n", 1)[1] if __doc__ else None


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535, not {port}")
    return port


def add_serve_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``wxauth serve`` on the ``wxauth`` parser."""
    parser = subparsers.add_parser(
        "serve",
        help="run the central token service (needs the [server] extra)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        help=f"the TOML config (default: $WXAUTH_SERVER_CONFIG, else ./{DEFAULT_CONFIG})",
    )
    parser.add_argument("--host", help="address to bind (default: the config's, 127.0.0.1)")
    parser.add_argument("--port", type=_port, help="port (default: the config's, 8700)")
    parser.add_argument("--ssl-certfile", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--ssl-keyfile", help="the certificate's private key (PEM)")
    parser.set_defaults(func=run_serve)


def add_keygen_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``wxauth keygen`` on the ``wxauth`` parser."""
    parser = subparsers.add_parser(
        "keygen",
        help="make a client key for the token service",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--name", required=True, help="the client's name (logs, metrics)")
    parser.add_argument(
        "--app",
        action="append",
        default=[],
        metavar="ID",
        help="an app id the client may read (repeat for several; * for all)",
    )
    parser.set_defaults(func=run_keygen)


def _fail(command: str, message: str, status: int) -> int:
    print(f"wxauth {command}: {message}", file=sys.stderr)
    return status


def run_keygen(args: argparse.Namespace) -> int:
    """Print a new key and its ``[[clients]]`` table; exit status 0 (2: a bad name)."""
    if not CLIENT_NAME_PATTERN.fullmatch(args.name):
        return _fail("keygen", "--name is 1-64 letters, digits, '_', '.' or '-'", 2)
    key = new_key()
    apps = ", ".join(f'"{app}"' for app in args.app)
    print(key)
    print(f'# ^ the key of client "{args.name}", shown only this once: hand it to the client')
    print("#   (it sends Authorization: Bearer KEY) and keep it out of files and logs.")
    print("# Add to the service's config, which keeps only the key's sha256:")
    print("[[clients]]")
    print(f'name = "{args.name}"')
    print(f'key_sha256 = "{hash_key(key)}"')
    print(f"apps = [{apps}]" + ("" if apps else "  # the app ids this client may read"))
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (not yet listening) whose accepted
    connections send small answers at once: ``TCP_NODELAY`` on the listener (Linux
    hands it to every accepted connection) and ``IPPROTO_TCP`` as its protocol
    (asyncio sets ``TCP_NODELAY`` on connections only then). A ``socket.socket()``
    passed to uvicorn has neither, and every keep-alive answer then waits ~40 ms for
    the client's delayed ACK (Nagle). Raises ``OSError``."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def run_serve(args: argparse.Namespace) -> int:
    """Run the service until SIGINT/SIGTERM; exit status 0, 2 for a config or usage
    error (or a missing extra), 1 when it cannot start."""
    try:
        import uvicorn

        from ._app import create_app
    except ImportError as exc:
        return _fail("serve", f"the token service needs its extra: {_INSTALL} ({exc})", 2)
    if (args.ssl_certfile is None) != (args.ssl_keyfile is None):
        return _fail("serve", "give --ssl-certfile and --ssl-keyfile together", 2)
    path = args.config or os.environ.get("WXAUTH_SERVER_CONFIG") or DEFAULT_CONFIG
    try:
        config = load_config(path)
    except ConfigError as exc:
        return _fail("serve", str(exc), 2)
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    host = args.host or config.host
    port = config.port if args.port is None else args.port
    certfile = args.ssl_certfile or config.ssl_certfile
    keyfile = args.ssl_keyfile or config.ssl_keyfile
    try:
        app = create_app(config)
    except (StoreError, ValueError, OSError) as exc:
        return _fail("serve", f"cannot open the store: {exc}", 1)
    if certfile is None and not _is_loopback(host):
        logging.getLogger("wxauth.server").warning(
            "serving plain HTTP on %s: tokens cross the network in clear; give "
            "--ssl-certfile/--ssl-keyfile or put a TLS proxy in front",
            host,
        )
    try:
        sock = listen_socket(host, port)
    except OSError as exc:
        return _fail("serve", f"cannot listen on {host}:{port}: {exc.strerror or exc}", 1)
    options: dict[str, Any] = {
        "host": host,
        "port": sock.getsockname()[1],
        "log_config": None,
        "access_log": False,  # the service logs its own line, naming the client
        "lifespan": "on",
        "server_header": False,
        "timeout_graceful_shutdown": 10,
    }
    if certfile is not None:
        options.update(ssl_certfile=certfile, ssl_keyfile=keyfile)
    server = uvicorn.Server(uvicorn.Config(app, **options))
    shown = f"[{host}]" if ":" in host else host
    logging.getLogger("wxauth.server").info(
        "listening on %s://%s:%d (SIGINT or SIGTERM to stop)",
        "https" if certfile else "http", shown, options["port"],
    )  # fmt: skip
    try:
        # What uvicorn.run(app) does for one process, on a socket made as it should be.
        server.run(sockets=[sock])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    finally:
        sock.close()
    return 0 if server.started else 1
