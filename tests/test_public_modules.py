"""The public modules: each ``__all__`` names what the module defines or re-exports,
every public name is documented, the building blocks for extenders live in documented
submodules, and the package root keeps every name it ever exported."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil

import pytest

import wxauth

PUBLIC_MODULES = [
    "wxauth",
    "wxauth.httpx",
    "wxauth.stores",
    "wxauth.sources",
    "wxauth.transport",
    "wxauth.testing",
    "wxauth.tickets",
    "wxauth.server",
    "wxauth.openplatform",
]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_lists_real_documented_names(name: str) -> None:
    """``__all__`` is sorted, has no duplicates, and each name exists and (classes and
    functions) carries a docstring."""
    module = importlib.import_module(name)
    exported = [n for n in module.__all__ if n != "__version__"]
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), n))
    assert len(set(exported)) == len(exported)
    for attr in exported:
        value = getattr(module, attr)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"{name}.{attr} has no docstring"


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_classes_and_functions_are_in_all(name: str) -> None:
    """Nothing public is defined in a public module without being exported."""
    module = importlib.import_module(name)
    defined = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", "") == name
    }
    assert defined <= set(module.__all__)


def test_building_blocks_live_in_public_submodules() -> None:
    """What people who extend wxauth subclass or implement has a documented home."""
    from wxauth import sources, stores, transport

    for name in ("TokenStore", "StoreLock", "LockContext", "poll_until", "MemoryStore"):
        assert name in stores.__all__
    for name in ("TokenSource", "FetchContext", "AppSecretSource", "TokenProvider"):
        assert name in sources.__all__
    for name in ("Transport", "RequestsTransport", "HTTPAnswer", "TransportError"):
        assert name in transport.__all__
    for module in (sources, stores, transport):
        assert inspect.getdoc(module)


def test_the_root_keeps_every_user_facing_name() -> None:
    """Names earlier releases exported from ``wxauth`` still import from it, and are the
    same objects as in their submodules."""
    from wxauth import sources, stores

    for name in (
        "TokenManager", "WxAuth", "with_access_token", "Token", "ManagerStats",
        "WxAuthError", "WeChatAPIError", "CredentialError", "QuotaError",
        "RefreshBudgetError", "TokenFetchError", "StoreError", "EXPIRED_ERRCODES",
        "raise_for_errcode", "TokenStore", "StoreLock", "MemoryStore", "FileStore",
        "RedisStore", "TokenSource", "FetchContext", "ClassicTokenSource",
        "StableTokenSource", "WeComTokenSource", "CallableTokenSource", "TokenProvider",
    ):  # fmt: skip
        assert name in wxauth.__all__, name
    assert wxauth.FileStore is stores.FileStore
    assert wxauth.FetchContext is sources.FetchContext


def _imports(module_name: str) -> set[str]:
    """The absolute names a module imports, anywhere in its code."""
    module = importlib.import_module(module_name)
    tree = ast.parse(inspect.getsource(module))
    package = module_name if hasattr(module, "__path__") else module_name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                prefix = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{prefix}.{base}" if base else prefix
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def test_no_module_imports_the_testing_package() -> None:
    """Nothing in the package but the command line's emulator subcommand (imported on
    use) reaches into ``wxauth.testing``, and the emulator's CLI does not import the
    ``wxauth`` command line: they no longer import each other."""
    package = importlib.import_module("wxauth")
    for info in pkgutil.walk_packages(package.__path__, "wxauth."):
        if info.name.startswith("wxauth.testing") or info.name in (
            "wxauth._cli",
            "wxauth.__main__",
        ):
            continue
        assert not any(name.startswith("wxauth.testing") for name in _imports(info.name)), info.name
    assert not any(name.startswith("wxauth._cli") for name in _imports("wxauth.testing._cli"))
