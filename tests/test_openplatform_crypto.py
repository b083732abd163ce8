"""Message crypto of third-party platform pushes (WXBizMsgCrypt): the verified vectors of
open-platform.md 2.1, round trips, and every way a push can be forged, broken or hostile,
each refused with its own PushError and without showing the token, the key or the
plaintext (in messages, reprs, or the locals of the frames on the traceback)."""

from __future__ import annotations

import base64
import hashlib
import os
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

import wxauth
from wxauth.openplatform import MAX_PUSH_BYTES, MessageCrypto, parse_xml_fields
from wxauth.openplatform._errors import (
    PushAppIdError,
    PushDecryptError,
    PushError,
    PushFormatError,
    PushSignatureError,
)

# -- the vectors of open-platform.md 2.1 ----------------------------------------------

# E: the official third-party doc example (debug_demo).
E_TOKEN = "AAAAA"
E_KEY = "A" * 43
E_APPID = "wx134c8103faa5a59e"
E_TIMESTAMP = "1715943329"
E_NONCE = "1590219412"
E_MSG_SIGNATURE = "6c12a4205838198b8fa631b3220723bb07f1015c"
E_SIGNATURE = "cc0c594499c1634947d5b502f158ee518947db27"
E_ENCRYPT = (
    "D7yzvUNAL930rd28wf21s4hvXhz0L6Uit/p2Di6C5DHyYGpEgdBRnKjBec34JwoQXicwaZC7fOVihW80F4VtsdvE"
    "//1vr7oAbqjDv8KenVp+ajKYpJnyQ4zMRhIC+a31fCVOMC03FfzV/QuC94kBP55a+Za3sJgvAn+ZbsNqZI5Dkyuz"
    "khQN8OBqCzFhizGmy0xpM0MEA4agpvE+RuNO1rhHTtuJB5yltw1FiYzecSXJ+y/D2r81VkRn2eYjh2ltsoyfbDR7"
    "Is6ookXIFxTfyeNyeHxMeT4KN5WpCDmSbTcUYrbBUlkGLJ9n/rU8YOywma6G7aTb7KZKOqCxgfoUlYEZPk4FUL/T"
    "K7ShriFDMVCLyjQJ15Ob++agDWtcxhfUfe6HIoIpRW8mKNBQiY/Jd1svvuskA1wLef1RTtzKfMpagSCX/laZINmd"
    "nX4zrF6kIaR9P4xQrWXbsTFHTYe0Mg=="
)
E_MSG = "\n".join(
    [
        "<xml><ToUserName><![CDATA[gh_97417a04a28d]]></ToUserName>",
        "<FromUserName><![CDATA[o9AgO5Kd5ggOC-bXrbNODIiE3bGY]]></FromUserName>",
        "<CreateTime>1715943329</CreateTime>",
        "<MsgType><![CDATA[event]]></MsgType>",
        "<Event><![CDATA[debug_demo]]></Event>",
        "<debug_str><![CDATA[hello world]]></debug_str>",
        "</xml>",
    ]
)
E_REPLY_MSG = "<xml><demo_resp>[CDATA[good luck]]</demo_resp></xml>"
E_REPLY_RANDOM = b"999951349e8ee746"
E_REPLY_TIMESTAMP = "1713424427"
E_REPLY_NONCE = "415670741"
E_REPLY_ENCRYPT = (
    "hE8R6mGXHkJJjU72KxzKUd1GEkKJaEZq7vRL8XgK3o+00k8JGq6+pZJUIlTSyhsX+bxIBQ72g3GyvDdIZcr6+3HA"
    "ZbSvPT9t/o11MI7d6WELwqrGd7jMnV0zv3Zc9Nq7"
)
E_REPLY_SIGNATURE = "03e0812039325c2712ef5f0f980fd14c70d6e307"

# C: the official Python sample (Sample.py).
C_TOKEN = "spamtest"
C_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
C_APPID = "wx2c2769f8efd9abc2"
C_TIMESTAMP = "1409735669"
C_NONCE = "1320562132"
C_MSG_SIGNATURE = "5d197aaffba7e9b25a30732f161a50dee96bd5fa"
C_ENCRYPT = (
    "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6"
    "F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T33"
    "2jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCg"
    "avjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6Oewp"
    "usjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE="
)
C_MSG = (
    "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>\n"
    "<FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName>\n"
    "<CreateTime>1409735668</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n"
    "<Content><![CDATA[abcdteT]]></Content>\n<MsgId>6054768590064713728</MsgId>\n</xml>"
)

# A: the official Java sample / WxJava's WxCryptUtilTest (key as in C).
A_APPID = "wxb11529c136998cb6"
A_RANDOM = b"aaaabbbbccccdddd"
A_MSG = "我是中文abcd123"
A_ENCRYPT = (
    "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg=="
)

# EW: easywechat tests/Kernel/EncryptorTest.php::testDecrypt (key as in C, appid as in A).
EW_TOKEN = "pamtest"
EW_TIMESTAMP = "1458300676"
EW_NONCE = "260774613"
EW_MSG_SIGNATURE = "4f3ad57b6989f09f4eb392acce4f9e93942ed890"
EW_BODY = (
    "<xml>\n    <ToUserName><![CDATA[asdasdasd]]></ToUserName>\n    <Encrypt><![CDATA["
    "rTNFcsut4LfGuAFKEUVVpwcaCOTJzOd9twZdIW910jb3k+iicx2uvhttIZ3Qg9Qgty3BEF2xbOrz6boTfb30dMom"
    "cgrkTqdFPwnhqbk+kIQ7rZiwny9D7NUrTgA5kpX3KsZvrXzUZyP2x9YOlxbgm572lmxKvM7HAQQhIQ/p6HBmoY30"
    "bGXFK0BtIu1pW9TjhOYrLQoU18nWYjWqDA1ynkmOytpv7QRI1P1+0NoxL0q2zO1DgeSvnE8CZGo/o5Ap/WHK5W2R"
    "AsinpzN4/LjPnmB6U01I5XCoJoC0GK/yMZycd2Oh8Nq6+wBkC1U85oy0ktOY4nLvsQMLrourmMGdZHuTbqpeJ8Ao"
    "/5PRYJ+WBvRUwPfGKBL2+2IKZF49vAJqkcGWSHGE76ZN2erXeuNazf/o9o3lIE3q739o4c8t9QGPe31GT2Go/rOz"
    "1BsrASwvauNulCh+++yz+CQzBIuikA==]]></Encrypt>\n</xml>\n"
)

# -- a platform of our own, for the hostile cases -------------------------------------

TOKEN = "tok3nOfTh3Platf0rm"
KEY = "Qm9vbXNoYWthbGFrYWJvb21zaGFrYWxha2Fib29tc2g"
APPID = "wxcomponent0000001"
TICKET = "ticket@@@Tick3tThatMustN3v3rSh0w"  # a secret inside the plaintext
TICKET_PUSH = (
    f"<xml><AppId><![CDATA[{APPID}]]></AppId><CreateTime>1413192605</CreateTime>"
    "<InfoType><![CDATA[component_verify_ticket]]></InfoType>"
    f"<ComponentVerifyTicket><![CDATA[{TICKET}]]></ComponentVerifyTicket></xml>"
)


def crypto() -> MessageCrypto:
    return MessageCrypto(TOKEN, KEY, APPID)


def aes_key(key: str = KEY) -> bytes:
    return base64.b64decode(key + "=")


def raw_encrypt(full: bytes, key: str = KEY) -> str:
    """``full`` AES-256-CBC encrypted as WeChat does, but padded by the caller (or not)."""
    encryptor = Cipher(algorithms.AES(aes_key(key)), modes.CBC(aes_key(key)[:16])).encryptor()
    return base64.b64encode(encryptor.update(full) + encryptor.finalize()).decode()


def pkcs7_32(data: bytes) -> bytes:
    pad = 32 - len(data) % 32
    return data + bytes([pad]) * pad


def zero_fill(data: bytes) -> bytes:
    """``data`` followed by 1..32 zero bytes up to a multiple of 32: a pad byte of 0."""
    return data + bytes(32 - len(data) % 32)


def full_str(msg: bytes, appid: str = APPID, msg_len: int | None = None) -> bytes:
    length = len(msg) if msg_len is None else msg_len
    return os.urandom(16) + length.to_bytes(4, "big") + msg + appid.encode()


def envelope(encrypt: str, extra: str = f"<AppId><![CDATA[{APPID}]]></AppId>") -> str:
    return f"<xml>{extra}<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"


def signed_push(encrypt: str, timestamp: str = "1700000000", nonce: str = "42") -> dict[str, Any]:
    """The query and body of a push whose ``Encrypt`` is correctly signed."""
    query = {
        "signature": "ignored",
        "timestamp": timestamp,
        "nonce": nonce,
        "encrypt_type": "aes",
        "msg_signature": crypto().signature(timestamp, nonce, encrypt),
    }
    return {"query": query, "body": envelope(encrypt).encode()}


def failure(call: Callable[[], object]) -> PushError:
    """What ``call`` raises (it must raise a PushError)."""
    try:
        call()
    except PushError as exc:
        return exc
    raise AssertionError("no PushError raised")


# -- vectors --------------------------------------------------------------------------


def test_vector_e_decrypts_to_the_292_byte_message() -> None:
    """E's Encrypt decrypts to the documented 292-byte debug_demo message."""
    msg = MessageCrypto(E_TOKEN, E_KEY, E_APPID).decrypt(E_ENCRYPT)
    assert msg == E_MSG
    assert len(msg.encode("utf-8")) == 292


def test_vector_e_push_verifies_and_decrypts_from_its_envelope() -> None:
    """E's push (AppId envelope, no ToUserName) verifies against its query and decrypts."""
    e = MessageCrypto(E_TOKEN, E_KEY, E_APPID)
    body = envelope(E_ENCRYPT, f"<AppId><![CDATA[{E_APPID}]]></AppId>")
    assert e.verify(E_MSG_SIGNATURE, E_TIMESTAMP, E_NONCE, E_ENCRYPT) is True
    assert e.decrypt_message(body, E_MSG_SIGNATURE, E_TIMESTAMP, E_NONCE) == E_MSG
    query = {"msg_signature": E_MSG_SIGNATURE, "timestamp": E_TIMESTAMP, "nonce": E_NONCE}
    fields = e.decrypt_push(query, body.encode())
    assert fields["ToUserName"] == "gh_97417a04a28d"
    assert fields["debug_str"] == "hello world"
    assert fields["CreateTime"] == "1715943329"


def test_vector_e_msg_signature_and_url_signature() -> None:
    """``signature`` gives E's msg_signature, and with no Encrypt the URL ``signature``."""
    e = MessageCrypto(E_TOKEN, E_KEY, E_APPID)
    assert e.signature(E_TIMESTAMP, E_NONCE, E_ENCRYPT) == E_MSG_SIGNATURE
    assert e.signature(E_TIMESTAMP, E_NONCE, "") == E_SIGNATURE


def test_vector_e_reply_is_reproduced_byte_for_byte() -> None:
    """E's reply, encrypted with its random, timestamp and nonce, is the documented XML."""
    e = MessageCrypto(E_TOKEN, E_KEY, E_APPID)
    assert e.encrypt(E_REPLY_MSG, random=E_REPLY_RANDOM) == E_REPLY_ENCRYPT
    reply = e.encrypt_message(
        E_REPLY_MSG, timestamp=E_REPLY_TIMESTAMP, nonce=E_REPLY_NONCE, random=E_REPLY_RANDOM
    )
    assert reply == (
        f"<xml><Encrypt><![CDATA[{E_REPLY_ENCRYPT}]]></Encrypt>"
        f"<MsgSignature><![CDATA[{E_REPLY_SIGNATURE}]]></MsgSignature>"
        f"<TimeStamp>{E_REPLY_TIMESTAMP}</TimeStamp><Nonce><![CDATA[{E_REPLY_NONCE}]]></Nonce></xml>"
    )


def test_vector_c_decrypts_from_a_touser_envelope() -> None:
    """C (the official Python sample) verifies and decrypts from a ToUserName envelope."""
    c = MessageCrypto(C_TOKEN, C_KEY, C_APPID)
    body = envelope(C_ENCRYPT, "<ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>")
    assert c.decrypt_message(body, C_MSG_SIGNATURE, C_TIMESTAMP, C_NONCE) == C_MSG
    assert c.decrypt(C_ENCRYPT.encode()) == C_MSG


def test_vector_a_encrypts_exactly_and_decrypts_back() -> None:
    """A (the Java sample) encrypts to its documented Encrypt and decrypts back."""
    a = MessageCrypto("pamtest", C_KEY, A_APPID)
    assert a.encrypt(A_MSG, random=A_RANDOM) == A_ENCRYPT
    assert a.encrypt(A_MSG.encode("utf-8"), random=A_RANDOM) == A_ENCRYPT
    assert a.decrypt(A_ENCRYPT) == A_MSG


def test_vector_ew_push_verifies_and_decrypts() -> None:
    """easywechat's testDecrypt body verifies with its msg_signature and gives its fields."""
    ew = MessageCrypto(EW_TOKEN, C_KEY, A_APPID)
    query = {"msg_signature": EW_MSG_SIGNATURE, "timestamp": EW_TIMESTAMP, "nonce": EW_NONCE}
    fields = ew.decrypt_push(query, EW_BODY)
    assert fields["ToUserName"] == "asdasdasd"
    assert fields["FromUserName"] == "asdasdasdsadasd"
    assert fields["CreateTime"] == "1234567898"
    assert fields["Content"] == "hello"


def test_vector_ew_with_another_appid_is_refused() -> None:
    """easywechat's body, opened by a platform with another appid, is a PushAppIdError."""
    ew = MessageCrypto(EW_TOKEN, C_KEY, "wxanotherappid0001")
    with pytest.raises(PushAppIdError):
        ew.decrypt_message(EW_BODY, EW_MSG_SIGNATURE, EW_TIMESTAMP, EW_NONCE)


# -- round trips ----------------------------------------------------------------------


@pytest.mark.parametrize("length", [*range(0, 70), 96, 128, 1000, 4096])
def test_round_trip_of_every_padding_length(length: int) -> None:
    """Messages of every length (FullStr 32-aligned or not, empty) decrypt back."""
    msg = base64.b64encode(os.urandom(length))[:length].decode()
    c = crypto()
    encrypt = c.encrypt(msg)
    assert len(base64.b64decode(encrypt)) % 32 == 0
    assert c.decrypt(encrypt) == msg


def test_a_full_32_byte_pad_block_round_trips() -> None:
    """When FullStr is already 32-aligned a whole block of 32s is added and removed."""
    c = crypto()
    msg = "x" * (64 - 16 - 4 - len(APPID))
    ciphertext = base64.b64decode(c.encrypt(msg))
    assert len(ciphertext) == 96
    assert c.decrypt(base64.b64encode(ciphertext)) == msg


def test_chinese_text_round_trips_through_the_reply_xml() -> None:
    """A Chinese reply, sent with a fresh timestamp and nonce, comes back through
    decrypt_push using the reply's own TimeStamp, Nonce and MsgSignature."""
    c = crypto()
    msg = "<xml><Content><![CDATA[你好，世界！授权成功 🎉]]></Content></xml>"
    reply = parse_xml_fields(c.encrypt_message(msg))
    assert set(reply) == {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}
    assert reply["TimeStamp"].isdigit()
    assert reply["Nonce"].isdigit()
    query = {
        "msg_signature": reply["MsgSignature"],
        "timestamp": reply["TimeStamp"],
        "nonce": reply["Nonce"],
    }
    assert c.decrypt_push(query, envelope(reply["Encrypt"])) == {
        "Content": "你好，世界！授权成功 🎉"
    }


def test_a_ticket_push_gives_its_fields() -> None:
    """A component_verify_ticket push (AppId envelope) decrypts into its flat fields."""
    fields = crypto().decrypt_push(**signed_push(crypto().encrypt(TICKET_PUSH)))
    assert fields == {
        "AppId": APPID,
        "CreateTime": "1413192605",
        "InfoType": "component_verify_ticket",
        "ComponentVerifyTicket": TICKET,
    }


def test_random_prefixes_differ_and_secrets_are_accepted() -> None:
    """Two encryptions of one message differ (fresh random); Secret-wrapped token and
    key work like the clear strings."""
    c = MessageCrypto(wxauth.Secret(TOKEN), wxauth.Secret(KEY), APPID)
    first, second = c.encrypt("same"), c.encrypt("same")
    assert first != second
    assert crypto().decrypt(first) == crypto().decrypt(second) == "same"
    assert c.signature("1", "2", "3") == crypto().signature("1", "2", "3")


def test_signature_is_sha1_of_the_sorted_concatenation() -> None:
    """The signature is sha1 of the four values sorted and joined, lower-case hex."""
    expected = hashlib.sha1("".join(sorted([TOKEN, "99", "abc", "ZZZ"])).encode()).hexdigest()  # noqa: S324
    assert crypto().signature("99", "abc", "ZZZ") == expected


# -- forged or broken pushes ----------------------------------------------------------


def test_a_wrong_signature_is_refused() -> None:
    """A msg_signature that does not sign the Encrypt is a PushSignatureError."""
    push = signed_push(crypto().encrypt(TICKET_PUSH))
    for bad in ["0" * 40, push["query"]["msg_signature"].upper(), "not hex", "签名"]:
        query = {**push["query"], "msg_signature": bad}
        with pytest.raises(PushSignatureError):
            crypto().decrypt_push(query, push["body"])


def test_a_tampered_encrypt_or_timestamp_is_refused() -> None:
    """Changing the Encrypt, the timestamp or the nonce breaks the signature."""
    encrypt = crypto().encrypt(TICKET_PUSH)
    push = signed_push(encrypt)
    tampered = encrypt[:10] + ("A" if encrypt[10] != "A" else "B") + encrypt[11:]
    with pytest.raises(PushSignatureError):
        crypto().decrypt_push(push["query"], envelope(tampered))
    for name in ("timestamp", "nonce"):
        with pytest.raises(PushSignatureError):
            crypto().decrypt_push({**push["query"], name: "1"}, push["body"])


def test_another_token_does_not_verify() -> None:
    """A push signed with another token is refused."""
    other = MessageCrypto("anotherToken", KEY, APPID)
    push = signed_push(crypto().encrypt(TICKET_PUSH))
    with pytest.raises(PushSignatureError):
        other.decrypt_push(push["query"], push["body"])


@pytest.mark.parametrize("name", ["msg_signature", "timestamp", "nonce"])
@pytest.mark.parametrize("how", ["absent", "empty"])
def test_missing_query_params_are_refused(name: str, how: str) -> None:
    """A query without msg_signature, timestamp or nonce is a PushSignatureError."""
    push = signed_push(crypto().encrypt(TICKET_PUSH))
    query = dict(push["query"])
    if how == "absent":
        del query[name]
    else:
        query[name] = ""
    with pytest.raises(PushSignatureError, match=name):
        crypto().decrypt_push(query, push["body"])
    args = [query.get(n, "") for n in ("msg_signature", "timestamp", "nonce")]
    with pytest.raises(PushSignatureError, match=name):
        crypto().decrypt_message(push["body"], *args)


def test_another_platforms_appid_inside_is_refused() -> None:
    """A correctly signed push for another appid (same token and key) is a PushAppIdError."""
    foreign = MessageCrypto(TOKEN, KEY, "wxsomeoneelse00001").encrypt(TICKET_PUSH)
    with pytest.raises(PushAppIdError):
        crypto().decrypt_push(**signed_push(foreign))
    for appid in (APPID[:-1], APPID + "x", ""):
        with pytest.raises(PushAppIdError):
            crypto().decrypt(raw_encrypt(pkcs7_32(full_str(b"<xml/>", appid))))


def test_another_key_is_refused() -> None:
    """A push encrypted with another EncodingAESKey does not decrypt."""
    other = MessageCrypto(TOKEN, "B" * 43, APPID).encrypt(TICKET_PUSH)
    with pytest.raises((PushDecryptError, PushAppIdError)):
        crypto().decrypt(other)


@pytest.mark.parametrize("cut", [1, 2, 3, 4, 20, 24, 44, 64])
def test_a_truncated_encrypt_is_refused(cut: int) -> None:
    """An Encrypt cut short (bad base64 length, partial or missing blocks) is refused."""
    encrypt = crypto().encrypt(TICKET_PUSH)
    with pytest.raises(PushDecryptError):
        crypto().decrypt(encrypt[:-cut])
    with pytest.raises(PushDecryptError):
        crypto().decrypt_push(**signed_push(encrypt[:-cut]))


@pytest.mark.parametrize(
    "encrypt",
    ["not base64!", "QUJD*RUZH", "QUJD\nRUZH", " QUJDRUZH", "QUJDRUZ", "中文中文", "QU=JDRUZH", ""],
)
def test_non_base64_is_refused(encrypt: str) -> None:
    """An Encrypt that is not strict base64 (or empty) is a PushDecryptError."""
    with pytest.raises(PushDecryptError):
        crypto().decrypt(encrypt)


@pytest.mark.parametrize("size", [1, 15, 17, 31, 33, 40])
def test_ciphertext_not_in_aes_blocks_is_refused(size: int) -> None:
    """Ciphertext that is not a whole number of 16-byte blocks is a PushDecryptError."""
    with pytest.raises(PushDecryptError, match="AES blocks"):
        crypto().decrypt(base64.b64encode(os.urandom(size)))


@pytest.mark.parametrize("last", [0, 33, 48, 64, 255])
def test_a_pad_length_out_of_range_is_refused(last: int) -> None:
    """A pad of 0, or over 32 even when all its bytes agree, is bad padding."""
    pad = bytes([last]) * max(last, 1)
    filler = -(16 + 4 + 11 + len(APPID) + len(pad)) % 32
    full = full_str(b"<xml>" + b"a" * filler + b"</xml>") + pad
    assert len(full) % 32 == 0
    with pytest.raises(PushDecryptError, match="padding"):
        crypto().decrypt(raw_encrypt(full))


@pytest.mark.parametrize("position", [0, 1, 5, 10])
def test_inconsistent_pad_bytes_are_refused(position: int) -> None:
    """Padding whose bytes are not all the pad length is refused (each byte checked)."""
    padded = bytearray(pkcs7_32(full_str(b"<xml/>")))
    pad = padded[-1]
    assert pad > 10
    padded[-pad + position] ^= 0x01
    with pytest.raises(PushDecryptError, match="padding"):
        crypto().decrypt(raw_encrypt(bytes(padded)))


def test_a_16_byte_pad_is_accepted() -> None:
    """A pad of 16 bytes (AES-block PKCS#7) decrypts too: any consistent pad of 1..32 is."""
    msg = b"<xml>" + b"a" * (16 - (16 + 4 + 11 + len(APPID)) % 16) + b"</xml>"
    data = full_str(msg)
    assert len(data) % 16 == 0
    assert crypto().decrypt(raw_encrypt(data + bytes([16]) * 16)) == msg.decode()


@pytest.mark.parametrize("extra", [1, 10, 2**31, 2**32 - 1])
def test_a_length_past_the_end_is_refused(extra: int) -> None:
    """A msg_len larger than what follows it is a PushDecryptError."""
    msg = b"<xml>hi</xml>"
    full = full_str(msg, msg_len=min(len(msg) + len(APPID) + extra, 2**32 - 1))
    with pytest.raises(PushDecryptError, match="length"):
        crypto().decrypt(raw_encrypt(pkcs7_32(full)))


def test_a_plaintext_shorter_than_its_header_is_refused() -> None:
    """A plaintext with no room for the random prefix and the length is refused."""
    with pytest.raises(PushDecryptError, match="short"):
        crypto().decrypt(raw_encrypt(b"0123456789" + bytes([22]) * 22))


def test_a_message_that_is_not_utf8_is_refused() -> None:
    """A message of bytes that are not UTF-8 is a PushDecryptError."""
    encrypt = crypto().encrypt(b"<xml>\xff\xfe</xml>")
    with pytest.raises(PushDecryptError, match="UTF-8"):
        crypto().decrypt(encrypt)


def test_a_huge_encrypt_is_refused_before_decoding() -> None:
    """An Encrypt over MAX_PUSH_BYTES is refused (as bytes or str) before base64."""
    huge = "A" * (MAX_PUSH_BYTES + 4)
    with pytest.raises(PushDecryptError, match="limit"):
        crypto().decrypt(huge)
    with pytest.raises(PushDecryptError, match="limit"):
        crypto().decrypt(huge.encode())


# -- hostile or malformed XML ---------------------------------------------------------

BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE xml [\n<!ENTITY lol "lol">\n'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n'
        for i in range(1, 10)
    )
    + "]>\n<xml><Encrypt>&lol9;</Encrypt></xml>"
)
EXTERNAL_ENTITY = (
    '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    "<xml><Encrypt>&xxe;</Encrypt></xml>"
)
EXTERNAL_DTD = '<!DOCTYPE xml SYSTEM "http://127.0.0.1:1/evil.dtd"><xml><Encrypt>x</Encrypt></xml>'
PLAIN_DTD = "<!DOCTYPE xml><xml><Encrypt>x</Encrypt></xml>"
HOSTILE: dict[str, str] = {
    "billion laughs": BILLION_LAUGHS,
    "external entity": EXTERNAL_ENTITY,
    "external DTD": EXTERNAL_DTD,
    "DTD": PLAIN_DTD,
}
MALFORMED: dict[str, str | bytes] = {
    "not xml": "success",
    "unclosed": "<xml><Encrypt>abc</Encrypt>",
    "undefined entity": "<xml><Encrypt>&nope;</Encrypt></xml>",
    "two roots": "<xml/><xml/>",
    "empty": "",
    "not utf-8": b"<xml><Encrypt>\xff\xfe</Encrypt></xml>",
    "root not xml": "<root><Encrypt>abc</Encrypt></root>",
    "nested": "<xml><Encrypt><a>abc</a></Encrypt></xml>",
    "repeated": "<xml><Encrypt>abc</Encrypt><Encrypt>def</Encrypt></xml>",
    "no Encrypt": "<xml><AppId>wx</AppId></xml>",
    "empty Encrypt": "<xml><Encrypt></Encrypt></xml>",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_envelopes_are_refused_in_bounded_memory(name: str) -> None:
    """Billion laughs, external entities and DTDs are a PushFormatError, refused without
    expanding anything (under 1 MiB allocated)."""
    tracemalloc.start()
    try:
        error = failure(lambda: crypto().decrypt_push(signed_push("x")["query"], HOSTILE[name]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(error, PushFormatError)
    assert "refused" in str(error)
    assert peak < 1024 * 1024


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_envelopes_are_refused(name: str) -> None:
    """Malformed XML, a root other than <xml>, nested or repeated fields and a missing
    Encrypt are a PushFormatError."""
    with pytest.raises(PushFormatError):
        crypto().decrypt_push(signed_push("x")["query"], MALFORMED[name])


@pytest.mark.parametrize("name", sorted(HOSTILE.keys() | {"nested", "not xml", "repeated"}))
def test_hostile_inner_xml_is_refused(name: str) -> None:
    """A signed push whose decrypted XML is hostile or malformed is a PushFormatError."""
    hostile = (HOSTILE | MALFORMED)[name]
    assert isinstance(hostile, str)
    inner = hostile.replace("Encrypt>", "Ticket>")
    with pytest.raises(PushFormatError):
        crypto().decrypt_push(**signed_push(crypto().encrypt(inner)))


def test_a_huge_body_is_refused_before_parsing() -> None:
    """A body over MAX_PUSH_BYTES is refused by size, even though it is malformed."""
    huge = b"<xml><Encrypt>" + b"<" * MAX_PUSH_BYTES
    with pytest.raises(PushFormatError, match="limit"):
        crypto().decrypt_push(signed_push("x")["query"], huge)
    with pytest.raises(PushFormatError, match="limit"):
        parse_xml_fields("<xml>" + "中" * 30_000 + "</xml>")  # 90 kB of UTF-8, 30 k chars


def test_parse_xml_fields_reads_text_cdata_and_empty_fields() -> None:
    """Flat fields come back as text: CDATA unwrapped, escapes decoded, empty as ''."""
    text = (
        '<?xml version="1.0" encoding="utf-8"?>\n<xml attr="ignored">\n'
        "  <A><![CDATA[a < b & c]]></A>\n  <B>1 &lt; 2</B>\n  <C/>\n  <D>中文</D>\n"
        "  <!-- a comment -->\n</xml>\n"
    )
    expected = {"A": "a < b & c", "B": "1 < 2", "C": "", "D": "中文"}
    assert parse_xml_fields(text) == expected
    assert parse_xml_fields(text.encode("utf-8")) == expected


def test_every_push_error_is_a_value_error() -> None:
    """Push errors are ValueErrors (a web handler answers them with a 4xx)."""
    for cls in (PushSignatureError, PushDecryptError, PushAppIdError, PushFormatError):
        assert issubclass(cls, PushError)
        assert issubclass(cls, ValueError)


# -- construction and arguments -------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "key", "appid", "match"),
    [
        ("", KEY, APPID, "token"),
        (TOKEN, KEY[:-1], APPID, "43 characters, not 42"),
        (TOKEN, KEY + "A", APPID, "43 characters, not 44"),
        (TOKEN, KEY[:-1] + "+", APPID, "A-Z"),
        (TOKEN, KEY[:-1] + "=", APPID, "A-Z"),
        (TOKEN, KEY[:-1] + "é", APPID, "A-Z"),
        (TOKEN, "", APPID, "43"),
        (TOKEN, KEY, "", "appid"),
    ],
)
def test_bad_configuration_is_a_value_error_without_the_key(
    token: str, key: str, appid: str, match: str
) -> None:
    """An empty token or appid, or a key not 43 of [A-Za-z0-9], is a ValueError that
    does not show the key."""
    with pytest.raises(ValueError, match=match) as caught:
        MessageCrypto(token, key, appid)
    assert not isinstance(caught.value, PushError)
    if key:
        assert key[:20] not in str(caught.value)


def test_non_string_configuration_is_a_type_error() -> None:
    """A token or key that is not a str or Secret is a TypeError."""
    with pytest.raises(TypeError):
        MessageCrypto(b"token", KEY, APPID)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        MessageCrypto(TOKEN, KEY.encode(), APPID)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"random": b"short"}, "16 bytes"),
        ({"random": "aaaabbbbccccdddd"}, "16 bytes"),
        ({"timestamp": "12a"}, "timestamp"),
        ({"timestamp": "１２"}, "timestamp"),  # full-width digits are not ASCII
        ({"nonce": "]]><evil/>"}, "nonce"),
        ({"nonce": ""}, "nonce"),
        ({"nonce": "n" * 65}, "nonce"),
    ],
)
def test_bad_reply_arguments_are_value_errors(kwargs: dict[str, Any], match: str) -> None:
    """A random that is not 16 bytes, a non-numeric timestamp or a nonce that could break
    the reply's XML is refused."""
    with pytest.raises(ValueError, match=match):
        crypto().encrypt_message("<xml/>", **kwargs)


def test_repr_shows_only_the_appid() -> None:
    """repr shows the appid; no attribute holds the token or key as a clear str."""
    c = crypto()
    assert repr(c) == f"MessageCrypto(appid={APPID!r})"
    assert c.appid == APPID
    for slot in type(c).__slots__:
        value = getattr(c, slot)
        assert not (isinstance(value, str) and (TOKEN in value or KEY in value))
        assert TOKEN not in repr(value)
        assert KEY not in repr(value)


# -- nothing leaks --------------------------------------------------------------------

NEEDLES_TEXT = [TOKEN, KEY, TICKET, "Tick3tThatMust"]
NEEDLES_BYTES = [aes_key(), aes_key()[:16], TICKET.encode(), b"Tick3tThatMust"]


def shows_a_secret(value: object, depth: int = 0) -> bool:
    if depth > 20:
        return False
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        return any(n in data for n in NEEDLES_BYTES) or shows_a_secret(
            data.decode("utf-8", "replace"), depth + 1
        )
    if isinstance(value, str):
        return any(n in value for n in NEEDLES_TEXT)
    if isinstance(value, dict):
        return any(
            shows_a_secret(k, depth + 1) or shows_a_secret(v, depth + 1) for k, v in value.items()
        )
    if isinstance(value, (tuple, list, set, frozenset)):
        return any(shows_a_secret(item, depth + 1) for item in value)
    try:
        return shows_a_secret(repr(value), depth + 1)
    except Exception:
        return False


def chain(exc: BaseException) -> Iterator[BaseException]:
    todo, seen = [exc], set()
    while todo:
        current = todo.pop()
        if id(current) not in seen:
            seen.add(id(current))
            yield current
            todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)


def leaky_frames(exc: BaseException) -> list[str]:
    """The frames on the tracebacks of ``exc`` and its chain whose locals show a secret."""
    found = []
    for link in chain(exc):
        tb = link.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            for name, value in frame.f_locals.items():
                if shows_a_secret(value):
                    found.append(f"{frame.f_code.co_name}: {name}")
            tb = tb.tb_next
    return found


def failing_pushes() -> dict[str, dict[str, Any]]:
    """Signed pushes carrying the ticket that fail after decryption, or before it."""
    c = crypto()
    nested = TICKET_PUSH.replace("</xml>", f"<Deep><T>{TICKET}</T></Deep></xml>")
    return {
        "appid": signed_push(MessageCrypto(TOKEN, KEY, "wxsomeoneelse00001").encrypt(TICKET_PUSH)),
        "not utf-8": signed_push(c.encrypt(TICKET_PUSH.encode() + b"\xff")),
        "inner malformed": signed_push(c.encrypt(TICKET_PUSH + "<")),
        "inner nested": signed_push(c.encrypt(nested)),
        "inner dtd": signed_push(c.encrypt("<!DOCTYPE xml>" + TICKET_PUSH)),
        "length": signed_push(raw_encrypt(pkcs7_32(full_str(TICKET_PUSH.encode(), msg_len=9999)))),
        "padding": signed_push(raw_encrypt(zero_fill(full_str(TICKET_PUSH.encode())))),
        "signature": {**signed_push(c.encrypt(TICKET_PUSH)), "query": signed_push("x")["query"]},
    }


@pytest.mark.parametrize("name", sorted(failing_pushes()))
def test_no_error_or_frame_shows_token_key_or_plaintext(name: str) -> None:
    """What a failing push raises shows neither the token, the key nor the ticket inside:
    not in its message or repr, and not in the locals of any frame on its traceback."""
    push = failing_pushes()[name]
    error = failure(lambda: crypto().decrypt_push(**push))
    for link in chain(error):
        assert not shows_a_secret(str(link))
        assert not shows_a_secret(repr(link))
        assert not shows_a_secret(link.args)
    assert leaky_frames(error) == []


def test_a_refused_configuration_leaves_the_key_in_no_frame() -> None:
    """A key refused by the constructor is in no frame it raised from (only the caller's)."""
    bad_key = "Tick3tThatMust" + "+" * 29  # 43 characters, some not allowed
    try:
        MessageCrypto(TOKEN, bad_key, APPID)
    except ValueError as exc:
        error = exc
    own_frame = f"{test_a_refused_configuration_leaves_the_key_in_no_frame.__name__}: bad_key"
    assert leaky_frames(error) == [own_frame]
