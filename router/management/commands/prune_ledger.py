from django.core.management.base import BaseCommand, CommandError

from router.retention import Retention, RetentionError, prune


class Command(BaseCommand):
    help = ("Delete counted decisions and usage reports older than the ages they are kept for (whole partitions on "
            "PostgreSQL, small batches otherwise); "
            "the per-minute and per-hour sums keep what they held.")

    def add_arguments(self, parser):
        parser.add_argument("--primary-days", type=int, help="Days to keep primary decisions and usage reports "
                                                               "(default ROUTER_RETENTION_PRIMARY_DAYS).")
        parser.add_argument("--audit-days", type=int, help="Days to keep fallbacks, escalations and refusals "
                                                             "(default ROUTER_RETENTION_AUDIT_DAYS).")

    def handle(self, *args, primary_days=None, audit_days=None, **options):
        configured = Retention.from_settings()
        try:
            retention = Retention(primary_days if primary_days is not None else configured.primary_days,
                                  audit_days if audit_days is not None else configured.audit_days)
        except RetentionError as exc:
            raise CommandError(f"{exc} Nothing was deleted.") from exc
        pruned = prune(retention)
        if pruned.dropped:
            self.stdout.write(f"Dropped {len(pruned.dropped)} partitions of the ledger (longest {max(d.seconds for d in pruned.dropped):.3f} s): "
                              f"{', '.join(dropped.name for dropped in pruned.dropped)}.")
        self.stdout.write(
            f"Deleted {pruned.decisions} decisions and {pruned.usage_events} usage reports older than {retention.primary_days} "
            f"days (fallbacks and refusals: {retention.audit_days} days), {pruned.minutes} per-minute and {pruned.hours} "
            f"per-hour sums, in {len(pruned.batch_seconds)} batches (longest {max(pruned.batch_seconds):.3f} s)."
        )
