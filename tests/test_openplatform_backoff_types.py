"""An Open Platform failure re-raised by the failure backoff (during its pause, from the
stored record) keeps its type: callers catching ComponentTicketError catch every one."""

from __future__ import annotations

import pytest

import wxauth
from wxauth.openplatform import (
    AuthorizerNotAuthorizedError,
    ComponentTicketError,
    ComponentTokenManager,
)
from wxauth.testing import FakeWeChat

COMPONENT = "wxcomponent0000004"
SECRET = "the-component-secret-backoff-001"
KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
AUTHORIZER = "wxauthorizer000004"


@pytest.fixture
def platform(wechat: FakeWeChat) -> ComponentTokenManager:
    wechat.add_component(COMPONENT, SECRET, token="push-token", encoding_aes_key=KEY)
    return ComponentTokenManager(
        COMPONENT,
        SECRET,
        token="push-token",
        encoding_aes_key=KEY,
        store=wxauth.MemoryStore(),
        clock=wechat.clock,
        retries=0,
    )


def test_no_ticket_is_a_component_ticket_error_every_time(
    platform: ComponentTokenManager, wechat: FakeWeChat
) -> None:
    """No ticket stored: the first failures and those raised during the backoff's pause
    are all ComponentTicketError (61006); the pause spares WeChat the calls."""
    for _ in range(6):
        with pytest.raises(ComponentTicketError) as caught:
            platform.get_token()
        assert caught.value.errcode == 61006
    assert wechat.count(kind="component_token") <= 2


def test_a_cancelled_authorizer_is_not_authorized_every_time(
    platform: ComponentTokenManager, wechat: FakeWeChat
) -> None:
    """An authorizer that cancelled (61003 from WeChat): AuthorizerNotAuthorizedError on
    every call, first or from the pause."""
    platform.handle_push(*wechat.verify_ticket_push(COMPONENT))
    platform.query_auth(wechat.authorize(COMPONENT, AUTHORIZER))
    tokens = platform.authorizer(AUTHORIZER)
    assert tokens.invalidate(tokens.get_token())
    wechat.unauthorize(COMPONENT, AUTHORIZER)
    for _ in range(5):
        with pytest.raises(AuthorizerNotAuthorizedError) as caught:
            tokens.get_token()
        assert caught.value.errcode == 61003
