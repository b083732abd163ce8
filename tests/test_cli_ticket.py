"""``wxauth ticket`` and ``wxauth sign``: a valid ticket, reused through the default
file store, and a ``wx.config`` whose signature verifies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import wxauth
from wxauth._cli import main
from wxauth.testing import FakeWeChat

APPID, SECRET = "wxcliticket0001", "ticket-cli-secret"
CORPID, CORPSECRET = "wwcliticket0001", "ticket-cli-corpsecret"
PAGE = "https://example.com/page?x=1&y=%E4%B8%AD"


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeWeChat, str]]:
    """The emulator over loopback, with this module's apps, and the default file store
    under ``tmp_path``; yields the emulator and its base URL."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("WECHAT_APPID", APPID)
    monkeypatch.setenv("WECHAT_APPSECRET", SECRET)
    with FakeWeChat() as emulator:
        emulator.add_app(APPID, SECRET)
        emulator.add_wecom_app(CORPID, CORPSECRET)
        with emulator.serve() as url:
            yield emulator, url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """``main(argv)``, which must succeed; its stdout, stripped."""
    status = main(list(argv))
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return captured.out.strip()


@pytest.mark.parametrize("kind", ["jsapi", "wx_card"])
def test_ticket_is_valid_and_reused_from_the_default_store(
    fake: tuple[FakeWeChat, str], tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two runs print the same valid ticket after one ticket fetch and one token fetch."""
    emulator, url = fake
    first = run(capsys, "ticket", "--kind", kind, "--api-base", url)
    second = run(capsys, "ticket", "--kind", kind, "--api-base", url)
    assert first == second == emulator.latest_ticket(APPID, kind=kind)
    assert emulator.ticket_status(first) == "valid"
    assert emulator.issued_tickets == [first]
    emulator.assert_token_fetches(1)
    assert any((tmp_path / "wxauth").iterdir())


def test_ticket_and_token_share_the_default_store(
    fake: tuple[FakeWeChat, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`wxauth token` then `wxauth ticket`: the ticket is fetched with the cached token."""
    emulator, url = fake
    token = run(capsys, "token", "--api-base", url)
    ticket = run(capsys, "ticket", "--api-base", url)
    assert emulator.token_status(token) == "valid"
    assert emulator.ticket_status(ticket) == "valid"
    emulator.assert_token_fetches(1)


def test_wecom_agent_config_ticket(
    fake: tuple[FakeWeChat, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """--source wecom --kind agent_config prints the application's agent ticket."""
    emulator, url = fake
    argv = ("ticket", "--source", "wecom", "--kind", "agent_config", "--api-base", url)
    creds = ("--appid", CORPID, "--secret", CORPSECRET)
    ticket = run(capsys, *argv, *creds)
    assert ticket == run(capsys, *argv, *creds)
    assert ticket == emulator.latest_ticket(CORPID, kind="agent_config")
    assert emulator.issued_tickets == [ticket]


def sign(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    """Run ``wxauth sign --url PAGE ARGV``; its output parsed as JSON."""
    config: dict[str, Any] = json.loads(run(capsys, "sign", "--url", PAGE + "#frag", *argv))
    return config


def assert_verifies(emulator: FakeWeChat, config: dict[str, Any], owner: str, kind: str) -> str:
    """The signature is jssdk_signature of PAGE with ``owner``'s latest ``kind`` ticket and
    the emulator accepts it; returns that ticket."""
    ticket = emulator.latest_ticket(owner, kind=kind)
    assert ticket is not None
    nonce, timestamp, signature = config["nonceStr"], config["timestamp"], config["signature"]
    assert signature == wxauth.jssdk_signature(ticket, nonce, timestamp, PAGE)
    assert emulator.check_jssdk_signature(PAGE, nonce, timestamp, signature, appid=owner, kind=kind)
    return ticket


def test_sign_prints_a_wx_config_whose_signature_verifies(
    fake: tuple[FakeWeChat, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`wxauth sign` prints JSON for wx.config, signed with the valid jsapi ticket; a
    second page reuses the ticket."""
    emulator, url = fake
    config = sign(capsys, "--api", "scanQRCode", "--api", "chooseImage", "--api-base", url)
    assert set(config) == {"debug", "appId", "timestamp", "nonceStr", "signature", "jsApiList"}
    assert (config["appId"], config["debug"]) == (APPID, False)
    assert config["jsApiList"] == ["scanQRCode", "chooseImage"]
    ticket = assert_verifies(emulator, config, APPID, "jsapi")
    json.loads(run(capsys, "sign", "--url", "https://example.com/other", "--api-base", url))
    assert emulator.issued_tickets == [ticket]


def test_sign_with_agentid_prints_a_wx_agent_config(
    fake: tuple[FakeWeChat, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """--source wecom --agentid N: wx.agentConfig signed with the agent_config ticket."""
    emulator, url = fake
    creds = ("--source", "wecom", "--appid", CORPID, "--secret", CORPSECRET, "--api-base", url)
    config = sign(capsys, "--agentid", "1000002", "--api", "selectExternalContact", *creds)
    assert set(config) == {"corpid", "agentid", "timestamp", "nonceStr", "signature", "jsApiList"}
    assert (config["corpid"], config["agentid"]) == (CORPID, "1000002")
    assert config["jsApiList"] == ["selectExternalContact"]
    assert_verifies(emulator, config, CORPID, "agent_config")


def test_unknown_kind_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """argparse refuses a kind it does not know: exit status 2 naming the choices."""
    with pytest.raises(SystemExit) as exc:
        main(["ticket", "--kind", "bogus", "--store", "memory"])
    assert exc.value.code == 2
    assert "jsapi" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["ticket", "--kind", "agent_config"],
        ["ticket", "--kind", "wx_card", "--source", "wecom"],
        ["sign", "--url", "https://example.com/", "--agentid", "1000002"],
        ["sign", "--url", "#only-a-fragment"],
    ],
    ids=["agent-config-needs-wecom", "no-wecom-card", "agentid-needs-wecom", "empty-url"],
)
def test_kind_and_source_mismatches_are_usage_errors(
    argv: list[str], fake: tuple[FakeWeChat, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit status 2, a clear message, nothing on stdout and no ticket fetched."""
    emulator, url = fake
    assert main([*argv, "--api-base", url]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"wxauth {argv[0]}: ")
    assert emulator.issued_tickets == []


def test_errors_show_neither_the_secret_nor_a_redis_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong secret exits 1 without echoing it; a bad --store exits 2 with its password
    masked."""
    password = "s3cretpw-ticket-77"
    monkeypatch.delenv("WECHAT_APPID", raising=False)
    monkeypatch.delenv("WECHAT_APPSECRET", raising=False)
    with FakeWeChat() as emulator:
        emulator.add_app(APPID, SECRET)
        with emulator.serve() as url:
            argv = ["--appid", APPID, "--secret", "not-the-secret-x", "--api-base", url]
            assert main(["ticket", *argv, "--store", "memory"]) == 1
            assert main(["sign", "--url", PAGE, *argv, "--store", "memory"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("CredentialError") == 2
    assert "not-the-secret-x" not in captured.err
    store = f"mysql://user:{password}@127.0.0.1/0"
    assert (
        main(["sign", "--url", PAGE, "--appid", APPID, "--secret", SECRET, "--store", store]) == 2
    )
    captured = capsys.readouterr()
    assert "***" in captured.err
    assert password not in captured.out + captured.err
    assert main(["ticket"]) == 2
    assert "WECHAT_APPID" in capsys.readouterr().err
