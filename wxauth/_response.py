"""Deciding cheaply whether a :mod:`requests` answer reports a bad access token.

The rule itself (which Content-Types, which errcodes, how much of a body to look at)
is :func:`wxauth._protocol.expired_errcode_in`; this module feeds it from a
``requests.Response`` without reading a streamed body whole."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import requests
from requests.exceptions import ChunkedEncodingError, ContentDecodingError
from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError

from ._protocol import (
    FULL_SCAN_LIMIT,
    HEAD_BYTES,
    body_may_report_expired,
    expired_errcode_in,
    is_textual,
)

__all__ = ["expired_errcode"]

_STREAM_CHUNK = 64 * 1024


class _PeekedRaw:
    """A response's ``raw`` whose first bytes wxauth has read: it serves them again,
    then the rest of the stream, so the caller reads the whole body as if untouched.

    Everything after the head is read with ``read(amt)`` on the original object (never
    mixed with urllib3's ``read_chunked``, which keeps its own chunk state); attributes
    other than the read methods (``close``, ``release_conn``, ``headers``, ...) are the
    original's."""

    def __init__(self, raw: Any, head: bytes, *, urllib3_like: bool, decoded: bool) -> None:
        self._raw = raw
        self._buffer = head
        self._urllib3_like = urllib3_like
        # The head of a compressed body was read decoded: the rest can only be read
        # decoded too (a raw gzip stream cut after its first bytes is no gzip stream).
        self._decoded = decoded

    def __getattr__(self, name: str) -> Any:
        if name == "stream" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._raw, name)

    def _decode_flag(self, decode_content: bool | None) -> bool | None:
        if not self._decoded:
            return decode_content
        wanted = decode_content if decode_content is not None else self._raw.decode_content
        if not wanted:
            raise RuntimeError(
                "wxauth read the first bytes of this compressed answer decoded, to look for "
                "an errcode: read it with decode_content=True (iter_content() does)"
            )
        return True

    def _read_raw(self, amt: int | None, decode_content: bool | None) -> bytes:
        if not self._urllib3_like:
            data = self._raw.read() if amt is None else self._raw.read(amt)
        else:
            data = self._raw.read(amt, decode_content=decode_content)
        return bytes(data or b"")

    def _at_end(self, position: object) -> bool:
        """After an empty read: whether the stream is over (urllib3 1.x may decode a
        few compressed bytes to nothing mid-stream; then it has moved on)."""
        if getattr(self._raw, "closed", True):
            return True
        tell = getattr(self._raw, "tell", None)
        return not callable(tell) or tell() == position

    def _position(self) -> object:
        tell = getattr(self._raw, "tell", None)
        return tell() if callable(tell) else None

    def read(self, amt: int | None = None, decode_content: bool | None = None, **_: Any) -> bytes:
        """Read like ``urllib3.HTTPResponse.read``: the peeked bytes first."""
        flag = self._decode_flag(decode_content)
        if amt is not None and amt < 0:
            amt = None
        if not self._buffer:
            return self._read_raw(amt, flag)
        if amt is None:
            data, self._buffer = self._buffer, b""
            return data + self._read_raw(None, flag)
        data, self._buffer = self._buffer[:amt], self._buffer[amt:]
        if len(data) < amt:
            data += self._read_raw(amt - len(data), flag)
        return data

    def read1(self, amt: int | None = None, decode_content: bool | None = None) -> bytes:
        """Like :meth:`read`, but returns what is at hand first."""
        if self._buffer:
            self._decode_flag(decode_content)
            size = len(self._buffer) if amt is None or amt < 0 else amt
            data, self._buffer = self._buffer[:size], self._buffer[size:]
            return data
        return self.read(amt, decode_content)

    def readinto(self, buffer: Any) -> int:
        """``io`` protocol: read into a writable buffer."""
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def stream(
        self, amt: int | None = _STREAM_CHUNK, decode_content: bool | None = None
    ) -> Iterator[bytes]:
        """Yield the body in pieces of at most ``amt`` bytes, as urllib3's ``stream``."""
        flag = self._decode_flag(decode_content)
        if amt == 0:
            return
        while self._buffer:
            size = len(self._buffer) if amt is None else amt
            data, self._buffer = self._buffer[:size], self._buffer[size:]
            yield data
        while True:
            position = self._position()
            data = self._read_raw(amt, flag)
            if data:
                yield data
            elif self._at_end(position):
                return

    def read_whole(self, limit: int) -> bytes | None:
        """The whole body if it is at most ``limit`` bytes, else ``None``; either way
        what was read stays to be served again."""
        while len(self._buffer) <= limit:
            position = self._position()
            data = self._read_raw(_STREAM_CHUNK, True if self._decoded else None)
            if data:
                self._buffer += data
            elif self._at_end(position):
                return self._buffer
        return None


def _peek(response: requests.Response) -> _PeekedRaw | None:
    """Read the first bytes of an unread body and put a :class:`_PeekedRaw` in place of
    ``response.raw``; ``None`` when there is no stream to read."""
    raw = response.raw
    if raw is None or not callable(getattr(raw, "read", None)):
        return None
    urllib3_like = hasattr(raw, "stream")
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    decoded = urllib3_like and encoding not in ("", "identity")
    # Errors surface as requests reports them from iter_content (and as they did when
    # the whole body was read here).
    try:
        head = raw.read(HEAD_BYTES, decode_content=True) if urllib3_like else raw.read(HEAD_BYTES)
    except ProtocolError as exc:
        raise ChunkedEncodingError(exc) from exc
    except DecodeError as exc:
        raise ContentDecodingError(exc) from exc
    except ReadTimeoutError as exc:
        raise requests.ConnectionError(exc) from exc
    peeked = _PeekedRaw(raw, bytes(head or b""), urllib3_like=urllib3_like, decoded=decoded)
    response.raw = peeked
    return peeked


def expired_errcode(response: requests.Response, *, stream: bool | None = None) -> int | None:
    """The expired/invalid-token errcode a response reports, or ``None``.

    Reads only JSON or text bodies (an image from ``media/get`` is never touched, so a
    streamed binary body stays unread), looks for ``"errcode"`` with a byte search, and
    decodes the JSON only when that search finds one of ``EXPIRED_ERRCODES``.

    A streamed body (``stream=True``; by default: a body not read yet) is not read
    whole: only its first KB is looked at, and read again by the caller, who still gets
    every byte. Only a streamed answer small enough to be an error body (64 KB) is
    read whole, and then kept as the response's content.
    """
    if not is_textual(response.headers.get("Content-Type", "")):
        return None
    # requests' own markers of a body nobody has read yet (``_content`` is False then).
    consumed = getattr(response, "_content_consumed", True)
    unread = response._content is False and not consumed  # type: ignore[comparison-overlap]
    if stream is None:
        stream = unread
    if stream and unread:
        peeked = _peek(response)
        if peeked is None or not body_may_report_expired(peeked._buffer):
            return None
        whole = peeked.read_whole(FULL_SCAN_LIMIT)
        if whole is None:
            return None  # too long for an error body: an answer that mentions one
        # Kept as the content, as requests keeps a body it has read.
        response._content = whole
        response._content_consumed = True  # type: ignore[attr-defined]
        content = whole
    else:
        content = response.content
    return expired_errcode_in(response.headers.get("Content-Type", ""), content)
