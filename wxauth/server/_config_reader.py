"""Reading the token service's TOML: :class:`ConfigReader` walks the parsed tables
(``[server]``, each ``[[apps]]``, each ``[[clients]]``) and checks each value where it
is found, so that a :class:`ConfigError` names the place (``apps[0].refresh_margin``)
and never a secret's value.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._config import check_options
from .._redact import redact_url_passwords
from .._secret import Secret
from ..sources import secret_digest
from ..tickets import TICKET_KINDS, WECOM_TICKET_KINDS
from ._config_secrets import read_secret_file, secret_problem
from ._config_types import (
    ALL_APPS,
    APP_ID_PATTERN,
    APP_OPTIONS,
    CLIENT_NAME_PATTERN,
    DEFAULT_HOST,
    DEFAULT_INVALIDATION_BURST,
    DEFAULT_INVALIDATIONS_PER_DAY,
    DEFAULT_INVALIDATIONS_PER_MINUTE,
    DEFAULT_PORT,
    DEFAULT_REQUEST_TIMEOUT,
    AppConfig,
    ClientConfig,
    ConfigError,
    ServerConfig,
)

__all__ = ["ConfigReader"]

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_SOURCES = ("classic", "stable", "wecom")
_APP_KEYS = frozenset({"appid", "id", "secret_env", "secret_file", "tickets", *APP_OPTIONS})
_SERVER_KEYS = frozenset(
    {
        "host",
        "port",
        "store",
        "ssl_certfile",
        "ssl_keyfile",
        "invalidations_per_minute",
        "invalidation_burst",
        "invalidations_per_day",
        "request_timeout",
        "public_metrics",
    }
)
_CLIENT_KEYS = frozenset({"name", "key_sha256", "apps"})
_TOP_KEYS = frozenset({"server", "apps", "clients"})

logger = logging.getLogger("wxauth.server")


class ConfigReader:
    """Walks the parsed TOML, checking each value where it is found."""

    def __init__(self, origin: str, base_dir: Path, environ: Mapping[str, str] | None) -> None:
        self.origin = origin
        self.base_dir = base_dir
        self.environ = os.environ if environ is None else environ

    def error(self, where: str, message: str) -> ConfigError:
        return ConfigError(f"{self.origin}: {where}: {message}")

    def read(self, raw: dict[str, Any]) -> ServerConfig:
        self._only(raw, _TOP_KEYS, "the top level", "tables")
        server = self._table(raw, "server")
        self._only(server, _SERVER_KEYS, "[server]", "keys")
        apps = tuple(self._app(i, t) for i, t in enumerate(self._array(raw, "apps")))
        if not apps:
            raise self.error("apps", "no [[apps]] table: the service would serve nothing")
        ids = [app.id for app in apps]
        for app_id in ids:
            if ids.count(app_id) > 1:
                raise self.error(
                    "apps", f"two apps have the id {app_id!r}; give them distinct `id`s"
                )
        self._one_table_per_app(apps)
        clients = tuple(
            self._client(i, t, set(ids)) for i, t in enumerate(self._array(raw, "clients"))
        )
        if not clients:
            raise self.error(
                "clients",
                "no [[clients]] table: every request would be refused "
                "(`wxauth keygen --name NAME` prints one)",
            )
        for attr in ("name", "key_sha256"):
            values = [getattr(c, attr) for c in clients]
            if len(set(values)) != len(values):
                raise self.error("clients", f"two clients have the same {attr}")
        certfile = self._opt_path(server, "ssl_certfile", "server")
        keyfile = self._opt_path(server, "ssl_keyfile", "server")
        if (certfile is None) != (keyfile is None):
            raise self.error("server", "give ssl_certfile and ssl_keyfile together")
        return ServerConfig(
            apps=apps,
            clients=clients,
            store=self._store(server),
            host=self._str(server, "host", "server", DEFAULT_HOST),
            port=self._port(server),
            ssl_certfile=certfile,
            ssl_keyfile=keyfile,
            invalidations_per_minute=self._number(
                server, "invalidations_per_minute", "server", DEFAULT_INVALIDATIONS_PER_MINUTE,
                positive=True,
            ),
            invalidation_burst=self._int(
                server, "invalidation_burst", "server", DEFAULT_INVALIDATION_BURST, low=1
            ),
            invalidations_per_day=self._int(
                server, "invalidations_per_day", "server", DEFAULT_INVALIDATIONS_PER_DAY, low=1
            ),
            request_timeout=self._number(
                server, "request_timeout", "server", DEFAULT_REQUEST_TIMEOUT, positive=True
            ),
            public_metrics=self._bool(server, "public_metrics", "server", False),
            base_dir=self.base_dir,
            origin=self.origin,
        )  # fmt: skip

    # -- tables ----------------------------------------------------------------------

    def _app(self, index: int, table: dict[str, Any]) -> AppConfig:
        where = f"apps[{index}]"
        if any(k.endswith("secret") for k in table):
            for key in table:
                if key.endswith("secret"):
                    table[key] = "***"  # not left in the frames of the error below
            raise self.error(
                f"{where}.secret",
                "inline secrets are refused (a config file is copied, committed and "
                'shared); use secret_env = "VARIABLE" or secret_file = "/path"',
            )
        self._only(table, _APP_KEYS, where, "keys")
        appid = self._str(table, "appid", where)
        app_id = self._str(table, "id", where, appid)
        if not APP_ID_PATTERN.fullmatch(app_id):
            raise self.error(
                f"{where}.id" if "id" in table else f"{where}.appid",
                "must be 1-64 letters, digits, '_' or '-' (it is a URL path segment); "
                "give an `id` for an appid that is not",
            )
        options: dict[str, Any] = {}
        for key, kind in APP_OPTIONS.items():
            if key not in table:
                continue
            if kind == "str":
                options[key] = self._str(table, key, where)
            elif kind == "int":
                options[key] = self._int(table, key, where, 0, low=0)
            else:
                options[key] = self._number(table, key, where, 0.0)
        source = options.get("source", "classic")
        if source not in _SOURCES:
            raise self.error(f"{where}.source", f"must be one of {', '.join(_SOURCES)}")
        api_base = options.get("api_base")
        if api_base is not None and not re.fullmatch(r"https?://[^\s/?#]+/?", api_base):
            raise self.error(
                f"{where}.api_base", "must be a scheme and host, like https://api.weixin.qq.com"
            )
        self._check_options(where, options)
        kinds = WECOM_TICKET_KINDS if source == "wecom" else TICKET_KINDS
        tickets = self._str_list(table, "tickets", where)
        for kind in tickets:
            if kind not in kinds:
                raise self.error(
                    f"{where}.tickets",
                    f"{kind!r} is not a ticket kind of a {source} app ({', '.join(kinds)})",
                )
        return AppConfig(
            id=app_id,
            appid=appid,
            secret=self._secret(table, where),
            options=options,
            tickets=tuple(dict.fromkeys(tickets)),
        )

    def _one_table_per_app(self, apps: tuple[AppConfig, ...]) -> None:
        """Two tables for one app would keep two managers fetching its token, each
        retiring the other's (and burning the quota); WeCom applications of one corp
        are told apart by their secrets."""
        seen: dict[tuple[str, ...], int] = {}
        for index, app in enumerate(apps):
            identity: tuple[str, ...] = ("wechat", app.appid)
            if app.options.get("source") == "wecom":
                identity = ("wecom", app.appid, secret_digest(app.secret))  # never shown
            first = seen.setdefault(identity, index)
            if first != index:
                raise self.error(
                    f"apps[{index}]",
                    f"the same app as apps[{first}] (appid {app.appid!r}"
                    + (" and secret" if identity[0] == "wecom" else "")
                    + "): its token would be fetched twice, each fetch retiring the "
                    "other's; give it one [[apps]] table",
                )

    def _check_options(self, where: str, options: dict[str, Any]) -> None:
        try:
            check_options(
                refresh_margin=options.get("refresh_margin", 300.0),
                timeout=options.get("timeout", 10.0),
                retries=options.get("retries", 0),
                backoff=options.get("backoff", 0.0),
                max_fetches_per_minute=options.get("max_fetches_per_minute"),
                max_fetches_per_day=options.get("max_fetches_per_day"),
                poll_interval=options.get("poll_interval", 5.0),
            )
        except ValueError as exc:
            message = str(exc).replace(", or None for no limit", " (omit it for the default)")
            raise self.error(where, message) from None
        if options.get("lock_timeout", 1.0) <= 0:
            raise self.error(f"{where}.lock_timeout", "must be > 0")

    def _secret(self, table: dict[str, Any], where: str) -> Secret:
        if ("secret_env" in table) == ("secret_file" in table):
            raise self.error(where, "give the AppSecret by exactly one of secret_env, secret_file")
        if "secret_env" in table:
            name = self._str(table, "secret_env", where)
            problem = secret_problem(self.environ.get(name, ""))
            if problem is not None:
                raise self.error(
                    f"{where}.secret_env", f"the environment variable {name} {problem}"
                )
            return Secret(self.environ[name].strip())
        path = self._path(table, "secret_file", where)
        secret, problem = read_secret_file(path)
        if secret is None:
            raise self.error(f"{where}.secret_file", str(problem))
        if problem is not None:
            logger.warning("%s: %s.secret_file: %s", self.origin, where, problem)
        return secret

    def _client(self, index: int, table: dict[str, Any], app_ids: set[str]) -> ClientConfig:
        where = f"clients[{index}]"
        if "key" in table:
            raise self.error(
                f"{where}.key",
                "the service keeps only the sha256 of a key: use key_sha256 "
                "(what `wxauth keygen` prints)",
            )
        self._only(table, _CLIENT_KEYS, where, "keys")
        name = self._str(table, "name", where)
        if not CLIENT_NAME_PATTERN.fullmatch(name):
            raise self.error(f"{where}.name", "must be 1-64 letters, digits, '_', '.' or '-'")
        digest = self._str(table, "key_sha256", where).lower()
        if not _SHA256_HEX.fullmatch(digest):
            raise self.error(f"{where}.key_sha256", "must be 64 hex digits (a sha256)")
        apps = self._str_list(table, "apps", where)
        for app_id in apps:
            if app_id != ALL_APPS and app_id not in app_ids:
                raise self.error(f"{where}.apps", f"names {app_id!r}, which no [[apps]] has")
        return ClientConfig(name=name, key_sha256=digest, apps=frozenset(apps))

    # -- values ----------------------------------------------------------------------

    def _only(self, table: dict[str, Any], allowed: frozenset[str], where: str, what: str) -> None:
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise self.error(
                where,
                f"unknown {what} {', '.join(map(repr, unknown))} "
                f"(known: {', '.join(sorted(allowed))})",
            )

    def _table(self, raw: dict[str, Any], key: str) -> dict[str, Any]:
        value = raw.get(key, {})
        if not isinstance(value, dict):
            raise self.error(key, f"must be a table ([{key}])")
        return value

    def _array(self, raw: dict[str, Any], key: str) -> list[dict[str, Any]]:
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
            raise self.error(key, f"must be an array of tables ([[{key}]])")
        return value

    def _str(self, table: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
        if key not in table and default is not None:
            return default
        value = table.get(key)
        if value is None:
            raise self.error(f"{where}.{key}", "is missing")
        if not isinstance(value, str) or not value.strip():
            raise self.error(f"{where}.{key}", "must be a non-empty string")
        return value

    def _str_list(self, table: dict[str, Any], key: str, where: str) -> list[str]:
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.error(f"{where}.{key}", "must be a list of strings")
        return value

    def _number(
        self, table: dict[str, Any], key: str, where: str, default: float, *, positive: bool = False
    ) -> float:
        value = table.get(key, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise self.error(f"{where}.{key}", "must be a number")
        if value < 0 or (positive and value == 0):
            raise self.error(f"{where}.{key}", "must be > 0" if positive else "must be >= 0")
        return float(value)

    def _int(self, table: dict[str, Any], key: str, where: str, default: int, *, low: int) -> int:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(f"{where}.{key}", "must be an integer")
        if value < low:
            raise self.error(f"{where}.{key}", f"must be >= {low}")
        return value

    def _bool(self, table: dict[str, Any], key: str, where: str, default: bool) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            raise self.error(f"{where}.{key}", "must be true or false")
        return value

    def _port(self, server: dict[str, Any]) -> int:
        port = self._int(server, "port", "server", DEFAULT_PORT, low=0)
        if port > 65535:
            raise self.error("server.port", "must be at most 65535")
        return port

    def _path(self, table: dict[str, Any], key: str, where: str) -> str:
        return str(self.base_dir / Path(self._str(table, key, where)).expanduser())

    def _opt_path(self, table: dict[str, Any], key: str, where: str) -> str | None:
        return self._path(table, key, where) if key in table else None

    def _store(self, server: dict[str, Any]) -> str:
        spec = self._str(server, "store", "server", "memory")
        if spec == "memory" or spec.startswith(("redis://", "rediss://", "unix://")):
            return spec
        if spec.startswith("file:"):
            rest = spec[len("file:") :]
            if rest.startswith("//"):
                netloc, _, path = rest[2:].partition("/")
                if netloc not in ("", "localhost") or not path:
                    raise self.error(
                        "server.store", "a file store is file:///absolute/dir or file:relative/dir"
                    )
                rest = "/" + path
            if not rest:
                raise self.error("server.store", "name the directory: file:///var/lib/wxauth")
            return "file:" + str(self.base_dir / Path(rest).expanduser())
        raise self.error(
            "server.store",
            "must be memory, file:///dir, or a redis://, rediss:// or unix:// URL, not "
            f"{redact_url_passwords(spec)!r}",
        )
