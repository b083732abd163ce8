"""An Open Platform's state in a store, with no I/O: where it is kept
(:class:`PlatformKeys`) and the durable records written there (the
``component_verify_ticket``, the authorizers' refresh tokens, the last re-read of the
authorizer list, a refused push), with the functions that write and read them.

A record that holds a ticket or a refresh token is written as a :class:`HiddenText`
and read back into :class:`~wxauth.Secret` values, so neither shows in a repr, a log or
a traceback's locals. :mod:`wxauth.openplatform._protocol` re-exports every name here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .._secret import Secret
from ..sources import DEFAULT_API_BASE, _endpoint_tag

__all__ = [
    "TICKET_RECORD",
    "TICKET_TTL",
    "HiddenText",
    "PlatformKeys",
    "RecoveryRecord",
    "StoredRefresh",
    "StoredTicket",
    "parse_recovery_record",
    "parse_refresh_record",
    "parse_ticket_record",
    "recovery_record",
    "refresh_record",
    "refused_push_hint",
    "refused_push_record",
    "ticket_record",
]

#: The name of the ticket's record in its table (:attr:`PlatformKeys.ticket`).
TICKET_RECORD = "latest"
#: How long a ``component_verify_ticket`` is kept after it arrived (seconds): WeChat
#: says it is valid 12 hours, and pushes a new one every 10 minutes.
TICKET_TTL = 12 * 3600.0


@dataclass(frozen=True)
class PlatformKeys:
    """Where one platform keeps its state in a store (every key names the component
    appid, so two platforms never share one; an emulator's or a proxy's ``api_base``
    adds a tag, so its state is never taken for WeChat's)."""

    component_appid: str
    api_base: str = DEFAULT_API_BASE

    @property
    def _tag(self) -> str:
        return _endpoint_tag(self.api_base, DEFAULT_API_BASE)

    @property
    def _base(self) -> str:
        return f"openplatform:{self.component_appid}{self._tag}"

    @property
    def ticket(self) -> str:
        """Record table of the newest ``component_verify_ticket`` (one record,
        :data:`TICKET_RECORD`): durable, never evicted, like the refresh tokens, since
        a ticket lost cannot be fetched again, only waited for."""
        return f"{self._base}:ticket"

    @property
    def refresh_table(self) -> str:
        """Record table of the authorizers' refresh tokens, by authorizer appid."""
        return f"{self._base}:refresh"

    @property
    def refused_push(self) -> str:
        """Meta record of the last push refused for its signing time (a hint for the
        ticket errors that follow)."""
        return f"{self._base}:refused-push"

    @property
    def recovery(self) -> str:
        """Meta record (and lock) of the last re-read of the authorizer list."""
        return f"{self._base}:recovery"

    def push(self, msg_signature: str) -> str:
        """Meta record of a push already handled (by its signature)."""
        return f"{self._base}:push:{msg_signature}"

    @property
    def component_token(self) -> str:
        """Store key of the component token."""
        return f"token:component:{self.component_appid}{self._tag}"

    def authorizer_token(self, authorizer_appid: str) -> str:
        """Store key of an authorizer's access token."""
        return f"token:authorizer:{self.component_appid}:{authorizer_appid}{self._tag}"


class HiddenText(str):
    """A ``str`` whose ``repr`` hides it: a record that holds a ticket or a refresh
    token, on its way into a store. Stores take ``str`` values; should a write fail,
    a crash reporter rendering the locals of the frames on the traceback (the store's
    own included) shows ``<hidden: N characters>``, not the record."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<hidden: {len(self)} characters>"


@dataclass(frozen=True, repr=False)
class StoredTicket:
    """The ``component_verify_ticket`` record a store holds: the ticket, its push's
    ``CreateTime`` (WeChat's clock), when it was stored (``at``, this host's clock) and
    the record's exact text (``raw``, for compare-and-set). A damaged record has a
    blank ticket."""

    ticket: Secret
    create_time: int
    at: float | None = None
    raw: Secret | None = None

    def usable(self, now: float) -> bool:
        """Whether it holds a ticket stored less than :data:`TICKET_TTL` ago."""
        return (
            bool(self.ticket.get_secret_value().strip())
            and self.at is not None
            and now - self.at < TICKET_TTL
        )

    def __repr__(self) -> str:
        return f"StoredTicket(create_time={self.create_time}, at={self.at})"


def ticket_record(ticket: Secret, create_time: int, *, at: float) -> HiddenText:
    """The durable record of a ticket pushed with ``create_time`` and stored at ``at``."""
    record = {"create_time": create_time, "at": at, "ticket": ticket.get_secret_value()}
    return HiddenText(json.dumps(record))


def parse_ticket_record(raw: str | None) -> StoredTicket | None:
    """The ticket record ``raw`` (``None``: none stored; a damaged one reads as a
    :class:`StoredTicket` that is not :meth:`~StoredTicket.usable`)."""
    if raw is None:
        return None
    damaged = StoredTicket(Secret(""), -1, None, Secret(raw))
    try:
        data = json.loads(raw)
        ticket, create_time, at = data["ticket"], data["create_time"], data["at"]
    except (ValueError, KeyError, TypeError):
        return damaged
    if not isinstance(ticket, str) or type(create_time) is not int:
        return damaged
    if not isinstance(at, (int, float)) or isinstance(at, bool):
        return damaged
    return StoredTicket(Secret(ticket), create_time, float(at), Secret(raw))


def refused_push_record(signed_at: int, offset: float, max_age: float) -> str:
    """The meta record of a push refused because it was signed ``offset`` seconds from
    this host's clock (``signed_at``: its timestamp, WeChat's clock)."""
    return json.dumps({"signed_at": signed_at, "offset": round(offset), "max_age": max_age})


def refused_push_hint(raw: str | None, stored: StoredTicket | None) -> str:
    """What a ticket error adds about a refused push: nothing if none is recorded, or a
    ticket signed later than it is stored (the clock was fixed since)."""
    try:
        data = json.loads(raw) if raw else None
        if not isinstance(data, dict):
            return ""
        signed_at, offset, max_age = int(data["signed_at"]), data["offset"], data["max_age"]
        offset, max_age = float(offset), float(max_age)
    except (ValueError, KeyError, TypeError):
        return ""
    if stored is not None and stored.create_time >= signed_at:
        return ""
    return (
        f"; the last push WeChat sent was refused: it was signed {offset:+.0f}s from this "
        f"host's clock, past push_max_age={max_age:g}s. Fix this host's clock (NTP), or "
        "raise push_max_age"
    )


@dataclass(frozen=True, repr=False)
class StoredRefresh:
    """An authorizer's refresh-token record as a store holds it.

    ``raw`` is the record's exact text (compare-and-set writes over it); ``token`` is
    ``None`` when the record is damaged or marks a cancellation (either way the
    authorizer counts as unknown). ``event_time`` is the ``CreateTime`` of the push
    that wrote it (an authorization, a cancellation) or the list's ``auth_time``, if
    known: events older than it are stale. ``at`` is when it was written (this host's
    clock, epoch s).
    """

    raw: Secret
    token: Secret | None
    event_time: int | None
    cancelled: bool = False
    at: float | None = None

    def __repr__(self) -> str:
        return (
            f"StoredRefresh(event_time={self.event_time}, cancelled={self.cancelled}, at={self.at})"
        )


def refresh_record(token: Secret | None, *, event_time: int | None, at: float) -> HiddenText:
    """The durable record of a refresh token (``at``: when it was written, epoch s);
    with ``token=None``, the record of a cancellation (an ``unauthorized`` push), kept
    so that a code exchange answered before it and read after it stores nothing."""
    record: dict[str, Any] = {"refresh_token": None, "event_time": event_time, "at": at}
    if token is None:
        record["cancelled"] = True
    else:
        record["refresh_token"] = token.get_secret_value()
    return HiddenText(json.dumps(record))


def parse_refresh_record(raw: str | None) -> StoredRefresh | None:
    """Read a refresh-token record (``None``: no record)."""
    if raw is None:
        return None
    token: Secret | None = None
    event_time: int | None = None
    at: float | None = None
    cancelled = False
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if isinstance(data, dict):
        value, when, written = data.get("refresh_token"), data.get("event_time"), data.get("at")
        if isinstance(value, str) and value.strip():
            token = Secret(value)
        if type(when) is int:
            event_time = when
        if isinstance(written, (int, float)) and not isinstance(written, bool):
            at = float(written)
        cancelled = token is None and data.get("cancelled") is True
    return StoredRefresh(Secret(raw), token, event_time, cancelled, at)


@dataclass(frozen=True)
class RecoveryRecord:
    """The last re-read of the authorizer list: when it started (epoch s), and what
    made it fail (``None``: it did not, or has not yet)."""

    at: float
    failure: str | None = None


def recovery_record(at: float, *, failure: str | None = None) -> str:
    """The meta record of a re-read of the authorizer list."""
    record: dict[str, Any] = {"at": at}
    if failure is not None:
        record["failed"] = failure[:300]
    return json.dumps(record)


def parse_recovery_record(raw: str | None) -> RecoveryRecord | None:
    """Read the meta record of the last re-read (``None``: none, or damaged)."""
    try:
        data = json.loads(raw) if raw else None
        if not isinstance(data, dict):
            return None
        at = float(data["at"])
    except (ValueError, KeyError, TypeError):
        return None
    failure = data.get("failed")
    return RecoveryRecord(at, failure if isinstance(failure, str) else None)
