"""Keep appsecrets and access tokens out of logs, messages and reprs.

The classic token endpoint takes the secret in the query string, and every WeChat API
takes the token there, so anything that logs a URL leaks them: urllib3 logs every
request line at DEBUG, and requests puts the whole URL into ``ConnectionError``
messages. :func:`redact_url_text` scrubs such text; :class:`RedactingFilter` applies it
to the log records of urllib3, requests, httpx and httpcore and is installed when
wxauth is imported; :func:`redact_url_passwords` and :class:`RedactingArgumentParser`
keep a store URL's password out of the command line's messages.
"""

from __future__ import annotations

import argparse
import logging
import re
import typing

__all__ = [
    "SECRET_PLACEHOLDER",
    "RedactingArgumentParser",
    "RedactingFilter",
    "install_log_redaction",
    "redact_token",
    "redact_url_passwords",
    "redact_url_text",
]

#: Literal secrets shorter than this are not searched for in free text.
MIN_LITERAL_SECRET = 8
SECRET_PLACEHOLDER = "***"  # noqa: S105 - the mask, not a password

# Query parameters and JSON/dict keys whose values must never be shown: these names and
# every prefixed form WeChat uses (corpsecret, component_appsecret, suite_secret,
# component_access_token, suite_access_token, authorizer_access_token,
# authorizer_refresh_token, ...). Tokens keep a short prefix and their length.
_SECRET_SUFFIXES = ("secret", "refresh_token")
_TOKEN_SUFFIX = "access_token"  # noqa: S105 - a parameter name
_NAME = r"\w*?(?:" + "|".join((*_SECRET_SUFFIXES, _TOKEN_SUFFIX)) + ")"

_QUERY_RE = re.compile(r"(?P<key>\b" + _NAME + r")=(?P<value>[^&\s'\"#)]+)", re.IGNORECASE)
_JSON_RE = re.compile(
    r"(?P<kq>[\"'])(?P<key>" + _NAME + r")(?P=kq)(?P<sep>\s*:\s*)(?P<q>[\"'])(?P<value>.*?)(?P=q)",
    re.IGNORECASE,
)

#: Loggers that print request URLs. A filter on a parent logger does not see records
#: logged on its children, so each one gets its own.
URL_LOGGERS = (
    "urllib3.connectionpool",
    "urllib3.util.retry",
    "urllib3.poolmanager",
    "urllib3.connection",
    "requests",
    # httpx logs every request line at INFO ("HTTP Request: GET https://...?secret=...");
    # httpcore's DEBUG traces name requests and connections.
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
)


def redact_token(token: str, keep: int = 6) -> str:
    """Show a token as its first ``keep`` characters and its length: ``'AbC123…(len=136)'``."""
    if not token:
        return "''"
    shown = token[:keep] if len(token) > keep * 2 else ""
    return f"{shown}…(len={len(token)})"


def _mask(key: str, value: str) -> str:
    if key.lower().endswith(_TOKEN_SUFFIX):
        return redact_token(value)
    return SECRET_PLACEHOLDER


def redact_url_text(text: str, *secrets: str) -> str:
    """Scrub the values of ``secret``, ``access_token`` and their prefixed forms
    (``corpsecret``, ``component_access_token``, ...) from ``text``, in query strings,
    JSON bodies and dict reprs, and every literal in ``secrets``."""

    def query(match: re.Match[str]) -> str:
        return f"{match['key']}={_mask(match['key'], match['value'])}"

    def body(match: re.Match[str]) -> str:
        key, kq, q = match["key"], match["kq"], match["q"]
        return f"{kq}{key}{kq}{match['sep']}{q}{_mask(key, match['value'])}{q}"

    text = _QUERY_RE.sub(query, text)
    text = _JSON_RE.sub(body, text)
    for secret in secrets:
        # A very short "secret" (as tests use) would mangle ordinary words of WeChat's
        # errmsg; real AppSecrets are 32 characters. Values behind secret=/"secret":
        # are masked above whatever their length.
        if len(secret) >= MIN_LITERAL_SECRET:
            text = text.replace(secret, SECRET_PLACEHOLDER)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that formats a record and scrubs secrets and tokens from it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is the logger's problem, not ours
            return True
        cleaned = redact_url_text(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True


_FILTER = RedactingFilter()


def install_log_redaction() -> None:
    """Attach the redacting filter to the loggers that print URLs (idempotent)."""
    for name in URL_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


# scheme://user:PASSWORD@ (also scheme:/ and scheme: typos, and a password holding ':'
# or '@': up to the last '@' of the word), and ?password= / &password= in a query.
_USERINFO_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*:/{0,2}[^\s:/@'\"]*:)[^\s'\"]*@")
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&\s'\"]*", re.IGNORECASE)


def redact_url_passwords(text: str) -> str:
    """Mask the password of every URL in ``text`` (user info and ``password=``)."""
    return _USERINFO_PASSWORD.sub(r"\1***@", _QUERY_PASSWORD.sub(r"\1***", text))


class RedactingArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors, which echo the arguments it could not use,
    never show a password of a URL among them (``--store redis://user:pw@host``)."""

    def error(self, message: str) -> typing.NoReturn:
        super().error(redact_url_passwords(message))
