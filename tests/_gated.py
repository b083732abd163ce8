"""A token source whose fetches wait for the test to let them finish: for tests about
what happens while a fetch is in flight (a close, a lease running out)."""

from __future__ import annotations

import threading

import wxauth

__all__ = ["GatedSource"]


class GatedSource(wxauth.TokenSource):
    """Each fetch sets ``started``, waits for ``release`` (20 s at most), returns
    ``gated-token-<n>`` for 7200 s (``n`` counts fetches from ``first``), and sets
    ``finished`` on its way out, whether it returned or failed."""

    name = "gated"

    def __init__(self, appid: str, *, first: int = 1) -> None:
        self.appid = appid
        self.started = threading.Event()
        self.release = threading.Event()
        self.finished = threading.Event()
        self.count = first - 1

    @property
    def key(self) -> str:
        return f"token:gated:{self.appid}"

    def fetch(self, ctx: wxauth.FetchContext) -> tuple[str, float]:
        self.count += 1
        value = f"gated-token-{self.count}"
        self.started.set()
        try:
            assert self.release.wait(20)
            return value, 7200.0
        finally:
            self.finished.set()
