"""TicketManager: tickets on the access token's machinery, against the emulator."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import wxauth
from wxauth.testing import FakeWeChat
from wxauth.tickets import TicketManager

APPID, SECRET = "wxticket000001", "the-ticket-secret-0123456789abcd"
CORPID, CORPSECRET = "wwticketcorp01", "the-corp-secret-0123456789abcdef"


@pytest.fixture
def fake(fake_wechat: FakeWeChat) -> FakeWeChat:
    fake_wechat.add_app(APPID, SECRET)
    fake_wechat.add_wecom_app(CORPID, CORPSECRET)
    return fake_wechat


def ticket_calls(fake: FakeWeChat) -> list[str]:
    return [c.path for c in fake.calls if "ticket" in c.path]


def tokens_on(fake: FakeWeChat, url: str, **options: object) -> wxauth.TokenManager:
    options.setdefault("clock", fake.clock)
    options.setdefault("backoff", 0)
    return wxauth.TokenManager(APPID, SECRET, api_base=url, **options)  # type: ignore[arg-type]


def test_32_threads_cold_make_one_ticket_and_one_token_fetch(fake: FakeWeChat) -> None:
    """Single flight for the ticket and for the token under it."""
    with fake.serve() as url:
        tickets = TicketManager(tokens_on(fake, url), "jsapi")
        with ThreadPoolExecutor(32) as pool:
            seen = set(pool.map(lambda _: tickets.get_ticket(), range(32)))
    assert len(seen) == 1
    assert fake.token_fetches == 1
    assert ticket_calls(fake) == ["/cgi-bin/ticket/getticket"]


def test_the_ticket_is_cached_until_its_refresh_point(fake: FakeWeChat) -> None:
    with fake.serve() as url:
        tickets = TicketManager(tokens_on(fake, url), "jsapi")
        first = tickets.get_ticket()
        for _ in range(20):
            assert tickets.get_ticket() == first
        fake.advance(7200 - 299)
        assert tickets.get_ticket() != first
    assert len(ticket_calls(fake)) == 2


def test_a_retired_access_token_under_a_ticket_fetch_heals_once(fake: FakeWeChat) -> None:
    """The ticket request answers 40001 for a retired token: one token fetch, one
    ticket request more, and the caller gets a ticket (no failed call)."""
    with fake.serve() as url:
        tokens = tokens_on(fake, url)
        tickets = TicketManager(tokens, "jsapi")
        tokens.get_token()
        fake.retire_all()
        fake.advance(301)  # past the retired token's grace
        assert tickets.get_ticket()
    assert fake.token_fetches == 2
    assert len(ticket_calls(fake)) == 2  # the rejected request and the one after the heal


def test_a_token_that_stays_rejected_is_not_retried_in_a_loop(fake: FakeWeChat) -> None:
    """The second rejection is raised, not retried again."""
    with fake.serve() as url:
        tickets = TicketManager(tokens_on(fake, url), "jsapi")
        fake.fail_next(2, on="/cgi-bin/ticket/getticket", errcode=40001)
        with pytest.raises(wxauth.WeChatAPIError) as caught:
            tickets.get_ticket()
    assert caught.value.errcode == 40001
    assert not isinstance(caught.value, wxauth.CredentialError)
    assert len(ticket_calls(fake)) == 2


def test_invalidate_is_compare_and_delete(fake: FakeWeChat) -> None:
    with fake.serve() as url:
        tickets = TicketManager(tokens_on(fake, url), "jsapi")
        ticket = tickets.get_ticket()
        assert tickets.invalidate("not-the-ticket") is False
        assert tickets.invalidate(ticket) is True
        assert tickets.invalidate(ticket) is False
        assert tickets.get_ticket() != ticket


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ({"errcode": 0}, wxauth.TokenFetchError),  # a 200 answer without a ticket
        ({"html": True}, wxauth.TokenFetchError),
        ({"status": 502}, wxauth.TokenFetchError),
        ({"errcode": 45009}, wxauth.QuotaError),
    ],
)
def test_a_bad_ticket_answer_is_a_typed_error_and_nothing_is_cached(
    fake: FakeWeChat, fault: dict[str, object], error: type[Exception]
) -> None:
    with fake.serve() as url:
        tickets = TicketManager(tokens_on(fake, url), "wx_card", retries=0, backoff=0)
        fake.fail_next(on="/cgi-bin/ticket/getticket", **fault)  # type: ignore[arg-type]
        with pytest.raises(error):
            tickets.get_ticket()
        assert tickets.manager.peek() is None
        fake.advance(2)  # past the failure pause
        assert tickets.get_ticket()


def test_wecom_tickets(fake: FakeWeChat) -> None:
    """A WeCom manager's tickets: the corp's jsapi ticket and the application's
    agent_config ticket, kept apart."""
    with fake.serve() as url:
        tokens = wxauth.TokenManager(
            CORPID, CORPSECRET, source="wecom", api_base=url, clock=fake.clock
        )
        corp = TicketManager(tokens, "jsapi").get_ticket()
        agent = TicketManager(tokens, "agent_config").get_ticket()
    assert corp != agent
    assert sorted(ticket_calls(fake)) == ["/cgi-bin/get_jsapi_ticket", "/cgi-bin/ticket/get"]


def test_kinds_are_checked() -> None:
    tokens = wxauth.TokenManager(APPID, SECRET)
    with pytest.raises(ValueError, match="kind"):
        TicketManager(tokens, "agent_config")
    with pytest.raises(TypeError):
        TicketManager("not-a-manager", "jsapi")  # type: ignore[arg-type]


def test_a_file_store_shares_the_ticket_between_managers(fake: FakeWeChat, tmp_path: Path) -> None:
    """Two processes' worth of managers on one FileStore: one ticket fetch."""
    store = wxauth.FileStore(tmp_path / "tokens")
    with fake.serve() as url:
        a = TicketManager(tokens_on(fake, url, store=store), "jsapi")
        b = TicketManager(
            tokens_on(fake, url, store=wxauth.FileStore(tmp_path / "tokens")), "jsapi"
        )
        assert a.get_ticket() == b.get_ticket()
    assert len(ticket_calls(fake)) == 1
    assert fake.token_fetches == 1


def test_a_ticket_never_appears_whole_in_logs_or_reprs(
    fake: FakeWeChat, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG), fake.serve() as url:
        tokens = tokens_on(fake, url)
        tickets = TicketManager(tokens, "jsapi")
        ticket = tickets.get_ticket()
        tickets.invalidate(ticket)
        shown = repr(tickets) + repr(tickets.manager) + repr(tickets.manager.peek())
    assert ticket not in shown
    assert all(ticket not in record.getMessage() for record in caplog.records)


# -- async -------------------------------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.anyio
async def test_async_tickets_share_one_fetch_and_heal_the_token(fake: FakeWeChat) -> None:
    """AsyncTicketManager: 100 tasks cold make one ticket and one token fetch; a retired
    access token under the next ticket fetch is healed once."""
    import anyio
    import httpx

    from wxauth.tickets import AsyncTicketManager

    client = httpx.AsyncClient(transport=fake.httpx_transport())
    tokens = wxauth.AsyncTokenManager(APPID, SECRET, client=client, clock=fake.clock)
    async with AsyncTicketManager(tokens, "jsapi") as tickets:
        seen: set[str] = set()

        async def ask() -> None:
            seen.add(await tickets.get_ticket())

        async with anyio.create_task_group() as tg:
            for _ in range(100):
                tg.start_soon(ask)
        assert len(seen) == 1
        assert fake.token_fetches == 1
        assert len(ticket_calls(fake)) == 1
        fake.retire_all()
        fake.advance(301)
        ticket = seen.pop()
        assert await tickets.invalidate(ticket) is True
        assert await tickets.get_ticket() != ticket
    assert fake.token_fetches == 2
    assert len(ticket_calls(fake)) == 3  # the first, the rejected one, the healed one
    await tokens.aclose()
    await client.aclose()
