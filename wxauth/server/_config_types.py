"""The token service's configuration as the rest of the service sees it: the
:class:`ServerConfig`, :class:`AppConfig` and :class:`ClientConfig` dataclasses, the
:class:`ConfigError` every mistake raises, and the defaults and name patterns the TOML
is checked against (by ``_config_reader``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._secret import Secret

__all__ = [
    "ALL_APPS",
    "APP_ID_PATTERN",
    "APP_OPTIONS",
    "CLIENT_NAME_PATTERN",
    "DEFAULT_HOST",
    "DEFAULT_INVALIDATIONS_PER_DAY",
    "DEFAULT_INVALIDATIONS_PER_MINUTE",
    "DEFAULT_INVALIDATION_BURST",
    "DEFAULT_PORT",
    "DEFAULT_REQUEST_TIMEOUT",
    "AppConfig",
    "ClientConfig",
    "ConfigError",
    "ServerConfig",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8700
#: Token drops a client may cause per app (or ticket kind) per minute, on average.
DEFAULT_INVALIDATIONS_PER_MINUTE = 2.0
#: Token drops a client may cause in a burst before the per-minute rate applies.
DEFAULT_INVALIDATION_BURST = 3
#: Token drops a client may cause per app (or ticket kind) in any 24 hours: what bounds
#: the fetches one client can cost a day (WeChat allows 2000; the fetch budget is 500).
DEFAULT_INVALIDATIONS_PER_DAY = 20
#: Longest a request waits for a token the service does not have yet (seconds).
DEFAULT_REQUEST_TIMEOUT = 10.0
#: An app's name in URLs (``/v1/apps/{id}/token``): no dots, slashes or other tricks.
APP_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
CLIENT_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
#: In a client's ``apps``: every configured app.
ALL_APPS = "*"

#: The TokenManager options an ``[[apps]]`` table may set, with their TOML types.
APP_OPTIONS: Mapping[str, str] = {
    "source": "str",
    "api_base": "str",
    "refresh_margin": "number",
    "timeout": "number",
    "retries": "int",
    "backoff": "number",
    "lock_timeout": "number",
    "max_fetches_per_minute": "int",
    "max_fetches_per_day": "int",
    "poll_interval": "number",
}


class ConfigError(ValueError):
    """The service's configuration is wrong; the message names the file and the place
    in it (``apps[0].secret_env``) and never shows a secret."""


@dataclass(frozen=True)
class AppConfig:
    """One app the service keeps a token for.

    ``id`` names it in URLs and in clients' ``apps`` (default: the appid; give WeCom
    applications of one corp distinct ids). ``options`` are keyword arguments of
    :class:`~wxauth.TokenManager`; ``tickets`` the ticket kinds served for it.
    """

    id: str
    appid: str
    secret: Secret = field(repr=False)
    options: Mapping[str, Any] = field(default_factory=dict)
    tickets: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClientConfig:
    """A client of the service: its name (in logs and metrics), the sha256 of its key
    (hex) and the ids of the apps it may read (``"*"``: all)."""

    name: str
    key_sha256: str = field(repr=False)
    apps: frozenset[str] = frozenset()

    @property
    def all_apps(self) -> bool:
        """Whether the client may read every configured app."""
        return ALL_APPS in self.apps

    def may_read(self, app_id: str) -> bool:
        """Whether ``app_id`` is in this client's scope."""
        return app_id in self.apps or self.all_apps


@dataclass(frozen=True)
class ServerConfig:
    """The whole configuration; build it with :func:`load_config` or
    :func:`parse_config`. ``base_dir`` resolves relative paths in it (the config
    file's directory)."""

    apps: tuple[AppConfig, ...]
    clients: tuple[ClientConfig, ...]
    store: str = "memory"
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    invalidations_per_minute: float = DEFAULT_INVALIDATIONS_PER_MINUTE
    invalidation_burst: int = DEFAULT_INVALIDATION_BURST
    invalidations_per_day: int = DEFAULT_INVALIDATIONS_PER_DAY
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    public_metrics: bool = False
    base_dir: Path = field(default_factory=Path.cwd)
    origin: str = "<config>"

    def app(self, app_id: str) -> AppConfig | None:
        """The app named ``app_id`` in URLs, or ``None``."""
        for app in self.apps:
            if app.id == app_id:
                return app
        return None
