"""What a :class:`~wxauth.testing.FakeWeChat` answered: the call record and the tokens.

Tests read the emulator through these: the recorded :class:`~wxauth.testing.Call` list
and counts over it, the issued tokens and their status, the quota used, and the
``assert_*`` helpers, whose failure message lists the most recent calls. Every read
takes the fake's lock and returns a copy or a value, never live state.

Counts come from tallies kept as calls are recorded (by kind, path and errcode, overall
and per owner), not from the list of calls, so they stay cheap for millions of calls and
stay right when the fake keeps only the latest calls (``call_history=``).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable

from ._endpoints.classic import TOKEN_PATH
from ._state import EmulatorState
from ._wire import TOKEN_KINDS, Call, CallKind, TokenStatus, normalize_path

__all__ = ["Inspection"]


class Inspection(EmulatorState):
    """The read-only half of :class:`~wxauth.testing.FakeWeChat`: calls, tokens, asserts."""

    _calls: deque[Call]
    _tally: Counter[tuple[CallKind, str, int | None]]
    _tally_keys: dict[tuple[CallKind, str, int | None], tuple[CallKind, str, int | None]]
    _tally_by_owner: dict[str | None, Counter[tuple[CallKind, str, int | None]]]
    #: The fake's clock (:meth:`FakeWeChat.clock`), for the status of tokens and quotas.
    clock: Callable[[], float]

    def _record(self, call: Call) -> None:
        """Keep ``call`` (within ``call_history``) and count it."""
        self._calls.append(call)
        # One tuple per distinct key, shared by every owner's tally.
        key = self._tally_keys.setdefault(
            (call.kind, call.path, call.errcode), (call.kind, call.path, call.errcode)
        )
        self._tally[key] += 1
        per_owner = self._tally_by_owner.get(call.owner)
        if per_owner is None:
            per_owner = self._tally_by_owner[call.owner] = Counter()
        per_owner[key] += 1

    @property
    def calls(self) -> list[Call]:
        """Every request answered so far, oldest first (a copy); with ``call_history=N``
        only the latest N."""
        with self._lock:
            return list(self._calls)

    @property
    def token_fetches(self) -> int:
        """Requests to any token endpoint, whatever their outcome."""
        return self.count(token_fetch=True)

    @property
    def api_calls(self) -> int:
        """Requests to any other path, whatever their outcome."""
        return self.count(kind="api")

    @property
    def issued_tokens(self) -> list[str]:
        """Every token issued so far, oldest first (a copy); with ``forget_tokens_after``
        only those still remembered."""
        with self._lock:
            return list(self._issued)

    def latest_token(self, owner: str | None = None) -> str | None:
        """The most recently issued token (of ``owner``, an appid or corpid, if given)."""
        with self._lock:
            for value in reversed(self._issued):
                if owner is None or self._tokens[value].owner == owner:
                    return value
        return None

    def token_status(self, token: str) -> TokenStatus:
        """``"valid"``, ``"retired"`` (40001), ``"expired"`` (42001) or ``"unknown"``."""
        with self._lock:
            record = self._tokens.get(token)
            return "unknown" if record is None else record.status(self.clock())

    def count(
        self,
        *,
        kind: CallKind | None = None,
        path: str | None = None,
        errcode: int | None = None,
        token_fetch: bool | None = None,
        owner: str | None = None,
    ) -> int:
        """How many calls match every given filter (every call, whatever ``call_history``).

        ``owner``: the appid (or corpid) a call was for; for ``kind="authorizer_token"``
        the authorizer appid, so ``count(kind="authorizer_token", owner=appid)`` is that
        authorizer's token fetches.
        """
        want_path = None if path is None else normalize_path(path)
        with self._lock:
            tally = self._tally if owner is None else self._tally_by_owner.get(owner, Counter())
            return sum(
                n
                for (call_kind, call_path, call_errcode), n in tally.items()
                if (kind is None or call_kind == kind)
                and (want_path is None or call_path == want_path)
                and (errcode is None or call_errcode == errcode)
                and (token_fetch is None or (call_kind in TOKEN_KINDS) == token_fetch)
            )

    def token_fetches_of(self, owner: str) -> int:
        """Token-endpoint requests for one appid, corpid, component or authorizer."""
        return self.count(token_fetch=True, owner=owner)

    def errcodes(self, *, kind: CallKind | None = None) -> Counter[int | None]:
        """Outcomes by errcode, e.g. ``Counter({0: 9, 40001: 1})`` for ``kind="api"``."""
        result: Counter[int | None] = Counter()
        with self._lock:
            for (call_kind, _, call_errcode), n in self._tally.items():
                if kind is None or call_kind == kind:
                    result[call_errcode] += n
        return result

    def quota_used(self, appid: str, path: str = TOKEN_PATH) -> int:
        """Calls of ``path`` counted against ``appid``'s quota today (``appid`` may be a
        component's)."""
        with self._lock:
            usage = self._quota_holder(appid).usage.get(normalize_path(path))
            return 0 if usage is None else usage.current(self._day(self.clock()))

    def assert_token_fetches(self, expected: int, *, kind: CallKind | None = None) -> None:
        """Fail unless exactly ``expected`` token-endpoint requests were made."""
        actual = self.count(token_fetch=True) if kind is None else self.count(kind=kind)
        if actual != expected:
            raise AssertionError(
                f"expected {expected} token fetches, got {actual}:\n{self._summary(True)}"
            )

    def assert_api_calls(
        self, expected: int, *, errcode: int | None = None, path: str | None = None
    ) -> None:
        """Fail unless exactly ``expected`` API calls (with that errcode/path) were made."""
        actual = self.count(kind="api", errcode=errcode, path=path)
        if actual != expected:
            which = "" if errcode is None else f" with errcode {errcode}"
            raise AssertionError(
                f"expected {expected} API calls{which}, got {actual}:\n{self._summary(False)}"
            )

    def _summary(self, token_fetch: bool) -> str:
        calls = [c for c in self.calls if c.is_token_fetch == token_fetch]
        lines = [f"  {c!r}" for c in calls[-20:]]
        return "\n".join(lines) if lines else "  (none)"
