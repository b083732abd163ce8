"""The README's first command: examples/quickstart.py runs against the emulator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_tells_the_story_and_exits_0() -> None:
    """The demo runs on a machine without network and exits 0, leaking no secret."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for step in ("1. One token", "2. Another server", "3. Two hours", "4. A host", "5. A wrong"):
        assert step in out
    assert "CredentialError: WeChat errcode 40125" in out
    assert "demo-app-secret" not in out + result.stderr
    assert "not-the-secret" not in out + result.stderr
