"""The central token service: one place fetches and refreshes every app's token, and
the rest of a fleet reads it over HTTP (``pip install 'wxauth[server]'``).

``wxauth serve --config wxauth-server.toml`` runs it (see ``docs/server.md``); for
uvicorn or gunicorn workers, ``uvicorn --factory wxauth.server:app_from_env`` with
``WXAUTH_SERVER_CONFIG`` naming the config file. In Python::

    config = wxauth.server.load_config("wxauth-server.toml")
    app = wxauth.server.create_app(config)   # a Starlette app

Importing this package needs no extra: :func:`create_app` and :func:`app_from_env`
load Starlette when first used.
"""

from typing import TYPE_CHECKING, Any

from ._clients import hash_key, new_key
from ._config import (
    AppConfig,
    ClientConfig,
    ConfigError,
    ServerConfig,
    load_config,
    parse_config,
)

if TYPE_CHECKING:
    from ._app import app_from_env, create_app

__all__ = [
    "AppConfig",
    "ClientConfig",
    "ConfigError",
    "ServerConfig",
    "app_from_env",
    "create_app",
    "hash_key",
    "load_config",
    "new_key",
    "parse_config",
]


def __getattr__(name: str) -> Any:
    # Starlette, anyio and prometheus_client come with the [server] extra: load on use.
    if name in ("create_app", "app_from_env"):
        from . import _app

        value = getattr(_app, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
