"""What a push to a platform's authorization-event URL says, read from its decrypted XML.

The envelope and its signature are :class:`~wxauth.openplatform.MessageCrypto`'s; this
module reads the *inner* XML, which only WeChat can have written (it is signed and
encrypted), leniently: WeChat pushes more than tickets and authorization notices to that
URL, and some of those nest elements (``notify_third_fasteregister`` carries an
``<info>`` with the registered company), so a nested field is kept as its inner XML
instead of refusing the push. Fields named like a credential (``...Code``,
``...Ticket``, ``...Token``, ``...Secret``: the ticket, the authorization code, the
pre-auth code, a fast-registration ``auth_code``) are wrapped in
:class:`~wxauth.Secret` at once. Failures are returned, not raised, so that the caller
raises from a frame that does not hold the decrypted text.
"""

from __future__ import annotations

from xml.etree.ElementTree import Element, ParseError, tostring
from xml.parsers.expat import ErrorString
from xml.sax.saxutils import escape

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from .._secret import Secret
from ._crypto import MAX_PUSH_BYTES
from ._errors import PushFormatError

__all__ = ["is_sensitive_field", "push_fields"]

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
