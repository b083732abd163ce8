"""The body of an invalidation request, ``{"access_token": "..."}`` or
``{"ticket": "..."}``: read up to :data:`MAX_BODY` bytes within the request timeout,
parsed strictly (one field, no duplicate key, no NaN), and the reported token handed
back wrapped in a :class:`~wxauth._secret.Secret`.
"""

from __future__ import annotations

import json
import re
from typing import Any

import anyio
from starlette.requests import ClientDisconnect, Request

from .._secret import Secret
from ._responses import RefusalError, error, hang_up

__all__ = ["MAX_BODY", "read_reported"]

#: Largest request body accepted (bytes); an invalidation body is well under 1 KiB.
MAX_BODY = 4096
#: A token or ticket as a client may report it: visible ASCII, at most 2048 characters.
_REPORTED = re.compile(r"[\x21-\x7e]{1,2048}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate keys")
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def read_reported(request: Request, field: str, timeout: float) -> Secret:
    """The ``{field: value}`` of the body, checked (wrapped: no frame of a failure
    after this shows the token in clear); else a 4xx. ``timeout``: the longest the
    body may take to arrive."""
    length = request.headers.get("content-length")
    if length is not None and not (length.isascii() and length.isdigit()):
        raise RefusalError(hang_up(error(400, "bad_request", "bad Content-Length")))
    too_large = f"the body must be at most {MAX_BODY} bytes"
    if length is not None and int(length) > MAX_BODY:
        raise RefusalError(hang_up(error(413, "body_too_large", too_large)))
    chunks: list[bytes] = []
    size = 0
    with anyio.move_on_after(timeout) as scope:
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BODY:
                    raise RefusalError(hang_up(error(413, "body_too_large", too_large)))
                chunks.append(chunk)
        except ClientDisconnect:
            # Gone before its body was whole: nobody to answer, nothing to log as an
            # error (a traceback would keep the half-read body in its frames).
            chunks.clear()
            raise RefusalError(
                error(400, "bad_request", "the client left before its body arrived")
            ) from None
    if scope.cancelled_caught:
        raise RefusalError(hang_up(error(400, "bad_request", "the body did not arrive in time")))
    want = f'the body must be a JSON object {{"{field}": "..."}}'
    try:
        data = json.loads(
            b"".join(chunks), object_pairs_hook=_no_duplicates, parse_constant=_no_constants
        )
    except (ValueError, RecursionError):
        raise RefusalError(error(400, "bad_request", f"malformed JSON: {want}")) from None
    if not isinstance(data, dict) or set(data) != {field}:
        raise RefusalError(error(400, "bad_request", f"{want}, with no other field"))
    if not isinstance(data[field], str) or not _REPORTED.fullmatch(data[field]):
        raise RefusalError(
            error(400, "bad_request", f"{field} must be a string of 1-2048 visible ASCII")
        )
    return Secret(data.pop(field))
