"""What the store contract suites share: the keys they use and a token builder.

``tests/test_store_contract.py`` runs the contract against the synchronous stores, and
``tests/test_async_store_contract.py`` runs the same cases against the async ones.
"""

from __future__ import annotations

from collections.abc import Callable

from wxauth import Token, TokenStore

KEY = "token:classic:wxcontract0001"
OTHER = "token:classic:wxcontract0002"

#: Opens one more handle on the store under test (as another process would).
StoreFactory = Callable[[], TokenStore]


def token(value: str = "T-1", fetched_at: float = 1_800_000_000.0, life: float = 7200.0) -> Token:
    """A token fetched at ``fetched_at`` (epoch seconds) that lives ``life`` seconds."""
    return Token(value=value, expires_at=fetched_at + life, fetched_at=fetched_at)
