"""Deciding cheaply whether a WeChat answer reports a bad access token."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import requests

from ._errors import EXPIRED_ERRCODES

__all__ = ["expired_errcode", "is_textual", "mapping_expired_errcode"]

# WeChat error bodies are tiny and start with the errcode. A body larger than this is
# only searched at its start, so a 1 MB success answer costs a 1 KB look, not a parse.
_FULL_SCAN_LIMIT = 64 * 1024
_HEAD = 1024
_ERRCODE_RE = re.compile(rb'"errcode"\s*:\s*(-?\d+)')
_TEXTUAL = ("application/json", "text/json", "text/plain", "text/javascript")


def is_textual(content_type: str) -> bool:
    """Whether a Content-Type can carry a WeChat JSON error (JSON or plain text)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media in _TEXTUAL or media.endswith("+json")


def mapping_expired_errcode(data: Mapping[str, Any]) -> int | None:
    """The ``errcode`` of a decoded answer if it is one of ``EXPIRED_ERRCODES``."""
    raw = data.get("errcode")
    if raw is None or isinstance(raw, bool):
        return None
    try:
        code = int(raw)
    except (TypeError, ValueError):
        return None
    return code if code in EXPIRED_ERRCODES else None


def expired_errcode(response: requests.Response) -> int | None:
    """The expired/invalid-token errcode a response reports, or ``None``.

    Reads only JSON or text bodies (an image from ``media/get`` is never touched, so a
    streamed binary body stays unread), looks for ``"errcode"`` with a byte search, and
    decodes the JSON only when that search finds one of ``EXPIRED_ERRCODES``.
    """
    if not is_textual(response.headers.get("Content-Type", "")):
        return None
    content = response.content
    if not content:
        return None
    head = content if len(content) <= _FULL_SCAN_LIMIT else content[:_HEAD]
    for match in _ERRCODE_RE.finditer(head):
        if int(match.group(1)) in EXPIRED_ERRCODES:
            break
    else:
        return None
    try:
        data = json.loads(content)
    except ValueError:
        return None
    return mapping_expired_errcode(data) if isinstance(data, dict) else None
