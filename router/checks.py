"""System checks of the router (`manage.py check --deploy`)."""

import redis
from django.conf import settings
from django.core.checks import Info, Warning, register

from router.counters.redis import persistence


@register(deploy=True)
def redis_keeps_its_data(app_configs, **kwargs) -> list:
    """Redis holds the counters and the ledger rows not yet in the database: without appendonly a restart loses them."""
    if not settings.REDIS_URL:
        return []
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        kept = persistence(client)
    except redis.RedisError as exc:
        return [Info(f"Could not ask Redis how it keeps its data ({exc.__class__.__name__}).", id="router.I001")]
    finally:
        client.close()
    if kept in ("none", "snapshots"):
        how = "keeps no data" if kept == "none" else "keeps only snapshots"
        return [Warning(
            f"Redis at REDIS_URL {how}: a restart loses the decisions and usage reports it accepted that the "
            "ledger had not yet written to the database.",
            hint="Run Redis with `appendonly yes` (docs/operations.md, Consistency contract).", id="router.W001",
        )]
    return []
