"""wxauth for async code, against a WeChat emulator on loopback (no account, no network).

    pip install -e '.[httpx]'          # httpx and anyio
    python examples/async_quickstart.py [--trio]

Every request below is real HTTP to ``wxauth.testing.FakeWeChat`` served on 127.0.0.1,
which follows WeChat's token rules and here takes 200 ms to answer a token request, so
the 100 tasks that start together really do wait for one fetch, on asyncio (or trio with
``--trio``).
"""

from __future__ import annotations

import argparse
import logging
import sys

import anyio
import httpx

import wxauth
from wxauth.httpx import WxAuth
from wxauth.testing import FakeWeChat

APPID, SECRET = "wx1234567890abcdef", "demo-app-secret"
SEND = "/cgi-bin/message/custom/send"
TASKS = 100


def say(text: str = "") -> None:
    print(text, flush=True)


def expect(ok: bool, what: object) -> None:
    """Stop with status 1 if the story did not go as told (asserts vanish under -O)."""
    if not ok:
        raise SystemExit(f"async_quickstart: unexpected result: {what}")


async def burst(client: httpx.AsyncClient, url: str) -> int:
    """``TASKS`` API calls at once; returns how many ended with errcode 0."""
    ok = 0

    async def call(n: int) -> None:
        nonlocal ok
        answer = await client.post(url + SEND, json={"touser": f"user{n}"})
        ok += answer.json().get("errcode") == 0

    async with anyio.create_task_group() as calls:
        for n in range(TASKS):
            calls.start_soon(call, n)
    return ok


async def story() -> None:
    fake = FakeWeChat(token_latency=0.2)
    fake.add_app(APPID, SECRET)
    with fake, fake.serve() as url:
        say(f"WeChat emulator on {url} (app {APPID}); token answers take 200 ms")
        tokens = wxauth.AsyncTokenManager(APPID, SECRET, api_base=url, clock=fake.clock)
        limits = httpx.Limits(max_connections=20)
        async with tokens, httpx.AsyncClient(auth=WxAuth(manager=tokens), limits=limits) as client:
            say(f"\n1. {TASKS} tasks start cold, each makes one API call")
            ok = await burst(client, url)
            expect(ok == TASKS and fake.token_fetches == 1, (ok, fake.token_fetches))
            say(f"   {ok} calls ok; token fetches: {fake.token_fetches}")

            say("\n2. Another server fetched a token, so ours is retired (40001)")
            fake.retire_all()
            ok = await burst(client, url)
            rejected = fake.count(kind="api", errcode=40001)
            expect(ok == TASKS and fake.token_fetches == 2, (ok, fake.token_fetches))
            say(f"   {rejected} calls were answered 40001 and sent once more with a new token;")
            say(
                f"   {ok} calls ok; token fetches: {fake.token_fetches} (one more, for all of them)"
            )

            say("\n3. The decorator, on an async function that takes access_token")

            @wxauth.with_access_token(tokens)
            async def send(openid: str, *, access_token: str) -> dict[str, object]:
                answer = await client.post(
                    url + SEND, params={"access_token": access_token}, json={"touser": openid}
                )
                return dict(answer.json())

            body = await send("user-decorated")
            expect(body.get("errcode") == 0, body)
            say(f"   answer {body}; token fetches: {fake.token_fetches}")

        say("\nDone: every call succeeded, with two token fetches in all.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="wxauth for async code, on an emulator.")
    parser.add_argument("--trio", action="store_true", help="run under trio, not asyncio")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, stream=sys.stdout)
    anyio.run(story, backend="trio" if args.trio else "asyncio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
