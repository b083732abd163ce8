"""Every ```python block of README.md runs as written, with the network forbidden.

Conventions for README blocks (see the module constants):

- Each block is self-contained: it runs in a fresh namespace, in a temporary working
  directory, and may not rely on names defined by an earlier block.
- It runs inside ``FakeWeChat.intercept()``: requests to api.weixin.qq.com and
  qyapi.weixin.qq.com are answered by the emulator, loopback URLs (``fake.serve()``)
  pass through, and any other host raises ``ConnectionError``. The emulator knows the
  apps in ``APPS`` and ``WECOM_APPS``; any other appid gets WeChat's 40013. API paths
  the emulator does not model answer ``{"errcode": 0, "errmsg": "ok"}``.
- A block whose first line is ``# not-run`` is shown but not executed (use it for
  Redis, a real appid, or a fragment with ``...`` placeholders).
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from wxauth.testing import FakeWeChat

README = Path(__file__).resolve().parents[1] / "README.md"
#: Official Account / Mini Program credentials README examples may use.
APPS = {"wx1234567890": "the-app-secret"}
#: WeCom (corpid, corpsecret) pairs README examples may use.
WECOM_APPS = {"ww0123456789": "the-corp-secret"}
#: First line that keeps a block from being executed.
NOT_RUN = "# not-run"

_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```python[^\n]*\n(?P<code>.*?)^(?P=indent)```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the block's first code line in README.md
    code: str

    @property
    def runs(self) -> bool:
        first = next((ln.strip() for ln in self.code.splitlines() if ln.strip()), "")
        return first != NOT_RUN


def python_blocks(text: str) -> list[Block]:
    """The ```python blocks of a Markdown text (also indented ones, in lists)."""
    return [
        Block(text.count("\n", 0, m.start("code")) + 1, textwrap.dedent(m.group("code")))
        for m in _FENCE.finditer(text)
    ]


BLOCKS = python_blocks(README.read_text(encoding="utf-8")) if README.exists() else []


def test_readme_has_python_examples() -> None:
    """The README shows code, and at least one block is executed (guards the
    extraction below against a silently empty parametrization)."""
    assert [b for b in BLOCKS if b.runs], "README.md has no executable ```python block"


def test_block_extraction() -> None:
    """The extractor finds fenced python blocks, indented ones too, and nothing else."""
    text = "x\n```python\na = 1\n```\n```bash\nls\n```\n- item\n\n  ```python\n  b = 2\n  ```\n"
    assert python_blocks(text) == [Block(3, "a = 1\n"), Block(11, "b = 2\n")]
    assert not Block(1, "\n# not-run\nimport redis\n").runs


@pytest.mark.parametrize("block", BLOCKS, ids=[f"README.md:{b.line}" for b in BLOCKS])
def test_readme_block_runs(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The block runs without error against the emulator."""
    if not block.runs:
        pytest.skip(f"marked {NOT_RUN}")
    monkeypatch.chdir(tmp_path)
    # Line numbers in tracebacks point into README.md.
    code = compile("\n" * (block.line - 1) + block.code, str(README), "exec")
    with FakeWeChat() as fake:
        for appid, secret in APPS.items():
            fake.add_app(appid, secret)
        for corpid, corpsecret in WECOM_APPS.items():
            fake.add_wecom_app(corpid, corpsecret)
        with fake.intercept():
            exec(code, {"__name__": "readme_example"})  # noqa: S102 - our own README
