"""``wxauth keygen`` and ``wxauth serve``: a key whose printed table works in a config,
help without the [server] extra, clear exits for a missing extra or a bad config, and
a real ``python -m wxauth serve`` subprocess over TLS (a throwaway CA from trustme)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme
from test_server_support import (
    APPID,
    KEY,
    PATIENCE,
    SECRET,
    SECRET_ENV,
    auth,
    make_config,
    new_fake,
    serve_app,
    wait_ready,
)

from wxauth._cli import build_parser, main
from wxauth.server import create_app, hash_key, parse_config
from wxauth.server._config import _toml

TOKEN = f"/v1/apps/{APPID}/token"
EXTRA_MODULES = ("starlette", "uvicorn", "prometheus_client")


def keygen(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[str, dict[str, object]]:
    """Run ``wxauth keygen``; return the key and the parsed [[clients]] table."""
    assert main(["keygen", *args]) == 0
    out = capsys.readouterr().out
    key, _, rest = out.partition("\n")
    return key, _toml().loads(rest)["clients"][0]


def test_keygen_prints_a_key_once_and_its_table(capsys: pytest.CaptureFixture[str]) -> None:
    """The first line is a new random key; the TOML below it names the client, the
    key's sha256 and its apps, and never the key itself."""
    key, table = keygen(capsys, "--name", "billing", "--app", APPID)
    assert key.startswith("wxk_")
    assert len(key) >= 40
    assert table == {"name": "billing", "key_sha256": hash_key(key), "apps": [APPID]}
    other, _ = keygen(capsys, "--name", "billing")
    assert other != key
    assert main(["keygen", "--name", "bad name"]) == 2
    assert "--name" in capsys.readouterr().err


def test_a_keygen_table_works_in_a_real_service(capsys: pytest.CaptureFixture[str]) -> None:
    """Paste keygen's table into a config: the service accepts that key, and only it."""
    assert main(["keygen", "--name", "fresh", "--app", APPID]) == 0
    key, _, block = capsys.readouterr().out.partition("\n")
    with new_fake() as fake, fake.serve() as api_base:
        text = f'[[apps]]\nappid = "{APPID}"\nsecret_env = "S"\napi_base = "{api_base}"\n{block}'
        config = parse_config(text, environ={"S": SECRET})
        assert config.clients[0].name == "fresh"
        with serve_app(create_app(config)) as url, httpx.Client(base_url=url) as client:
            wait_ready(client)
            assert client.get(TOKEN, headers=auth(key)).status_code == 200
            assert client.get(TOKEN, headers=auth(KEY)).status_code == 401


def test_help_works_without_the_server_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`wxauth --help` and `wxauth serve --help` need neither starlette nor uvicorn."""
    for name in EXTRA_MODULES:
        monkeypatch.setitem(sys.modules, name, None)
    for argv in (["--help"], ["serve", "--help"], ["keygen", "--help"]):
        with pytest.raises(SystemExit) as caught:
            build_parser().parse_args(argv)
        assert caught.value.code == 0
    out = capsys.readouterr().out
    for flag in ("serve", "keygen", "--config", "--host", "--port", "--ssl-certfile",
                 "--ssl-keyfile", "--name"):  # fmt: skip
        assert flag in out


def test_serve_without_the_extra_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No uvicorn: exit status 2 and the pip command."""
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert main(["serve", "--config", "nonexistent.toml"]) == 2
    assert "pip install 'wxauth[server]'" in capsys.readouterr().err


def test_serve_refuses_a_bad_config_or_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing file, a missing secret variable, half a TLS pair: exit 2 with one line
    naming the problem and no secret."""
    monkeypatch.delenv(SECRET_ENV, raising=False)
    assert main(["serve", "--config", str(tmp_path / "none.toml")]) == 2
    assert "cannot read the config file" in capsys.readouterr().err
    config = tmp_path / "svc.toml"
    config.write_text(f'[[apps]]\nappid = "{APPID}"\nsecret_env = "{SECRET_ENV}"\n')
    assert main(["serve", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"wxauth serve: {config}: apps[0].secret_env:")
    assert SECRET_ENV in err
    assert main(["serve", "--config", str(config), "--ssl-certfile", "c.pem"]) == 2
    assert "together" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path, Path]:
    """A throwaway CA and a certificate for 127.0.0.1 (files: cert chain, key)."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    directory = tmp_path_factory.mktemp("tls")
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    return ca, certfile, keyfile


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def test_tls_with_a_certificate(tls: tuple[trustme.CA, Path, Path]) -> None:
    """Given a certificate, the service speaks HTTPS: a client trusting the CA reads
    the token; one that does not refuses the connection."""
    ca, certfile, keyfile = tls
    with new_fake() as fake, fake.serve() as api_base:
        app = create_app(make_config(api_base))
        with serve_app(app, certfile=str(certfile), keyfile=str(keyfile)) as url:
            assert url.startswith("https://127.0.0.1:")
            with httpx.Client(base_url=url, verify=trusting(ca)) as client:
                wait_ready(client)
                assert client.get(TOKEN, headers=auth()).status_code == 200
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"{url}/healthz")  # the system's CAs do not know this one


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def spawned(
    tmp_path: Path, api_base: str, args: list[str], env: dict[str, str]
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """Run ``python ARGS`` with ``env`` added (``{config}`` in either replaced by the
    path of a config on ``api_base``); yield the process and its log file; kill it if
    still running."""
    config = tmp_path / "wxauth-server.toml"
    config.write_text(
        f'[[apps]]\nappid = "{APPID}"\nsecret_env = "{SECRET_ENV}"\napi_base = "{api_base}"\n\n'
        f'[[clients]]\nname = "billing"\nkey_sha256 = "{hash_key(KEY)}"\napps = ["{APPID}"]\n'
    )
    log = tmp_path / "serve.log"
    command = [sys.executable, *(a.replace("{config}", str(config)) for a in args)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={
                **os.environ,
                SECRET_ENV: SECRET,
                **{k: v.replace("{config}", str(config)) for k, v in env.items()},
            },
        )
    try:
        yield proc, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(PATIENCE)


def wait_process_ready(client: httpx.Client, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Poll /readyz until 200; fail with the log if the process dies or takes too long."""
    deadline = time.monotonic() + PATIENCE * 2
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


def stop_and_read(proc: subprocess.Popen[bytes], log: Path) -> str:
    """SIGTERM; a graceful shutdown (uvicorn re-raises the signal afterwards, so the
    status is -SIGTERM, as a service manager expects); the log."""
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(PATIENCE) in (0, -signal.SIGTERM)
    text = log.read_text()
    assert "Application shutdown complete" in text
    return text


def test_wxauth_serve_runs_uvicorn_over_tls_and_stops_cleanly(
    tmp_path: Path, tls: tuple[trustme.CA, Path, Path]
) -> None:
    """The console command serves HTTPS on 127.0.0.1 by default, answers the token to
    a valid key, logs one access line per request naming the client (never the key,
    the token or the secret), and shuts down gracefully on SIGTERM."""
    ca, certfile, keyfile = tls
    port = _free_port()
    url = f"https://127.0.0.1:{port}"
    args = ["-m", "wxauth", "serve", "--config", "{config}", "--port", str(port),
            "--ssl-certfile", str(certfile), "--ssl-keyfile", str(keyfile)]  # fmt: skip
    with (
        new_fake() as fake,
        fake.serve() as api_base,
        spawned(tmp_path, api_base, args, {}) as (proc, log),
    ):
        with httpx.Client(base_url=url, verify=trusting(ca), timeout=PATIENCE) as client:
            wait_process_ready(client, proc, log)
            token = client.get(TOKEN, headers=auth()).json()["access_token"]
            assert client.get(TOKEN).status_code == 401
        text = stop_and_read(proc, log)  # (an idle TLS connection would delay it)
    assert f"listening on {url} " in text  # 127.0.0.1 without --host
    assert f"client=billing method=GET path={TOKEN} status=200" in text
    assert "client=- method=GET" in text
    assert "status=401" in text
    for secret in (SECRET, KEY, token):
        assert secret not in text


def test_uvicorn_factory_app_from_env(tmp_path: Path) -> None:
    """`uvicorn --factory wxauth.server:app_from_env` with $WXAUTH_SERVER_CONFIG serves
    the same app, and its access lines reach stderr without a logging setup."""
    port = _free_port()
    args = ["-m", "uvicorn", "--factory", "wxauth.server:app_from_env", "--port", str(port),
            "--no-access-log"]  # fmt: skip
    with (
        new_fake() as fake,
        fake.serve() as api_base,
        spawned(tmp_path, api_base, args, {"WXAUTH_SERVER_CONFIG": "{config}"}) as (proc, log),
    ):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=PATIENCE) as client:
            wait_process_ready(client, proc, log)
            token = client.get(TOKEN, headers=auth()).json()["access_token"]
        text = stop_and_read(proc, log)
    assert f"client=billing method=GET path={TOKEN} status=200" in text
    assert SECRET not in text
    assert token not in text
