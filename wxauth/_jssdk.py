"""Signatures for the JS-SDK (``wx.config``, WeCom's ``wx.agentConfig``) and cards.

Pure functions, no I/O: the ticket comes from the caller, or from any object with a
``get_ticket()`` method and an ``appid`` attribute (a ticket manager), asked once per
config. A ticket never appears whole in what these functions raise or return.

The JS-SDK signature is the sha1 of ``jsapi_ticket=...&noncestr=...&timestamp=...&url=...``
(the fields sorted by name, the values raw, not URL-encoded) in lower-case hex, with the
page's URL up to its first ``#``. The card signature is the sha1 of the values sorted as
strings and concatenated without separators. The usual causes of the browser's "invalid
signature" are a stale ticket, a URL with its fragment left in, and a nonce or timestamp
that differs from the one passed to ``wx.config``: :func:`jssdk_config` builds the whole
dict from one nonce, one timestamp and one ticket so they cannot drift apart.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Sequence
from typing import Any, Protocol

__all__ = [
    "SupportsTicket",
    "agent_config",
    "card_signature",
    "jssdk_config",
    "jssdk_signature",
]

#: Characters of randomness in a generated nonce (URL-safe base64 of 12 random bytes).
NONCE_LENGTH = 16


class SupportsTicket(Protocol):
    """What the config builders need: the current ticket and the appid (or corpid) it
    belongs to. A ticket manager satisfies it."""

    @property
    def appid(self) -> str:
        """The appid (Official Account, Mini Program) or corpid (WeCom) of the ticket."""
        ...  # pragma: no cover - a protocol

    def get_ticket(self) -> str:
        """The current ticket."""
        ...  # pragma: no cover - a protocol


def _sha1_hex(text: str) -> str:
    # SHA-1 is what WeChat's signature protocol prescribes, not a choice made here.
    return hashlib.sha1(text.encode("utf-8")).hexdigest()  # noqa: S324


def _check_timestamp(timestamp: object) -> str:
    """The timestamp as the decimal string that is signed: a non-negative int, or a
    string of ASCII digits (signed as given)."""
    if isinstance(timestamp, bool) or not isinstance(timestamp, (int, str)):
        raise ValueError(
            f"timestamp must be an integer number of seconds, not {type(timestamp).__name__}"
        )
    if isinstance(timestamp, int):
        if timestamp < 0:
            raise ValueError(f"timestamp must not be negative, got {timestamp}")
        return str(timestamp)
    if not (timestamp.isascii() and timestamp.isdigit()):
        raise ValueError(f"timestamp must be an integer number of seconds, got {timestamp!r}")
    return timestamp


def _check_text(value: object, name: str) -> str:
    """``value`` if it is a non-empty string; the error never shows the value (it may
    be a ticket)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{name} is empty")
    return value


def _page_url(url: object) -> str:
    """The URL without its ``#fragment``, otherwise exactly as given."""
    page = _check_text(url, "url").partition("#")[0]
    if not page:
        raise ValueError("url is empty once its #fragment is dropped")
    return page


def jssdk_signature(ticket: str, noncestr: str, timestamp: int | str, url: str) -> str:
    """The JS-SDK signature of a page: the sha1, in lower-case hex, of
    ``jsapi_ticket=TICKET&noncestr=NONCE&timestamp=TS&url=URL``.

    ``url`` is the page's full URL; everything from its first ``#`` is dropped and the
    rest is signed exactly as given (not URL-encoded or decoded; non-ASCII characters are
    hashed as UTF-8). ``timestamp`` is an integer number of seconds, or its decimal
    string. The same function signs WeCom's ``wx.agentConfig`` with the agent ticket.

    Raises ``ValueError`` for an empty ticket, nonce or URL and for a timestamp that is
    not a non-negative integer, ``TypeError`` for a value that is not a string; no
    message shows the ticket.
    """
    ticket = _check_text(ticket, "ticket")
    fields = {
        "jsapi_ticket": ticket,
        "noncestr": _check_text(noncestr, "noncestr"),
        "timestamp": _check_timestamp(timestamp),
        "url": _page_url(url),
    }
    return _sha1_hex("&".join(f"{key}={fields[key]}" for key in sorted(fields)))


def card_signature(api_ticket: str, *values: str | int) -> str:
    """The card signature (``wx.chooseCard``, ``wx.addCard``): the sha1, in lower-case
    hex, of ``api_ticket`` and ``values`` converted to strings, sorted as strings and
    concatenated without separators.

    ``values`` are the timestamp, the nonce and, where the call uses them, card_id, code,
    openid, card_type, shop_id..., in any order. Raises ``ValueError`` for an empty
    ticket and ``TypeError`` for a value that is neither a str nor an int; no message
    shows the ticket.
    """
    parts = [_check_text(api_ticket, "api_ticket")]
    for position, value in enumerate(values, start=1):
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise TypeError(
                f"card_signature value {position} must be a str or an int, "
                f"not {type(value).__name__}"
            )
        parts.append(str(value))
    return _sha1_hex("".join(sorted(parts)))


def _nonce_and_timestamp(nonce: str | None, timestamp: int | None) -> tuple[str, int]:
    """The given nonce and timestamp, checked, or a fresh nonce and the current time."""
    if nonce is None:
        nonce = secrets.token_urlsafe(NONCE_LENGTH * 3 // 4)
    else:
        nonce = _check_text(nonce, "nonce")
    if timestamp is None:
        timestamp = int(time.time())
    elif isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise ValueError(f"timestamp must be an int, not {type(timestamp).__name__}")
    else:
        _check_timestamp(timestamp)
    return nonce, timestamp


def _names(names: Sequence[str], what: str) -> list[str]:
    """A list of API or tag names; a lone string would sign up one letter per entry."""
    if isinstance(names, str):
        raise TypeError(f"{what} must be a sequence of names, not a str")
    return list(names)


def _ticket_of(tickets: SupportsTicket) -> str:
    return _check_text(tickets.get_ticket(), "the ticket from get_ticket()")


def jssdk_config(
    tickets: SupportsTicket,
    *,
    url: str,
    js_api_list: Sequence[str] = (),
    open_tag_list: Sequence[str] = (),
    debug: bool = False,
    nonce: str | None = None,
    timestamp: int | None = None,
) -> dict[str, Any]:
    """The dict ``wx.config`` takes for the page at ``url``, signed with the current
    jsapi_ticket of ``tickets``:
    ``{"debug", "appId", "timestamp", "nonceStr", "signature", "jsApiList", "openTagList"}``
    (``openTagList`` only when ``open_tag_list`` is not empty).

    ``tickets`` is any object with ``get_ticket()`` and ``appid`` (a ticket manager); it
    is asked for the ticket once. ``nonce`` defaults to 16 fresh URL-safe random
    characters and ``timestamp`` to the current time in whole seconds. The URL's
    ``#fragment`` is dropped before signing (see :func:`jssdk_signature`).
    """
    page = _page_url(url)
    nonce, timestamp = _nonce_and_timestamp(nonce, timestamp)
    config: dict[str, Any] = {
        "debug": bool(debug),
        "appId": tickets.appid,
        "timestamp": timestamp,
        "nonceStr": nonce,
        "signature": jssdk_signature(_ticket_of(tickets), nonce, timestamp, page),
        "jsApiList": _names(js_api_list, "js_api_list"),
    }
    tags = _names(open_tag_list, "open_tag_list")
    if tags:
        config["openTagList"] = tags
    return config


def agent_config(
    tickets: SupportsTicket,
    *,
    url: str,
    agentid: str | int,
    js_api_list: Sequence[str] = (),
    nonce: str | None = None,
    timestamp: int | None = None,
) -> dict[str, Any]:
    """The dict WeCom's ``wx.agentConfig`` takes for the page at ``url``:
    ``{"corpid", "agentid", "timestamp", "nonceStr", "signature", "jsApiList"}``.

    ``tickets`` gives the application's ``agent_config`` ticket (``get_ticket()``) and
    the corpid (``appid``); the signature is computed like :func:`jssdk_signature`.
    ``nonce`` and ``timestamp`` default as in :func:`jssdk_config`.
    """
    page = _page_url(url)
    if isinstance(agentid, bool) or not isinstance(agentid, (str, int)) or agentid == "":
        raise ValueError("agentid must be a non-empty str or an int")
    nonce, timestamp = _nonce_and_timestamp(nonce, timestamp)
    return {
        "corpid": tickets.appid,
        "agentid": str(agentid),
        "timestamp": timestamp,
        "nonceStr": nonce,
        "signature": jssdk_signature(_ticket_of(tickets), nonce, timestamp, page),
        "jsApiList": _names(js_api_list, "js_api_list"),
    }
