"""What goes in and out of the emulator model: requests, replies and the call record.

A front end turns an HTTP request into a :class:`Request`, the model answers with a
:class:`Reply`, and every answered request is recorded as a :class:`Call`. The endpoint
families build an :class:`Outcome` (the reply plus what the record needs to know about
it) with the body helpers below, so every answer is encoded the way WeChat encodes it:
compact JSON, WeChat's or WeCom's ``Content-Type``, or an nginx HTML error page.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "COMPONENT_KINDS",
    "HTML",
    "TOKEN_KINDS",
    "WECHAT_JSON",
    "WECOM_JSON",
    "Call",
    "CallKind",
    "Outcome",
    "Reply",
    "Request",
    "TokenStatus",
    "dumps",
    "html_reply",
    "json_object",
    "normalize_path",
    "ok_body",
]

#: Which family answered a request: the three token endpoints, the ticket endpoints, the
#: Open Platform's component token, authorizer token and other component endpoints, or
#: any other path.
CallKind = Literal[
    "token",
    "stable_token",
    "wecom_token",
    "ticket",
    "component_token",
    "authorizer_token",
    "component_api",
    "api",
]
#: What the emulator knows of a token: ``"retired"`` answers 40001, ``"expired"`` 42001.
TokenStatus = Literal["valid", "retired", "expired", "unknown"]
#: The call kinds that are token fetches.
TOKEN_KINDS: frozenset[str] = frozenset(
    {"token", "stable_token", "wecom_token", "component_token", "authorizer_token"}
)
#: The call kinds of the Open Platform's ``/cgi-bin/component/`` endpoints.
COMPONENT_KINDS: frozenset[str] = frozenset(
    {"component_token", "authorizer_token", "component_api"}
)

#: ``Content-Type`` of api.weixin.qq.com answers.
WECHAT_JSON = "application/json; encoding=utf-8"
#: ``Content-Type`` of qyapi.weixin.qq.com answers.
WECOM_JSON = "application/json; charset=UTF-8"
#: ``Content-Type`` of an HTML page (an nginx error, a proxy, a captive portal).
HTML = "text/html; charset=utf-8"


def normalize_path(path: str) -> str:
    """``path`` with exactly one leading slash: ``cgi-bin/token`` is ``/cgi-bin/token``."""
    return "/" + path.lstrip("/")


@dataclass(frozen=True)
class Request:
    """One HTTP request as a front end hands it to :meth:`FakeWeChat.handle`."""

    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    client_ip: str = "127.0.0.1"

    @classmethod
    def from_target(cls, method: str, target: str, body: bytes, client_ip: str) -> Request:
        """Build from a URL or a request target (``/path?query``); first query value wins."""
        split = urlsplit(target)
        query: dict[str, str] = {}
        for key, value in parse_qsl(split.query, keep_blank_values=True):
            query.setdefault(key, value)
        return cls(method.upper(), normalize_path(split.path), query, body, client_ip)


@dataclass(frozen=True)
class Reply:
    """What a front end writes back.

    ``delay``: wait this long first (emulated latency). ``hang``: do not answer for this
    long (the in-process front end raises ``requests.exceptions.ReadTimeout`` at once
    instead); the loopback server then answers ``status``/``body`` (a 504 page).
    """

    status: int
    content_type: str
    body: bytes
    delay: float = 0.0
    hang: float | None = None

    def json(self) -> Any:
        """The body decoded as JSON (for tests of the model itself)."""
        return json.loads(self.body)


@dataclass(frozen=True, slots=True)
class Call:
    """One request the emulator answered; :attr:`FakeWeChat.calls` lists them in order.

    ``owner`` is the appid (or corpid) the request was for, when known. ``token`` is the
    token a token endpoint returned, or the ``access_token`` an API call presented.
    ``errcode`` is ``None`` when the answer had no JSON errcode (HTTP 5xx, HTML, hang, or a
    user-registered binary body); a token endpoint's success is errcode ``0``.
    ``fault`` names the injected fault that produced the answer, if any. Secrets are
    never recorded. Open Platform calls: ``owner`` is the component appid, except for
    ``kind="authorizer_token"``, whose owner is the authorizer appid; ``token`` is the
    component token presented or returned (``authorizer_token``: the one returned).
    """

    time: float
    method: str
    path: str
    kind: CallKind
    status: int
    errcode: int | None
    owner: str | None = None
    token: str | None = None
    client_ip: str = "127.0.0.1"
    fault: str | None = None

    @property
    def is_token_fetch(self) -> bool:
        """Whether this was a request to a token endpoint (classic, stable, WeCom, or the
        Open Platform's component and authorizer tokens)."""
        return self.kind in TOKEN_KINDS

    def __repr__(self) -> str:
        token = None if self.token is None else f"{self.token[:8]}...({len(self.token)})"
        return (
            f"Call({self.method} {self.path} kind={self.kind} owner={self.owner!r} "
            f"status={self.status} errcode={self.errcode} token={token}"
            + (f" fault={self.fault!r})" if self.fault else ")")
        )


@dataclass(frozen=True)
class Outcome:
    """An endpoint's answer, with the errcode, owner and token that go into its :class:`Call`."""

    reply: Reply
    errcode: int | None
    owner: str | None = None
    token: str | None = None


def dumps(payload: Any) -> bytes:
    """``payload`` as WeChat writes JSON: compact, UTF-8, non-ASCII kept as is."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def ok_body() -> bytes:
    """The body of a plain success: ``{"errcode":0,"errmsg":"ok"}``."""
    return dumps({"errcode": 0, "errmsg": "ok"})


def json_object(request: Request) -> dict[str, Any] | None:
    """The request body as a JSON object, or ``None`` if it is not one (WeChat: 47001)."""
    try:
        body = json.loads(request.body or b"null")
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


_HTML_PAGE = (
    "<html><head><title>{status} {reason}</title></head><body>"
    "<center><h1>{status} {reason}</h1></center><hr><center>nginx</center>"
    "</body></html>"
)
_REASONS: Mapping[int, str] = {
    200: "OK",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Time-out",
}


def html_reply(status: int) -> Reply:
    """An nginx-style HTML page with HTTP ``status`` (what a gateway in front answers)."""
    page = _HTML_PAGE.format(status=status, reason=_REASONS.get(status, "Error"))
    return Reply(status, HTML, page.encode())
