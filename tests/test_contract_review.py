"""Contract gaps found by an adversarial review of issues 2-5, now fixed."""

from __future__ import annotations

from pathlib import Path

import pytest

import wxauth
from wxauth._cli import main
from wxauth.testing import FakeWeChat

APPID, SECRET = "wx1234567890", "the-app-secret"


def test_cli_token_default_store_does_not_mix_api_bases(
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


def test_wecom_wrong_secret_does_not_blame_the_ip_whitelist(fake_wechat: FakeWeChat) -> None:
    fake_wechat.add_wecom_app("ww1", "corp-secret")
    with fake_wechat.serve() as url:
        manager = wxauth.TokenManager("ww1", "wrong-corp-secret", source="wecom", api_base=url)
        with pytest.raises(wxauth.CredentialError) as caught:
            manager.get_token()
    assert caught.value.errcode == 40001
    assert caught.value.ip is None
    assert "whitelist" not in str(caught.value)
