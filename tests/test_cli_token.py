"""``wxauth token``: a valid token on stdout, reused across calls through the store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from wxauth._cli import main
from wxauth.testing import FakeWeChat

APPID, SECRET = "wxcli000000001", "cli-secret-value"


@pytest.fixture
def fake() -> FakeWeChat:
    fake = FakeWeChat()
    fake.add_app(APPID, SECRET)
    yield fake
    fake.close()


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
