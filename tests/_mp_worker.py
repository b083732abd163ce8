"""Worker processes for ``test_multiprocess.py`` (imported by the spawned children, so
it lives outside the test module and imports nothing from pytest).

A worker opens the shared store, builds a :class:`TokenManager` whose source reports
each fetch to the parent, and then, for every ``"go"`` it receives, lets ``threads``
threads call an API through :class:`WxAuth` at the same moment and sends back what each
call ended with. Every message goes over the worker's own pipe: no lock is shared
between processes, so killing one worker cannot wedge the others.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import requests

from wxauth import (
    ClassicTokenSource,
    FetchContext,
    FileStore,
    RedisStore,
    TokenManager,
    TokenStore,
    WxAuth,
)

API_PATH = "/cgi-bin/get_api_domain_ip"


@dataclass(frozen=True)
class Outcome:
    """How one thread's API call ended."""

    pid: int
    ok: bool
    errcode: int | None
    retried: bool
    token: str | None
    finished: float  # wall clock, comparable across processes
    error: str | None = None


def open_store(kind: str, where: str) -> TokenStore:
    if kind == "file":
        return FileStore(where)
    if kind == "redis":
        return RedisStore.from_url(where, prefix="wxauth-mp:")
    raise ValueError(kind)


class ReportingSource(ClassicTokenSource):
    """The classic source, telling the parent "I am fetching" before each fetch: only
    the holder of the store lock fetches, so this names the holder."""

    def __init__(self, *args: Any, report: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._report = report

    def fetch(self, ctx: FetchContext) -> tuple[str, float]:
        self._report(("fetching", os.getpid(), time.time()))
        return super().fetch(ctx)


def run(
    conn: Connection,
    kind: str,
    where: str,
    api_base: str,
    appid: str,
    secret: str,
    threads: int,
    timeout: float,
) -> None:
    send_lock = threading.Lock()

    def send(message: object) -> None:
        with send_lock:
            conn.send(message)

    source = ReportingSource(appid, secret, api_base=api_base, report=send)
    manager = TokenManager(
        appid, source=source, store=open_store(kind, where), timeout=timeout, retries=0, backoff=0
    )
    auth = WxAuth(manager=manager)
    send(("ready", os.getpid(), manager.lease))
    try:
        while conn.recv() == "go":
            send(("done", os.getpid(), _phase(auth, api_base, threads)))
    except (EOFError, OSError):
        pass  # the test is gone: nothing left to report to
    manager.close()
    manager.store.close()


def _phase(auth: WxAuth, api_base: str, threads: int) -> list[Outcome]:
    start = threading.Barrier(threads)
    outcomes: list[Outcome] = []

    def call() -> None:
        session = requests.Session()
        session.auth = auth
        try:
            start.wait(30)
            response = session.get(api_base + API_PATH, timeout=60)
            body = response.json()
            errcode = int(body.get("errcode", 0))
            token = (response.request.url or "").partition("access_token=")[2] or None
            outcomes.append(
                Outcome(
                    os.getpid(),
                    response.status_code == 200 and errcode == 0,
                    errcode,
                    bool(response.history),
                    token,
                    time.time(),
                )
            )
        except Exception as exc:
            outcomes.append(
                Outcome(os.getpid(), False, None, False, None, time.time(), repr(exc)[:300])
            )
        finally:
            session.close()

    workers = [threading.Thread(target=call) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return outcomes
