"""Many processes on one host share one token through ``wxauth.FileStore``.

    python examples/file_store.py

Four worker processes (think gunicorn workers) call a WeChat API at the same moment,
against the WeChat emulator on 127.0.0.1. With a private cache each would fetch its own
token and retire the others'; with one ``FileStore`` directory they fetch once between
them. Then every token is retired (as if someone else had fetched one), all workers see
40001 together, and still only one of them fetches the successor.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
import tempfile
import time
from multiprocessing.synchronize import Barrier

import requests

import wxauth
from wxauth.testing import FakeWeChat

APPID, SECRET = "wx1234567890abcdef", "demo-app-secret"
API = "/cgi-bin/get_api_domain_ip"
WORKERS = 4


def expect(ok: bool, what: object) -> None:
    """Stop with status 1 if the story did not go as told (asserts vanish under -O)."""
    if not ok:
        raise SystemExit(f"file_store example: unexpected result: {what}")


def worker(directory: str, api_base: str, start: Barrier, rounds: int) -> None:
    # wxauth logs each heal at WARNING (tokens shortened); show those lines.
    logging.basicConfig(level=logging.WARNING, format="      log: %(message)s", stream=sys.stdout)
    # The whole integration: the same FileStore path in every process.
    session = requests.Session()
    session.auth = wxauth.WxAuth(
        APPID, SECRET, api_base=api_base, store=wxauth.FileStore(directory)
    )
    for _ in range(rounds):
        start.wait(30)  # all workers call at the same moment
        answer = session.get(api_base + API, timeout=10).json()
        expect(answer.get("errcode", 0) == 0, answer)
        start.wait(30)  # round done; the parent may now retire the token


def main() -> int:
    ctx = multiprocessing.get_context("spawn")
    fake = FakeWeChat(clock=time.time)
    fake.add_app(APPID, SECRET)
    with fake, fake.serve() as url, tempfile.TemporaryDirectory() as directory:
        print(f"WeChat emulator on {url}; token directory {directory}")
        start = ctx.Barrier(WORKERS + 1)
        procs = [
            ctx.Process(target=worker, args=(directory, url, start, 2)) for _ in range(WORKERS)
        ]
        for proc in procs:
            proc.start()

        start.wait(60)
        start.wait(60)
        print(f"{WORKERS} processes called the API at once: {fake.token_fetches} token fetch")
        expect(fake.token_fetches == 1, fake.calls)

        fake.retire_all()
        print("every token retired (as if another server had fetched a new one)")
        start.wait(60)
        start.wait(60)
        rejected = fake.count(kind="api", errcode=40001)
        print(
            f"{rejected} calls got 40001 and were healed; token fetches now: {fake.token_fetches}"
        )
        expect(fake.token_fetches == 2, fake.calls)

        for proc in procs:
            proc.join(30)
            expect(proc.exitcode == 0, f"worker exit code {proc.exitcode}")
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
