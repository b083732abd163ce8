"""The standalone emulator (``wxauth emulator`` / ``python -m wxauth.testing``) and the
``fake_wechat`` pytest fixture."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from wxauth._cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def start_emulator(*args: str) -> tuple[subprocess.Popen[str], str, str]:
    """Start the emulator; return the process, its URL and its banner."""
    process = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    banner = [process.stdout.readline() for _ in range(3)]
    assert banner[0].startswith("wxauth emulator serving on http://127.0.0.1:"), banner
    return process, banner[0].split()[-1], "".join(banner)


def stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    process.terminate()
    out, err = process.communicate(timeout=10)
    return out, err


def test_parser_reads_apps_and_options() -> None:
    """emulator takes repeatable --app/--wecom ID:SECRET and numeric options."""
    args = build_parser().parse_args(
        [
            *("emulator", "--port", "0", "--app", "wx1:s:with:colons", "--app", "wx2:t"),
            *("--wecom", "ww1:cs", "--grace", "0", "--daily-quota", "5", "-v"),
        ]
    )
    assert args.command == "emulator"
    assert args.port == 0
    assert args.app == [("wx1", "s:with:colons"), ("wx2", "t")]
    assert args.wecom == [("ww1", "cs")]
    assert (args.grace, args.daily_quota, args.verbose) == (0.0, 5, True)


@pytest.mark.parametrize("bad", ["wx1", "wx1:", ":secret"])
def test_parser_rejects_a_malformed_app(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--app needs ID:SECRET."""
    with pytest.raises(SystemExit) as exc:
        main(["emulator", "--app", bad])
    assert exc.value.code == 2
    assert "expected ID:SECRET" in capsys.readouterr().err


def test_emulator_needs_an_app(capsys: pytest.CaptureFixture[str]) -> None:
    """Without any --app or --wecom the command explains and exits 2."""
    assert main(["emulator", "--port", "0"]) == 2
    assert "--app APPID:SECRET" in capsys.readouterr().err


def test_a_subcommand_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    """wxauth alone prints usage and exits 2."""
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2


def test_python_m_wxauth_testing_serves_until_terminated() -> None:
    """python -m wxauth.testing serves the registered apps and never prints the secret."""
    process, url, banner = start_emulator(
        "-m", "wxauth.testing", "--port", "0", "--app", "wx1:topsecret", "--wecom", "ww1:cs"
    )
    try:
        query = {"grant_type": "client_credential", "appid": "wx1", "secret": "topsecret"}
        body = requests.get(f"{url}/cgi-bin/token", params=query, timeout=5).json()
        wecom = requests.get(
            f"{url}/cgi-bin/gettoken", params={"corpid": "ww1", "corpsecret": "cs"}, timeout=5
        ).json()
    finally:
        out, err = stop(process)
    assert body["expires_in"] == 7200
    assert wecom["errcode"] == 0
    assert "topsecret" not in banner + out + err
    assert "apps: wx1, ww1 (WeCom) (secrets not shown)" in banner


def test_wxauth_emulator_verbose_logs_masked_request_lines() -> None:
    """wxauth emulator -v logs request lines to stderr with the secret masked."""
    code = "import sys; from wxauth._cli import main; sys.exit(main())"
    process, url, banner = start_emulator(
        "-c", code, "emulator", "--port", "0", "--app", "wx1:topsecret", "-v"
    )
    try:
        query = {"grant_type": "client_credential", "appid": "wx1", "secret": "topsecret"}
        requests.get(f"{url}/cgi-bin/token", params=query, timeout=5)
    finally:
        out, err = stop(process)
    assert "GET /cgi-bin/token?" in err
    assert "secret=***" in err
    assert "topsecret" not in banner + out + err


def test_emulator_reports_a_port_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    """A busy port is reported and exits 1."""
    from wxauth.testing import FakeWeChat

    with FakeWeChat().serve() as url:
        port = url.rsplit(":", 1)[1]
        assert main(["emulator", "--port", port, "--app", "wx1:s"]) == 1
    assert "cannot listen" in capsys.readouterr().err


def test_fake_wechat_fixture_gives_each_test_a_fresh_emulator(tmp_path: Path) -> None:
    """The pytest11 plugin's fake_wechat fixture yields a new FakeWeChat per test."""
    (tmp_path / "test_uses_fixture.py").write_text(
        """
import requests
from wxauth.testing import FakeWeChat

def test_one(fake_wechat):
    assert isinstance(fake_wechat, FakeWeChat)
    fake_wechat.add_app("wx1", "s")
    with fake_wechat.serve() as url:
        q = {"grant_type": "client_credential", "appid": "wx1", "secret": "s"}
        assert "access_token" in requests.get(url + "/cgi-bin/token", params=q).json()
    fake_wechat.assert_token_fetches(1)

def test_two(fake_wechat):
    fake_wechat.add_app("wx1", "s")  # would fail if the emulator were shared
    fake_wechat.assert_token_fetches(0)
"""
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"),
            # Works whether or not wxauth is installed (its entry point is named "wxauth").
            *("-p", "no:wxauth", "-p", "wxauth.testing._plugin"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--app", "wxdup1:first-secret", "--app", "wxdup1:second-secret"], "wxdup1"),
        (["--app", "wxdup2:same-secret", "--app", "wxdup2:same-secret"], "wxdup2"),
        (["--wecom", "wwdup3:corp-secret", "--wecom", "wwdup3:corp-secret"], "wwdup3"),
    ],
    ids=["app-two-secrets", "app-twice", "wecom-app-twice"],
)
def test_a_duplicate_app_is_a_usage_error(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same appid twice (or the same WeCom application twice) exits 2 with a message
    naming it, before any port is opened; no secret is shown."""
    assert main(["emulator", "--port", "0", *argv]) == 2
    err = capsys.readouterr().err
    assert named in err
    assert "twice" in err
    assert "secret" not in err.replace("APPID:SECRET", "").lower()


def test_python_m_wxauth_testing_refuses_a_duplicate_app() -> None:
    """The standalone module exits with status 2 on a duplicate --app, no traceback."""
    done = subprocess.run(
        [
            *(sys.executable, "-m", "wxauth.testing", "--port", "0"),
            *("--app", "wxdup9:first-secret", "--app", "wxdup9:other-secret"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "wxdup9" in done.stderr
    assert "Traceback" not in done.stderr
    assert "first-secret" not in done.stderr + done.stdout


class _StubServer:
    """Stands in for EmulatorServer: records the address, binds nothing, and stops at
    once as if Ctrl-C was pressed."""

    def __init__(self, fake: object, host: str, port: int, *, log: object = None) -> None:
        self.host = host
        self.url = f"http://{host}:8000"

    def serve_forever(self) -> None:
        raise KeyboardInterrupt


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10"])
def test_a_non_loopback_host_is_warned_about(
    host: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Binding anything but loopback prints a warning to stderr: the emulator hands out
    tokens to anyone who can reach it. (The server is a stub: nothing is bound.)"""
    import wxauth.testing._server as server_module

    monkeypatch.setattr(server_module, "EmulatorServer", _StubServer)
    assert main(["emulator", "--host", host, "--app", "wx1:topsecret"]) == 0
    captured = capsys.readouterr()
    assert "warning" in captured.err.lower()
    assert host in captured.err
    assert "anyone" in captured.err
    assert "topsecret" not in captured.out + captured.err


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "127.0.0.2"])
def test_a_loopback_host_is_not_warned_about(
    host: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Loopback addresses print no warning."""
    import wxauth.testing._server as server_module

    monkeypatch.setattr(server_module, "EmulatorServer", _StubServer)
    assert main(["emulator", "--host", host, "--app", "wx1:topsecret"]) == 0
    assert capsys.readouterr().err == ""


def test_the_real_server_reports_the_address_it_bound() -> None:
    """EmulatorServer.host is the address the socket is bound to (what the warning is
    decided on), here the loopback one 'localhost' resolves to."""
    from wxauth.testing import EmulatorServer, FakeWeChat

    with FakeWeChat() as fake, EmulatorServer(fake, "localhost", 0) as server:
        assert server.host in ("127.0.0.1", "::1")
