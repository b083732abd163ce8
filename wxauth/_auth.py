"""``WxAuth``: the access token as a requests auth, healing rejected tokens once."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

import requests
from requests.cookies import extract_cookies_to_jar

from ._errors import CredentialError, WxAuthError
from ._hosts import Origin, token_origins, url_origin
from ._manager import TokenManager
from ._protocol import set_access_token
from ._redact import redact_token
from ._response import expired_errcode
from ._secret import Secret

__all__ = ["WxAuth", "set_access_token"]

logger = logging.getLogger("wxauth")

_PARAM = "access_token"


def _without_param(url: str, param: str) -> str:
    """``url`` with every ``param`` query parameter removed."""
    parts = urlsplit(url)
    kept = [part for part in parts.query.split("&") if unquote(part.split("=", 1)[0]) != param]
    return urlunsplit(parts._replace(query="&".join(kept)))


def _body_position(body: Any) -> tuple[bool, int | None]:
    """Whether a request body can be sent again, and where a file-like one starts."""
    if body is None or isinstance(body, (bytes, str, bytearray)):
        return True, None
    tell = getattr(body, "tell", None)
    if tell is not None and hasattr(body, "seek"):
        try:
            return True, int(tell())
        except (OSError, ValueError):
            return False, None
    return False, None


class WxAuth(requests.auth.AuthBase):
    """Adds ``access_token`` to every request of a :class:`requests.Session`.

    ``session.auth = WxAuth(appid, secret)``. When a response (JSON or text) reports
    errcode 40001, 40014 or 42001, the token that request used is invalidated, a fresh
    one is fetched (once, however many threads saw the error) and the request is sent
    again once with the same method, body, headers and send options. The returned
    response's ``history`` holds the rejected one. A second rejection is returned as it
    is. Binary answers (images, QR codes) are never read; with ``stream=True`` a JSON or
    text answer is looked at by its first KB only (read again by the caller), so a
    large streamed answer is never held in memory whole.

    The token goes only to the API hosts of the manager's source: the origin (scheme,
    host, port) of its ``api_base`` — for WeChat's default ``https://api.weixin.qq.com``
    also its regional domains api2, sh.api, sz.api and hk.api — and, for a source
    without an ``api_base`` (a callable), WeChat's API hosts and
    ``qyapi.weixin.qq.com``. ``extra_hosts`` adds more: host names (https, port 443)
    or ``scheme://host[:port]`` origins. A request to any other host (a CDN, another
    API, a redirect's target) is sent untouched: no token, no retry.

    Pass ``manager=`` to share one :class:`TokenManager` between several auths and
    decorators, or keyword options for a new one (``api_base``, ``store``, ...);
    ``WxAuth(appid, source=callable)`` needs no secret.
    One instance is safe to share between threads: per-request state travels with the
    request, never on the auth object.
    """

    def __init__(
        self,
        appid: str | None = None,
        secret: str | Secret | None = None,
        *,
        manager: TokenManager | None = None,
        extra_hosts: Iterable[str] = (),
        **manager_options: Any,
    ) -> None:
        if isinstance(secret, str):
            secret = Secret(secret)  # no clear local, should a line below raise
        if manager is not None:
            if appid is not None or secret is not None or manager_options:
                raise ValueError("pass either manager= or appid/secret and options, not both")
            self.manager: TokenManager = manager
        else:
            source = manager_options.get("source")
            # A callable or a TokenSource brings its own tokens: no secret needed.
            needs_secret = source is None or isinstance(source, str)
            if appid is None or (secret is None and needs_secret):
                raise ValueError(
                    "WxAuth needs appid and secret (or appid and a callable or TokenSource "
                    "source=), or manager="
                )
            self.manager = TokenManager(appid, secret, **manager_options)
        api_base = manager_options.get("api_base")
        self._hosts: frozenset[Origin] = token_origins(
            self.manager.source, api_base if isinstance(api_base, str) else None, extra_hosts
        )

    def get_token(self) -> str:
        """The current access token (see :meth:`TokenManager.get_token`)."""
        return self.manager.get_token()

    def invalidate(self, token: str) -> bool:
        """Drop ``token`` if it is still current (see :meth:`TokenManager.invalidate`)."""
        return self.manager.invalidate(token)

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        url = r.url or ""
        if url_origin(url) not in self._hosts:
            return r  # not a WeChat API host: the token is none of its business
        token = self.manager.get_token()
        r.url = set_access_token(url, token)
        replayable, position = _body_position(r.body)

        def heal(response: requests.Response, **send_kwargs: Any) -> requests.Response:
            return self._heal(response, token, replayable, position, send_kwargs)

        r.hooks["response"].append(heal)
        return r

    def _heal(
        self,
        response: requests.Response,
        token: str,
        replayable: bool,
        position: int | None,
        send_kwargs: dict[str, Any],
    ) -> requests.Response:
        # requests copies the hooks onto the requests of a redirect it follows: the
        # answer of another host is not ours to heal (a re-send would carry the token).
        request_url = response.request.url if response.request is not None else None
        if url_origin(request_url or response.url or "") not in self._hosts:
            return response
        if response.is_redirect:
            self._scrub_location(response)
            return response
        errcode = expired_errcode(response, stream=bool(send_kwargs.get("stream")))
        if errcode is None:
            return response
        path = urlsplit(response.url or "").path
        connection = getattr(response, "connection", None)
        if not replayable or connection is None:
            why = (
                "the request body cannot be sent again (an iterator or a non-seekable stream)"
                if not replayable
                else "the transport adapter set no response.connection to re-send with"
            )
            logger.warning(
                "%s answered errcode %d, but %s: returning the response", path, errcode, why
            )
            self.manager.invalidate(token)
            return response
        self.manager.invalidate(token)
        try:
            fresh = self.manager.get_token()
        except CredentialError:
            raise  # a configuration error (wrong secret, IP not whitelisted) must surface
        except WxAuthError as exc:
            # No token to retry with for now (quota, refresh budget, network, store):
            # the caller gets WeChat's answer, as after a second rejection; logged.
            logger.warning("%s: no fresh token to re-send with (%s)", path, exc)
            return response
        if fresh == token:
            # The manager holds this token back (its replacements keep being rejected,
            # and it said why): re-sending would only be rejected again.
            return response
        logger.warning(
            "%s answered errcode %d for appid=%s with token %s; sending the request "
            "once more with a fresh token",
            path,
            errcode,
            self.manager.appid,
            redact_token(token),
        )
        original = response.request
        # Release the connection of the rejected answer before re-sending.
        response.close()
        retry = original.copy()
        if retry._cookies is not None:  # type: ignore[attr-defined]
            extract_cookies_to_jar(retry._cookies, original, response.raw)  # type: ignore[attr-defined,no-untyped-call]
            retry.prepare_cookies(retry._cookies)  # type: ignore[attr-defined]
        retry.url = set_access_token(retry.url or "", fresh)
        # A transport may have swapped the file for the bytes it read (``responses``
        # does): then there is nothing to rewind.
        seek = getattr(retry.body, "seek", None)
        if position is not None and seek is not None:
            seek(position)
        # Straight to the adapter, as HTTPDigestAuth does: response hooks do not run
        # again, so the retry cannot recurse into another retry.
        second: requests.Response = connection.send(retry, **send_kwargs)
        second.history.append(response)
        second.request = retry
        return second

    def _scrub_location(self, response: requests.Response) -> None:
        """Take the token out of a redirect to another host before requests follows it
        (it follows by Location, without calling the auth again)."""
        location = response.headers.get("Location", "")
        if _PARAM not in unquote(location):
            return
        target = urljoin(response.url or "", location)
        if url_origin(target) in self._hosts:
            return
        response.headers["Location"] = _without_param(location, _PARAM)
        logger.warning(
            "%s redirected to another host with the access_token in the Location: removed it",
            urlsplit(response.url or "").path,
        )

    def __repr__(self) -> str:
        manager = getattr(self, "manager", None)  # None while __init__ runs
        return f"WxAuth(appid={getattr(manager, 'appid', None)!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, WxAuth)
            and other.manager is self.manager
            and other._hosts == self._hosts
        )

    def __hash__(self) -> int:
        return id(self.manager)
