"""The token service's configuration: a TOML file, read and checked once at startup.

::

    [server]                      # every key optional
    host = "127.0.0.1"            # 8700 by default
    store = "redis://127.0.0.1:6379/0"   # memory | file:///var/lib/wxauth | redis://...

    [[apps]]
    appid = "wx1234567890"
    secret_env = "WECHAT_SECRET_MAIN"    # or secret_file = "/run/secrets/main"
    tickets = ["jsapi"]
    refresh_margin = 300                 # any TokenManager option, see APP_OPTIONS

    [[clients]]
    name = "billing"
    key_sha256 = "<64 hex digits: what `wxauth keygen` prints>"
    apps = ["wx1234567890"]              # or ["*"]: every app

Secrets come from the environment or a file, never from the TOML itself: a config file
is copied, committed and pasted into tickets. Every mistake is a :class:`ConfigError`
naming the file and the place in it (``apps[0].refresh_margin``), never a secret's value.
"""

from __future__ import annotations

import logging
import math
import os
import re
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._config import check_options
from .._redact import redact_url_passwords
from .._secret import Secret
from ..sources import secret_digest
from ..tickets import TICKET_KINDS, WECOM_TICKET_KINDS

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
    "load_config",
    "parse_config",
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
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
#: What an AppSecret (or WeCom corpsecret) looks like: one token of visible ASCII.
_SECRET_TEXT = re.compile(r"[\x21-\x7e]{1,4096}")
#: Longest secret_file read (an AppSecret is 32 characters).
_MAX_SECRET_FILE = 4096

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


def load_config(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> ServerConfig:
    """Read the TOML file at ``path``; secrets come from ``environ`` (default
    ``os.environ``) and the files it names. Raises :class:`ConfigError`."""
    path = Path(path)
    # The text is passed on, never named here: a ConfigError's frames (which error
    # trackers record) then hold no copy of a secret written inline by mistake.
    return parse_config(
        _read_text(path), origin=str(path), base_dir=path.resolve().parent, environ=environ
    )


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        del data
        raise ConfigError(f"{path}: not UTF-8 text") from None


def parse_config(
    text: str,
    *,
    origin: str = "<config>",
    base_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ServerConfig:
    """Parse a TOML text (``origin`` names it in errors; relative paths resolve
    against ``base_dir``, default the working directory). Raises :class:`ConfigError`."""
    toml = _toml()
    try:
        raw = toml.loads(text)
    except toml.TOMLDecodeError as exc:
        del text
        # tomllib's messages give a line and column, never the offending value.
        raise ConfigError(f"{origin}: not valid TOML: {exc}") from None
    del text  # see load_config: the parsed tables are scrubbed before an error
    return _Reader(origin, Path(base_dir) if base_dir else Path.cwd(), environ).read(raw)


def _toml() -> Any:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    try:  # pragma: no cover - Python 3.10
        import tomli
    except ImportError:  # pragma: no cover
        raise ConfigError(
            "reading the config needs tomli on Python 3.10: pip install 'wxauth[server]'"
        ) from None
    return tomli  # pragma: no cover


class _Reader:
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
            problem = _secret_problem(self.environ.get(name, ""))
            if problem is not None:
                raise self.error(
                    f"{where}.secret_env", f"the environment variable {name} {problem}"
                )
            return Secret(self.environ[name].strip())
        path = self._path(table, "secret_file", where)
        secret, problem = _read_secret_file(path)
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


def _secret_problem(value: str) -> str | None:
    """What is wrong with a secret's text (``None``: nothing). Never quotes it."""
    value = value.strip()
    if not value:
        return "is not set or empty"
    if not _SECRET_TEXT.fullmatch(value):
        return (
            "is not one line of visible ASCII (an AppSecret is 32 letters and digits): "
            "the wrong file or variable?"
        )
    return None


def _read_secret_file(path: str) -> tuple[Secret | None, str | None]:
    """The secret in the file at ``path`` and a warning, or ``None`` and what is wrong.

    Opened without blocking and read only if it is a regular file: a FIFO or a device
    (``/dev/stdin``, ``/dev/zero``) would hang the start or read junk. Symlinks are
    followed (Kubernetes mounts secrets through them). The content never reaches a
    message, and no local holds it in clear when an error is raised."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        return None, f"cannot read {path}: {exc.strerror}"
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None, f"{path} is not a regular file"
        if info.st_size > _MAX_SECRET_FILE:
            return None, f"{path} is too large for a secret"
        try:
            problem = _secret_problem(file.read(_MAX_SECRET_FILE + 1).decode("utf-8"))
        except UnicodeDecodeError:
            return None, f"{path} is not UTF-8 text"
        if problem is not None:
            return None, f"{path} " + problem.replace("is not set or empty", "is empty")
        file.seek(0)
        secret = Secret(file.read(_MAX_SECRET_FILE + 1).decode("utf-8").strip())
    warning = None
    if info.st_mode & stat.S_IROTH:
        warning = f"{path} is readable by every user of this host: chmod o-r it (0600 or 0640)"
    return secret, warning
