"""The read replica (DATABASE_REPLICA_URL): the ops team's heavy reads of the audit, and nothing else, go to it.

A view or API endpoint opts in with `replica_reads()`; inside it, and only outside any transaction, reads of the
audit's tables (decisions, usage reports and the ledger's sums) go to the replica. Everything else reads and
writes the primary: the policy and the catalog (so the policy snapshot the router routes with is never a stale
one), the admin, the routing and usage calls, the drain and retention. A replica that cannot be reached when
the request starts leaves that request on the primary, with one warning in the log.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, Error, connections
from django.db.models import Model

REPLICA = "replica"
# The audit's tables: the reads that grow with the traffic.
REPLICA_MODELS = frozenset({"router.decision", "router.usageevent", "router.ledgerminute", "router.ledgerhour"})
# How far the replica's replay is behind the primary, in seconds: 0 when it has replayed everything it received, NULL
# on a server that is not a streaming replica.
LAG_SQL = """
    SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) END
"""

logger = logging.getLogger(__name__)
_reading_replica: ContextVar[bool] = ContextVar("reading_replica", default=False)


def replica_configured() -> bool:
    return REPLICA in settings.DATABASES


def _reachable() -> bool:
    try:
        with connections[REPLICA].cursor() as cursor:
            cursor.execute("SELECT 1")
    except Error as exc:
        logger.warning("The read replica cannot be reached (%s); this request reads the primary.", exc.__class__.__name__)
        return False
    return True


@contextmanager
def replica_reads() -> Iterator[None]:
    """Within it (as a `with` block or a view's decorator), the audit's reads go to the replica when one is set and answers."""
    if not replica_configured() or not _reachable():
        yield
        return
    token = _reading_replica.set(True)
    try:
        yield
    finally:
        _reading_replica.reset(token)


def replica_lag() -> float | None:
    """How many seconds the replica is behind; None when it cannot say (a server that is not a streaming replica).

    Raises django.db.Error when the replica cannot be reached."""
    with connections[REPLICA].cursor() as cursor:
        cursor.execute(LAG_SQL)
        lag = cursor.fetchone()[0]
    return None if lag is None else round(float(lag), 3)


class ReplicaRouter:
    """Sends the audit's reads to the replica within `replica_reads()`; every other read, and every write, to the primary."""

    def db_for_read(self, model: type[Model], **hints) -> str:
        if (_reading_replica.get() and model._meta.label_lower in REPLICA_MODELS
                and not connections[DEFAULT_DB_ALIAS].in_atomic_block):
            return REPLICA
        return DEFAULT_DB_ALIAS

    def db_for_write(self, model: type[Model], **hints) -> str:
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1: Model, obj2: Model, **hints) -> bool:
        return True  # the replica holds the primary's rows

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints) -> bool:
        return db != REPLICA  # a replica follows the primary's schema
