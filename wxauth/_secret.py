"""A value type that keeps a credential out of reprs, tracebacks and error trackers.

Error trackers (Sentry's default event capture) and ``traceback.TracebackException(...,
capture_locals=True)`` record the locals of every frame on an exception's traceback:
strings, and the items of dicts, tuples and lists, in clear; anything else by its
``repr``. wxauth therefore holds the AppSecret as a :class:`Secret`, whose ``repr`` and
``str`` are a mask, and unwraps it only in short-lived helpers whose frames are gone
before anything can raise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

__all__ = ["Secret", "reveal"]

_MASK = "**********"


class Secret:
    """A credential that does not show itself: ``repr`` is ``Secret('**********')``.

    Like pydantic's ``SecretStr``: :meth:`get_secret_value` returns the clear value;
    equality and hashing compare it (so two sources with the same secret compare
    equal) without revealing it. A ``Secret`` cannot be pickled or copied into a
    string by formatting.
    """

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str | Secret) -> None:
        if isinstance(value, Secret):
            value = value._value
        if not isinstance(value, str):
            raise TypeError(f"Secret takes a str, not {type(value).__name__}")
        object.__setattr__(self, "_value", value)

    def get_secret_value(self) -> str:
        """The clear value. Use it in a call, do not keep it in a local that outlives it."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({_MASK!r})"

    def __str__(self) -> str:
        return _MASK

    def __format__(self, format_spec: str) -> str:
        return format(_MASK, format_spec)

    def __len__(self) -> int:
        return len(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return self._value == other._value
        return NotImplemented

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("Secret is immutable")

    def __copy__(self) -> Secret:
        return self  # immutable

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret is not pickled: pass the clear value on purpose")


def reveal(value: Any) -> Any:
    """``value`` with every :class:`Secret` in it (itself, or the values of a mapping,
    recursively) replaced by its clear value; a mapping comes back as a new dict.

    For the short-lived helpers that hand a request to the HTTP library: what it
    returns must not be kept in a local of a frame that can outlive the call."""
    if isinstance(value, Secret):
        return value.get_secret_value()
    if isinstance(value, Mapping):
        return {key: reveal(item) for key, item in value.items()}
    return value
