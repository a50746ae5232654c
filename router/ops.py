"""Operations endpoints: /api/v1/health (no auth) and /metrics (Prometheus)."""

import contextlib
import hmac
import os
import time
from collections.abc import Callable

from django.conf import settings
from django.db import Error, connection
from django.db.models import Max
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema, inline_serializer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from providers.models import AvailabilityCheck
from router import counters, database_outage, metrics, replica
from router.counters import marks
from router.shapes import rfc3339
from router.snapshot import snapshot_trusted
from router.state_metrics import StateCollector

# Sections another app adds to /api/v1/health (the alerts app: its channels), registered when that app is ready,
# so that router never imports it. Each returns its section; the sentences under its "warnings" join the answer's.
_extra_checks: dict[str, Callable[[], dict]] = {}


def register_health_check(name: str, check: Callable[[], dict]) -> None:
    _extra_checks[name] = check


def _check_database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        database_outage.outage.end()
        return {"ok": True, "vendor": connection.vendor}
    except Exception as exc:  # any failure here is what health exists to report
        database_outage.outage.begin()
        # Routing goes on from the policy and API keys this process holds, for ROUTER_DATABASE_DOWN_SECONDS.
        return {"ok": False, "vendor": connection.vendor, "error": exc.__class__.__name__, "down_since": database_outage.outage.since,
                "routing_from_memory": snapshot_trusted()}


# Rows older than this still waiting in Redis mean the drain task (Celery worker and beat, every
# second) is not running or cannot write: the audit is behind.
LEDGER_STALE_SECONDS = 10


def _check_redis() -> dict:
    if not settings.REDIS_URL:
        return {"configured": False, "ok": None, "counters": "database"}
    try:
        redis_counters = counters.redis_counters()
        ledger = redis_counters.backlog()
        persistence = redis_counters.persistence()
        others = redis_counters.other_installations()
        ok = True
    except Exception:
        ok = False
    # This process counts elsewhere for as long as it holds Redis for down, even if Redis answers this probe.
    lost = not ok or counters.outage.since is not None
    counting_on = ("database" if settings.ROUTER_REDIS_DOWN == "db" else "refusing") if lost else "redis"
    body = {"configured": True, "ok": ok, "counters": counting_on, "on_failure": settings.ROUTER_REDIS_DOWN}
    if ok:
        body["ledger_backlog"] = ledger | {"stale": ledger["oldest_seconds"] > LEDGER_STALE_SECONDS}
        body["persistence"] = persistence
        body["installation"] = redis_counters.installation
        body["other_installations"] = [{"installation_id": key, "last_seen": rfc3339(seen)} for key, seen in sorted(others.items())]
    if counters.outage.since is not None:
        body["down_since"] = rfc3339(counters.outage.since)
    if ok:
        # When the database cannot be read, its own check in the same answer says so.
        with contextlib.suppress(*database_outage.DATABASE_ERRORS):
            body["data_lost"] = marks.last_loss(redis_counters.prefix)
    return body


def _check_replica() -> dict:
    if not replica.replica_configured():
        return {"configured": False, "ok": None}
    try:
        return {"configured": True, "ok": True, "lag_seconds": replica.replica_lag()}
    except Error as exc:
        return {"configured": True, "ok": False, "error": exc.__class__.__name__}


def _check_broker() -> dict:
    from switchboard.celery import app

    scheme = settings.CELERY_BROKER_URL.split("://", 1)[0]
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return {"ok": True, "transport": scheme}
    except Exception as exc:
        return {"ok": False, "transport": scheme, "error": exc.__class__.__name__}


def _last_refresh() -> dict:
    last = AvailabilityCheck.objects.filter(kind=AvailabilityCheck.Kind.AVAILABILITY).aggregate(last=Max("started_at"))["last"]
    if last is None:
        return {"last_at": None, "age_seconds": None}
    return {"last_at": rfc3339(last), "age_seconds": round(time.time() - last.timestamp())}


def _warnings(redis_state: dict, replica_state: dict) -> list[str]:
    """What an operator should fix though nothing fails yet."""
    warnings = []
    if replica_state["ok"] is False:
        warnings.append("The read replica (DATABASE_REPLICA_URL) cannot be reached: the dashboard, its exports and the tuning "
                        "read the primary until it answers again.")
    if redis_state.get("persistence") in ("none", "snapshots"):
        warnings.append("Redis does not keep its data with appendonly: a restart loses the decisions and usage reports "
                        "it accepted since the last write to the database (docs/operations.md, Consistency contract).")
    if lost := redis_state.get("data_lost"):
        warnings.append(f"Redis came back without the data it held: decisions and usage reports answered between {lost['from']} and "
                        f"{lost['until']} that were not yet written to the database may be lost (docs/operations.md, Redis persistence).")
    if redis_state.get("other_installations"):
        warnings.append("Other installations (another database) keep counters on this Redis under the same prefix; "
                        "each keeps to its own, but check that REDIS_URL and ROUTER_REDIS_PREFIX are meant to be shared.")
    return warnings


class HealthView(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(responses={200: inline_serializer("Health", {"status": serializers.CharField()}),
                              503: inline_serializer("Unhealthy", {"status": serializers.CharField()})})
    def get(self, request):
        database, redis_state, broker, replica_state = _check_database(), _check_redis(), _check_broker(), _check_replica()
        refusing = redis_state.get("counters") == "refusing"
        # Without the database, routing goes on only on Redis counters and a policy snapshot still trusted.
        routing_without_database = database.get("routing_from_memory") and redis_state.get("counters") == "redis"
        if (not database["ok"] and not routing_without_database) or refusing:
            state = "down"
        elif not database["ok"] or redis_state["ok"] is False or not broker["ok"] or redis_state.get("ledger_backlog", {}).get("stale"):
            state = "degraded"
        else:
            state = "ok"
        # A replica that cannot be reached is a warning: its readers fall back to the primary.
        body = {"status": state, "database": database, "replica": replica_state, "redis": redis_state, "broker": broker,
                "availability_refresh": _last_refresh() if database["ok"] else None, "warnings": _warnings(redis_state, replica_state)}
        for name, check in _extra_checks.items():
            body[name] = check() if database["ok"] else None
            body["warnings"] += body[name].pop("warnings", []) if body[name] else []
        return Response(body, status=503 if state == "down" else 200)


def metrics_view(request) -> HttpResponse:
    if settings.METRICS_TOKEN and not hmac.compare_digest(
            request.META.get("HTTP_AUTHORIZATION", "").encode(), f"Bearer {settings.METRICS_TOKEN}".encode()):
        return HttpResponse("Send METRICS_TOKEN as 'Authorization: Bearer <token>'.\n", status=401, content_type="text/plain",
                            headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        for collector in metrics.PROCESS_COUNTERS:
            registry.register(collector)
    registry.register(StateCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
