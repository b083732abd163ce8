"""@with_access_token: the token as a keyword, one retry on an expired errcode (raised,
returned as a mapping, or returned as a Response), on every kind of callable."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

import wxauth
from wxauth.testing import FakeWeChat

if TYPE_CHECKING:
    from conftest import Held

APPID = "wxdecorator000001"
SECRET = "decorator-secret-71c0e2b9a4f35d86"
MENU_PATH = "/cgi-bin/get_current_selfmenu_info"
MENU_URL = "https://api.weixin.qq.com" + MENU_PATH
OK = {"errcode": 0, "errmsg": "ok"}


def token_of(url: str | None) -> list[str]:
    return parse_qs(urlsplit(url or "").query).get("access_token", [])


def expired(errcode: int = 40001) -> dict[str, object]:
    return {"errcode": errcode, "errmsg": "token rejected"}


class Provider:
    """A duck-typed token source: ``get_token()`` and ``invalidate(token)``, counting."""

    def __init__(self) -> None:
        self.issued: list[str] = []
        self.invalidated: list[str] = []
        self.current: str | None = None
        self.gets = 0
        self._lock = threading.Lock()

    def get_token(self) -> str:
        with self._lock:
            self.gets += 1
            if self.current is None:
                self.current = f"tok-{len(self.issued) + 1}"
                self.issued.append(self.current)
            return self.current

    def invalidate(self, token: str) -> bool:
        with self._lock:
            self.invalidated.append(token)
            if token == self.current:
                self.current = None
                return True
            return False


@pytest.fixture
def wechat(wechat: FakeWeChat) -> FakeWeChat:
    """The emulator, with this module's app registered."""
    wechat.add_app(APPID, SECRET)
    return wechat


@pytest.fixture
def provider() -> Provider:
    return Provider()


# -- plain functions ----------------------------------------------------------------------------


def test_the_token_is_passed_as_a_keyword(provider: Provider) -> None:
    """The function gets ``access_token=<token>`` and its result comes back."""
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    @wxauth.with_access_token(provider)
    def send(openid: str, *, text: str, access_token: str) -> str:
        calls.append(((openid,), {"text": text, "access_token": access_token}))
        return "sent"

    assert send("OPENID", text="hi") == "sent"
    assert calls == [(("OPENID",), {"text": "hi", "access_token": "tok-1"})]
    assert provider.invalidated == []


def test_metadata_and_signature_are_kept(provider: Provider) -> None:
    """The decorated function keeps its name, docstring and signature."""

    def get_menu(lang: str = "zh_CN", *, access_token: str) -> dict[str, Any]:
        """Read the menu."""
        return {}

    decorated = wxauth.with_access_token(provider)(get_menu)
    assert decorated.__name__ == "get_menu"
    assert decorated.__doc__ == "Read the menu."
    assert inspect.signature(decorated) == inspect.signature(get_menu)


@pytest.mark.parametrize("errcode", sorted(wxauth.EXPIRED_ERRCODES))
def test_raised_expired_error_is_retried_once_with_a_fresh_token(
    provider: Provider, errcode: int
) -> None:
    """WeChatAPIError 40001/40014/42001: invalidate that token, call again with a new one."""
    seen: list[str] = []

    @wxauth.with_access_token(provider)
    def call(access_token: str) -> str:
        seen.append(access_token)
        if len(seen) == 1:
            raise wxauth.WeChatAPIError(errcode, "token rejected")
        return "done"

    assert call() == "done"
    assert seen == ["tok-1", "tok-2"]
    assert provider.invalidated == ["tok-1"]


@pytest.mark.parametrize("errcode", [41001, 45009, 40013, 47001])
def test_other_raised_errcodes_are_not_retried(provider: Provider, errcode: int) -> None:
    """Any other errcode propagates after one call, with no invalidation."""
    seen: list[str] = []

    @wxauth.with_access_token(provider)
    def call(access_token: str) -> None:
        seen.append(access_token)
        wxauth.raise_for_errcode({"errcode": errcode, "errmsg": "no"})

    with pytest.raises(wxauth.WeChatAPIError) as info:
        call()
    assert info.value.errcode == errcode
    assert len(seen) == 1
    assert provider.invalidated == []


def test_other_exceptions_are_not_retried(provider: Provider) -> None:
    """A non-WeChat exception propagates untouched."""
    seen: list[str] = []

    @wxauth.with_access_token(provider)
    def call(access_token: str) -> None:
        seen.append(access_token)
        raise requests.ConnectionError("network down")

    with pytest.raises(requests.ConnectionError):
        call()
    assert len(seen) == 1


def test_a_second_raised_failure_is_raised_as_it_is(provider: Provider) -> None:
    """The second failure is the exception the caller sees, unchained from the first."""
    raised: list[wxauth.WeChatAPIError] = []

    @wxauth.with_access_token(provider)
    def call(access_token: str) -> None:
        raised.append(wxauth.WeChatAPIError(40001 if not raised else 42001, access_token))
        raise raised[-1]

    with pytest.raises(wxauth.WeChatAPIError) as info:
        call()
    assert len(raised) == 2
    assert info.value is raised[1]
    assert info.value.__context__ is None
    assert provider.invalidated == ["tok-1"]


def test_returned_mapping_with_an_expired_errcode_is_retried(provider: Provider) -> None:
    """A returned dict carrying 40001/40014/42001 triggers the one retry."""
    answers = [expired(42001), OK]

    @wxauth.with_access_token(provider)
    def call(access_token: str) -> dict[str, object]:
        return answers.pop(0)

    assert call() == OK
    assert answers == []
    assert provider.invalidated == ["tok-1"]


def test_returned_mapping_without_an_expired_errcode_is_returned(provider: Provider) -> None:
    """ok, other errcodes and a string errcode that is not a number are returned as is."""
    for answer in [OK, {"errcode": 45009}, {"errcode": "x"}, {"data": 1}]:

        @wxauth.with_access_token(provider)
        def call(access_token: str, answer: dict[str, object] = answer) -> dict[str, object]:
            return answer

        assert call() is answer
    assert provider.invalidated == []


def test_a_second_returned_failure_is_returned_as_it_is(provider: Provider) -> None:
    """Two expired answers in a row: two calls, the second answer returned."""
    first, second = expired(40001), expired(40014)
    answers = [first, second]

    @wxauth.with_access_token(provider)
    def call(access_token: str) -> dict[str, object]:
        return answers.pop(0)

    assert call() is second
    assert provider.issued == ["tok-1", "tok-2"]


def test_returned_response_with_an_expired_errcode_is_retried(wechat: FakeWeChat) -> None:
    """A returned requests.Response whose JSON has an expired errcode is retried too."""
    wechat.fail_next(on=MENU_PATH, errcode=40001)
    tokens = wxauth.TokenManager(APPID, SECRET)

    @wxauth.with_access_token(tokens)
    def get_menu(access_token: str) -> requests.Response:
        return requests.get(MENU_URL, params={"access_token": access_token})

    response = get_menu()
    assert response.json() == OK
    wechat.assert_api_calls(2)
    _, fresh = wechat.issued_tokens
    assert token_of(response.request.url) == [fresh]


def test_explicit_token_is_used_as_given_and_not_retried(provider: Provider) -> None:
    """access_token=... from the caller wins, by keyword or by position: no get_token,
    no retry, even on 40001."""
    seen: list[str] = []

    @wxauth.with_access_token(provider)
    def call(access_token: str) -> dict[str, object]:
        seen.append(access_token)
        return expired(40001)

    assert call(access_token="MINE") == expired(40001)
    assert call("ALSO-MINE") == expired(40001)
    assert seen == ["MINE", "ALSO-MINE"]
    assert provider.gets == 0
    assert provider.invalidated == []


def test_a_wrong_call_fails_as_it_would_undecorated(provider: Provider) -> None:
    """Too many arguments is the function's own TypeError, not a wxauth confusion."""

    @wxauth.with_access_token(provider)
    def call(access_token: str) -> str:
        return access_token

    with pytest.raises(TypeError):
        call("a", "b", "c")


def test_custom_param_name(provider: Provider) -> None:
    """param= names the keyword the token is passed as."""

    @wxauth.with_access_token(provider, param="token")
    def call(token: str) -> str:
        return token

    assert call() == "tok-1"
    assert call(token="given") == "given"


def test_bad_arguments_are_refused() -> None:
    """A source without get_token/invalidate is a TypeError; a param that is not an
    identifier a ValueError."""

    class OnlyGet:
        def get_token(self) -> str:
            return "t"

    with pytest.raises(TypeError):
        wxauth.with_access_token(OnlyGet())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        wxauth.with_access_token(Provider(), param="access-token")


# -- sources ---------------------------------------------------------------------------------------


def test_source_token_manager(wechat: FakeWeChat) -> None:
    """A TokenManager source: its token, its invalidate, one refresh on 40001."""
    tokens = wxauth.TokenManager(APPID, SECRET)
    stale = tokens.get_token()
    wechat.retire_all()  # only a token fetched from now on is accepted

    @wxauth.with_access_token(tokens)
    def get_menu(access_token: str) -> dict[str, Any]:
        return requests.get(MENU_URL, params={"access_token": access_token}).json()  # type: ignore[no-any-return]

    assert get_menu() == OK
    wechat.assert_api_calls(2)
    _, fresh = wechat.issued_tokens
    assert tokens.get_token() == fresh != stale


def test_source_wxauth_shares_its_manager(wechat: FakeWeChat) -> None:
    """A WxAuth source uses the auth's manager: the session and the decorated function
    see the same token and the same refresh."""
    auth = wxauth.WxAuth(APPID, SECRET)
    wechat.fail_next(on=MENU_PATH, errcode=40001)

    @wxauth.with_access_token(auth)
    def get_menu(access_token: str) -> dict[str, Any]:
        return requests.get(MENU_URL, params={"access_token": access_token}).json()  # type: ignore[no-any-return]

    assert get_menu() == OK
    _, fresh = wechat.issued_tokens
    assert auth.manager.get_token() == fresh
    session = requests.Session()
    session.auth = auth
    response = session.get(MENU_URL)
    assert response.json() == OK
    assert token_of(response.request.url) == [fresh]
    wechat.assert_token_fetches(2)


def test_source_duck_typed(provider: Provider) -> None:
    """Any object with get_token() and invalidate(token) will do."""
    assert isinstance(provider, wxauth.TokenProvider)

    @wxauth.with_access_token(provider)
    def call(access_token: str) -> str:
        return access_token

    assert call() == "tok-1"


def test_threads_sharing_a_decorated_function_refresh_once(wechat: FakeWeChat) -> None:
    """8 threads whose calls all see 40001 for the same token cause one refresh."""
    tokens = wxauth.TokenManager(APPID, SECRET)
    tokens.get_token()
    wechat.retire_all()  # every call with the cached token answers 40001
    barrier = threading.Barrier(8)

    @wxauth.with_access_token(tokens)
    def get_menu(access_token: str) -> dict[str, Any]:
        return requests.get(MENU_URL, params={"access_token": access_token}).json()  # type: ignore[no-any-return]

    results: list[dict[str, Any]] = []

    def worker() -> None:
        barrier.wait(10)
        results.append(get_menu())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert results == [OK] * 8
    wechat.assert_token_fetches(2)


# -- methods ------------------------------------------------------------------------------------


def make_class(provider: Provider) -> type:
    decorate = wxauth.with_access_token(provider)

    class Client:
        answers: ClassVar[list[dict[str, object]]] = []

        def __init__(self, name: str) -> None:
            self.name = name

        @decorate
        def method(self, suffix: str, access_token: str) -> tuple[str, str]:
            if Client.answers:
                return Client.answers.pop(0)  # type: ignore[return-value]
            return f"{self.name}{suffix}", access_token

        @decorate
        @classmethod
        def class_outer(cls, access_token: str) -> tuple[type, str]:
            return cls, access_token

        @classmethod
        @decorate
        def class_inner(cls, access_token: str) -> tuple[type, str]:
            return cls, access_token

        @decorate
        @staticmethod
        def static_outer(x: int, access_token: str) -> tuple[int, str]:
            return x, access_token

        @staticmethod
        @decorate
        def static_inner(x: int, access_token: str) -> tuple[int, str]:
            return x, access_token

    return Client


def test_instance_method(provider: Provider) -> None:
    """self is bound as usual; the retry calls the same bound method again."""
    client_cls = make_class(provider)
    client = client_cls("c1")
    assert client.method("!") == ("c1!", "tok-1")
    client_cls.answers.append(expired(40014))
    assert client.method("?") == ("c1?", "tok-2")
    assert provider.invalidated == ["tok-1"]
    assert client_cls.method(client, "#") == ("c1#", "tok-2")
    assert client.method("x", access_token="given") == ("c1x", "given")
    assert client.method("y", "given-positionally") == ("c1y", "given-positionally")


@pytest.mark.parametrize("name", ["class_outer", "class_inner"])
def test_classmethod(provider: Provider, name: str) -> None:
    """Both decorator orders, called on the class and on an instance."""
    client_cls = make_class(provider)
    assert getattr(client_cls, name)() == (client_cls, "tok-1")
    assert getattr(client_cls("c"), name)() == (client_cls, "tok-1")


@pytest.mark.parametrize("name", ["static_outer", "static_inner"])
def test_staticmethod(provider: Provider, name: str) -> None:
    """Both decorator orders, called on the class and on an instance."""
    client_cls = make_class(provider)
    assert getattr(client_cls, name)(7) == (7, "tok-1")
    assert getattr(client_cls("c"), name)(8) == (8, "tok-1")


# -- async ----------------------------------------------------------------------------------------


def test_async_function_gets_the_token_and_stays_a_coroutine_function(provider: Provider) -> None:
    """An async def stays awaitable (and recognisably so) and receives the token."""

    @wxauth.with_access_token(provider)
    async def call(x: int, access_token: str) -> tuple[int, str]:
        await asyncio.sleep(0)
        return x, access_token

    assert inspect.iscoroutinefunction(call)
    assert asyncio.run(call(1)) == (1, "tok-1")
    assert asyncio.run(call(2, access_token="given")) == (2, "given")


@pytest.mark.parametrize("how", ["raise", "mapping"])
def test_async_retry(provider: Provider, how: str) -> None:
    """The async path retries once on a raised or returned expired errcode."""
    seen: list[str] = []

    @wxauth.with_access_token(provider)
    async def call(access_token: str) -> dict[str, object]:
        seen.append(access_token)
        if len(seen) == 1:
            if how == "raise":
                raise wxauth.WeChatAPIError(42001, "access_token expired")
            return expired(42001)
        return OK

    assert asyncio.run(call()) == OK
    assert seen == ["tok-1", "tok-2"]
    assert provider.invalidated == ["tok-1"]


def test_async_other_errors_are_not_retried(provider: Provider) -> None:
    """An async function raising 45009 is not retried."""
    seen: list[str] = []

    @wxauth.with_access_token(provider)
    async def call(access_token: str) -> None:
        seen.append(access_token)
        raise wxauth.QuotaError(45009, "reach max api daily quota limit")

    with pytest.raises(wxauth.QuotaError):
        asyncio.run(call())
    assert seen == ["tok-1"]


def test_async_uses_the_cached_token_of_a_manager(wechat: FakeWeChat) -> None:
    """Warm calls take the manager's cached token on the loop; a 40001 still refreshes."""
    tokens = wxauth.TokenManager(APPID, SECRET)
    seen: list[str] = []

    @wxauth.with_access_token(tokens)
    async def call(access_token: str) -> dict[str, object]:
        seen.append(access_token)
        return expired(40014) if len(seen) == 3 else OK

    async def main() -> None:
        for _ in range(3):
            assert await call() == OK

    asyncio.run(main())
    first, second = wechat.issued_tokens
    assert seen == [first, first, first, second]


def test_async_second_failure_is_raised_as_it_is(provider: Provider) -> None:
    """Two rejections: two calls, the second error raised."""

    @wxauth.with_access_token(provider)
    async def call(access_token: str) -> None:
        raise wxauth.WeChatAPIError(40001, access_token)

    with pytest.raises(wxauth.WeChatAPIError) as info:
        asyncio.run(call())
    assert info.value.errmsg == "tok-2"


def test_async_method(provider: Provider) -> None:
    """async methods bind self."""

    class Client:
        @wxauth.with_access_token(provider)
        async def fetch(self, access_token: str) -> tuple[Client, str]:
            return self, access_token

    client = Client()
    assert asyncio.run(client.fetch()) == (client, "tok-1")


def test_async_class_and_static_methods_in_both_orders(provider: Provider) -> None:
    """async classmethods and staticmethods are recognised as async whichever way the
    decorators are stacked, and still retry."""
    decorate = wxauth.with_access_token(provider)
    answers: list[dict[str, object]] = [expired(40001)]

    class Client:
        @decorate
        @classmethod
        async def class_outer(cls, access_token: str) -> tuple[type, str]:
            return cls, access_token

        @classmethod
        @decorate
        async def class_inner(cls, access_token: str) -> tuple[type, str]:
            return cls, access_token

        @decorate
        @staticmethod
        async def static_outer(access_token: str) -> object:
            return answers.pop(0) if answers else access_token

        @staticmethod
        @decorate
        async def static_inner(access_token: str) -> str:
            return access_token

    async def main() -> list[object]:
        return [
            await Client.class_outer(),
            await Client().class_inner(),
            await Client.static_outer(),
            await Client().static_inner(),
        ]

    assert asyncio.run(main()) == [(Client, "tok-1"), (Client, "tok-1"), "tok-2", "tok-2"]
    assert provider.invalidated == ["tok-1"]


def test_async_cold_fetch_does_not_block_the_event_loop(wechat: FakeWeChat, held: Held) -> None:
    """A cold fetch runs off the loop: the token endpoint answers only after another
    coroutine on the same loop has run, which it could not if the fetch blocked it."""
    tokens = wxauth.TokenManager(APPID, SECRET)
    held.patience = 3

    @wxauth.with_access_token(tokens)
    async def call(access_token: str) -> str:
        return access_token

    async def ticker() -> None:
        await asyncio.sleep(0.01)
        held.release()

    async def main() -> list[Any]:
        return await asyncio.gather(call(), ticker())

    started = time.monotonic()
    with held:
        token, _ = asyncio.run(main())
    assert wechat.issued_tokens == [token]
    assert held.waits == [True]
    assert time.monotonic() - started < 2.5


def test_async_duck_typed_source_does_not_block_the_event_loop() -> None:
    """Also a slow duck-typed get_token() is called off the loop."""
    loop_ran = threading.Event()

    class SlowProvider(Provider):
        def get_token(self) -> str:
            if not loop_ran.wait(3):
                raise AssertionError("the event loop was blocked by get_token()")
            return super().get_token()

    @wxauth.with_access_token(SlowProvider())
    async def call(access_token: str) -> str:
        return access_token

    async def ticker() -> None:
        await asyncio.sleep(0.01)
        loop_ran.set()

    async def main() -> list[Any]:
        return await asyncio.gather(call(), ticker())

    assert asyncio.run(main())[0] == "tok-1"


def test_the_callers_keyword_dict_is_left_as_it_was() -> None:
    """The token is added to the call's own keywords, never to a dict the caller unpacked."""
    tokens = wxauth.TokenManager("wxkwargs000001", source=lambda: ("kw-token-value", 7200))

    @wxauth.with_access_token(tokens)
    def send(openid: str, *, access_token: str, text: str = "") -> dict[str, str]:
        return {"openid": openid, "token": access_token, "text": text}

    options = {"text": "hello"}
    assert send("o1", **options) == {"openid": "o1", "token": "kw-token-value", "text": "hello"}
    assert options == {"text": "hello"}


# -- plain functions that return a coroutine -----------------------------------------------------


class ThreadProvider(Provider):
    """A Provider that records on which thread each get_token()/invalidate() ran."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[int] = []

    def get_token(self) -> str:
        self.threads.append(threading.get_ident())
        return super().get_token()

    def invalidate(self, token: str) -> bool:
        self.threads.append(threading.get_ident())
        return super().invalidate(token)


async def _send(text: str, *, access_token: str, seen: list[str]) -> dict[str, object]:
    seen.append(access_token)
    await asyncio.sleep(0)
    return expired(40001) if len(seen) == 1 else {**OK, "text": text, "token": access_token}


class _AsyncCallable:
    """An object whose __call__ is async."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, text: str, *, access_token: str) -> dict[str, object]:
        return await _send(text, access_token=access_token, seen=self.seen)


def _run_on_loop(call: Any) -> tuple[Any, int]:
    """Run ``call()`` (which returns an awaitable) on a fresh loop; also return the
    loop thread's id."""

    async def main() -> Any:
        return await call()

    return asyncio.run(main()), threading.get_ident()


@pytest.mark.parametrize("kind", ["partial", "async-__call__", "partial-of-async-__call__"])
def test_callables_that_are_async_are_decorated_as_async(kind: str) -> None:
    """A functools.partial of an async function, an object with an async __call__ (and a
    partial of one) are recognised at decoration time: the decorated callable is a
    coroutine function, every token fetch runs off the event loop, and a 40001 heals."""
    import functools

    provider = ThreadProvider()
    seen: list[str] = []
    target: Any
    if kind == "partial":
        target = functools.partial(_send, seen=seen)
    else:
        instance = _AsyncCallable()
        seen = instance.seen
        target = instance if kind == "async-__call__" else functools.partial(instance)
    call = wxauth.with_access_token(provider)(target)
    assert inspect.iscoroutinefunction(call) or kind != "partial"
    result, loop_thread = _run_on_loop(lambda: call("hi"))
    assert result == {**OK, "text": "hi", "token": "tok-2"}
    assert seen == ["tok-1", "tok-2"]
    assert provider.invalidated == ["tok-1"]
    assert loop_thread not in provider.threads  # fetches and invalidation off the loop


@pytest.mark.skipif(
    not hasattr(inspect, "markcoroutinefunction"), reason="inspect.markcoroutinefunction: 3.12+"
)
def test_a_function_marked_as_coroutine_function_is_async() -> None:
    """inspect.markcoroutinefunction(f) (Python 3.12+) makes a sync f that returns a
    coroutine count as async."""
    provider = ThreadProvider()
    seen: list[str] = []

    def send(text: str, *, access_token: str) -> Any:
        return _send(text, access_token=access_token, seen=seen)

    call = wxauth.with_access_token(provider)(inspect.markcoroutinefunction(send))  # type: ignore[attr-defined]
    result, loop_thread = _run_on_loop(lambda: call("hi"))
    assert result["token"] == "tok-2"
    assert loop_thread not in provider.threads


def test_a_plain_function_returning_a_coroutine_still_heals_and_warns() -> None:
    """A plain def that returns a coroutine cannot be told from a sync function before
    it is called. Its call returns an awaitable that still heals a 40001 (the refresh
    runs off the loop), with a RuntimeWarning that the first token was fetched on the
    calling thread and how to declare the function async instead."""
    provider = ThreadProvider()
    seen: list[str] = []

    @wxauth.with_access_token(provider)
    def send(text: str, *, access_token: str) -> Any:
        return _send(text, access_token=access_token, seen=seen)

    with pytest.warns(RuntimeWarning, match=r"send.*async def.*markcoroutinefunction"):
        result, loop_thread = _run_on_loop(lambda: send("hi"))
    assert result == {**OK, "text": "hi", "token": "tok-2"}
    assert seen == ["tok-1", "tok-2"]
    assert provider.invalidated == ["tok-1"]
    # Only the first get_token() ran where the call was made: invalidate and the
    # fresh fetch ran in a worker thread.
    assert provider.threads[0] == loop_thread
    assert loop_thread not in provider.threads[1:]


def test_a_functools_wraps_wrapper_is_judged_by_what_it_returns() -> None:
    """A sync @functools.wraps wrapper of an async function may return the coroutine or
    run it to completion (asyncio.run, a CLI bridge): it is judged by its result, so the
    bridge stays a plain function that returns the value."""
    import functools

    provider = Provider()

    async def fetch(*, access_token: str) -> str:
        return access_token

    def bridge(func: Any) -> Any:
        @functools.wraps(func)
        def run(**kwargs: Any) -> Any:
            return asyncio.run(func(**kwargs))

        return run

    call = wxauth.with_access_token(provider)(bridge(fetch))
    assert call() == "tok-1"
