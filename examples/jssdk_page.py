"""A JS-SDK page signed with wxauth, checked by the WeChat emulator (loopback only).

    python examples/jssdk_page.py

A tiny web app on the standard library's ``http.server`` renders a page whose
``wx.config({...})`` is built by ``wxauth.jssdk_config`` with a jsapi_ticket from a
``TicketManager``. The script then plays the browser: it fetches the page a few times
with ``requests``, pulls the config out of the HTML and asks ``FakeWeChat`` whether
WeChat would accept each signature. The ticket is fetched once and shared by every
page; neither the secret nor the ticket ever appears in the page or the output.
"""

from __future__ import annotations

import html
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

import wxauth
from wxauth.testing import FakeWeChat

APPID, SECRET = "wx1234567890abcdef", "demo-app-secret"
JS_API_LIST = ["chooseImage", "updateAppMessageShareData"]
TICKET_PATH = "/cgi-bin/ticket/getticket"
CONFIG_RE = re.compile(r"wx\.config\((\{.*?\})\);", re.DOTALL)

PAGE = """<!doctype html>
<html>
<head><meta charset="utf-8"><title>{title}</title></head>
<body>
<h1>{title}</h1>
<script src="https://res.wx.qq.com/open/js/jweixin-1.6.0.js"></script>
<script>
wx.config({config});
wx.ready(function () {{ console.log("JS-SDK ready"); }});
</script>
</body>
</html>
"""


def say(text: str = "") -> None:
    print(text, flush=True)


def expect(ok: bool, what: object) -> None:
    """Stop with status 1 if the story did not go as told (asserts vanish under -O)."""
    if not ok:
        raise SystemExit(f"jssdk_page: unexpected result: {what}")


def script_json(value: Any) -> str:
    """JSON safe inside a ``<script>`` element (no ``</script>`` can close it early)."""
    text = json.dumps(value, separators=(", ", ": "))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def make_handler(tickets: wxauth.TicketManager) -> type[BaseHTTPRequestHandler]:
    class PageHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            # The URL the browser is on, as WeChat will sign it: scheme, the Host the
            # browser sent, path and query (a browser never sends the #fragment).
            url = f"http://{self.headers['Host']}{self.path}"
            config = wxauth.jssdk_config(tickets, url=url, js_api_list=JS_API_LIST)
            title = html.escape(self.path.partition("?")[0])
            body = PAGE.format(title=title, config=script_json(config)).encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep the story readable

    return PageHandler


def fetch_config(session: requests.Session, url: str) -> dict[str, Any]:
    """Load the page like a browser would and return the dict passed to ``wx.config``."""
    response = session.get(url, timeout=10)
    expect(response.status_code == 200, (url, response.status_code))
    match = CONFIG_RE.search(response.text)
    expect(match is not None, f"no wx.config in the page at {url}")
    assert match is not None  # for the type checker
    config: dict[str, Any] = json.loads(match.group(1))
    return config


def main() -> int:
    fake = FakeWeChat()
    fake.add_app(APPID, SECRET)
    with fake, fake.serve() as api:
        tokens = wxauth.TokenManager(APPID, SECRET, api_base=api, clock=fake.clock)
        tickets = wxauth.TicketManager(tokens, "jsapi")
        server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(tickets))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        site = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            say(f"WeChat emulator on {api} (app {APPID})")
            say(f"JS-SDK page served on {site}")

            say("\n1. The browser opens a few pages")
            pages = [
                f"{site}/",
                f"{site}/share",
                f"{site}/share?from=timeline&isappinstalled=0",
                f"{site}/product?id=42&lang=zh_CN",
            ]
            session = requests.Session()
            signed = []
            for page in pages:
                config = fetch_config(session, page)
                expect(config["appId"] == APPID, config)
                expect(config["jsApiList"] == JS_API_LIST, config)
                signed.append((page, config))
                say(f"   {page[len(site) :]:<40} signature {config['signature'][:8]}...")
            ticket_fetches = fake.count(path=TICKET_PATH)
            expect(ticket_fetches == 1, fake.errcodes(kind="ticket"))
            expect(fake.token_fetches == 1, fake.token_fetches)
            say(
                f"   {len(signed)} pages signed; jsapi_ticket fetches: {ticket_fetches}, "
                f"access token fetches: {fake.token_fetches}"
            )

            say("\n2. WeChat checks each wx.config against the page's URL")
            accepted = 0
            for page, config in signed:
                ok = fake.check_jssdk_signature(
                    page, config["nonceStr"], config["timestamp"], config["signature"], appid=APPID
                )
                expect(ok is True, f"signature refused for {page}")
                accepted += 1
            say(f"   {accepted}/{len(signed)} signatures accepted by the emulator")

            page, config = signed[2]
            with_fragment = page + "#comments"
            ok = fake.check_jssdk_signature(
                with_fragment, config["nonceStr"], config["timestamp"], config["signature"]
            )
            expect(ok is True, "a #fragment must not change the signed URL")
            say("   the same page with a #fragment: accepted (the fragment is never signed)")
            other = f"{site}/share?from=groupmessage&isappinstalled=0"
            ok = fake.check_jssdk_signature(
                other, config["nonceStr"], config["timestamp"], config["signature"]
            )
            expect(ok is False, "a signature must not fit another URL")
            say("   the same config on another query string: refused, as WeChat would")

            ticket = tickets.get_ticket()
            expect(fake.count(path=TICKET_PATH) == 1, "the ticket stays cached")
            expect(all(ticket not in json.dumps(c) for _, c in signed), "ticket in a page")

            say(
                f"\nSummary: ticket fetched once, {len(signed)} pages signed, "
                f"{accepted} signatures accepted by the emulator"
            )
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
            tickets.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
