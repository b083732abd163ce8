"""``wxauth token``: a valid token on stdout, reused across calls through the store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import wxauth
from wxauth._cli import main
from wxauth.testing import FakeWeChat

APPID, SECRET = "wxcli000000001", "cli-secret-value"


@pytest.fixture
def fake(fake_wechat: FakeWeChat) -> FakeWeChat:
    """The emulator, with this module's app registered."""
    fake_wechat.add_app(APPID, SECRET)
    return fake_wechat


def test_prints_the_token_and_reuses_it_from_the_file_store(
    fake: FakeWeChat, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two calls with one file store print the same token after one fetch."""
    store = f"file:{tmp_path / 'tokens'}"
    with fake.serve() as url:
        argv = ["token", "--appid", APPID, "--secret", SECRET, "--api-base", url, "--store", store]
        assert main(argv) == 0
        first = capsys.readouterr().out.strip()
        assert main(argv) == 0
        second = capsys.readouterr().out.strip()
    assert first == second == fake.latest_token(APPID)
    fake.assert_token_fetches(1)


def test_the_default_store_does_not_mix_api_bases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two emulators, same appid, default --store: each run prints a token its own
    emulator issued."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("WECHAT_APPID", APPID)
    monkeypatch.setenv("WECHAT_APPSECRET", SECRET)
    for _ in range(2):
        with FakeWeChat() as fake:
            fake.add_app(APPID, SECRET)
            with fake.serve() as url:
                assert main(["token", "--api-base", url]) == 0
            printed = capsys.readouterr().out.strip()
            assert fake.token_status(printed) == "valid"
            fake.assert_token_fetches(1)


def test_reads_credentials_from_the_environment_in_a_real_process(
    fake: FakeWeChat, tmp_path: Path
) -> None:
    """`python -m wxauth token` takes WECHAT_APPID/WECHAT_APPSECRET and prints only the token."""
    env = dict(os.environ, WECHAT_APPID=APPID, WECHAT_APPSECRET=SECRET)
    env["XDG_CACHE_HOME"] = str(tmp_path)  # the default file store lands here
    with fake.serve() as url:
        done = subprocess.run(
            [sys.executable, "-m", "wxauth", "token", "--api-base", url],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == fake.latest_token(APPID)
    assert any((tmp_path / "wxauth").iterdir())


def test_missing_credentials_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without appid/secret the command exits 2 and says what to set."""
    monkeypatch.delenv("WECHAT_APPID", raising=False)
    monkeypatch.delenv("WECHAT_APPSECRET", raising=False)
    assert main(["token", "--store", "memory"]) == 2
    assert "WECHAT_APPID" in capsys.readouterr().err


def test_wrong_secret_exits_1_without_showing_it(
    fake: FakeWeChat, capsys: pytest.CaptureFixture[str]
) -> None:
    """A refused secret gives exit status 1 and a CredentialError line without the secret."""
    with fake.serve() as url:
        argv = ["token", "--appid", APPID, "--secret", "not-the-secret", "--api-base", url]
        status = main([*argv, "--store", "memory"])
    captured = capsys.readouterr()
    assert status == 1
    assert captured.out == ""
    assert "CredentialError" in captured.err
    assert "not-the-secret" not in captured.err


def test_bad_store_spec_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown --store value exits 2 and names the accepted forms."""
    assert main(["token", "--appid", APPID, "--secret", SECRET, "--store", "mysql://x"]) == 2
    assert "redis://" in capsys.readouterr().err


# -- a redis:// store URL's password -------------------------------------------------------------

PASSWORD = "s3cretpw-7f2a91"


def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wxauth", *argv],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "url",
    [
        "redis://user:{pw}@127.0.0.1:{port}/0",
        "redis://:{pw}@127.0.0.1:{port}/0",
        "redis://127.0.0.1:{port}/0?password={pw}",
    ],
    ids=["user-and-password", "password-only", "password-in-query"],
)
def test_an_unreachable_redis_store_is_reported_without_its_password(url: str) -> None:
    """A real `wxauth token` against a closed loopback port: exit status 1, a clear
    StoreError naming the address, and the URL's password in neither stdout nor stderr
    (logging included)."""
    port = closed_port()
    store = url.format(pw=PASSWORD, port=port)
    done = run_cli(
        *("token", "--appid", APPID, "--secret", SECRET, "--store", store, "--timeout", "2")
    )
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    assert "StoreError" in done.stderr
    assert f"127.0.0.1:{port}" in done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    assert SECRET not in done.stdout + done.stderr


@pytest.mark.parametrize(
    "store",
    [
        f"redis:/user:{PASSWORD}@127.0.0.1/0",  # one slash: not a URL wxauth knows
        f"mysql://user:{PASSWORD}@127.0.0.1/0",
        f"redis+tls://:{PASSWORD}@127.0.0.1/0",
        f"postgres://db.example/0?password={PASSWORD}",
    ],
)
def test_a_store_spec_that_is_not_understood_is_shown_masked(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown --store form exits 2 naming the accepted forms; the spec is echoed with
    its password masked."""
    assert main(["token", "--appid", APPID, "--secret", SECRET, "--store", store]) == 2
    captured = capsys.readouterr()
    assert "redis://" in captured.err
    assert "***" in captured.err
    assert PASSWORD not in captured.out + captured.err


@pytest.mark.parametrize(
    "argv",
    [
        ["token", f"redis://user:{PASSWORD}@127.0.0.1:1/0"],  # --store forgotten
        ["token", "--store", f"redis://user:{PASSWORD}@127.0.0.1:1/0", "--bogus"],
        ["token", "--stroe", f"redis://user:{PASSWORD}@127.0.0.1:1/0"],
        ["token", "--source", f"redis://user:{PASSWORD}@127.0.0.1:1/0"],
    ],
    ids=["stray-argument", "unknown-option", "misspelt-option", "invalid-choice"],
)
def test_usage_errors_do_not_echo_a_url_password(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """argparse echoes arguments it does not understand; a URL's password is masked."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    captured = capsys.readouterr()
    if "redis://" in captured.err:  # echoed: then masked
        assert "redis://user:***@127.0.0.1:1/0" in captured.err
    assert PASSWORD not in captured.out + captured.err


def test_help_shows_no_password(capsys: pytest.CaptureFixture[str]) -> None:
    """--help next to a store URL prints the help only."""
    with pytest.raises(SystemExit) as exc:
        main(["token", "--store", f"redis://user:{PASSWORD}@127.0.0.1:1/0", "--help"])
    assert exc.value.code == 0
    captured = capsys.readouterr()
    assert "--store" in captured.out
    assert PASSWORD not in captured.out + captured.err


def test_an_unexpected_error_is_one_masked_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whatever a store raises beyond wxauth's own errors is reported in one line with
    the URL's password and the appsecret masked, and exit status 1."""
    import wxauth._cli_token as cli_token

    class Leaky(wxauth.MemoryStore):
        def get(self, key: str) -> None:  # type: ignore[override]
            raise RuntimeError(f"cannot use redis://user:{PASSWORD}@h/0 with {SECRET}")

    monkeypatch.setattr(cli_token, "open_store", lambda spec: Leaky())
    store = f"redis://user:{PASSWORD}@127.0.0.1:1/0"
    argv = ["token", "--appid", APPID, "--secret", SECRET, "--store", store]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "RuntimeError" in captured.err
    assert "Traceback" not in captured.err
    assert PASSWORD not in captured.out + captured.err
    assert SECRET not in captured.out + captured.err
