"""The AppSecret is in no frame's locals of a failed token fetch.

Error trackers (Sentry's default event capture) and ``traceback.TracebackException(...,
capture_locals=True)`` record every local of every frame on an exception's traceback.
So for each source and each way a fetch fails, no frame left on the traceback of what
``get_token()`` raises (nor on those of its causes and contexts) may hold the secret in
clear: not as a string, not inside a dict, tuple or list, and not in any object's repr.
"""

from __future__ import annotations

import json
import socket
import traceback
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import pytest

import wxauth
from wxauth.testing import FakeWeChat

APPID = "wxframes000000001"
CORPID = "wwframes000000001"
SECRET = "5e884898da28047151d0e56f8dc62927"  # shaped like a real 32-hex AppSecret
WINDOW = 12  # no run of this many characters of the secret may show

SOURCES = ["classic", "stable", "wecom"]
FAILURES = ["timeout", "refused", "http500", "html", "errcode40013", "errcode40164"]


def leaks(text: str) -> bool:
    return any(SECRET[i : i + WINDOW] in text for i in range(len(SECRET) - WINDOW + 1))


def chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and every cause and context, shown or suppressed."""
    todo, seen = [exc], set()
    while todo:
        current = todo.pop()
        if id(current) not in seen:
            seen.add(id(current))
            yield current
            todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)


def frames(exc: BaseException) -> Iterator[FrameType]:
    for link in chain(exc):
        tb = link.__traceback__
        while tb is not None:
            yield tb.tb_frame
            tb = tb.tb_next


def clear_values(value: object, where: str, depth: int = 0) -> Iterator[str]:
    """Where ``value`` shows the secret: strings and bytes, the keys and items of dicts,
    tuples, lists and sets (recursively), and the repr of anything else."""
    if depth > 20:
        return
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        if leaks(value):
            yield where
        return
    if isinstance(value, dict):
        for key, item in value.items():
            yield from clear_values(key, f"{where} key", depth + 1)
            yield from clear_values(item, f"{where}[{key!r}]", depth + 1)
        return
    if isinstance(value, (tuple, list, set, frozenset)):
        for i, item in enumerate(value):
            yield from clear_values(item, f"{where}[{i}]", depth + 1)
        return
    try:
        shown = repr(value)
    except Exception:  # a repr that fails shows nothing
        return
    if leaks(shown):
        yield f"repr({where})"


def secret_locals(exc: BaseException) -> list[str]:
    found = []
    for frame in frames(exc):
        name = f"{frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_code.co_name}"
        for var, value in frame.f_locals.items():
            found += clear_values(value, f"{name} {var}")
    return found


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def fake() -> Iterator[FakeWeChat]:
    fake = FakeWeChat(start=1_800_000_000.0)
    fake.add_app(APPID, SECRET)
    fake.add_wecom_app(CORPID, SECRET)
    try:
        yield fake
    finally:
        fake.close()


def fail(fake: FakeWeChat, source: str, failure: str) -> BaseException:
    """Make one fetch of ``source`` fail the ``failure`` way; return what get_token raised."""
    times = 2  # with retries=1, a retryable failure is seen twice
    if failure == "timeout":
        fake.fail_next(times, hang=10)
    elif failure == "http500":
        fake.fail_next(times, status=500)
    elif failure == "html":
        fake.fail_next(times, html=True)
    elif failure.startswith("errcode"):
        fake.fail_next(times, errcode=int(failure.removeprefix("errcode")))
    with fake.serve() as url:
        api_base = f"http://127.0.0.1:{closed_port()}" if failure == "refused" else url
        manager = wxauth.TokenManager(
            CORPID if source == "wecom" else APPID,
            SECRET,
            source=source,
            api_base=api_base,
            clock=fake.clock,
            timeout=0.5,
            retries=1,
            backoff=0,
        )
        with pytest.raises(wxauth.WxAuthError) as info:
            manager.get_token()
        manager.close()
    return info.value


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("source", SOURCES)
def test_no_frame_local_holds_the_secret(fake: FakeWeChat, source: str, failure: str) -> None:
    """Walk every frame on the traceback of the error and of its cause/context chain,
    and render the traceback with its locals: the secret is in neither."""
    exc = fail(fake, source, failure)
    seen = list(frames(exc))
    # not vacuous: the source's own frames are there, with their locals
    assert any(f.f_code.co_filename.endswith("sources.py") for f in seen)
    assert secret_locals(exc) == []
    rendered = "".join(
        traceback.TracebackException.from_exception(exc, capture_locals=True).format()
    )
    assert "ctx = FetchContext(" in rendered
    assert not leaks(rendered)


# -- Sentry ------------------------------------------------------------------------------------


@pytest.fixture
def sentry_events() -> Iterator[tuple[Any, list[dict[str, Any]]]]:
    """A Sentry client of this test's own whose transport records the events it would
    send. No integration is installed and no global scope is touched."""
    sentry_sdk = pytest.importorskip("sentry_sdk")
    from sentry_sdk.envelope import Envelope
    from sentry_sdk.transport import Transport

    events: list[dict[str, Any]] = []

    class Recording(Transport):
        def capture_envelope(self, envelope: Envelope) -> None:
            event = envelope.get_event()
            if event is not None:
                events.append(event)

    client = sentry_sdk.Client(
        dsn="http://public@127.0.0.1:9/1",
        transport=Recording,
        default_integrations=False,
        auto_enabling_integrations=False,
        include_local_variables=True,
    )
    try:
        yield client, events
    finally:
        client.close(timeout=0)


@pytest.mark.parametrize("failure", ["refused", "http500", "errcode40013"])
@pytest.mark.parametrize("source", SOURCES)
def test_sentry_event_holds_no_secret(
    fake: FakeWeChat, sentry_events: tuple[Any, list[dict[str, Any]]], source: str, failure: str
) -> None:
    """What Sentry would send for the error, frame variables included, lacks the secret."""
    import sentry_sdk

    client, events = sentry_events
    exc = fail(fake, source, failure)
    with sentry_sdk.isolation_scope() as scope:
        scope.set_client(client)
        scope.capture_exception(exc)
    client.flush(timeout=5)
    (event,) = events
    frames_sent = [
        frame for value in event["exception"]["values"] for frame in value["stacktrace"]["frames"]
    ]
    # not vacuous: the source's frames were captured with their variables
    ours = [f for f in frames_sent if f.get("filename", "").endswith("sources.py")]
    assert ours
    assert any("ctx" in f.get("vars", {}) for f in ours)
    assert not leaks(json.dumps(event, default=str))


CONSTRUCTOR_SECRET = "the-constructor-secret-0123456789"


@pytest.mark.parametrize("build", [wxauth.TokenManager, wxauth.WxAuth])
def test_a_constructor_that_raises_keeps_the_secret_out_of_its_locals(
    build: Callable[..., object],
) -> None:
    """A bad option makes the constructor raise after it received the secret: neither
    its frame's locals nor the repr of the half-built object shows the secret."""
    with pytest.raises(ValueError, match="timeout") as caught:
        build("wxconstructor01", CONSTRUCTOR_SECRET, timeout=-1)
    rendered = "".join(
        traceback.TracebackException.from_exception(caught.value, capture_locals=True).format()
    )
    assert "secret = " in rendered  # the locals were rendered...
    assert CONSTRUCTOR_SECRET not in rendered  # ...and the secret was not among them
