"""A module that needs an extra says which, when the extra is missing: each case runs a
fresh interpreter in which the dependency cannot be imported (``sys.modules[name] =
None`` makes ``import name`` fail, as on a machine without it)."""

from __future__ import annotations

import pytest
from test_emulator_frontends import run_python

CASES = [
    ("httpx", "import wxauth.httpx", "wxauth[httpx]"),
    ("anyio", "import wxauth.httpx", "wxauth[httpx]"),
    ("anyio", "import wxauth; wxauth.AsyncTokenManager", "wxauth[httpx]"),
    ("cryptography", "import wxauth.openplatform", "wxauth[openplatform]"),
    ("defusedxml", "import wxauth.openplatform", "wxauth[openplatform]"),
    ("cryptography", "import wxauth; wxauth.ComponentTokenManager", "wxauth[openplatform]"),
    (
        "anyio",
        "import wxauth.openplatform as op; op.AsyncComponentTokenManager",
        "wxauth[openplatform,httpx]",
    ),
]


@pytest.mark.parametrize(("missing", "code", "extra"), CASES)
def test_a_missing_extra_is_named(missing: str, code: str, extra: str) -> None:
    """ImportError, naming the pip extra that brings the missing package."""
    result = run_python(f"import sys; sys.modules[{missing!r}] = None\n{code}")
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError:"), result.stderr
    assert f"pip install '{extra}'" in last


def test_the_core_imports_without_any_extra() -> None:
    """import wxauth, WxAuth and a TokenManager need only requests, cachetools, wrapt."""
    blocked = ["httpx", "anyio", "cryptography", "defusedxml", "redis", "starlette"]
    code = (
        f"import sys\nfor name in {blocked!r}: sys.modules[name] = None\n"
        "import wxauth, wxauth.testing, wxauth.server\n"
        "wxauth.TokenManager('wx1234567890', 's'); wxauth.WxAuth('wx1234567890', 's')\n"
        "print('ok')"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
