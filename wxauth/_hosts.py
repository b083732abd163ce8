"""Which hosts get the access token: the API hosts of a manager's source, and the
ones a user adds. Pure functions on URLs, shared by the requests and httpx adapters."""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

__all__ = ["Origin", "api_origins", "parse_host", "token_origins", "url_origin"]

#: WeChat's API hosts: ``api.weixin.qq.com`` and its regional and backup domains.
_WECHAT_API_HOSTS = (
    "api.weixin.qq.com",
    "api2.weixin.qq.com",
    "sh.api.weixin.qq.com",
    "sz.api.weixin.qq.com",
    "hk.api.weixin.qq.com",
)
#: WeCom's API host.
_WECOM_API_HOST = "qyapi.weixin.qq.com"

#: ``(scheme, host, port)``: what must match for a request to get the token.
Origin = tuple[str, str, int]
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
#: Scheme and authority: everything before the path, query or fragment.
_PREFIX = re.compile(r"[^:/?#]+://[^/?#]*")


@functools.lru_cache(maxsize=64)
def _origin_of(scheme_and_authority: str) -> Origin | None:
    try:
        parts = urlsplit(scheme_and_authority)
        port = parts.port
    except ValueError:  # a port that is not a number, a malformed IPv6 literal
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")  # urlsplit lower-cases it
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    return scheme, host, _DEFAULT_PORTS[scheme] if port is None else port


def url_origin(
    url: str, _prefix: Callable[[str], re.Match[str] | None] = _PREFIX.match
) -> Origin | None:
    """The ``(scheme, host, port)`` a request to ``url`` goes to; ``None`` if it is
    not an http(s) URL."""
    # Only the part before the path is parsed, and cached: request URLs differ in
    # their queries, the origins they go to are few.
    match = _prefix(url)
    return None if match is None else _origin_of(match.group())


def parse_host(entry: object) -> Origin:
    """One ``extra_hosts`` entry: a host name (https, port 443) or an origin."""
    if not isinstance(entry, str):
        raise TypeError(f"extra_hosts entries must be str, not {type(entry).__name__}")
    text = entry.strip()
    url = text if "://" in text else f"https://{text}"
    shown = "an entry with user info" if "@" in text else repr(entry)
    problem = f"extra_hosts takes host names or scheme://host[:port] origins, not {shown}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValueError(problem) from None
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(problem)
    origin = _origin_of(f"{parts.scheme}://{parts.netloc}")
    if origin is None:
        raise ValueError(f"{problem} (the scheme must be http or https)")
    host = origin[1]
    if not _HOST_NAME.fullmatch(host):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(problem) from None
    return origin


def api_origins(source: object, api_base: str | None) -> frozenset[Origin]:
    """The origins whose requests get the token, from the source's ``api_base`` (or
    ``api_base``, for a source without one); WeChat's API hosts when neither is known."""
    base = getattr(source, "api_base", None)
    if not isinstance(base, str):
        base = api_base
    if base is None:
        hosts = (*_WECHAT_API_HOSTS, _WECOM_API_HOST)
        return frozenset(("https", host, 443) for host in hosts)
    origin = url_origin(base)
    if origin is None:
        raise ValueError("api_base must be an http:// or https:// URL")
    if origin == ("https", _WECHAT_API_HOSTS[0], 443):
        return frozenset(("https", host, 443) for host in _WECHAT_API_HOSTS)
    return frozenset({origin})


def token_origins(
    source: object, api_base: str | None, extra_hosts: Iterable[str] | str = ()
) -> frozenset[Origin]:
    """The origins whose requests get the token: :func:`api_origins` plus each
    ``extra_hosts`` entry (:func:`parse_host`)."""
    if isinstance(extra_hosts, str):
        extra_hosts = (extra_hosts,)
    return api_origins(source, api_base) | {parse_host(entry) for entry in extra_hosts}
