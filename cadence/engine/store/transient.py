"""Which database failures are worth running the same transaction again for.

A deadlock or serialization failure on PostgreSQL, a lost connection, or a locked SQLite
file rolls the transaction back and says nothing about the work itself: run again, it
succeeds. Everything else (a constraint, a bad statement) would fail the same way again.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

# PostgreSQL SQLSTATEs: serialization failure, deadlock, lock not available, the server
# shutting down or starting up. Class 08 (connection exceptions) is matched by its prefix.
_RETRY_STATES = frozenset({"40001", "40P01", "55P03", "57P01", "57P02", "57P03"})
_RETRY_STATE_CLASSES = ("08",)
# SQLite reports a busy database only in its message.
_SQLITE_BUSY = ("database is locked", "database table is locked", "database is busy")


def is_transient(error: BaseException) -> bool:
    """Whether `error` is a failure the same transaction may not meet when run again."""
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    original = error.orig
    state = getattr(original, "sqlstate", None)
    if isinstance(state, str):
        return state in _RETRY_STATES or state.startswith(_RETRY_STATE_CLASSES)
    message = str(original).lower()
    return any(text in message for text in _SQLITE_BUSY)
