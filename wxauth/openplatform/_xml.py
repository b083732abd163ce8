"""The small, flat XML documents of WeChat pushes, parsed without trusting them.

A push body arrives before anything about it is verified, so it is parsed with
defusedxml and no DTD, no entity and no external reference is allowed: a billion-laughs
or XXE body is refused when its ``<!DOCTYPE`` starts, before anything expands. The body
is size-capped before the parser sees a byte. What a refusal says names the problem and
its position, never the body's text (a decrypted body holds tickets and authorization
codes).
"""

from __future__ import annotations

from xml.etree.ElementTree import ParseError
from xml.parsers.expat import ErrorString

try:
    from defusedxml import (
        DefusedXmlException,
        DTDForbidden,
        EntitiesForbidden,
        ExternalReferenceForbidden,
    )
    from defusedxml.ElementTree import fromstring
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "wxauth.openplatform needs the 'openplatform' extra (cryptography, defusedxml): "
        f"pip install 'wxauth[openplatform]' ({exc})"
    ) from None

from ._errors import PushFormatError

__all__ = ["MAX_XML_BYTES", "parse_xml_fields", "try_parse_xml_fields"]

#: Default size cap of a push's XML, in bytes (WeChat's pushes are well under 4 KiB).
MAX_XML_BYTES = 64 * 1024

_REFUSED = {
    DTDForbidden: "a DTD (<!DOCTYPE>)",
    EntitiesForbidden: "an entity declaration",
    ExternalReferenceForbidden: "an external reference",
}


def try_parse_xml_fields(
    text: str | bytes, *, max_bytes: int = MAX_XML_BYTES
) -> dict[str, str] | PushFormatError:
    """Like :func:`parse_xml_fields`, but the error is returned, not raised: the caller
    raises it from a frame that does not hold ``text`` (which may be a decrypted push)."""
    if not isinstance(text, (str, bytes)):
        return PushFormatError(f"the XML must be str or bytes, not {type(text).__name__}")
    # A str's UTF-8 size is at least its length: the cheap test first, then the exact one.
    size = len(text)
    if size <= max_bytes and isinstance(text, str):
        size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        return PushFormatError(f"the XML is {size} bytes, over the limit of {max_bytes}")
    try:
        root = fromstring(text, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        what = _REFUSED.get(type(exc), "a construct defusedxml refuses")
        return PushFormatError(f"the XML is refused: it declares {what}")
    except ParseError as exc:
        line, column = exc.position
        return PushFormatError(
            f"the XML is malformed: {ErrorString(exc.code)} at line {line}, column {column}"
        )
    if root.tag != "xml":
        return PushFormatError("the XML's root element is not <xml>")
    fields: dict[str, str] = {}
    for child in root:
        if len(child):
            return PushFormatError("the XML is not flat: a field of <xml> has child elements")
        if child.tag in fields:
            return PushFormatError("the XML repeats a field of <xml>")
        fields[child.tag] = child.text or ""
    return fields


def parse_xml_fields(text: str | bytes, *, max_bytes: int = MAX_XML_BYTES) -> dict[str, str]:
    """The children of a flat ``<xml>`` document as ``{tag: text}`` (CDATA unwrapped).

    Raises :class:`PushFormatError` when the document is over ``max_bytes`` (checked
    first), malformed, declares a DTD, entities or external references, has a root
    other than ``<xml>``, a field with child elements, or a field twice.
    """
    result = try_parse_xml_fields(text, max_bytes=max_bytes)
    if isinstance(result, PushFormatError):
        raise result
    return result
