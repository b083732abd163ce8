"""What wxauth costs per call, with a null transport (no network at all).

Run: ``python benchmarks/overhead.py`` (about two minutes on 2 cores) or
``python benchmarks/overhead.py --quick`` (a few seconds, rougher figures).

Cases (each measured side by side in one run, in alternating blocks A B B A A B ...,
so that machine noise, CPU frequency changes and cache warmth hit both sides alike;
the figure is the median over blocks):

- ``requests-small`` / ``requests-1mb``: ``Session.get(url, params={"access_token": t})``
  against the same Session with ``auth=WxAuth(...)`` on a warm cache; the answer is a
  small JSON body, or a 1 MB ``user/get`` answer. Figure: time ratio WxAuth / bare.
- ``requests-file`` / ``requests-redis``: the same small request with the manager on a
  ``FileStore`` (a temporary directory) or a ``RedisStore`` (a ``redis-server`` of the
  script's own on a free loopback port; skipped with a note when there is none). The
  manager keeps a local copy of a shared store's token until its refresh point, so a
  warm request does not read the store. Figure: time ratio WxAuth / bare.
- ``requests-file-nocopy`` / ``requests-redis-nocopy`` (informational, no goal): the
  same with ``manager._local_copy = False``, which reads the store on every request as
  wxauth did before the local copy. They show what the local copy saves.
- ``httpx-small`` / ``httpx-1mb``: the same with an ``httpx.Client``:
  ``client.get(url, params={"access_token": t})`` against the same client with
  ``auth=wxauth.httpx.WxAuth(...)``, on a null httpx transport. ``httpx-async-small`` /
  ``httpx-async-1mb``: the same with an ``httpx.AsyncClient``, each block a loop of
  awaited requests under asyncio. Figure: time ratio WxAuth / bare.
- ``httpx-small-prebuilt`` (informational, no goal): the bare side sends a URL string
  that already holds the token (no ``params=``), the cheapest request by hand; the
  difference is what WxAuth adds in microseconds.
- ``decorator``: a function called with an explicit token against the same function
  under ``@with_access_token`` on a warm cache. Figure: microseconds added per call.
- ``get_token-Nt``: ``TokenManager.get_token()`` on a warm cache, called by N threads
  at once. Figure: wall-clock microseconds per call (all threads' calls together).

The transport is a requests adapter mounted on the Session: it builds a real
``requests.Response`` around an in-memory urllib3 ``HTTPResponse``, so ``Session.send``
reads ``.content`` from a stream exactly as it does for an answer off the wire. The
httpx one returns an ``httpx.Response`` whose body is an unread stream of 64 KiB chunks
(httpcore's read size), so the client reads it as it reads a socket's.

Prints a table, then one JSON line per case.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import pstats
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests
import urllib3
from _redis_server import redis_server
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers

from wxauth import FileStore, RedisStore, Token, TokenManager, TokenStore, WxAuth, with_access_token

if TYPE_CHECKING:
    import httpx

APPID = "wx0123456789abcdef"
SECRET = "0123456789abcdef0123456789abcdef"
#: A real token is about 140-160 characters of [A-Za-z0-9_-].
TOKEN = ("86_Ab3dEf6hIjKlMn0pQrStUvWxYz-1234567890_" * 4)[:157]
URL = "https://api.weixin.qq.com/cgi-bin/user/get"
JSON_TYPE = "application/json; encoding=utf-8"


def small_body() -> bytes:
    """A ``user/info``-sized success answer (a few hundred bytes)."""
    return json.dumps(
        {
            "subscribe": 1,
            "openid": "o6_bmjrPTlm6_2sgVt7hMZOPfL2M",
            "language": "zh_CN",
            "subscribe_time": 1382694957,
            "unionid": "o6_bmasdasdsad6_2sgVt7hMZOPfL",
            "remark": "",
            "groupid": 0,
            "tagid_list": [128, 2],
            "subscribe_scene": "ADD_SCENE_QR_CODE",
            "qr_scene": 98765,
            "qr_scene_str": "",
        },
        separators=(",", ":"),
    ).encode()


def user_get_body(size: int = 1_000_000) -> bytes:
    """A ``user/get`` answer of at least ``size`` bytes (openids are 28 characters)."""
    count = size // 31 + 1
    openids = [f"o6_bmjrPTlm6_{i:015d}" for i in range(count)]
    return json.dumps(
        {
            "total": 2 * count,
            "count": count,
            "data": {"openid": openids},
            "next_openid": openids[-1],
        },
        separators=(",", ":"),
    ).encode()


class NullAdapter(BaseAdapter):
    """A transport that answers every request with one canned body, built in memory.

    The answer is what ``HTTPAdapter.build_response`` makes of a urllib3 response that
    has not been read yet (``preload_content=False``), so ``Session.send`` streams the
    body into ``Response.content`` as it would from a socket.
    """

    def __init__(self, body: bytes, content_type: str = JSON_TYPE) -> None:
        super().__init__()
        self.body = body
        self.headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
        self.sent = 0

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        self.sent += 1
        raw = urllib3.HTTPResponse(
            body=io.BytesIO(self.body),
            headers=self.headers,
            status=200,
            reason="OK",
            preload_content=False,
            decode_content=True,
        )
        response = requests.Response()
        response.status_code = 200
        response.headers = CaseInsensitiveDict(raw.headers)
        response.encoding = get_encoding_from_headers(response.headers)
        response.raw = raw
        response.reason = "OK"
        response.url = request.url or ""
        response.request = request
        response.connection = self
        return response

    def close(self) -> None:
        pass


def warm_manager(store: TokenStore | None = None) -> TokenManager:
    """A manager of the default (classic) source, already holding a fresh token in
    ``store`` (default: the process-wide default store). Its ``api_base`` is a closed
    loopback port, so a fetch could never reach WeChat; a run checks
    ``stats.fetches == 0`` at the end to prove the cache stayed warm."""
    manager = TokenManager(APPID, SECRET, api_base="http://127.0.0.1:9", retries=0, store=store)
    manager.store.set(manager.key, Token.issued(TOKEN, 7200, time.time()))
    return manager


def bench_auth(manager: TokenManager) -> WxAuth:
    """``WxAuth`` on ``manager`` that puts the token on requests to ``URL``: WxAuth adds
    it only for its source's API hosts, and the manager's ``api_base`` is the closed
    loopback port, so WeChat's host is named in ``extra_hosts``."""
    return WxAuth(manager=manager, extra_hosts=("api.weixin.qq.com",))


def assert_warm(manager: TokenManager) -> None:
    assert manager.stats.fetches == 0, "the cache went cold during the run"


def null_session(body: bytes, trust_env: bool = False) -> tuple[requests.Session, NullAdapter]:
    """A Session whose every request is answered by a :class:`NullAdapter`.

    ``trust_env=False`` by default: with it on, each request scans ``os.environ`` for
    proxy settings twice, which costs more than the whole rest of ``Session.get`` on a
    machine with a large environment. Both sides would pay it alike, so leaving it out
    only makes the ratio stricter (``--trust-env`` measures with it).
    """
    session = requests.Session()
    session.trust_env = trust_env
    adapter = NullAdapter(body)
    # Both schemes: whatever the URL, nothing leaves this process.
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session, adapter


# -- timing --------------------------------------------------------------------------


def time_block(func: Callable[[], object], n: int) -> int:
    """Nanoseconds for ``n`` calls of ``func``, with the collector paused (as timeit)."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for _ in range(n):
            func()
        return time.perf_counter_ns() - start
    finally:
        gc.enable()


def side_by_side(
    bare: Callable[[], object], wrapped: Callable[[], object], n: int, blocks: int
) -> list[tuple[int, int]]:
    """``blocks`` pairs of (bare ns, wrapped ns) for ``n`` calls each; the order inside
    a pair flips every time (A B, B A, A B, ...) so neither side always runs first."""
    bare(), wrapped()  # warm-up: imports, caches, first allocations
    pairs = []
    for i in range(blocks):
        if i % 2 == 0:
            a = time_block(bare, n)
            b = time_block(wrapped, n)
        else:
            b = time_block(wrapped, n)
            a = time_block(bare, n)
        pairs.append((a, b))
    return pairs


@dataclass
class Result:
    case: str
    what: str
    metric: str  # "ratio" or "us_per_call"
    value: float
    goal: float | None
    detail: str

    @property
    def met(self) -> bool | None:
        return None if self.goal is None else self.value <= self.goal

    def json_line(self) -> str:
        record: dict[str, Any] = {
            "case": self.case,
            self.metric: round(self.value, 4 if self.metric == "ratio" else 3),
            "goal": self.goal,
            "met": self.met,
        }
        return json.dumps(record)


def ratio_case(
    name: str,
    body: bytes,
    n: int,
    blocks: int,
    trust_env: bool,
    *,
    store: TokenStore | None = None,
    local_copy: bool = True,
) -> Result:
    """Bare ``Session.get`` with the token in ``params`` against ``auth=WxAuth``.

    ``store``: where the manager keeps its token (default: the in-process default
    store). ``local_copy=False`` makes a shared store be read on every request, as
    before the manager kept a local copy of its token (an informational case)."""
    manager = warm_manager(store)
    if not local_copy:
        manager._local_copy = False
        manager._local.clear()
    auth = bench_auth(manager)
    session, _ = null_session(body, trust_env)
    params = {"access_token": TOKEN}

    def bare() -> object:
        return session.get(URL, params=params)

    def wrapped() -> object:
        return session.get(URL, auth=auth)

    check_same_request(bare(), wrapped(), body)
    pairs = side_by_side(bare, wrapped, n, blocks)
    ratios = [b / a for a, b in pairs]
    ratio = statistics.median(ratios)
    bare_us = statistics.median(a for a, _ in pairs) / n / 1000
    wx_us = statistics.median(b for _, b in pairs) / n / 1000
    assert_warm(manager)
    where = "" if store is None else f", {type(store).__name__}"
    if not local_copy:
        where += " read on every request (no local copy: the old code)"
    return Result(
        name,
        f"Session.get, {human_size(len(body))} JSON{where}: auth=WxAuth / params",
        "ratio",
        ratio,
        1.05 if local_copy else None,
        f"bare {bare_us:.1f} µs, WxAuth {wx_us:.1f} µs; "
        f"ratio spread {min(ratios):.3f}..{max(ratios):.3f} over {blocks} blocks of {n}",
    )


def check_same_request(bare: requests.Response, wrapped: requests.Response, body: bytes) -> None:
    """Both sides send the same URL and get the whole body: the comparison is fair."""
    assert bare.url == wrapped.url, (bare.url, wrapped.url)
    assert bare.content == body
    assert wrapped.content == body
    assert not wrapped.history


def decorator_case(n: int, blocks: int) -> Result:
    """A function with an explicit token against the same function decorated."""
    manager = warm_manager()

    def send_message(openid: str, text: str, *, access_token: str) -> dict[str, Any]:
        return {"errcode": 0, "errmsg": "ok"}

    decorated = with_access_token(manager)(send_message)

    def bare() -> object:
        return send_message("o6_bmjrPTlm6_2sgVt7hMZOPfL2M", "hello", access_token=TOKEN)

    def wrapped() -> object:
        return decorated("o6_bmjrPTlm6_2sgVt7hMZOPfL2M", "hello")

    pairs = side_by_side(bare, wrapped, n, blocks)
    added = [(b - a) / n / 1000 for a, b in pairs]
    assert_warm(manager)
    bare_us = statistics.median(a for a, _ in pairs) / n / 1000
    return Result(
        "decorator",
        "@with_access_token: µs added per call",
        "us_per_call",
        statistics.median(added),
        2.0,
        f"bare call {bare_us:.2f} µs; spread {min(added):.2f}..{max(added):.2f} µs "
        f"over {blocks} blocks of {n}",
    )


def get_token_case(threads: int, n: int, blocks: int, single: float | None) -> Result:
    """``get_token()`` on a warm cache from ``threads`` threads at once; wall-clock
    µs per call over all threads' calls. Goal: threads add at most 2x over one thread
    (the GIL serialises the calls; more would mean lock convoys)."""
    manager = warm_manager()
    get_token = manager.get_token
    per_thread = max(n // threads, 1)
    figures = []
    for _ in range(blocks):
        barrier = threading.Barrier(threads + 1)

        def work(barrier: threading.Barrier) -> None:
            barrier.wait()
            for _ in range(per_thread):
                get_token()

        workers = [threading.Thread(target=work, args=(barrier,)) for _ in range(threads)]
        for worker in workers:
            worker.start()
        gc.collect()
        start = time.perf_counter_ns()
        barrier.wait()
        for worker in workers:
            worker.join()
        figures.append((time.perf_counter_ns() - start) / (per_thread * threads) / 1000)
    assert_warm(manager)
    value = statistics.median(figures)
    goal = None if single is None else round(2 * single, 3)
    return Result(
        f"get_token-{threads}t",
        f"TokenManager.get_token(), warm, {threads} thread{'s' if threads > 1 else ''}",
        "us_per_call",
        value,
        goal,
        f"spread {min(figures):.2f}..{max(figures):.2f} µs over {blocks} blocks of "
        f"{per_thread * threads}" + ("" if goal is None else "; goal: at most 2x one thread"),
    )


def shared_store_cases(body: bytes, n: int, blocks: int, trust_env: bool) -> list[Result]:
    """The small request with the manager on a FileStore and on a RedisStore, each also
    without the local copy (informational). Redis is skipped, with a note, when no
    ``redis-server`` (or no redis package) is available."""
    results = []
    with tempfile.TemporaryDirectory(prefix="wxauth-overhead-") as tmp:
        for name, copy in (("requests-file", True), ("requests-file-nocopy", False)):
            store = FileStore(tmp)
            results.append(
                ratio_case(name, body, n, blocks, trust_env, store=store, local_copy=copy)
            )
            store.close()
    with redis_server() as url:
        if url is None:
            print(
                "requests-redis cases skipped: needs redis-server on PATH and the redis "
                "package (pip install 'wxauth[redis]')"
            )
            return results
        for name, copy in (("requests-redis", True), ("requests-redis-nocopy", False)):
            store = RedisStore.from_url(url)
            results.append(
                ratio_case(name, body, n, blocks, trust_env, store=store, local_copy=copy)
            )
            store.close()
    return results


def human_size(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size} B"


# -- httpx ---------------------------------------------------------------------------

#: httpcore reads a socket 64 KiB at a time; the null httpx transport hands out the body
#: in chunks of that size.
HTTPX_CHUNK = 64 * 1024


def httpx_available() -> bool:
    try:
        import httpx  # noqa: F401

        import wxauth.httpx  # noqa: F401
    except ImportError:
        return False
    return True


def null_httpx_transport(body: bytes, content_type: str = JSON_TYPE) -> Any:
    """An httpx transport (sync and async) that answers every request with ``body``.

    The answer is an ``httpx.Response`` around an unread byte stream that yields the body
    in :data:`HTTPX_CHUNK` pieces, with the headers as httpcore gives them (a list of byte
    pairs), so the client reads and joins it as it does an answer from a socket. The
    chunks are cut once, up front: a real transport's copy costs both sides alike."""
    import httpx

    chunks = tuple(body[i : i + HTTPX_CHUNK] for i in range(0, len(body), HTTPX_CHUNK))
    headers = [
        (b"Content-Type", content_type.encode()),
        (b"Content-Length", str(len(body)).encode()),
    ]

    class ChunkStream(httpx.SyncByteStream, httpx.AsyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            return iter(chunks)

        async def __aiter__(self) -> Any:
            for chunk in chunks:
                yield chunk

    class NullHttpxTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
        sent = 0

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            self.sent += 1
            return httpx.Response(200, headers=headers, stream=ChunkStream())

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            self.sent += 1
            return httpx.Response(200, headers=headers, stream=ChunkStream())

    return NullHttpxTransport()


def httpx_auth(manager: TokenManager) -> Any:
    """``wxauth.httpx.WxAuth`` on ``manager`` (and its async twin), for ``URL``'s host."""
    from wxauth.httpx import WxAuth as HttpxWxAuth

    return HttpxWxAuth(manager=manager, extra_hosts=("api.weixin.qq.com",))


def check_same_httpx_request(bare: httpx.Response, wrapped: httpx.Response, body: bytes) -> None:
    """Both sides send the same URL and read the whole body: the comparison is fair."""
    assert str(bare.request.url) == str(wrapped.request.url), (bare.request.url, wrapped.url)
    assert bare.content == body
    assert wrapped.content == body
    assert not wrapped.history


def httpx_ratio_case(
    name: str, body: bytes, n: int, blocks: int, *, prebuilt: bool = False
) -> Result:
    """``httpx.Client.get`` with the token in ``params`` (or, ``prebuilt``, already in
    the URL string) against ``auth=wxauth.httpx.WxAuth``, on the null transport."""
    import httpx

    manager = warm_manager()
    auth = httpx_auth(manager)
    client = httpx.Client(transport=null_httpx_transport(body))
    params = {"access_token": TOKEN}
    url_with_token = str(httpx.URL(URL, params=params))

    def bare() -> object:
        if prebuilt:
            return client.get(url_with_token)
        return client.get(URL, params=params)

    def wrapped() -> object:
        return client.get(URL, auth=auth)

    check_same_httpx_request(bare(), wrapped(), body)  # type: ignore[arg-type]
    pairs = side_by_side(bare, wrapped, n, blocks)
    client.close()
    assert_warm(manager)
    assert_warm(auth.async_manager)
    if prebuilt:
        return added_result(
            name,
            f"httpx.Client.get, {human_size(len(body))} JSON: auth=WxAuth against the token "
            "already in the URL string: µs added per request",
            pairs,
            n,
        )
    return ratio_result(
        name,
        f"httpx.Client.get, {human_size(len(body))} JSON: auth=WxAuth / params",
        pairs,
        n,
        1.05,
    )


async def async_time_block(func: Callable[[], Awaitable[object]], n: int) -> int:
    """:func:`time_block` for a coroutine function: ``n`` awaited calls, in one task."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for _ in range(n):
            await func()
        return time.perf_counter_ns() - start
    finally:
        gc.enable()


async def async_side_by_side(
    bare: Callable[[], Awaitable[object]],
    wrapped: Callable[[], Awaitable[object]],
    n: int,
    blocks: int,
) -> list[tuple[int, int]]:
    """:func:`side_by_side` for coroutine functions."""
    await bare(), await wrapped()
    pairs = []
    for i in range(blocks):
        if i % 2 == 0:
            a = await async_time_block(bare, n)
            b = await async_time_block(wrapped, n)
        else:
            b = await async_time_block(wrapped, n)
            a = await async_time_block(bare, n)
        pairs.append((a, b))
    return pairs


def httpx_async_ratio_case(name: str, body: bytes, n: int, blocks: int) -> Result:
    """``httpx.AsyncClient.get`` with the token in ``params`` against
    ``auth=wxauth.httpx.WxAuth`` (its async flow, the async manager), under asyncio."""
    import httpx

    manager = warm_manager()
    auth = httpx_auth(manager)
    params = {"access_token": TOKEN}

    async def run() -> list[tuple[int, int]]:
        async with httpx.AsyncClient(transport=null_httpx_transport(body)) as client:

            async def bare() -> object:
                return await client.get(URL, params=params)

            async def wrapped() -> object:
                return await client.get(URL, auth=auth)

            check_same_httpx_request(await bare(), await wrapped(), body)  # type: ignore[arg-type]
            return await async_side_by_side(bare, wrapped, n, blocks)

    pairs = asyncio.run(run())
    assert_warm(manager)
    assert_warm(auth.async_manager)
    return ratio_result(
        name,
        f"httpx.AsyncClient.get (asyncio), {human_size(len(body))} JSON: auth=WxAuth / params",
        pairs,
        n,
        1.05,
    )


def ratio_result(
    name: str, what: str, pairs: list[tuple[int, int]], n: int, goal: float | None
) -> Result:
    ratios = [b / a for a, b in pairs]
    bare_us = statistics.median(a for a, _ in pairs) / n / 1000
    wx_us = statistics.median(b for _, b in pairs) / n / 1000
    return Result(
        name,
        what,
        "ratio",
        statistics.median(ratios),
        goal,
        f"bare {bare_us:.1f} µs, WxAuth {wx_us:.1f} µs; "
        f"ratio spread {min(ratios):.3f}..{max(ratios):.3f} over {len(pairs)} blocks of {n}",
    )


def added_result(name: str, what: str, pairs: list[tuple[int, int]], n: int) -> Result:
    added = [(b - a) / n / 1000 for a, b in pairs]
    bare_us = statistics.median(a for a, _ in pairs) / n / 1000
    ratio = statistics.median(b / a for a, b in pairs)
    return Result(
        name,
        what,
        "us_per_call",
        statistics.median(added),
        None,
        f"bare {bare_us:.1f} µs, ratio {ratio:.3f}; spread {min(added):.1f}..{max(added):.1f} "
        f"µs over {len(pairs)} blocks of {n}",
    )


def httpx_cases(small: bytes, big: bytes, k: Callable[[int], int], blocks: int) -> list[Result]:
    """The httpx cases, or none (with a note) when httpx is not installed."""
    if not httpx_available():
        print("httpx cases skipped: needs httpx (pip install 'wxauth[httpx]')")
        return []
    return [
        httpx_ratio_case("httpx-small", small, k(2000), blocks),
        httpx_ratio_case("httpx-1mb", big, k(100), blocks),
        httpx_async_ratio_case("httpx-async-small", small, k(2000), blocks),
        httpx_async_ratio_case("httpx-async-1mb", big, k(100), blocks),
        httpx_ratio_case("httpx-small-prebuilt", small, k(2000), blocks, prebuilt=True),
    ]


def get_token_cases(n: int, blocks: int) -> list[Result]:
    """``get_token()`` from 1, 8 and 32 threads; the goal of the latter two is 2x the
    first."""
    single = get_token_case(1, n, blocks, None)
    return [single] + [get_token_case(t, n, blocks, single.value) for t in (8, 32)]


# -- profile -------------------------------------------------------------------------


def profile(body: bytes, n: int, client: str = "requests") -> None:
    """cProfile of the WxAuth side, sorted by own time: where the overhead goes.
    ``client``: ``requests``, ``httpx`` or ``httpx-async`` (under asyncio)."""
    manager = warm_manager()
    profiler = cProfile.Profile()
    if client == "requests":
        auth = bench_auth(manager)
        session, _ = null_session(body)
        profiler.enable()
        for _ in range(n):
            session.get(URL, auth=auth)
        profiler.disable()
    elif client == "httpx":
        import httpx

        with httpx.Client(transport=null_httpx_transport(body)) as http:
            auth = httpx_auth(manager)
            profiler.enable()
            for _ in range(n):
                http.get(URL, auth=auth)
            profiler.disable()
    else:
        import httpx

        async def run() -> None:
            async with httpx.AsyncClient(transport=null_httpx_transport(body)) as http:
                auth = httpx_auth(manager)
                profiler.enable()
                for _ in range(n):
                    await http.get(URL, auth=auth)
                profiler.disable()

        asyncio.run(run())
    assert_warm(manager)
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(25)


# -- main ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short, rougher run")
    parser.add_argument(
        "--trust-env",
        action="store_true",
        help="let requests read proxy settings from the environment on every request",
    )
    parser.add_argument(
        "--profile",
        choices=[
            "small",
            "1mb",
            "httpx-small",
            "httpx-1mb",
            "httpx-async-small",
            "httpx-async-1mb",
        ],
        help="print a cProfile of the WxAuth side of one case instead",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="GROUP",
        help="run only this group of cases: requests, requests-stores, httpx, decorator, "
        "get_token (repeatable)",
    )
    args = parser.parse_args(argv)
    small, big = small_body(), user_get_body()
    if args.profile:
        client, _, size = args.profile.rpartition("-")
        profile(small if size == "small" else big, 5000, client or "requests")
        return 0

    scale = 0.1 if args.quick else 1.0

    def k(count: int) -> int:
        return max(int(count * scale), 1)

    blocks = 10 if args.quick else 30
    groups: list[tuple[str, Callable[[], list[Result]]]] = [
        (
            "requests",
            lambda: [
                ratio_case("requests-small", small, k(2000), blocks, args.trust_env),
                ratio_case("requests-1mb", big, k(100), blocks, args.trust_env),
            ],
        ),
        ("requests-stores", lambda: shared_store_cases(small, k(1000), blocks, args.trust_env)),
        ("httpx", lambda: httpx_cases(small, big, k, blocks)),
        ("decorator", lambda: [decorator_case(k(50_000), blocks)]),
        ("get_token", lambda: get_token_cases(k(100_000), blocks // 3)),
    ]
    results: list[Result] = []
    for group, run in groups:
        if not args.only or any(group.startswith(prefix) for prefix in args.only):
            results += run()

    versions = f"requests {requests.__version__}"
    if httpx_available():
        import httpx

        versions += f", httpx {httpx.__version__}"
    print(f"wxauth overhead, Python {sys.version.split()[0]}, {versions}")
    print(f"{'case':<22} {'figure':>12} {'goal':>10} {'met':>5}  what")
    for r in results:
        unit = "x" if r.metric == "ratio" else " µs"
        goal = "-" if r.goal is None else f"≤ {r.goal:g}{unit.strip()}"
        met = "-" if r.met is None else ("yes" if r.met else "NO")
        print(f"{r.case:<22} {r.value:>10.3f}{unit:<2} {goal:>10} {met:>5}  {r.what}")
        print(f"{'':<53}{r.detail}")
    print()
    for r in results:
        print(r.json_line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
