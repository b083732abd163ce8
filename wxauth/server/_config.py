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

This module reads the file and parses the TOML. The dataclasses, :class:`ConfigError`
and the defaults are defined in ``_config_types``, the walk through the tables in
``_config_reader`` (an app's secret, from the environment or a file, in
``_config_secrets``); every name is importable from here.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._config_reader import ConfigReader
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
    return ConfigReader(origin, Path(base_dir) if base_dir else Path.cwd(), environ).read(raw)


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
