"""examples/async_quickstart.py: the async story, under asyncio and trio, on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_async_quickstart_tells_its_story(backend: str) -> None:
    """100 cold tasks make 1 fetch, a retire costs 1 more and no failed call, the
    decorator works; exit 0, and neither the secret nor a full token is printed."""
    argv = [sys.executable, str(ROOT / "examples" / "async_quickstart.py")]
    result = subprocess.run(
        argv + (["--trio"] if backend == "trio" else []),
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "WeChat emulator on http://127.0.0.1:" in out
    assert "100 calls ok; token fetches: 1" in out
    assert "100 calls were answered 40001 and sent once more with a new token" in out
    assert "100 calls ok; token fetches: 2 (one more, for all of them)" in out
    assert "answer {'errcode': 0, 'errmsg': 'ok'}; token fetches: 2" in out
    assert "Done: every call succeeded, with two token fetches in all." in out
    assert "demo-app-secret" not in out + result.stderr
    assert result.stderr == ""
