"""Message crypto of WeChat third-party platform pushes (WXBizMsgCrypt).

Every push to a platform's URLs is "safe mode": an XML envelope whose ``Encrypt`` field is
``base64(AES-256-CBC(FullStr))``, signed in the query by ``msg_signature``::

    AESKey    = base64decode(EncodingAESKey + "=")            32 bytes, IV = AESKey[:16]
    FullStr   = random(16) | len(msg) (4 bytes, big-endian) | msg | appid
                + PKCS#7 padding to a multiple of 32 bytes (1..32 bytes of the pad length)
    signature = sha1("".join(sorted([token, timestamp, nonce, Encrypt]))), lower-case hex

The appid inside is the component appid for everything a platform receives, and is checked.
The signature is checked before anything is decrypted, so an unsigned body never reaches
the padding checks. The token and the key are kept as :class:`~wxauth.Secret`; what fails
is *returned* by the helpers that hold a key or a plaintext and raised by their caller, so
no frame on a traceback holds the key, a decrypted push, or the ticket inside it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Mapping

try:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "wxauth.openplatform needs the 'openplatform' extra (cryptography, defusedxml): "
        f"pip install 'wxauth[openplatform]' ({exc})"
    ) from None

from .._secret import Secret
from ._errors import (
    PushAppIdError,
    PushDecryptError,
    PushError,
    PushFormatError,
    PushSignatureError,
)
from ._xml import try_parse_xml_fields

__all__ = ["MAX_PUSH_BYTES", "MessageCrypto"]

#: Largest push body and ``Encrypt`` value accepted, checked before decoding anything.
MAX_PUSH_BYTES = 1024 * 1024

#: PKCS#7 block size of WXBizMsgCrypt (the docs' K = 32; twice the AES block).
PAD_BLOCK = 32

_AES_KEY_FORM = re.compile(r"[A-Za-z0-9]{43}")
_NONCE_FORM = re.compile(r"[A-Za-z0-9_-]{1,64}")
_QUERY_FIELDS = ("msg_signature", "timestamp", "nonce")


def _aes_cipher(key: Secret) -> Cipher[modes.CBC]:
    aes_key = base64.b64decode(key.get_secret_value() + "=")
    return Cipher(algorithms.AES(aes_key), modes.CBC(aes_key[:16]))


def _sha1_sorted(token: Secret, *values: str) -> str:
    parts = sorted((token.get_secret_value(), *values))
    # SHA-1 is what WeChat's signature protocol prescribes, not a choice made here.
    return hashlib.sha1("".join(parts).encode("utf-8", "surrogatepass")).hexdigest()  # noqa: S324


def _open(key: Secret, ciphertext: bytes, appid: bytes) -> str | PushError:
    """The message inside ``ciphertext``, or the error to raise (returned, so that the
    caller raises it from a frame that holds neither the key nor the plaintext)."""
    decryptor = _aes_cipher(key).decryptor()
    full = decryptor.update(ciphertext) + decryptor.finalize()
    pad = full[-1]
    if not 1 <= pad <= PAD_BLOCK or not hmac.compare_digest(full[-pad:], bytes([pad]) * pad):
        return PushDecryptError("Encrypt has bad padding: wrong key, or not from WeChat")
    full = full[:-pad]
    if len(full) < 20:
        return PushDecryptError("Encrypt is too short for a random prefix and a length")
    msg_len = int.from_bytes(full[16:20], "big")
    if msg_len > len(full) - 20:
        return PushDecryptError("the length inside Encrypt runs past its end")
    if not hmac.compare_digest(full[20 + msg_len :], appid):
        return PushAppIdError(
            f"the appid inside the push is not {appid.decode()}: another platform's push, "
            "or another platform's EncodingAESKey"
        )
    try:
        return full[20 : 20 + msg_len].decode("utf-8")
    except UnicodeDecodeError:
        return PushDecryptError("the message inside Encrypt is not UTF-8")


def _seal(key: Secret, full: bytes) -> bytes:
    pad = PAD_BLOCK - len(full) % PAD_BLOCK
    encryptor = _aes_cipher(key).encryptor()
    return encryptor.update(full + bytes([pad]) * pad) + encryptor.finalize()


def _text(value: str | Secret, name: str) -> Secret:
    if not isinstance(value, (str, Secret)):
        raise TypeError(f"{name} must be a str or a wxauth.Secret, not {type(value).__name__}")
    return Secret(value)


class MessageCrypto:
    """Verify, decrypt and encrypt the pushes of one third-party platform (or one
    account in safe mode): its callback ``token``, its 43-character ``EncodingAESKey``
    and the ``appid`` that must be inside every push (the component appid).

    ``repr`` shows only the appid. Everything a push gets wrong raises a
    :class:`~wxauth.openplatform.PushError` subclass (a ``ValueError``: answer it with
    a 4xx) whose message holds neither the token, the key nor the plaintext.
    """

    __slots__ = ("_appid", "_appid_bytes", "_key", "_token")

    def __init__(self, token: str | Secret, encoding_aes_key: str | Secret, appid: str) -> None:
        self._token = _text(token, "token")
        self._key = _text(encoding_aes_key, "encoding_aes_key")
        del token, encoding_aes_key  # a refusal below must not leave them in this frame
        if not self._token:
            raise ValueError("token must not be empty")
        if len(self._key) != 43:
            raise ValueError(
                f"encoding_aes_key must be 43 characters, not {len(self._key)} "
                "(the EncodingAESKey shown on the platform's settings page)"
            )
        if not _AES_KEY_FORM.fullmatch(self._key.get_secret_value()):
            raise ValueError("encoding_aes_key must hold only the characters A-Z, a-z, 0-9")
        if not isinstance(appid, str) or not appid:
            raise ValueError("appid must be a non-empty str (the component appid)")
        self._appid = appid
        self._appid_bytes = appid.encode("utf-8")

    @property
    def appid(self) -> str:
        """The appid every push must carry inside its ciphertext."""
        return self._appid

    def __repr__(self) -> str:
        # getattr: a repr of an instance whose __init__ refused a setting must not raise
        return f"MessageCrypto(appid={getattr(self, 'appid', None)!r})"

    def signature(self, timestamp: str, nonce: str, encrypt: str) -> str:
        """``sha1`` of ``token``, ``timestamp``, ``nonce`` and ``encrypt`` sorted and
        concatenated, in lower-case hex: the ``msg_signature`` of a push or a reply."""
        for name, value in (("timestamp", timestamp), ("nonce", nonce), ("encrypt", encrypt)):
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a str, not {type(value).__name__}")
        return _sha1_sorted(self._token, timestamp, nonce, encrypt)

    def verify(self, msg_signature: str, timestamp: str, nonce: str, encrypt: str) -> bool:
        """``True`` when ``msg_signature`` signs ``timestamp``, ``nonce`` and ``encrypt``
        (compared in constant time); raises :class:`PushSignatureError` otherwise."""
        for name, value in (
            ("msg_signature", msg_signature),
            ("timestamp", timestamp),
            ("nonce", nonce),
        ):
            if not value or not isinstance(value, str):
                raise PushSignatureError(f"{name} is missing")
        expected = self.signature(timestamp, nonce, encrypt)
        if not hmac.compare_digest(expected.encode(), msg_signature.encode("utf-8", "replace")):
            raise PushSignatureError(
                "msg_signature does not match: forged or altered, or signed with another token"
            )
        return True

    def decrypt(self, encrypt: str | bytes) -> str:
        """The message inside an ``Encrypt`` value, once its appid is checked.

        Call it only on a verified ``Encrypt`` (:meth:`decrypt_message` does). Raises
        :class:`PushDecryptError` (not base64, not AES blocks, bad padding or length, not
        UTF-8, over :data:`MAX_PUSH_BYTES`) or :class:`PushAppIdError`.
        """
        if not isinstance(encrypt, (str, bytes)):
            raise TypeError(f"encrypt must be str or bytes, not {type(encrypt).__name__}")
        if len(encrypt) > MAX_PUSH_BYTES:
            raise PushDecryptError(f"Encrypt is over the limit of {MAX_PUSH_BYTES} bytes")
        try:
            ciphertext = base64.b64decode(encrypt, validate=True)
        except (binascii.Error, ValueError):  # ValueError: a str that is not ASCII
            ciphertext = None
        if ciphertext is None:
            raise PushDecryptError("Encrypt is not base64")
        if not ciphertext or len(ciphertext) % 16:
            raise PushDecryptError(
                f"Encrypt decodes to {len(ciphertext)} bytes, not a whole number of AES blocks"
            )
        result = _open(self._key, ciphertext, self._appid_bytes)
        if isinstance(result, PushError):
            raise result
        return result

    def encrypt(self, msg: str | bytes, random: bytes | None = None) -> str:
        """``Encrypt`` for ``msg`` (UTF-8 if a str): base64 text. ``random`` is the
        16-byte prefix, fresh from :func:`os.urandom` unless given (tests pin it)."""
        if random is None:
            random = os.urandom(16)
        elif not isinstance(random, bytes) or len(random) != 16:
            raise ValueError("random must be 16 bytes")
        if isinstance(msg, str):
            msg = msg.encode("utf-8")
        elif not isinstance(msg, bytes):
            raise TypeError(f"msg must be str or bytes, not {type(msg).__name__}")
        full = random + len(msg).to_bytes(4, "big") + msg + self._appid_bytes
        return base64.b64encode(_seal(self._key, full)).decode("ascii")

    def decrypt_message(
        self, body: bytes | str, msg_signature: str, timestamp: str, nonce: str
    ) -> str:
        """The inner XML of a push: its envelope (``<xml>`` with ``Encrypt`` and an
        ``AppId`` or ``ToUserName``, neither required) is parsed safely, the signature
        of its ``Encrypt`` checked against the query's ``msg_signature``, ``timestamp``
        and ``nonce``, and ``Encrypt`` decrypted."""
        fields = try_parse_xml_fields(body, max_bytes=MAX_PUSH_BYTES)
        if isinstance(fields, PushFormatError):
            raise fields
        encrypt = fields.get("Encrypt")
        if not encrypt:
            raise PushFormatError("the push has no Encrypt field")
        self.verify(msg_signature, timestamp, nonce, encrypt)
        return self.decrypt(encrypt)

    def encrypt_message(
        self,
        msg: str | bytes,
        *,
        timestamp: str | None = None,
        nonce: str | None = None,
        random: bytes | None = None,
    ) -> str:
        """The encrypted reply XML for ``msg``: ``Encrypt``, ``MsgSignature``,
        ``TimeStamp`` (default: now) and ``Nonce`` (default: ten random digits)."""
        if timestamp is None:
            timestamp = str(int(time.time()))
        elif not isinstance(timestamp, str) or not timestamp.isascii() or not timestamp.isdigit():
            raise ValueError("timestamp must be a str of decimal digits")
        if nonce is None:
            nonce = str(secrets.randbelow(10**10))
        elif not isinstance(nonce, str) or not _NONCE_FORM.fullmatch(nonce):
            raise ValueError("nonce must be 1 to 64 characters of A-Z, a-z, 0-9, _ and -")
        encrypt = self.encrypt(msg, random)
        signature = self.signature(timestamp, nonce, encrypt)
        return (
            f"<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt>"
            f"<MsgSignature><![CDATA[{signature}]]></MsgSignature>"
            f"<TimeStamp>{timestamp}</TimeStamp><Nonce><![CDATA[{nonce}]]></Nonce></xml>"
        )

    def decrypt_push(self, query: Mapping[str, str], body: bytes | str) -> dict[str, str]:
        """The fields of a push as ``{tag: text}``: ``msg_signature``, ``timestamp`` and
        ``nonce`` come from the request's ``query``, the rest as in
        :meth:`decrypt_message`; the inner XML must be a flat ``<xml>``."""
        missing = [name for name in _QUERY_FIELDS if not query.get(name)]
        if missing:
            raise PushSignatureError(f"the push's query has no {', '.join(missing)}")
        fields = try_parse_xml_fields(
            self.decrypt_message(body, query["msg_signature"], query["timestamp"], query["nonce"]),
            max_bytes=MAX_PUSH_BYTES,
        )
        if isinstance(fields, PushFormatError):
            raise fields
        return fields
