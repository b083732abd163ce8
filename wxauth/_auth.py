"""``WxAuth``: the access token as a requests auth, healing rejected tokens once."""

from __future__ import annotations

import functools
import logging
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import requests
from requests.cookies import extract_cookies_to_jar

from ._errors import CredentialError, WxAuthError
from ._manager import TokenManager
from ._redact import redact_token
from ._response import expired_errcode

__all__ = ["WxAuth", "set_access_token"]

logger = logging.getLogger("wxauth")

_PARAM = "access_token"


@functools.lru_cache(maxsize=16)
def _quoted(token: str) -> str:
    # Percent-encoding a ~150-character token was most of set_access_token's time, and
    # every request encodes one of the same few tokens.
    return quote(token, safe="")


def set_access_token(url: str, token: str, param: str = _PARAM) -> str:
    """Return ``url`` with exactly one ``param`` query parameter, set to ``token``."""
    value = f"{param}={_quoted(token)}"
    if "#" in url:
        parts = urlsplit(url)
        return urlunsplit(parts._replace(query=_replace_in_query(parts.query, param, value)))
    base, sep, query = url.partition("?")
    return f"{base}?{_replace_in_query(query, param, value)}" if sep else f"{url}?{value}"


def _replace_in_query(query: str, param: str, value: str) -> str:
    if not query:
        return value
    if param + "=" not in query and not query.startswith(param) and "&" + param not in query:
        return f"{query}&{value}"
    kept = [part for part in query.split("&") if part and part.split("=", 1)[0] != param]
    kept.append(value)
    return "&".join(kept)


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
    is. Binary answers (images, QR codes) are never read.

    Pass ``manager=`` to share one :class:`TokenManager` between several auths and
    decorators, or keyword options for a new one (``api_base``, ``store``, ...);
    ``WxAuth(appid, source=callable)`` needs no secret.
    One instance is safe to share between threads: per-request state travels with the
    request, never on the auth object.
    """

    def __init__(
        self,
        appid: str | None = None,
        secret: str | None = None,
        *,
        manager: TokenManager | None = None,
        **manager_options: Any,
    ) -> None:
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

    def get_token(self) -> str:
        """The current access token (see :meth:`TokenManager.get_token`)."""
        return self.manager.get_token()

    def invalidate(self, token: str) -> bool:
        """Drop ``token`` if it is still current (see :meth:`TokenManager.invalidate`)."""
        return self.manager.invalidate(token)

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        token = self.manager.get_token()
        r.url = set_access_token(r.url or "", token)
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
        errcode = expired_errcode(response)
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
        logger.warning(
            "%s answered errcode %d for appid=%s with token %s; refreshing "
            "and sending the request once more",
            path,
            errcode,
            self.manager.appid,
            redact_token(token),
        )
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

    def __repr__(self) -> str:
        return f"WxAuth(appid={self.manager.appid!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WxAuth) and other.manager is self.manager

    def __hash__(self) -> int:
        return id(self.manager)
