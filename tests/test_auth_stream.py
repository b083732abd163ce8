"""WxAuth with ``stream=True``: a JSON answer is looked at through its first bytes only,
never buffered whole, and the caller still reads every byte of it; a small streamed
40001 answer is still healed. Over real HTTP on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from _loopback import serve

import wxauth

APPID = "wxstreamtest00001"
MB = 1024 * 1024
BIG = 50 * MB
PIECE = 64 * 1024
EXPIRED = b'{"errcode":40001,"errmsg":"invalid credential rid: 6792f178-0c5b09a3-00000001"}'
OK = b'{"errcode":0,"errmsg":"ok"}'


def big_json_pieces(total: int = BIG) -> Iterator[bytes]:
    """A JSON object of ``total`` bytes, made lazily in PIECE-sized parts."""
    head = b'{"errcode":0,"errmsg":"ok","items":["'
    tail = b'"]}'
    yield head
    left = total - len(head) - len(tail)
    n = 0
    while left > 0:
        size = min(PIECE, left)
        yield (b"%08d" % n * (size // 8 + 1))[:size]
        left -= size
        n += 1
    yield tail


def digest(pieces: Iterator[bytes]) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    for piece in pieces:
        h.update(piece)
        size += len(piece)
    return size, h.hexdigest()


EXPECTED = digest(big_json_pieces())


class Route:
    """What the server answers on a path: a body factory given the token it saw."""

    def __init__(
        self,
        body: Callable[[str], Iterator[bytes]],
        *,
        chunked: bool = True,
        gzipped: bool = False,
        length: int | None = None,
    ) -> None:
        self.body = body
        self.chunked = chunked
        self.gzipped = gzipped
        self.length = length
        self.tokens: list[str] = []


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    routes: dict[str, Route] = {}  # noqa: RUF012 - replaced per server

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        route = self.routes[parts.path]
        token = parse_qs(parts.query).get("access_token", [""])[0]
        route.tokens.append(token)
        pieces = route.body(token)
        if route.gzipped:
            pieces = _gzip(pieces)
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        if route.gzipped:
            self.send_header("Content-Encoding", "gzip")
        if route.chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in pieces:
                if piece:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            data = b"".join(pieces) if route.length is None else None
            self.send_header("Content-Length", str(len(data) if data else route.length))
            self.end_headers()
            if data is not None:
                self.wfile.write(data)
            else:
                for piece in route.body(token):
                    self.wfile.write(piece)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _gzip(pieces: Iterator[bytes]) -> Iterator[bytes]:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    for piece in pieces:
        out = compressor.compress(piece)
        if out:
            yield out
    yield compressor.flush()


@pytest.fixture
def server() -> Iterator[tuple[str, dict[str, Route]]]:
    """A loopback server answering each path from its :class:`Route`."""
    routes: dict[str, Route] = {}
    with serve(type("Handler", (_Handler,), {"routes": routes})) as url:
        yield url, routes


def issuing(*tokens: str) -> Callable[[], tuple[str, float]]:
    """A callable source handing out ``tokens`` in turn (the last one repeats)."""
    issued: list[str] = []

    def source() -> tuple[str, float]:
        token = tokens[min(len(issued), len(tokens) - 1)]
        issued.append(token)
        return token, 7200

    source.issued = issued  # type: ignore[attr-defined]
    return source


def session_for(url: str, source: Callable[[], tuple[str, float]]) -> requests.Session:
    session = requests.Session()
    session.auth = wxauth.WxAuth(APPID, source=source, api_base=url)
    return session


def peak_of(call: Callable[[], Any]) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    ("chunked", "gzipped"),
    [(True, False), (False, False), (True, True)],
    ids=["chunked", "content-length", "gzip-chunked"],
)
def test_a_large_streamed_json_answer_is_not_buffered(
    server: tuple[str, dict[str, Route]], chunked: bool, gzipped: bool
) -> None:
    """A 50 MB JSON answer with stream=True: the request returns having allocated far less
    than the body (peak < 5 MB), and iter_content still yields every byte, decoded."""
    url, routes = server
    routes["/cgi-bin/user/get"] = Route(
        lambda token: big_json_pieces(), chunked=chunked, gzipped=gzipped, length=BIG
    )
    session = session_for(url, issuing("T1"))
    session.get(url + "/cgi-bin/user/get", timeout=10).close()  # warm the pool and token
    response, peak = peak_of(
        lambda: session.get(url + "/cgi-bin/user/get", stream=True, timeout=30)
    )
    assert peak < 5 * MB, f"peak {peak / MB:.1f} MB while making a streamed request"
    assert response.history == []
    (chunks_peak_result, chunks_peak) = peak_of(lambda: digest(response.iter_content(PIECE)))
    assert chunks_peak_result == EXPECTED
    assert chunks_peak < 5 * MB
    response.close()


def test_the_peeked_head_is_read_again_through_raw_and_iter_lines(
    server: tuple[str, dict[str, Route]],
) -> None:
    """Reading the streamed answer by raw.read() (in small and large reads), by iter_lines
    or by json() gives exactly the body the server sent."""
    url, routes = server
    body = b'{"errcode":0,"items":[' + b",".join(b"%d" % i for i in range(5000)) + b"]}"
    routes["/a"] = Route(lambda token: iter([body[:700], body[700:3000], body[3000:]]))
    session = session_for(url, issuing("T1"))
    response = session.get(url + "/a", stream=True, timeout=10)
    first = response.raw.read(10)
    rest = response.raw.read()
    assert first + rest == body
    assert session.get(url + "/a", stream=True, timeout=10).json()["items"][-1] == 4999
    lines = list(session.get(url + "/a", stream=True, timeout=10).iter_lines(chunk_size=7))
    assert lines == [body]
    small = session.get(url + "/a", stream=True, timeout=10)
    assert b"".join(iter(lambda: small.raw.read(3), b"")) == body


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_a_small_streamed_40001_is_still_healed_once(
    server: tuple[str, dict[str, Route]], chunked: bool, gzipped: bool
) -> None:
    """stream=True: WeChat's small 40001 answer is recognised, the token refreshed once and
    the request re-sent; the rejected answer stays readable in history."""
    url, routes = server
    route = Route(
        lambda token: iter([EXPIRED if token == "T1" else OK]), chunked=chunked, gzipped=gzipped
    )
    routes["/cgi-bin/message/custom/send"] = route
    source = issuing("T1", "T2")
    response = session_for(url, source).get(
        url + "/cgi-bin/message/custom/send", stream=True, timeout=10
    )
    assert response.json() == json.loads(OK)
    assert route.tokens == ["T1", "T2"]
    assert source.issued == ["T1", "T2"]  # type: ignore[attr-defined]
    (rejected,) = response.history
    assert rejected.json()["errcode"] == 40001


def test_a_large_answer_that_starts_like_an_error_is_not_healed_and_stays_whole(
    server: tuple[str, dict[str, Route]],
) -> None:
    """A streamed answer whose first bytes say 40001 but which goes on past any error
    body's size is not an error: returned as it is, every byte readable."""
    url, routes = server
    body = EXPIRED[:-1] + b',"padding":"' + b"p" * (200 * 1024) + b'"}'
    routes["/b"] = Route(
        lambda token: iter([body[i : i + 1000] for i in range(0, len(body), 1000)])
    )
    source = issuing("T1", "T2")
    response = session_for(url, source).get(url + "/b", stream=True, timeout=10)
    assert response.history == []
    assert b"".join(response.iter_content(4096)) == body
    assert source.issued == ["T1"]  # type: ignore[attr-defined]


def test_an_undecoded_raw_read_after_a_gzip_peek_is_refused_clearly(
    server: tuple[str, dict[str, Route]],
) -> None:
    """The head of a gzip answer was read decoded; reading the rest undecoded cannot give
    a valid gzip stream, so it raises (as urllib3 does) instead of returning a torso."""
    url, routes = server
    body = OK[:-1] + b',"x":"' + b"y" * 5000 + b'"}'
    routes["/c"] = Route(lambda token: iter([body]), gzipped=True)
    response = session_for(url, issuing("T1")).get(url + "/c", stream=True, timeout=10)
    with pytest.raises(RuntimeError, match="decode_content"):
        response.raw.read(decode_content=False)
    assert b"".join(response.iter_content(1000)) == body
