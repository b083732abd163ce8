"""pytest plugin (entry point ``pytest11``): the ``fake_wechat`` fixture.

pytest loads this module in every environment where wxauth is installed, so it imports
nothing beyond pytest at load time; the emulator is imported when the fixture is used.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from wxauth.testing import FakeWeChat

__all__ = ["fake_wechat"]


@pytest.fixture
def fake_wechat() -> Iterator[FakeWeChat]:
    """A fresh :class:`wxauth.testing.FakeWeChat` for one test, closed afterwards.

    No app is registered and nothing is intercepted yet::

        def test_fetches_once(fake_wechat):
            fake_wechat.add_app("wx123", "s3cret")
            with fake_wechat.serve() as url:
                ...  # or: with fake_wechat.intercept(): ...
            fake_wechat.assert_token_fetches(1)

    Closing releases injected hangs and stops any server the test left running, and
    empties the process-wide default store (:func:`wxauth.reset_default_store`) so no
    token of this test's emulator reaches the next test.
    """
    from wxauth import reset_default_store
    from wxauth.testing._fake import FakeWeChat

    fake = FakeWeChat()  # empties the shared default store too
    try:
        yield fake
    finally:
        fake.close()
        reset_default_store()
