"""Pushes to a platform's authorization-event URL: what they say, and what is done.

:class:`PushHandling` is the top layer of :class:`~wxauth.openplatform.ComponentTokenManager`
(``handle_push``). A push is verified and decrypted by
:class:`~wxauth.openplatform.MessageCrypto`, refused if it was signed more than
``push_max_age`` seconds from this host's clock (loudly: a host clock that is off
refuses every push, and the component token stops when the last ticket expires) or was
already handled, then acted on: a ``component_verify_ticket`` is stored unless a newer
one is (by ``CreateTime``; a durable record, compare-and-set); ``authorized``/``updateauthorized``
exchange their code; ``unauthorized`` marks the authorizer cancelled; anything else is
logged and returned.

The inner XML, which only WeChat can have written (it is signed and encrypted), is read
leniently (:func:`push_fields`): WeChat pushes more than tickets and authorization
notices to that URL, and some of those nest elements (``notify_third_fasteregister``
carries an ``<info>``), so a nested field is kept as its inner XML instead of refusing
the push. Fields named like a credential (``...Code``, ``...Ticket``, ``...Token``,
``...Secret``: the ticket, the authorization code, the pre-auth code, a
fast-registration ``auth_code``) are wrapped in :class:`~wxauth.Secret` at once.
Failures are returned, not raised, so that the caller raises from a frame that does not
hold the decrypted text.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from xml.etree.ElementTree import Element, ParseError, tostring
from xml.parsers.expat import ErrorString
from xml.sax.saxutils import escape

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from .._errors import StoreError
from .._secret import Secret
from ._authorizations import AuthorizerRegistry
from ._authorizer import CAS_ATTEMPTS
from ._crypto import MAX_PUSH_BYTES, MessageCrypto
from ._errors import (
    AuthorizationCodeError,
    PushAppIdError,
    PushFormatError,
    PushReplayError,
    PushSignatureError,
)
from ._protocol import (
    TICKET_RECORD,
    TICKET_TTL,
    HiddenText,
    check_appid,
    parse_ticket_record,
    refused_push_record,
    ticket_record,
)

__all__ = [
    "PUSH_MAX_AGE",
    "REFUSAL_LOG_INTERVAL",
    "PushEvent",
    "PushHandling",
    "is_sensitive_field",
    "push_fields",
]

logger = logging.getLogger("wxauth")

#: A push signed more than this many seconds before (or after) this host's clock is
#: refused as a replay (:class:`PushReplayError`), and a push is remembered as handled
#: for twice as long.
PUSH_MAX_AGE = 300.0
#: Pushes refused for their signing time log one WARNING per this many seconds.
REFUSAL_LOG_INTERVAL = 60.0

_SENSITIVE_SUFFIXES = ("code", "ticket", "token", "secret")


def is_sensitive_field(name: str) -> bool:
    """Whether a push field is named like a credential (its value then travels as a
    :class:`~wxauth.Secret`): a name ending in ``code``, ``ticket``, ``token`` or
    ``secret``, any case (``AuthorizationCode``, ``ComponentVerifyTicket``,
    ``auth_code``), but not ``errcode``."""
    lowered = name.lower()
    return lowered != "errcode" and lowered.endswith(_SENSITIVE_SUFFIXES)


def _inner_xml(element: Element) -> str:
    """The content of ``element`` as XML text: its text and its children (CDATA
    unwrapped and escaped), parseable again inside any root."""
    head = escape(element.text or "")
    return head + "".join(tostring(child, encoding="unicode") for child in element)


def push_fields(text: str) -> dict[str, str | Secret] | PushFormatError:
    """The fields of a decrypted push, ``{tag: text}``, for the children of its root
    ``<xml>``: a field with child elements holds its inner XML; credential-named fields
    are :class:`~wxauth.Secret` values. A DTD, an entity or an external reference, a
    malformed document, another root or a field given twice: a
    :class:`PushFormatError`, returned."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_PUSH_BYTES:
        return PushFormatError(f"the push's XML is {size} bytes, over {MAX_PUSH_BYTES}")
    try:
        root = fromstring(text, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        return PushFormatError(
            "the push's XML is refused: it declares a DTD, an entity or an external reference"
        )
    except ParseError as exc:
        line, column = exc.position
        return PushFormatError(
            f"the push's XML is malformed: {ErrorString(exc.code)} at line {line}, column {column}"
        )
    if root.tag != "xml":
        return PushFormatError("the push's XML root element is not <xml>")
    fields: dict[str, str | Secret] = {}
    for child in root:
        if not isinstance(child.tag, str) or child.tag in fields:
            return PushFormatError("the push's XML repeats a field of <xml>")
        try:
            value = _inner_xml(child) if len(child) else (child.text or "")
        except RecursionError:
            return PushFormatError("the push's XML nests too deep")
        fields[child.tag] = Secret(value) if is_sensitive_field(child.tag) else value
    return fields


@dataclass(frozen=True)
class PushEvent:
    """What :meth:`ComponentTokenManager.handle_push` made of a push.

    ``fields`` holds every field of the decrypted push (a nested one as its inner XML);
    the ticket, the codes and every other credential-named field in it are
    :class:`~wxauth.Secret` values. ``repr`` shows no field's value.
    """

    #: ``component_verify_ticket``, ``authorized``, ``updateauthorized``,
    #: ``unauthorized``, or another ``InfoType`` (handled as nothing).
    info_type: str
    #: The platform's appid (the push's ``AppId``).
    component_appid: str
    #: The authorizer an authorization notice is about; ``None`` for a ticket.
    authorizer_appid: str | None
    #: The push's ``CreateTime`` (epoch seconds, WeChat's clock).
    create_time: int
    fields: Mapping[str, str | Secret] = field(repr=False, compare=False)

    def __repr__(self) -> str:
        return (
            f"PushEvent(info_type={self.info_type!r}, component_appid={self.component_appid!r}, "
            f"authorizer_appid={self.authorizer_appid!r}, create_time={self.create_time!r})"
        )


_AUTHORIZED = frozenset({"authorized", "updateauthorized"})
_QUERY_FIELDS = ("msg_signature", "timestamp", "nonce")


class PushHandling(AuthorizerRegistry):
    """The pushes of a platform: the top layer of
    :class:`~wxauth.openplatform.ComponentTokenManager`."""

    #: The push URL's crypto (token, EncodingAESKey, component appid).
    crypto: MessageCrypto
    #: Seconds a push's signed timestamp may be away from this host's clock.
    push_max_age: float
    _refusal_logged_at: float

    def handle_push(self, query: Mapping[str, str], body: bytes | str) -> PushEvent:
        """Handle one push to the platform's authorization-event URL; answer the
        request with ``success`` when it returns.

        ``query`` is the request's query parameters (``msg_signature``, ``timestamp``,
        ``nonce``), ``body`` its raw body. A ``component_verify_ticket`` is stored
        unless a newer one (by ``CreateTime``) is; ``authorized`` and
        ``updateauthorized`` exchange their code (:meth:`query_auth`; a code WeChat
        refuses, used by the redirect already or expired, is logged); ``unauthorized``
        forgets that authorizer's tokens. Other ``InfoType`` values are logged and
        returned.

        Raises a :class:`~wxauth.openplatform.PushError` (a ``ValueError``: answer 4xx)
        for a push that is forged, altered, not for this platform, malformed, signed
        too long ago or already handled (:class:`PushReplayError`); nothing stored
        changes then. The code exchange may raise a network or store failure (answer
        5xx).
        """
        event = self._open(query, body)
        seen = self.keys.push(query["msg_signature"])
        if self.store.get_meta(seen) is not None:
            raise PushReplayError("this push (its msg_signature) was already handled")
        if event.info_type == "component_verify_ticket":
            self._take_ticket(event)
        elif event.info_type in _AUTHORIZED:
            self._take_authorization(event)
        elif event.info_type == "unauthorized":
            assert event.authorizer_appid is not None
            self._forget(event.authorizer_appid, event.create_time)
        else:
            logger.info(
                "ignored a push with InfoType %r for component appid=%s",
                event.info_type[:40],
                self.component_appid,
            )
        self.store.set_meta(seen, "1", ttl=2 * self.push_max_age)
        return event

    def _open(self, query: Mapping[str, str], body: bytes | str) -> PushEvent:
        """Verify, decrypt and read a push (the ticket and codes wrapped at once)."""
        values = [query.get(name) for name in _QUERY_FIELDS]
        if any(value is not None and not isinstance(value, str) for value in values):
            raise TypeError(
                "handle_push takes the query as str values (a dict of the request's query "
                "parameters; urllib.parse.parse_qs gives lists: use dict(parse_qsl(...)))"
            )
        missing = [name for name, value in zip(_QUERY_FIELDS, values, strict=True) if not value]
        if missing:
            raise PushSignatureError(f"the push's query has no {', '.join(missing)}")
        # Read at once from the decrypted text, which no local of this frame holds.
        fields = push_fields(
            self.crypto.decrypt_message(
                body, query["msg_signature"], query["timestamp"], query["nonce"]
            )
        )
        if isinstance(fields, PushFormatError):
            raise fields
        try:
            signed_at = int(query["timestamp"])
        except ValueError:
            raise PushFormatError("the push's timestamp is not a number") from None
        age = self.clock() - signed_at
        if abs(age) > self.push_max_age:
            self._refused_for_age(signed_at, age)
            raise PushReplayError(
                f"the push was signed {age:.0f}s from this host's clock, more than "
                f"push_max_age={self.push_max_age:g}s: replayed, or this host's clock is off"
            )
        if fields.get("AppId") != self.component_appid:
            raise PushAppIdError("the push's AppId is not this platform's component appid")
        info_type = fields.get("InfoType")
        create_time = fields.get("CreateTime")
        if not isinstance(info_type, str) or not info_type:
            raise PushFormatError("the push has no InfoType")
        if (
            not isinstance(create_time, str)
            or not create_time.isascii()
            or not create_time.isdigit()
        ):
            raise PushFormatError("the push has no numeric CreateTime")
        authorizer = None
        if info_type in _AUTHORIZED or info_type == "unauthorized":
            try:
                authorizer = check_appid("AuthorizerAppid", fields.get("AuthorizerAppid"))
            except ValueError:
                raise PushFormatError("the push has no valid AuthorizerAppid") from None
        return PushEvent(
            info_type, self.component_appid, authorizer, int(create_time), MappingProxyType(fields)
        )

    def _refused_for_age(self, signed_at: int, age: float) -> None:
        """Say loudly that a push signed right was refused for its time: if this host's
        clock is off, every push is, and the component token stops 12 hours later.
        Once a minute at most (a replay flood must not flood the log): DEBUG between."""
        now = time.monotonic()
        if now - self._refusal_logged_at < REFUSAL_LOG_INTERVAL:
            logger.debug(
                "refused a push to component appid=%s signed %+.0fs from this host's clock",
                self.component_appid,
                age,
            )
            return
        self._refusal_logged_at = now
        logger.warning(
            "refused a push to component appid=%s: signed %+.0fs from this host's clock, "
            "past push_max_age=%gs. A replayed push, or this host's clock is off: then "
            "every push is refused and no new ticket is stored (the component token "
            "stops when the last one expires). Fix the clock (NTP) or raise push_max_age",
            self.component_appid,
            age,
            self.push_max_age,
        )
        record = refused_push_record(signed_at, age, self.push_max_age)
        try:
            self.store.set_meta(self.keys.refused_push, record, ttl=TICKET_TTL)
        except StoreError as exc:
            logger.warning("could not record the refused push: %s", exc)

    def _take_ticket(self, event: PushEvent) -> None:
        """Store the pushed ticket unless the store holds a newer one: compare and set
        on a durable record, so two pushes racing cannot undo each other, and neither a
        full MemoryStore nor Redis's eviction of keys with a TTL can take it."""
        ticket = event.fields.get("ComponentVerifyTicket")
        if not isinstance(ticket, Secret) or not ticket.get_secret_value().strip():
            raise PushFormatError("the ticket push has no ComponentVerifyTicket")
        table = self.keys.ticket
        for _ in range(CAS_ATTEMPTS):
            now = self.clock()
            stored = parse_ticket_record(self.store.get_record(table, TICKET_RECORD))
            if stored is not None and stored.usable(now) and stored.create_time > event.create_time:
                logger.info(
                    "kept the stored component_verify_ticket of component appid=%s: it is "
                    "newer (CreateTime %d) than the pushed one (%d)",
                    self.component_appid,
                    stored.create_time,
                    event.create_time,
                )
                return
            previous = None if stored is None or stored.raw is None else stored.raw
            if self.store.replace_record(
                table,
                TICKET_RECORD,
                None if previous is None else HiddenText(previous.get_secret_value()),
                ticket_record(ticket, event.create_time, at=now),
            ):
                break
        else:
            raise StoreError(
                f"the ticket record of component appid={self.component_appid} changed under "
                f"each of {CAS_ATTEMPTS} compare-and-set attempts; not written"
            )
        logger.info(
            "stored the component_verify_ticket of component appid=%s (CreateTime %d)",
            self.component_appid,
            event.create_time,
        )

    def _take_authorization(self, event: PushEvent) -> None:
        """Exchange an authorization push's code; a code WeChat refuses is logged (a
        push again could not help; a missing refresh token comes from the list)."""
        code = event.fields.get("AuthorizationCode")
        if not isinstance(code, Secret) or not code.get_secret_value().strip():
            raise PushFormatError("the authorization push has no AuthorizationCode")
        try:
            result, _ = self._exchange(code, event_time=event.create_time)
        except AuthorizationCodeError as exc:
            logger.warning(
                "the %s push for authorizer appid=%s of component appid=%s: its code was "
                "refused (%d: %s); taking the push as handled",
                event.info_type,
                event.authorizer_appid,
                self.component_appid,
                exc.errcode,
                "used or invalid: exchanged already by query_auth?"
                if exc.errcode == 61009
                else "expired",
            )
            return
        if result.authorizer_appid != event.authorizer_appid:
            logger.warning(
                "the %s push named authorizer appid=%s but its code is authorizer appid=%s's",
                event.info_type,
                event.authorizer_appid,
                result.authorizer_appid,
            )
