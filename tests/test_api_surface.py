"""The public surface: what ``wxauth`` exports, the signatures of the core API,
docstrings everywhere, and the ``py.typed`` marker."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import inspect
import types

import pytest
import requests

import wxauth

PUBLIC = [name for name in wxauth.__all__ if name != "__version__"]
EMPTY = inspect.Parameter.empty
KW_ONLY = inspect.Parameter.KEYWORD_ONLY
POS_OR_KW = inspect.Parameter.POSITIONAL_OR_KEYWORD


def test_all_names_exist_once() -> None:
    """Every name in __all__ resolves, and none is listed twice."""
    assert len(wxauth.__all__) == len(set(wxauth.__all__))
    for name in wxauth.__all__:
        assert hasattr(wxauth, name), name


def test_the_core_api_is_exported_from_the_package_root() -> None:
    """The manager, the requests auth, the decorator, the error tree, the expired
    errcodes and raise_for_errcode are all in ``wxauth.__all__``."""
    promised = {
        "TokenManager",
        "WxAuth",
        "with_access_token",
        "WxAuthError",
        "WeChatAPIError",
        "CredentialError",
        "QuotaError",
        "TokenFetchError",
        "EXPIRED_ERRCODES",
        "raise_for_errcode",
    }
    assert promised <= set(wxauth.__all__)


def test_wxauth_defined_public_names_are_all_in_all() -> None:
    """Every public object wxauth defines and the package root shows is exported."""
    stray = {
        name
        for name, value in vars(wxauth).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and getattr(value, "__module__", "").startswith("wxauth")
        and name not in wxauth.__all__
    }
    assert stray == set()


#: Exported names imported on first use: they need an extra (``httpx``, ``openplatform``).
LAZY = set(wxauth._LAZY)


def test_the_package_root_shows_only_its_exports() -> None:
    """No helper imported by __init__ (``version``, ``annotations``...) looks public;
    the names that need an extra are exported and resolve on first use."""
    public = {
        name
        for name, value in vars(wxauth).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public - LAZY == set(PUBLIC) - LAZY
    assert set(PUBLIC) >= LAZY
    for name in LAZY:
        assert getattr(wxauth, name).__module__.startswith("wxauth.")


def test_version_matches_the_installed_metadata() -> None:
    """__version__ is the distribution's version."""
    assert wxauth.__version__ == importlib.metadata.version("wxauth")


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_is_documented(name: str) -> None:
    """Classes and functions carry a docstring, and so do their public methods and
    properties (inherited docstrings count)."""
    obj = getattr(wxauth, name)
    if not (inspect.isclass(obj) or callable(obj)):
        return  # constants: documented with #: comments in their module
    assert inspect.getdoc(obj), f"{name} has no docstring"
    if not inspect.isclass(obj):
        return
    undocumented = []
    for attr, value in vars(obj).items():
        if attr.startswith("_"):
            continue
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if not (inspect.isfunction(value) or isinstance(value, property)):
            continue
        if not inspect.getdoc(getattr(obj, attr)):
            undocumented.append(attr)
    assert undocumented == [], f"{name}: {undocumented}"


def test_py_typed_is_shipped() -> None:
    """PEP 561 marker next to the code, so type checkers read wxauth's annotations."""
    marker = importlib.resources.files("wxauth").joinpath("py.typed")
    assert marker.is_file()
    assert marker.read_text().strip() in ("", "partial")


# -- signatures of the core API --------------------------------------------------------------


def parameters(func: object) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(func).parameters)  # type: ignore[arg-type]


def test_token_manager_signature() -> None:
    """TokenManager(appid, secret, *, api_base=..., store=None, session=None,
    refresh_margin=300.0, timeout=10.0, clock=None)."""
    params = parameters(wxauth.TokenManager)
    names = list(params)
    assert names[:2] == ["appid", "secret"]
    assert params["appid"].kind == POS_OR_KW
    assert params["secret"].kind == POS_OR_KW
    expected = {
        "api_base": "https://api.weixin.qq.com",
        "store": None,
        "session": None,
        "refresh_margin": 300.0,
        "timeout": 10.0,
        "clock": None,
    }
    for name, default in expected.items():
        assert params[name].kind == KW_ONLY, name
        assert params[name].default == default, name


def test_token_manager_methods() -> None:
    """get_token() -> str and invalidate(token) -> bool."""
    assert list(parameters(wxauth.TokenManager.get_token)) == ["self"]
    assert list(parameters(wxauth.TokenManager.invalidate)) == ["self", "token"]
    hints = wxauth.TokenManager.get_token.__annotations__
    assert hints["return"] in (str, "str")
    assert wxauth.TokenManager.invalidate.__annotations__["return"] in (bool, "bool")


def test_wxauth_signature() -> None:
    """WxAuth(appid=None, secret=None, *, manager=None, **manager_options), an AuthBase."""
    params = parameters(wxauth.WxAuth)
    assert params["appid"].default is None
    assert params["secret"].default is None
    assert params["manager"].kind == KW_ONLY
    assert params["manager"].default is None
    assert [p.kind for p in params.values()][-1] == inspect.Parameter.VAR_KEYWORD
    assert issubclass(wxauth.WxAuth, requests.auth.AuthBase)


def test_with_access_token_signature() -> None:
    """with_access_token(source, *, param="access_token")."""
    params = parameters(wxauth.with_access_token)
    assert list(params) == ["source", "param"]
    assert params["param"].kind == KW_ONLY
    assert params["param"].default == "access_token"


def test_wechat_api_error_signature() -> None:
    """WeChatAPIError(errcode, errmsg) positionally."""
    exc = wxauth.WeChatAPIError(45009, "reach max api daily quota limit")
    assert (exc.errcode, exc.errmsg, exc.rid) == (45009, "reach max api daily quota limit", None)


def test_raise_for_errcode_signature() -> None:
    """raise_for_errcode(obj) takes one argument."""
    assert len(parameters(wxauth.raise_for_errcode)) == 1


def test_managers_and_auths_are_token_providers() -> None:
    """TokenManager and WxAuth both satisfy the TokenProvider protocol."""
    manager = wxauth.TokenManager("wxsurface00000001", "surface-secret")
    assert isinstance(manager, wxauth.TokenProvider)
    assert isinstance(wxauth.WxAuth(manager=manager), wxauth.TokenProvider)
