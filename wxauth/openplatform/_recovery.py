"""Re-reading every authorizer's refresh token from ``api_get_authorizer_list``.

A refresh token lost (a flushed Redis, a new store) or refused (61023: a
re-authorization whose push was missed) is recovered from the authorizer list, which
WeChat pages by 500. One pass serves everyone: at most one runs at a time per platform,
across every process sharing the store (a store lock), and a pass that ran is not
repeated for :data:`RECOVERY_SPACING` seconds, so a storm of 61023 answers makes one
pass. A pass that could not run is no verdict on any authorizer: without a component
token (no ticket yet) no pass is counted, and one that failed is remembered as failed
(callers get a :class:`~wxauth.TokenFetchError` naming it for :data:`RECOVERY_RETRY`
seconds, then it is tried again).
"""

from __future__ import annotations

import logging
import threading

from .._errors import TokenFetchError, WxAuthError
from ._authorizer import RefreshTokens
from ._component_token import ComponentTokenBase, release_quietly
from ._protocol import (
    AUTHORIZER_LIST,
    LIST_PAGE_SIZE,
    parse_list_page,
    parse_recovery_record,
    recovery_record,
)

__all__ = [
    "MAX_LIST_PAGES",
    "RECOVERY_LEASE",
    "RECOVERY_RETRY",
    "RECOVERY_SPACING",
    "RefreshTokenRecovery",
]

logger = logging.getLogger("wxauth")

#: After a re-read of the authorizer list, the next one waits at least this many
#: seconds (a storm of 61023 answers makes one pass, not one per authorizer).
RECOVERY_SPACING = 60.0
#: After a re-read that failed, the next one waits at least this many seconds; callers
#: meanwhile get a :class:`~wxauth.TokenFetchError` naming the failure.
RECOVERY_RETRY = 10.0
#: The lease of the lock that keeps two re-reads of the authorizer list apart.
RECOVERY_LEASE = 120.0
#: The most pages one re-read of the authorizer list asks for.
MAX_LIST_PAGES = 10_000


class RefreshTokenRecovery(ComponentTokenBase):
    """The re-read of the authorizer list: a layer of
    :class:`~wxauth.openplatform.ComponentTokenManager`."""

    #: The authorizers' refresh tokens (durable records of the store).
    refresh_tokens: RefreshTokens
    _recovery_lock: threading.Lock

    def recover_refresh_tokens(self, *, reason: str = "asked for") -> int | None:
        """Re-read every authorizer's refresh token from ``api_get_authorizer_list``
        (pages of :data:`~wxauth.openplatform._protocol.LIST_PAGE_SIZE`) and store the
        ones that differ. One pass at a time per platform (across processes sharing
        the store) and at most one per :data:`RECOVERY_SPACING` seconds.

        Returns how many authorizers the list gave a refresh token for, or ``None``
        when a pass ran moments ago (its result is in the store). Raises
        :class:`~wxauth.TokenFetchError` when the list cannot be read now: another
        pass held it past ``lock_timeout``, or one failed less than
        :data:`RECOVERY_RETRY` seconds ago. Without a component token (no ticket
        yet) no pass is made, and none is counted: that error is raised as it is."""
        wait = self.tokens.lock_timeout
        if not self._recovery_lock.acquire(timeout=wait):
            raise self._recovery_busy(wait)
        try:
            lock = self.store.lock(self.keys.recovery, lease=RECOVERY_LEASE)
            if not lock.acquire(timeout=wait):
                raise self._recovery_busy(wait)
            try:
                return self._recover_once(reason)
            finally:
                release_quietly(lock)
        finally:
            self._recovery_lock.release()

    def _recover_once(self, reason: str) -> int | None:
        """A pass over the list, unless one ran (or failed) moments ago; under the
        recovery locks."""
        key = self.keys.recovery
        last = parse_recovery_record(self.store.get_meta(key))
        if last is not None:
            ago = abs(self.clock() - last.at)
            if last.failure is None and ago < RECOVERY_SPACING:
                return None
            if last.failure is not None and ago < RECOVERY_RETRY:
                raise TokenFetchError(
                    f"the authorizer list of component appid={self.component_appid} could "
                    f"not be read {ago:.0f}s ago ({last.failure}); it is read again "
                    f"{RECOVERY_RETRY:g}s after a failure"
                )
        # The component token first: without one (no ticket yet, say) no pass is made,
        # and none is counted, so the pass runs as soon as a ticket comes.
        self.get_token()
        self.store.set_meta(key, recovery_record(self.clock()), ttl=RECOVERY_SPACING)
        try:
            return self._read_authorizer_list(reason)
        except WxAuthError as exc:
            failure = f"{type(exc).__name__}: {exc}"
            record = recovery_record(self.clock(), failure=failure)
            self.store.set_meta(key, record, ttl=RECOVERY_RETRY)
            raise

    def _recovery_busy(self, waited: float) -> TokenFetchError:
        return TokenFetchError(
            f"gave up after {waited:.1f}s waiting for another thread's or process's "
            f"re-read of the authorizer list of component appid={self.component_appid}; "
            "try again shortly"
        )

    def _read_authorizer_list(self, reason: str) -> int:
        """Page through the list; store each refresh token that differs from the
        record read before the pass (compare-and-set: a record written meanwhile, by
        an authorization or a cancellation, is newer than the page and stays)."""
        ctx = self._context()
        stored = self.refresh_tokens.snapshot()
        offset = listed = changed = without = pages = 0
        while pages < MAX_LIST_PAGES:
            body = {
                "component_appid": self.component_appid,
                "offset": offset,
                "count": LIST_PAGE_SIZE,
            }
            page = parse_list_page(self._call(ctx, AUTHORIZER_LIST, body))
            if isinstance(page, TokenFetchError):
                raise page
            pages += 1
            for appid, (token, auth_time) in page.tokens.items():
                current = stored.get(appid)
                if current is not None and current.token == token:
                    continue
                if self.refresh_tokens.replace(appid, current, token, event_time=auth_time):
                    changed += 1
            listed += len(page.tokens)
            without += page.without_token
            offset += page.entries
            if page.entries == 0 or offset >= page.total:
                break
        logger.warning(
            "re-read the authorizer list of component appid=%s (%s): %d refresh tokens in "
            "%d pages, %d of them new or changed%s",
            self.component_appid,
            reason,
            listed,
            pages,
            changed,
            f"; {without} authorizers without one (their code was never exchanged)"
            if without
            else "",
        )
        return listed
