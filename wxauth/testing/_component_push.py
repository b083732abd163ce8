"""The Open Platform's pushes: what WeChat POSTs to a component's 授权事件接收 URL.

Every 10 minutes WeChat pushes a ``component_verify_ticket``; when an account authorizes,
updates or cancels an authorization it pushes a notice. Both arrive the same way:
``POST <url>?signature=&timestamp=&nonce=&encrypt_type=aes&msg_signature=`` with the body
``<xml><AppId><![CDATA[component_appid]]></AppId><Encrypt><![CDATA[...]]></Encrypt></xml>``,
where ``Encrypt`` is the inner XML encrypted with the component's EncodingAESKey
(WXBizMsgCrypt, appid = the component's) and ``msg_signature`` signs it with the
component's Token.

:meth:`ComponentPushes.verify_ticket_push` and :meth:`ComponentPushes.authorization_push`
change the emulator's state (a new ticket; a new authorization and code) and return the
request's query and body, for a handler under test called directly;
:meth:`ComponentPushes.push_verify_ticket` and :meth:`ComponentPushes.push_authorization`
also POST it to a loopback URL. The encryption uses
:class:`wxauth.openplatform._crypto.MessageCrypto`, imported when a push is first built
(it needs ``cryptography``), so the emulator imports without it.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

import requests

from ._endpoints.component import AUTHORIZATION_CODE_EXPIRES_IN, Component, ComponentEndpoints

if TYPE_CHECKING:
    from ..openplatform._crypto import MessageCrypto

__all__ = ["PUSH_TIMEOUT", "ComponentPushes", "InfoType", "PushDeliveryError"]

#: Seconds a push POST may take (connect and read) before it counts as failed.
PUSH_TIMEOUT = 10.0

#: The authorization notices: 授权成功, 更新授权, 取消授权.
InfoType = Literal["authorized", "updateauthorized", "unauthorized"]
_INFO_TYPES = ("authorized", "updateauthorized", "unauthorized")


class PushDeliveryError(RuntimeError):
    """A push could not be delivered, or its handler did not answer 2xx.

    (Not :class:`wxauth.openplatform.PushError`, which a handler raises for a push it
    refuses.)

    ``status`` is the handler's HTTP status, or ``None`` if no answer came. The message
    names the status, never the handler's body.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class _Sealed:
    """What a push needs from the state, taken under the lock: keys, random parts."""

    def __init__(
        self,
        component: Component,
        fields: Sequence[tuple[str, str]],
        timestamp: str,
        nonce: str,
        random: bytes,
    ) -> None:
        self.appid = component.appid
        self.token = component.token
        self.encoding_aes_key = component.encoding_aes_key
        self.fields = fields
        self.timestamp = timestamp
        self.nonce = nonce
        self.random = random

    def request(self) -> tuple[dict[str, str], bytes]:
        """The push's query parameters and body, as WeChat sends them."""
        MessageCrypto = _message_crypto()  # noqa: N806 - a class
        inner = "<xml>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in self.fields) + "</xml>"
        crypto = MessageCrypto(self.token, self.encoding_aes_key, self.appid)
        encrypt = crypto.encrypt(inner, random=self.random)
        plain = "".join(sorted([self.token, self.timestamp, self.nonce]))
        query = {
            "signature": hashlib.sha1(plain.encode()).hexdigest(),  # noqa: S324 - WeChat's
            "timestamp": self.timestamp,
            "nonce": self.nonce,
            "encrypt_type": "aes",
            "msg_signature": crypto.signature(self.timestamp, self.nonce, encrypt),
        }
        body = (
            f"<xml><AppId><![CDATA[{self.appid}]]></AppId>"
            f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        )
        return query, body.encode()


def _message_crypto() -> type[MessageCrypto]:
    """The crypto class, imported when first needed (it needs ``cryptography``)."""
    try:
        from ..openplatform._crypto import MessageCrypto
    except ImportError as exc:
        raise ImportError(
            "the emulator's Open Platform pushes are encrypted with cryptography: "
            "pip install 'wxauth[openplatform]'"
        ) from exc
    return MessageCrypto


def _require_loopback(url: str) -> None:
    split = urlsplit(url)
    if split.scheme not in ("http", "https"):
        raise ValueError("a push URL must be http:// or https://")
    host = split.hostname or ""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"the emulator pushes to loopback addresses only, not {host!r}")


class ComponentPushes(ComponentEndpoints):
    """Build the Open Platform's encrypted pushes, or POST them to a loopback handler."""

    def verify_ticket_push(
        self,
        component_appid: str,
        *,
        ticket: str | None = None,
        create_time: int | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """Issue a new verify ticket and return its push: (query parameters, body).

        ``ticket``: push this text instead of issuing one (it is not registered, so
        ``api_component_token`` accepts it only if the emulator issued it).
        ``create_time``: the ``CreateTime`` (default: now on the emulator clock).
        Needs ``cryptography``.
        """
        return self._ticket_push(component_appid, ticket, create_time)[1]

    def push_verify_ticket(self, url: str, component_appid: str | None = None) -> str:
        """Issue a new verify ticket, POST its push to ``url``, and return the ticket.

        ``url`` must be a loopback address (a handler under test). ``component_appid``
        may be left out when one component is registered. Raises :class:`PushDeliveryError` if
        the handler does not answer 2xx; the ticket stays issued, as on WeChat, where a
        failed push does not take the ticket back.
        """
        _require_loopback(url)
        if component_appid is None:
            with self._lock:
                if len(self._components) != 1:
                    raise ValueError("give component_appid: not exactly one is registered")
                component_appid = next(iter(self._components))
        ticket, (query, body) = self._ticket_push(component_appid, None, None)
        _post(url, query, body)
        return ticket

    def authorization_push(
        self,
        component_appid: str,
        authorizer_appid: str,
        info_type: InfoType = "authorized",
    ) -> tuple[dict[str, str], bytes]:
        """Change an authorization and return WeChat's notice of it: (query, body).

        ``"authorized"`` and ``"updateauthorized"`` (the account must be authorized
        already) authorize as :meth:`authorize` does and carry ``AuthorizerAppid``,
        ``AuthorizationCode``, ``AuthorizationCodeExpiredTime`` and ``PreAuthCode``;
        ``"unauthorized"`` cancels as :meth:`unauthorize` does and carries only
        ``AuthorizerAppid``. Needs ``cryptography``.
        """
        return self._authorization_push(component_appid, authorizer_appid, info_type)[1]

    def push_authorization(
        self,
        url: str,
        component_appid: str,
        authorizer_appid: str,
        info_type: InfoType = "authorized",
    ) -> str | None:
        """Like :meth:`authorization_push`, and POST the notice to the loopback ``url``.

        Returns the new authorization code (``None`` for ``"unauthorized"``). Raises
        :class:`PushDeliveryError` if the handler does not answer 2xx (the change stands).
        """
        _require_loopback(url)
        code, (query, body) = self._authorization_push(component_appid, authorizer_appid, info_type)
        _post(url, query, body)
        return code

    # -- building --------------------------------------------------------------------------

    def _push_parts(self) -> tuple[str, str, bytes]:
        """A push's timestamp, nonce and 16 random bytes (lock held: the seeded rng)."""
        timestamp = str(int(self.clock()))
        nonce = str(self._rng.randrange(10**9, 10**10))
        return timestamp, nonce, self._rng.getrandbits(128).to_bytes(16, "big")

    def _ticket_push(
        self, component_appid: str, ticket: str | None, create_time: int | None
    ) -> tuple[str, tuple[dict[str, str], bytes]]:
        _message_crypto()  # fail before the state changes if cryptography is missing
        with self._lock:
            now = self.clock()
            component = self._component_of(component_appid)
            value = self._new_ticket(component, now).value if ticket is None else ticket
            fields = [
                ("AppId", component.appid),
                ("CreateTime", str(int(now) if create_time is None else int(create_time))),
                ("InfoType", "component_verify_ticket"),
                ("ComponentVerifyTicket", value),
            ]
            sealed = _Sealed(component, fields, *self._push_parts())
        return value, sealed.request()

    def _authorization_push(
        self, component_appid: str, authorizer_appid: str, info_type: str
    ) -> tuple[str | None, tuple[dict[str, str], bytes]]:
        if info_type not in _INFO_TYPES:
            raise ValueError(f"info_type must be one of {', '.join(_INFO_TYPES)}")
        _message_crypto()  # fail before the state changes if cryptography is missing
        with self._lock:
            now = self.clock()
            component = self._component_of(component_appid)
            fields = [
                ("AppId", component.appid),
                ("CreateTime", str(int(now))),
                ("InfoType", info_type),
                ("AuthorizerAppid", authorizer_appid),
            ]
            code: str | None = None
            if info_type == "unauthorized":
                self._unauthorize(component, authorizer_appid, now)
            else:
                current = component.authorizations.get(authorizer_appid)
                if info_type == "updateauthorized" and (current is None or not current.authorized):
                    raise ValueError(f"{authorizer_appid!r} does not authorize {component_appid!r}")
                auth = self._authorize(component, authorizer_appid, now, None)
                code = self._new_code(component, auth, now).value
                fields += [
                    ("AuthorizationCode", code),
                    ("AuthorizationCodeExpiredTime", str(int(now) + AUTHORIZATION_CODE_EXPIRES_IN)),
                    ("PreAuthCode", self._random_text("preauthcode@@@")),
                ]
            sealed = _Sealed(component, fields, *self._push_parts())
        return code, sealed.request()


def _post(url: str, query: dict[str, str], body: bytes) -> None:
    """POST one push as WeChat does; raise :class:`PushDeliveryError` unless it got a 2xx."""
    with requests.Session() as session:
        # Loopback only: no proxy from the environment, no redirect followed.
        session.trust_env = False
        try:
            answer = session.post(
                url,
                params=query,
                data=body,
                headers={"Content-Type": "text/xml"},
                timeout=PUSH_TIMEOUT,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise PushDeliveryError(f"the push was not delivered: {type(exc).__name__}") from exc
        status = answer.status_code
        answer.close()
    if not 200 <= status < 300:
        raise PushDeliveryError(f"the push handler answered HTTP {status}", status=status)
