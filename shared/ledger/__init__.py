"""The ledger engine (engine.py): one versioned account, immutable entries, a cause per movement."""

from shared.ledger.engine import (
    CREDITS,
    WALLET,
    AlreadyApplied,
    Book,
    Cause,
    Change,
    ConditionFailed,
    EntryLine,
    Head,
    Ledger,
    LedgerConflict,
    Line,
    Named,
)

__all__ = [
    "CREDITS",
    "WALLET",
    "AlreadyApplied",
    "Book",
    "Cause",
    "Change",
    "ConditionFailed",
    "EntryLine",
    "Head",
    "Ledger",
    "LedgerConflict",
    "Line",
    "Named",
]
