"""Routing through a database outage.

With Redis counting, a routing decision and a usage report need nothing from the database but the
policy snapshot and the caller's API key, which every process already holds in memory. When the
database stops answering, a process goes on with what the database last told it (router.snapshot,
router.auth) for ROUTER_DATABASE_DOWN_SECONDS after it last answered; the ledger's rows wait in the
Redis stream until the drain can write them. What truly needs the database (a key this process has
not seen, a decision Redis no longer remembers, the audit, the policy) answers 503
`database_unavailable` with Retry-After. docs/operations.md, "Consistency contract".
"""

import threading
import time

from django.conf import settings
from django.db import InterfaceError, OperationalError

# What the database driver raises when it cannot be reached or the connection was lost.
DATABASE_ERRORS = (OperationalError, InterfaceError)
RETRY_AFTER_SECONDS = 5


class DatabaseUnavailable(Exception):
    """The database cannot be reached and what this process holds is not enough (or too old) to answer."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or "The database cannot be reached right now: retry after Retry-After.")


# Everything that means "answer 503 database_unavailable".
DATABASE_UNAVAILABLE = (DatabaseUnavailable, *DATABASE_ERRORS)


class _Outage:
    """This process's view of the database: since when it has not answered (epoch seconds), None while it answers."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.since: float | None = None

    def begin(self) -> None:
        with self.lock:
            if self.since is None:
                self.since = time.time()

    def end(self) -> None:
        self.since = None


outage = _Outage()


def still_trusted(verified_at: float) -> bool:
    """Whether what the database confirmed at `verified_at` (time.monotonic()) may still be used while it is down."""
    return time.monotonic() - verified_at < settings.ROUTER_DATABASE_DOWN_SECONDS
