"""The alerts' part of /api/v1/health: when the rules were last evaluated, open alerts, and channels that fail."""

from datetime import timedelta

from django.db.models import Min
from django.utils import timezone

from alerts.models import Alert, AlertChannel, AlertRule, Evaluation
from router.ops import register_health_check
from router.shapes import rfc3339

# The worker evaluates every 30 s: this long without an evaluation means it is not running.
EVALUATION_LATE = timedelta(minutes=5)


def alerts_health() -> dict:
    last = Evaluation.objects.filter(pk=1).values_list("evaluated_at", flat=True).first()
    failing = list(AlertChannel.objects.filter(enabled=True, failing_since__isnull=False).order_by("name"))
    warnings = [f"Alert channel {channel.name} has failed since {rfc3339(channel.failing_since)} ({channel.last_error}): its "
                "messages are retried with backoff; the dashboard's alerts page lists them." for channel in failing]
    # Late since the last evaluation, or, before the first, since the first rule was made.
    since = last or AlertRule.objects.filter(enabled=True).aggregate(first=Min("created_at"))["first"]
    if since is not None and timezone.now() - since > EVALUATION_LATE and AlertRule.objects.filter(enabled=True).exists():
        warnings.append("Alert rules are not being evaluated (every 30 s by the Celery worker with beat): is the worker running?")
    return {
        "last_evaluated_at": rfc3339(last),
        "open": Alert.objects.filter(resolved_at=None).count(),
        "failing_channels": [{"name": channel.name, "failing_since": rfc3339(channel.failing_since), "error": channel.last_error}
                             for channel in failing],
        "warnings": warnings,
    }


register_health_check("alerts", alerts_health)
