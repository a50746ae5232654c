"""System checks of the router (`manage.py check --deploy`)."""

import redis
from django.conf import settings
from django.core.checks import Error, Info, Warning, register

from router.counters.connections import client_for
from router.counters.redis import persistence
from router.retention import Retention, RetentionError


@register()
def retention_ages(app_configs, **kwargs) -> list:
    """The ledger is never pruned below what a quota window counts."""
    try:
        Retention.from_settings()
    except RetentionError as exc:
        return [Error(str(exc), hint="Set ROUTER_RETENTION_PRIMARY_DAYS and ROUTER_RETENTION_AUDIT_DAYS (docs/operations.md).",
                      id="router.E001")]
    return []


@register(deploy=True)
def redis_keeps_its_data(app_configs, **kwargs) -> list:
    """Redis holds the counters and the ledger rows not yet in the database: without appendonly a restart loses them."""
    if not settings.REDIS_URL:
        return []
    client = client_for(settings.REDIS_URL, max_connections=1, timeout=2, sentinels=settings.REDIS_SENTINELS,
                        sentinel_master=settings.REDIS_SENTINEL_MASTER, sentinel_password=settings.REDIS_SENTINEL_PASSWORD)
    try:
        kept = persistence(client)
    except redis.RedisError as exc:
        return [Info(f"Could not ask Redis how it keeps its data ({exc.__class__.__name__}).", id="router.I001")]
    finally:
        client.connection_pool.disconnect()
    if kept in ("none", "snapshots"):
        how = "keeps no data" if kept == "none" else "keeps only snapshots"
        return [Warning(
            f"Redis at REDIS_URL {how}: a restart loses the decisions and usage reports it accepted that the "
            "ledger had not yet written to the database.",
            hint="Run Redis with `appendonly yes` (docs/operations.md, Consistency contract).", id="router.W001",
        )]
    return []
