"""What the alerts keep: resolved alerts (with their events) as long as the ledger keeps refusals, messages sent or
given up for 30 days; what still fires or waits to be sent is always kept."""

from datetime import datetime, timedelta

from django.conf import settings

from alerts.models import Alert, Notification

MESSAGES_KEPT = timedelta(days=30)


def prune_alerts(now: datetime) -> dict[str, int]:
    """Deletes what is kept no longer at `now`; returns how many alerts and messages."""
    _, alerts = Alert.objects.filter(resolved_at__lt=now - timedelta(days=settings.ROUTER_RETENTION_AUDIT_DAYS)).delete()
    _, messages = Notification.objects.filter(created_at__lt=now - MESSAGES_KEPT).exclude(status=Notification.Status.PENDING).delete()
    return {"alerts": alerts.get("alerts.Alert", 0), "messages": messages.get("alerts.Notification", 0)}
