"""Many hosts share one token through ``wxauth.RedisStore``.

    python examples/redis_store.py                          # starts its own redis-server
    REDIS_URL=redis://127.0.0.1:6379/0 python examples/redis_store.py

Three processes stand in for three hosts behind a load balancer: each opens its own
Redis connection and calls a WeChat API at the same moment, against the WeChat emulator
on 127.0.0.1. They fetch one token between them. Then the example shows what lives in
Redis (no secret anywhere), and, on a redis-server it started itself, what happens when
Redis goes away: a clear ``StoreError``, and no private fetch that would retire the
token every other host is using.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from multiprocessing.synchronize import Barrier

import redis
import requests

import wxauth
from wxauth.testing import FakeWeChat

APPID, SECRET = "wx1234567890abcdef", "demo-app-secret"
API = "/cgi-bin/get_api_domain_ip"
HOSTS = 3
PREFIX = "wxauth-example:"


def expect(ok: bool, what: object) -> None:
    """Stop with status 1 if the story did not go as told (asserts vanish under -O)."""
    if not ok:
        raise SystemExit(f"redis_store example: unexpected result: {what}")


@contextlib.contextmanager
def own_redis_server() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A throwaway redis-server on a free loopback port, persistence off."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis_store example: no redis-server binary; set REDIS_URL instead")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as workdir:
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", workdir]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                expect(time.monotonic() < deadline and proc.poll() is None, "redis-server start")
                time.sleep(0.02)
        client.close()
        try:
            yield url, proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)


def host(redis_url: str, api_base: str, start: Barrier) -> None:
    # The whole integration: a RedisStore on the shared Redis, same prefix everywhere.
    store = wxauth.RedisStore(redis.Redis.from_url(redis_url), prefix=PREFIX)
    session = requests.Session()
    session.auth = wxauth.WxAuth(APPID, SECRET, api_base=api_base, store=store)
    start.wait(30)
    answer = session.get(api_base + API, timeout=10).json()
    expect(answer.get("errcode", 0) == 0, answer)


def run(redis_url: str, fake: FakeWeChat, api_base: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(HOSTS)
    procs = [ctx.Process(target=host, args=(redis_url, api_base, start)) for _ in range(HOSTS)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        expect(proc.exitcode == 0, f"host exit code {proc.exitcode}")
    print(f"{HOSTS} hosts called the API at once: {fake.token_fetches} token fetch")
    expect(fake.token_fetches == 1, fake.calls)

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    for key in sorted(client.keys(PREFIX + "*")):
        print(f"  redis key {key!r} (ttl {client.ttl(key)} s)")
        expect(SECRET not in key and SECRET not in (client.get(key) or ""), key)
    client.close()


def main() -> int:
    fake = FakeWeChat(clock=time.time)
    fake.add_app(APPID, SECRET)
    with fake, fake.serve() as api_base:
        print(f"WeChat emulator on {api_base}")
        given = os.environ.get("REDIS_URL")
        if given:
            with redis.Redis.from_url(given) as client:  # start from an empty prefix
                for key in client.scan_iter(PREFIX + "*"):
                    client.delete(key)
            run(given, fake, api_base)
        else:
            with own_redis_server() as (url, proc):
                run(url, fake, api_base)
                proc.terminate()
                proc.wait(10)
                print("redis-server stopped; a host now asks for a token:")
                store = wxauth.RedisStore.from_url(url, prefix=PREFIX, socket_connect_timeout=1)
                manager = wxauth.TokenManager(APPID, SECRET, api_base=api_base, store=store)
                try:
                    manager.get_token()
                except wxauth.StoreError as exc:
                    print(f"  StoreError: {exc}")
                else:
                    expect(False, "no StoreError with Redis down")
                print(f"  token fetches still {fake.token_fetches}: no private fetch")
                expect(fake.token_fetches == 1, fake.calls)
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
