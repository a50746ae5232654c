import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from router.counters import redis_counters
from router.snapshot import current_snapshot


class Command(BaseCommand):
    help = "Rebuild the Redis quota counters, cooldowns and rate-limit state from the database ledger."

    def handle(self, *args, **options):
        if not settings.REDIS_URL:
            self.stdout.write("REDIS_URL is not set: the counters are the database ledger itself; nothing to rebuild.")
            return
        import redis

        snapshot = current_snapshot()
        try:
            counters = redis_counters()
            counters.invalidate()
            counters.ensure_built(snapshot, time.time())
        except redis.RedisError as exc:
            raise CommandError(f"Redis at {settings.REDIS_URL.split('@')[-1]} cannot be reached: {exc}") from exc
        self.stdout.write(f"Rebuilt counters for {len(snapshot.quotas)} quotas from the database.")
