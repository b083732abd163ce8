"""wxauth in two minutes, against a WeChat emulator on loopback (no account, no network).

    python examples/quickstart.py

Every request below is real HTTP to ``wxauth.testing.FakeWeChat`` served on 127.0.0.1,
which follows WeChat's token rules: each fetch retires the previous token, tokens expire
after ``expires_in``, wrong secrets are refused. The emulator's clock is moved by hand,
so "two hours later" takes no time.
"""

from __future__ import annotations

import logging
import sys

import requests

import wxauth
from wxauth.testing import FakeWeChat

APPID, SECRET = "wx1234567890abcdef", "demo-app-secret"
SEND = "/cgi-bin/message/custom/send"


def say(text: str = "") -> None:
    print(text, flush=True)


def expect(ok: bool, what: object) -> None:
    """Stop with status 1 if the story did not go as told (asserts vanish under -O)."""
    if not ok:
        raise SystemExit(f"quickstart: unexpected result: {what}")


def main() -> int:
    # wxauth logs each heal at WARNING; show those lines (tokens in them are shortened).
    logging.basicConfig(level=logging.WARNING, format="      log: %(message)s", stream=sys.stdout)
    fake = FakeWeChat()
    fake.add_app(APPID, SECRET)
    with fake, fake.serve() as url:
        say(f"WeChat emulator on {url} (app {APPID})")

        # The client and the emulator share one clock so that "later" means the same
        # thing to both.
        manager = wxauth.TokenManager(APPID, SECRET, api_base=url, clock=fake.clock)
        session = requests.Session()
        session.auth = wxauth.WxAuth(manager=manager)

        say("\n1. One token, many calls")
        for n in range(5):
            body = session.post(url + SEND, json={"touser": f"user{n}"}, timeout=10).json()
            expect(body["errcode"] == 0, body)
        say(f"   5 API calls, all ok; token fetches: {fake.token_fetches}")

        say("\n2. Another server fetched a token, so ours is retired (40001)")
        fake.retire_all()
        response = session.post(url + SEND, json={"touser": "user5"}, timeout=10)
        first = response.history[0].json()["errcode"] if response.history else None
        expect(first == 40001, response.history)
        expect(response.json()["errcode"] == 0, response.text)
        say(f"   WeChat answered {first}; wxauth refreshed once and re-sent: errcode 0")
        say(f"   token fetches: {fake.token_fetches}")

        say("\n3. Two hours later the token has expired")
        fake.advance(7200 + 60)
        response = session.post(url + SEND, json={"touser": "user6"}, timeout=10)
        expect(response.json()["errcode"] == 0, response.text)
        expect(not response.history, "no retry was needed")
        say("   wxauth saw the expiry on the shared clock and fetched before calling:")
        say(f"   errcode 0, no 42001 ever reached the caller; token fetches: {fake.token_fetches}")

        say("\n4. A host whose clock disagrees with WeChat's (42001)")
        skewed = wxauth.TokenManager(APPID, SECRET, api_base=url)  # real clock, not fake's

        @wxauth.with_access_token(skewed)
        def send_text(openid: str, text: str, *, access_token: str = "") -> dict[str, object]:
            reply = requests.post(
                url + SEND,
                params={"access_token": access_token},
                json={"touser": openid, "msgtype": "text", "text": {"content": text}},
                timeout=10,
            )
            result: dict[str, object] = reply.json()
            return result

        expect(send_text("user7", "hello")["errcode"] == 0, "first send_text")
        fake.advance(7200 + 60)  # WeChat's time moves on; this host's clock does not
        result = send_text("user7", "still there?")
        expect(result["errcode"] == 0, result)
        expect(fake.count(kind="api", errcode=42001) == 1, fake.errcodes(kind="api"))
        say("   WeChat answered 42001; the decorator refreshed once and called again:")
        say(f"   errcode {result['errcode']}; token fetches: {fake.token_fetches}")

        say("\n5. A wrong secret fails fast with a clear error")
        wrong = wxauth.TokenManager(APPID, "not-the-secret", api_base=url, clock=fake.clock)
        try:
            wrong.get_token()
        except wxauth.CredentialError as exc:
            say(f"   {type(exc).__name__}: {exc}")
            expect("not-the-secret" not in str(exc), "the secret leaked into the error")
        else:
            expect(False, "a wrong secret must raise CredentialError")

        say("\nWhat the emulator saw:")
        say(f"   token fetches: {fake.token_fetches}  (one per need, never one per call)")
        outcomes = dict(sorted(fake.errcodes(kind="api").items(), key=lambda kv: str(kv[0])))
        say(f"   API calls by errcode: {outcomes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
