"""Every ```python block of README.md and of each docs/*.md page runs as written, offline.

Conventions for the blocks (see the module constants):

- Each block is self-contained: it runs in a fresh namespace, in a temporary working
  directory, with an empty default store (``wxauth.reset_default_store()``), and may not
  rely on names defined by an earlier block.
- It runs inside ``FakeWeChat.intercept()``: requests to api.weixin.qq.com and
  qyapi.weixin.qq.com are answered by the emulator, loopback URLs (``fake.serve()``)
  pass through, and any other host raises ``ConnectionError``. The emulator knows the
  apps in ``APPS`` and ``WECOM_APPS``; any other appid gets WeChat's 40013. API paths
  the emulator does not model answer ``{"errcode": 0, "errmsg": "ok"}``.
- Below ``requests``, sockets may resolve and connect to loopback addresses only, so a
  block that slipped past the interceptor fails instead of reaching the network.
- A block whose first line starts with ``# not-run`` is shown but not executed (use it
  for Redis, a real appid, or a fragment with ``...`` placeholders), and says why.
- A block that defines ``test_*`` functions (docs/testing.md) has them called after it
  ran, outside the interceptor; a ``fake_wechat`` parameter gets a fresh ``FakeWeChat``.
"""

from __future__ import annotations

import inspect
import ipaddress
import re
import socket
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import wxauth
from wxauth.testing import FakeWeChat

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
#: Official Account / Mini Program credentials examples may use.
APPS = {"wx1234567890": "the-app-secret"}
#: WeCom (corpid, corpsecret) pairs examples may use.
WECOM_APPS = {"ww0123456789": "the-corp-secret"}
#: First line that keeps a block from being executed.
NOT_RUN = "# not-run"
#: The commands a fresh user runs; CI runs them as written (.ci/run).
DEMO_COMMAND = (
    "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/python "
    "examples/quickstart.py"
)
TEST_COMMAND = (
    "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest"
)

_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```python[^\n]*\n(?P<code>.*?)^(?P=indent)```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
_LINK = re.compile(r"\]\((?P<target>[^)#\s]*)(?:#(?P<anchor>[^)\s]*))?\)")
_HEADING = re.compile(r"^#{1,6}[ \t]+(?P<title>.+?)[ \t]*$", re.MULTILINE)
_ANY_FENCE = re.compile(r"^[ \t]*```.*?^[ \t]*```[ \t]*$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the block's first code line in its page
    code: str

    @property
    def runs(self) -> bool:
        first = next((ln.strip() for ln in self.code.splitlines() if ln.strip()), "")
        return not first.startswith(NOT_RUN)


def python_blocks(text: str) -> list[Block]:
    """The ```python blocks of a Markdown text (also indented ones, in lists)."""
    return [
        Block(text.count("\n", 0, m.start("code")) + 1, textwrap.dedent(m.group("code")))
        for m in _FENCE.finditer(text)
    ]


def _page_name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


CASES = [
    pytest.param(page, block, id=f"{_page_name(page)}:{block.line}")
    for page in PAGES
    for block in python_blocks(page.read_text(encoding="utf-8"))
]


def _links(page: Path) -> set[tuple[Path, str | None]]:
    """The local files a page links to, resolved, each with the anchor it names."""
    text = _ANY_FENCE.sub("", page.read_text(encoding="utf-8"))
    return {
        ((page.parent / m["target"]).resolve() if m["target"] else page.resolve(), m["anchor"])
        for m in _LINK.finditer(text)
        if "://" not in m["target"] and not m["target"].startswith("mailto:")
    }


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings (code blocks left out)."""
    text = _ANY_FENCE.sub("", page.read_text(encoding="utf-8"))
    return {
        re.sub(r"[^\w\- ]", "", m["title"].lower()).replace(" ", "-")
        for m in _HEADING.finditer(text)
    }


def test_block_extraction() -> None:
    """The extractor finds fenced python blocks, indented ones too, and nothing else."""
    text = "x\n```python\na = 1\n```\n```bash\nls\n```\n- item\n\n  ```python\n  b = 2\n  ```\n"
    assert python_blocks(text) == [Block(3, "a = 1\n"), Block(11, "b = 2\n")]
    assert not Block(1, "\n# not-run\nimport redis\n").runs
    assert not Block(1, "# not-run: needs a Redis server\nimport redis\n").runs


def test_every_page_with_code_runs_some() -> None:
    """README.md and the docs pages show code, and it is executed (guards the
    extraction against a silently empty parametrization)."""
    assert DOCS.is_dir()
    assert len(PAGES) > 1
    running = {_page_name(c.values[0]) for c in CASES if c.values[1].runs}
    assert "README.md" in running
    assert "docs/testing.md" in running


def test_readme_keeps_the_two_commands() -> None:
    """The demo and the test commands a fresh user runs (and CI runs) are in the README
    exactly as written."""
    text = README.read_text(encoding="utf-8")
    assert DEMO_COMMAND in text
    assert TEST_COMMAND in text


def test_readme_and_index_link_every_docs_page() -> None:
    """README.md and docs/index.md link every docs page, and every local link (and the
    heading it points to) exists."""
    pages = {p.resolve() for p in DOCS.glob("*.md")}
    index = DOCS / "index.md"
    assert pages - {index.resolve()} <= {target for target, _ in _links(index)}
    assert pages <= {target for target, _ in _links(README)}
    for page in PAGES:
        broken = sorted(
            f"{target.name}#{anchor}" if anchor else target.name
            for target, anchor in _links(page)
            if not target.exists()
            or (anchor and target.suffix == ".md" and anchor not in _anchors(target))
        )
        assert not broken, f"{_page_name(page)} has broken links: {broken}"


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sockets may resolve and connect to loopback addresses only."""

    def is_loopback(host: object) -> bool:
        if host in (None, "localhost"):
            return True
        try:
            return ipaddress.ip_address(str(host).split("%", 1)[0]).is_loopback
        except ValueError:
            return False

    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not is_loopback(host):
            raise OSError(f"docs examples may not reach the network (resolving {host!r})")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not is_loopback(address[0]):
            raise OSError(f"docs examples may not reach the network (connecting {address!r})")
        real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)


def _new_fake() -> FakeWeChat:
    fake = FakeWeChat()
    for appid, secret in APPS.items():
        fake.add_app(appid, secret)
    for corpid, corpsecret in WECOM_APPS.items():
        fake.add_wecom_app(corpid, corpsecret)
    return fake


@pytest.mark.usefixtures("loopback_only")
@pytest.mark.parametrize(("page", "block"), CASES)
def test_block_runs(
    page: Path, block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The block runs without error against the emulator, and so do the tests it defines."""
    if not block.runs:
        pytest.skip(f"marked {NOT_RUN}")
    monkeypatch.chdir(tmp_path)
    # Line numbers in tracebacks point into the page.
    code = compile("\n" * (block.line - 1) + block.code, str(page), "exec")
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    with _new_fake() as fake:
        wxauth.reset_default_store()
        with fake.intercept():
            exec(code, namespace)  # noqa: S102 - our own docs
    tests = [f for name, f in namespace.items() if name.startswith("test_") and callable(f)]
    for func in tests:
        wxauth.reset_default_store()
        if "fake_wechat" in inspect.signature(func).parameters:
            with FakeWeChat() as fresh:
                func(fresh)
        else:
            func()
