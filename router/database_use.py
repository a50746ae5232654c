"""Whether the calling thread sent a query to the database since a point it chose.

Django's request signals look after a thread's database connections: at the end of a request they close one
that failed or outlived CONN_MAX_AGE, and mark it for a health check (CONN_HEALTH_CHECKS) before its next use.
Most routing calls never reach the database (the policy and the API keys are held in memory), so
router.wsgi.RoutingCalls sends `request_finished` only after a call that did: a connection no call touched is
as the last one left it. One that outlived CONN_MAX_AGE meanwhile is closed after the next call that uses it.
Sending the signals around every call cost a sixth of a decision's CPU (docs/performance.md).
"""

import threading

from django.db import connections
from django.db.backends.signals import connection_created

_thread = threading.local()


def clear() -> None:
    """Forgets this thread's queries so far: `reached` says whether it sends one from now on."""
    _thread.reached = False


def reached() -> bool:
    """Whether this thread sent a query since it last called `clear`, or holds a connection that failed (the failure
    may have come before any query: a cursor asked of a connection the server closed)."""
    if getattr(_thread, "reached", False):
        return True
    return any(connection.errors_occurred for connection in getattr(_thread, "connections", ()))


def _note_query(execute, sql, params, many, context):
    _thread.reached = True
    return execute(sql, params, many, context)


def _watch(connection) -> None:
    """Notes the connection's queries, and holds it among this thread's (Django's connections are each thread's own)."""
    if _note_query not in connection.execute_wrappers:
        connection.execute_wrappers.insert(0, _note_query)
    held = _thread.__dict__.setdefault("connections", [])
    if connection not in held:
        held.append(connection)


def _watch_new(sender, connection, **kwargs) -> None:
    _watch(connection)


def watch_queries() -> None:
    """Notes every query from now on, on every connection: this thread's open already, and each opened later."""
    connection_created.connect(_watch_new, dispatch_uid="router-database-use")
    for connection in connections.all(initialized_only=True):
        _watch(connection)
