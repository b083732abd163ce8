"""The Python examples of docs/testing.md run as written."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest

from wxauth.testing import FakeWeChat

DOC = Path(__file__).resolve().parents[1] / "docs" / "testing.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)


def test_the_page_has_examples() -> None:
    """Guards the extraction below against a silently empty parametrization."""
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_doc_example_runs(block: str) -> None:
    """Each block defines test functions; they pass (fake_wechat given a fresh fake)."""
    namespace: dict[str, Any] = {}
    exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102 - our own docs
    tests = [f for name, f in namespace.items() if name.startswith("test_") and callable(f)]
    assert tests
    for func in tests:
        if "fake_wechat" in inspect.signature(func).parameters:
            with FakeWeChat() as fake:
                func(fake)
        else:
            func()
