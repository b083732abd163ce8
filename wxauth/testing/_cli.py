"""The emulator's command line: ``wxauth emulator`` and ``python -m wxauth.testing``.

It lives beside the emulator, so ``wxauth.testing`` never imports the ``wxauth``
command line; that one hands its ``emulator`` subcommand to :func:`add_emulator_parser`.
"""

from __future__ import annotations

import argparse
import ipaddress
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

from .._redact import RedactingArgumentParser
from . import _server
from ._fake import FakeWeChat

__all__ = ["add_emulator_arguments", "add_emulator_parser", "emulator_main", "run_emulator"]


def _credential(text: str) -> tuple[str, str]:
    ident, sep, secret = text.partition(":")
    if not sep or not ident or not secret:
        raise argparse.ArgumentTypeError("expected ID:SECRET, e.g. wx1234567890abcdef:s3cret")
    return ident, secret


def add_emulator_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of the emulator server on ``parser``."""
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=8000, help="TCP port, 0 for a free one (default: %(default)s)"
    )
    parser.add_argument(
        "--app",
        action="append",
        default=[],
        type=_credential,
        metavar="APPID:SECRET",
        help="register an Official Account / Mini Program (repeatable)",
    )
    parser.add_argument(
        "--wecom",
        action="append",
        default=[],
        type=_credential,
        metavar="CORPID:CORPSECRET",
        help="register a WeCom application (repeatable)",
    )
    parser.add_argument(
        "--expires-in", type=int, default=7200, help="token lifetime in s (default: %(default)s)"
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=300.0,
        help="s an old classic token still works after a new fetch (default: %(default)s)",
    )
    parser.add_argument(
        "--daily-quota",
        type=int,
        default=2000,
        help="classic token fetches per app per day (default: %(default)s)",
    )
    parser.add_argument(
        "--token-latency",
        type=float,
        default=0.0,
        help="s every token endpoint waits before answering (default: %(default)s)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log request lines to stderr (secrets and tokens masked)",
    )


def add_emulator_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare the ``emulator`` subcommand on the ``wxauth`` command line."""
    parser = subparsers.add_parser(
        "emulator",
        help="run the WeChat token-server emulator on loopback",
        description=(
            "Run wxauth.testing.FakeWeChat as an HTTP server, following real time. "
            "Point clients at the printed URL with api_base=URL."
        ),
    )
    add_emulator_arguments(parser)
    parser.set_defaults(func=run_emulator)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host == "localhost"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _duplicate_registration(args: argparse.Namespace) -> str | None:
    """What is registered twice (no secret in it), or ``None``."""
    appids: set[str] = set()
    for appid, _secret in args.app:
        if appid in appids:
            return f"--app {appid} is given twice: register each appid once"
        appids.add(appid)
    wecom: set[tuple[str, str]] = set()
    for corpid, corpsecret in args.wecom:
        if (corpid, corpsecret) in wecom:
            return f"the same --wecom application of {corpid} is given twice"
        wecom.add((corpid, corpsecret))
    return None


def run_emulator(args: argparse.Namespace) -> int:
    """Run the emulator server until Ctrl-C or SIGTERM; return the exit status."""
    if not args.app and not args.wecom:
        print(
            "wxauth emulator: register at least one --app APPID:SECRET or --wecom "
            "CORPID:CORPSECRET",
            file=sys.stderr,
        )
        return 2
    duplicate = _duplicate_registration(args)
    if duplicate is not None:
        print(f"wxauth emulator: {duplicate}", file=sys.stderr)
        return 2
    fake = FakeWeChat(
        clock=time.time,
        grace=args.grace,
        expires_in=args.expires_in,
        daily_quota=args.daily_quota,
        token_latency=args.token_latency,
    )
    for appid, secret in args.app:
        fake.add_app(appid, secret)
    for corpid, corpsecret in args.wecom:
        fake.add_wecom_app(corpid, corpsecret)
    try:
        server = _server.EmulatorServer(
            fake, args.host, args.port, log=sys.stderr if args.verbose else None
        )
    except OSError as exc:
        fake.close()
        print(f"wxauth emulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    if not _is_loopback(server.host):
        print(
            f"wxauth emulator: warning: {server.host} is not a loopback address: anyone who "
            "can reach this port gets access tokens from this emulator for the apps "
            "registered here (use --host 127.0.0.1 to keep it to this machine)",
            file=sys.stderr,
            flush=True,
        )
    apps = ", ".join([a for a, _ in args.app] + [f"{c} (WeCom)" for c, _ in args.wecom])
    print(f"wxauth emulator serving on {server.url}", flush=True)
    print(f"  apps: {apps} (secrets not shown)", flush=True)
    print("  pass it as api_base; Ctrl-C to stop", flush=True)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("wxauth emulator stopped", flush=True)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        fake.close()
    return 0


def emulator_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m wxauth.testing``: the emulator options only."""
    parser = RedactingArgumentParser(
        prog="python -m wxauth.testing",
        description="Run the WeChat token-server emulator on loopback (see: wxauth emulator).",
    )
    add_emulator_arguments(parser)
    return run_emulator(parser.parse_args(argv))
