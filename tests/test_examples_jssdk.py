"""examples/jssdk_page.py: a JS-SDK page signed by wxauth, checked by the emulator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_jssdk_page_signs_pages_the_emulator_accepts() -> None:
    """The demo runs on loopback only, exits 0 and leaks neither secret nor ticket."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "jssdk_page.py")],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "WeChat emulator on http://127.0.0.1:" in out
    assert "JS-SDK page served on http://127.0.0.1:" in out
    assert "/share?from=timeline&isappinstalled=0" in out
    assert "4 pages signed; jsapi_ticket fetches: 1, access token fetches: 1" in out
    assert "4/4 signatures accepted by the emulator" in out
    assert "with a #fragment: accepted" in out
    assert "another query string: refused" in out
    assert "Summary: ticket fetched once, 4 pages signed, 4 signatures accepted" in out
    assert "demo-app-secret" not in out + result.stderr
    assert result.stderr == ""
