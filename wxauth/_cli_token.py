"""``wxauth token``: print a valid access token for shell use.

``curl "https://api.weixin.qq.com/cgi-bin/menu/get?access_token=$(wxauth token)"``

Credentials come from ``--appid``/``--secret`` or ``WECHAT_APPID``/``WECHAT_APPSECRET``
(prefer the environment: a command line is visible to every user of the machine). The
token is kept in a store (default a file in the user's cache directory) so that
repeated calls reuse one token instead of retiring it with every call.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from ._errors import WxAuthError
from ._redact import redact_url_passwords
from .stores import MemoryStore, TokenStore

if TYPE_CHECKING:
    from ._manager import TokenManager

__all__ = [
    "UsageError",
    "add_credential_arguments",
    "add_token_parser",
    "default_store_path",
    "open_store",
    "run_with_manager",
]


def default_store_path() -> Path:
    """The directory ``$XDG_CACHE_HOME/wxauth`` (``~/.cache/wxauth``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wxauth"


def open_store(spec: str | None) -> TokenStore:
    """Build a store from ``memory``, ``file`` (the default directory), ``file:DIR`` or a
    ``redis://`` / ``rediss://`` / ``unix://`` URL."""
    if spec is None or spec == "file":
        from .stores import FileStore

        return FileStore(default_store_path())
    if spec == "memory":
        return MemoryStore()
    if spec.startswith("file:"):
        from .stores import FileStore

        return FileStore(spec[len("file:") :])
    if spec.startswith(("redis://", "rediss://", "unix://")):
        from .stores import RedisStore

        return RedisStore.from_url(spec)
    raise ValueError(
        "--store takes memory, file, file:PATH or a redis:// URL, "
        f"not {redact_url_passwords(spec)!r}"
    )


def add_credential_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every command that needs an access token shares: credentials,
    ``--source``, ``--store``, ``--api-base`` and ``--timeout``."""
    parser.add_argument("--appid", help="AppID or WeCom corpid (default: $WECHAT_APPID)")
    parser.add_argument(
        "--secret", help="AppSecret or WeCom corpsecret (default: $WECHAT_APPSECRET)"
    )
    parser.add_argument(
        "--source",
        choices=("classic", "stable", "wecom"),
        default="classic",
        help="token endpoint (default: %(default)s)",
    )
    parser.add_argument(
        "--store",
        help=(
            "where the token is kept: memory (a fetch per call: it retires the previous "
            "token!), file (default: the directory ~/.cache/wxauth), file:DIR, or a "
            "redis:// URL shared with your services"
        ),
    )
    parser.add_argument(
        "--api-base", help="scheme and host of the API, e.g. the emulator's http://127.0.0.1:8000"
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request")


def add_token_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``wxauth token`` on the ``wxauth`` parser."""
    parser = subparsers.add_parser(
        "token",
        help="print a valid access token (for curl and scripts)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_credential_arguments(parser)
    parser.add_argument(
        "--refresh", action="store_true", help="fetch a new token even if one is cached"
    )
    parser.set_defaults(func=run_token)


def _masker(secret: str | None, store: str | None) -> Callable[[str], str]:
    """A function masking, in a message, the appsecret and the store URL's password."""
    literals: set[str] = set()
    if secret and len(secret) >= 6:  # masking "s" would mangle every word with an s
        literals.add(secret)
    if store:
        try:
            password = urlsplit(store).password
        except ValueError:
            password = None
        for value in (password, unquote(password or "")):
            if value and len(value) >= 4:
                literals.add(value)

    def mask(text: str) -> str:
        text = redact_url_passwords(text)
        for literal in sorted(literals, key=len, reverse=True):
            text = text.replace(literal, "***")
        return text

    return mask


class UsageError(Exception):
    """Raised by a command's action for a mistake of its caller: exit status 2."""


def run_with_manager(
    args: argparse.Namespace, command: str, action: Callable[[TokenManager], str]
) -> int:
    """Run ``action`` with the :class:`~wxauth.TokenManager` that
    :func:`add_credential_arguments`' options describe and print what it returns.

    Exit status 0 with the result on stdout; otherwise one line on stderr prefixed with
    ``wxauth COMMAND:`` and status 1 (2 for a usage error: missing credentials, a bad
    ``--store``, a :class:`UsageError`). No message shows the appsecret or the password
    of a ``redis://`` store URL."""
    from ._manager import TokenManager

    appid = args.appid or os.environ.get("WECHAT_APPID")
    secret = args.secret or os.environ.get("WECHAT_APPSECRET")
    mask = _masker(secret, args.store)

    def fail(message: str, status: int) -> int:
        print(f"wxauth {command}: {mask(message)}", file=sys.stderr)
        return status

    if not appid or not secret:
        return fail("give --appid/--secret or set WECHAT_APPID and WECHAT_APPSECRET", 2)
    options: dict[str, object] = {"timeout": args.timeout, "source": args.source}
    if args.api_base:
        options["api_base"] = args.api_base
    try:
        store = open_store(args.store)
    except (ValueError, WxAuthError, OSError, ImportError) as exc:
        return fail(str(exc), 2)
    except Exception as exc:  # redis-py's own parsing errors, whatever they are
        return fail(f"{type(exc).__name__}: {exc}", 2)
    try:
        with TokenManager(appid, secret, store=store, **options) as manager:  # type: ignore[arg-type]
            result = action(manager)
    except UsageError as exc:
        return fail(str(exc), 2)
    except WxAuthError as exc:
        return fail(f"{type(exc).__name__}: {exc}", 1)
    except Exception as exc:
        # One masked line, not a traceback that could show a URL or a secret.
        return fail(f"unexpected {type(exc).__name__}: {exc}", 1)
    finally:
        store.close()
    print(result)
    return 0


def run_token(args: argparse.Namespace) -> int:
    """Print the token on stdout; errors go to stderr with exit status 1 (2 for usage).

    No message shows the appsecret or the password of a ``redis://`` store URL."""
    return run_with_manager(
        args, "token", lambda manager: manager.refresh() if args.refresh else manager.get_token()
    )
