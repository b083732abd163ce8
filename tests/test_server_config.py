"""The token service's TOML config: what it accepts, and a clear ConfigError naming the
place for every mistake, never a secret's value."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_server_support import APPID, ENV, KEY, SECRET, SECRET_ENV, config_text, make_config

from wxauth import FileStore, MemoryStore, RedisStore, StoreError
from wxauth.server import ConfigError, create_app, hash_key, load_config, parse_config
from wxauth.server._service import open_store

API = "http://127.0.0.1:9"
MINIMAL = f"""
[[apps]]
appid = "{APPID}"
secret_env = "{SECRET_ENV}"

[[clients]]
name = "billing"
key_sha256 = "{hash_key(KEY)}"
apps = ["{APPID}"]
"""


def parse(text: str, **options: object) -> object:
    return parse_config(text, origin="svc.toml", environ=ENV, **options)  # type: ignore[arg-type]


def test_a_minimal_config_takes_the_defaults() -> None:
    """One app, one client: memory store, 127.0.0.1:8700, secret from the environment."""
    config = parse_config(MINIMAL, environ=ENV)
    assert (config.host, config.port, config.store) == ("127.0.0.1", 8700, "memory")
    (app,) = config.apps
    assert (app.id, app.appid, app.tickets, dict(app.options)) == (APPID, APPID, (), {})
    assert app.secret.get_secret_value() == SECRET
    assert SECRET not in repr(config)
    (client,) = config.clients
    assert client.name == "billing"
    assert client.may_read(APPID)
    assert not client.may_read("wx9")
    assert hash_key(KEY) not in repr(client)


def test_manager_options_tickets_and_ids_are_read() -> None:
    """TokenManager options pass through typed; an `id` renames an app in URLs."""
    text = config_text(API, app='refresh_margin = 600\nretries = 1\nsource = "stable"')
    config = parse_config(text.replace("[]", '["jsapi", "wx_card"]', 1), environ=ENV)
    app = config.apps[0]
    assert dict(app.options) == {
        "api_base": API,
        "backoff": 0.01,
        "refresh_margin": 600.0,
        "retries": 1,
        "source": "stable",
    }
    assert app.tickets == ("jsapi", "wx_card")
    renamed = parse_config(MINIMAL.replace('secret_env', 'id = "main"\nsecret_env').replace(
        f'apps = ["{APPID}"]', 'apps = ["main"]'), environ=ENV)  # fmt: skip
    assert renamed.apps[0].id == "main"
    assert renamed.app("main") is renamed.apps[0]


def test_the_secret_file_is_read_and_stripped(tmp_path: Path) -> None:
    """secret_file: read, trailing newline dropped; a relative path is the config
    file's neighbour."""
    (tmp_path / "secret").write_text(SECRET + "\n")
    (tmp_path / "svc.toml").write_text(
        MINIMAL.replace(f'secret_env = "{SECRET_ENV}"', 'secret_file = "secret"')
    )
    config = load_config(tmp_path / "svc.toml", environ={})
    assert config.apps[0].secret.get_secret_value() == SECRET
    assert config.origin == str(tmp_path / "svc.toml")


@pytest.mark.parametrize(
    ("change", "where", "says"),
    [
        (('secret_env = "WXAUTH_TEST_SECRET_MAIN"', f'secret = "{SECRET}"'),
         "apps[0].secret", "inline secrets are refused"),
        (('secret_env = "WXAUTH_TEST_SECRET_MAIN"', f'appsecret = "{SECRET}"'),
         "apps[0].secret", "inline secrets are refused"),
        (("WXAUTH_TEST_SECRET_MAIN", "NOT_SET_ANYWHERE"),
         "apps[0].secret_env", "NOT_SET_ANYWHERE is not set"),
        (('secret_env = "WXAUTH_TEST_SECRET_MAIN"', 'secret_file = "/nonexistent/s"'),
         "apps[0].secret_file", "cannot read /nonexistent/s"),
        (('secret_env = "WXAUTH_TEST_SECRET_MAIN"', ""), "apps[0]", "exactly one of"),
        (('appid = "wx1234567890"', 'appid = "wx1234567890"\nrefresh_margn = 5'),
         "apps[0]", "unknown keys 'refresh_margn'"),
        (('appid = "wx1234567890"', 'appid = "wx1234567890"\nrefresh_margin = "5"'),
         "apps[0].refresh_margin", "must be a number"),
        (('appid = "wx1234567890"', 'appid = "wx1234567890"\nrefresh_margin = -1'),
         "apps[0].refresh_margin", "must be >= 0"),
        (('appid = "wx1234567890"', 'appid = "wx1234567890"\nmax_fetches_per_day = 0'),
         "apps[0]", "max_fetches_per_day must be >= 1"),
        (('appid = "wx1234567890"', 'appid = "wx1234567890"\nsource = "remote"'),
         "apps[0].source", "must be one of"),
        (('appid = "wx1234567890"', 'appid = "wx1234567890"\napi_base = "ftp://x"'),
         "apps[0].api_base", "scheme and host"),
        (('appid = "wx1234567890"', 'appid = "wx1234567890"\ntickets = ["agent_config"]'),
         "apps[0].tickets", "not a ticket kind of a classic app"),
        (('appid = "wx1234567890"', 'appid = "wx/../12"'), "apps[0].appid", "URL path segment"),
        (("[[clients]]", "[server]\nstore = \"postgres://x\"\n\n[[clients]]"),
         "server.store", "must be memory"),
        (("[[clients]]", "[server]\nport = 70000\n\n[[clients]]"), "server.port", "at most"),
        (("[[clients]]", "[server]\ninvalidations_per_day = 0\n\n[[clients]]"),
         "server.invalidations_per_day", ">= 1"),
        (("[[clients]]", "[server]\nworkers = 4\n\n[[clients]]"), "[server]", "unknown keys"),
        (("[[clients]]", "[server]\nssl_certfile = \"c.pem\"\n\n[[clients]]"),
         "server", "together"),
        (("[[clients]]", "[metrics]\n\n[[clients]]"), "the top level", "unknown tables"),
        ((f'key_sha256 = "{hash_key(KEY)}"', f'key = "{KEY}"'), "clients[0].key", "key_sha256"),
        ((hash_key(KEY), "abc123"), "clients[0].key_sha256", "64 hex digits"),
        (('name = "billing"', 'name = "bill ing"'), "clients[0].name", "letters"),
        ((f'apps = ["{APPID}"]', 'apps = ["wx404"]'), "clients[0].apps", "no [[apps]] has"),
        (('name = "billing"', "name = 5"), "clients[0].name", "non-empty string"),
    ],
)  # fmt: skip
def test_mistakes_are_config_errors_naming_the_place(
    change: tuple[str, str], where: str, says: str
) -> None:
    """Each mistake: ConfigError with the file, the place and the reason, no secret."""
    old, new = change
    assert old in MINIMAL
    with pytest.raises(ConfigError) as caught:
        parse(MINIMAL.replace(old, new))
    message = str(caught.value)
    assert message.startswith(f"svc.toml: {where}"), message
    assert says in message
    assert SECRET not in message
    assert KEY not in message
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[[apps]\nappid = 1", "not valid TOML"),
        ("", "no [[apps]] table"),
        (MINIMAL.split("[[clients]]")[0], "no [[clients]] table"),
        (MINIMAL + MINIMAL.split("[[clients]]")[0], "two apps have the id"),
        (MINIMAL + "[[clients]]" + MINIMAL.split("[[clients]]")[1], "same name"),
        ("apps = 3", "array of tables"),
    ],
)
def test_whole_file_mistakes(text: str, says: str) -> None:
    """Syntax errors, nothing to serve, no client, duplicates: ConfigError."""
    with pytest.raises(ConfigError, match="svc.toml: .*" + says.replace("[", r"\[")):
        parse(text)


def test_a_missing_or_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    """load_config names the file it could not read."""
    with pytest.raises(ConfigError, match=r"cannot read the config file .*nope\.toml"):
        load_config(tmp_path / "nope.toml")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(tmp_path / "bin.toml")


def test_store_urls(tmp_path: Path) -> None:
    """memory, file:///abs, file:relative (to the config's directory), redis://:
    each opens the store it names."""
    stores = {
        "memory": MemoryStore,
        f"file://{tmp_path}/abs": FileStore,
        "file:rel": FileStore,
        "redis://127.0.0.1:1/0": RedisStore,
    }
    for spec, kind in stores.items():
        text = MINIMAL + f'\n[server]\nstore = "{spec}"\n'
        config = parse_config(text, environ=ENV, base_dir=tmp_path)
        store = open_store(config.store)
        assert isinstance(store, kind), spec
        store.close()
    assert (tmp_path / "abs").is_dir()
    assert (tmp_path / "rel").is_dir()
    with pytest.raises(ConfigError, match="file:///absolute/dir"):
        parse(MINIMAL + '\n[server]\nstore = "file://otherhost/x"\n')


def test_a_redis_url_password_never_shows_in_an_error() -> None:
    """A bad store value with a password in it is masked in the message."""
    with pytest.raises(ConfigError) as caught:
        parse(MINIMAL + '\n[server]\nstore = "redis+x://u:hunter2pass@h/0"\n')
    assert "hunter2pass" not in str(caught.value)


def test_a_store_that_cannot_open_stops_create_app(tmp_path: Path) -> None:
    """A file store on a path that is a file: StoreError from create_app, not later."""
    (tmp_path / "afile").write_text("x")
    config = parse_config(MINIMAL + f'\n[server]\nstore = "file://{tmp_path}/afile"\n', environ=ENV)
    with pytest.raises(StoreError, match="not a directory"):
        create_app(config)


def test_app_from_env_needs_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """app_from_env reads $WXAUTH_SERVER_CONFIG, and says so when it is unset."""
    from wxauth.server import app_from_env

    monkeypatch.delenv("WXAUTH_SERVER_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="WXAUTH_SERVER_CONFIG"):
        app_from_env()
    (tmp_path / "svc.toml").write_text(MINIMAL)
    monkeypatch.setenv("WXAUTH_SERVER_CONFIG", str(tmp_path / "svc.toml"))
    monkeypatch.setenv(SECRET_ENV, SECRET)
    app = app_from_env()
    assert app.state.service.config.apps[0].appid == APPID


def test_the_test_config_parses() -> None:
    """The config the other server tests use is valid (guards the helpers)."""
    config = make_config(API)
    assert [c.name for c in config.clients] == ["billing", "reports", "admin"]
    assert config.clients[2].all_apps
    assert os.environ.get(SECRET_ENV) is None  # secrets come from the test's mapping


def test_the_example_config_parses() -> None:
    """examples/wxauth-server.toml is a valid config, given its two secrets."""
    example = Path(__file__).resolve().parents[1] / "examples" / "wxauth-server.toml"
    environ = {"WECHAT_SECRET_MAIN": SECRET, "WECHAT_SECRET_SHOP": SECRET}
    config = load_config(example, environ=environ)
    assert (config.host, config.port) == ("127.0.0.1", 8700)
    assert [app.id for app in config.apps] == [APPID, "shop"]
    assert config.apps[0].tickets == ("jsapi",)
    assert config.clients[1].all_apps


def test_the_public_names_are_documented() -> None:
    """wxauth.server's __all__ names exist and carry docstrings."""
    import inspect

    import wxauth.server

    for name in wxauth.server.__all__:
        value = getattr(wxauth.server, name)
        assert inspect.getdoc(value), name


def test_importing_the_package_and_the_cli_needs_no_extra() -> None:
    """`import wxauth.server` and the command line load neither starlette, uvicorn nor
    prometheus_client (they load when the service is built)."""
    import subprocess
    import sys

    code = (
        "import sys, wxauth._cli, wxauth.server; wxauth._cli.build_parser();"
        "print(sorted(m for m in ('starlette', 'uvicorn', 'prometheus_client')"
        " if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
