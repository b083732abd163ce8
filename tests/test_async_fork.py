"""An async manager in a child forked (from a worker thread) while a fetch was in flight
in the parent's event loop, holding the store's lock: the child's own loop fetches for
itself at once, instead of waiting for a lock or a flight whose holder and Event stayed
in the parent."""

from __future__ import annotations

import os
import sys
from typing import Any

import anyio
import pytest

import wxauth
from wxauth.transport import HTTPAnswer

APPID = "wxasyncfork000001"
SECRET = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    pytest.mark.anyio,
]


class Held:
    """A token transport: in the parent, the answer waits for ``release``; in a child,
    it answers at once with a token of its own."""

    def __init__(self) -> None:
        self.parent = os.getpid()
        self.started = anyio.Event()
        self.release = anyio.Event()

    async def send(self, request: Any, *, timeout: float) -> HTTPAnswer:
        if os.getpid() == self.parent:
            self.started.set()
            await self.release.wait()
            token = "parent-token-" + "p" * 40
        else:
            token = "child-token-" + "c" * 40
        body = f'{{"access_token":"{token}","expires_in":7200}}'.encode()
        return HTTPAnswer(200, {"Content-Type": "application/json"}, body)


def fork_and_fetch(tokens: wxauth.AsyncTokenManager) -> int:
    """Fork; in the child, run a new event loop that asks ``tokens`` for the token and
    exit 0 if it got one of its own within 5 s. Returns the child's pid."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:

        async def child() -> str:
            with anyio.fail_after(5):
                return await tokens.get_token()

        token = anyio.run(child)
        code = 0 if token.startswith("child-token-") else 2
    except BaseException as exc:  # the exit code and stderr say what happened
        print(f"child: {exc!r}", file=sys.stderr)
        code = 3
    finally:
        sys.stderr.flush()
        os._exit(code)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_child_forked_mid_flight_fetches_for_itself() -> None:
    wire = Held()
    tokens = wxauth.AsyncTokenManager(
        APPID, SECRET, store=wxauth.MemoryStore(), transport=wire, retries=0
    )
    async with anyio.create_task_group() as group:
        group.start_soon(tokens.get_token)
        with anyio.fail_after(5):
            await wire.started.wait()
        # The flight is out (holding the store's lock), its Event on this loop. Fork
        # from a worker thread, as a process pool or a library would.
        pid = await anyio.to_thread.run_sync(fork_and_fetch, tokens)
        _, status = os.waitpid(pid, 0)
        wire.release.set()
    assert os.waitstatus_to_exitcode(status) == 0
    assert (await tokens.get_token()).startswith("parent-token-")
