"""Celery task of the alerts: evaluate the rules, send what is due and prune, every 30 s (beat)."""

from celery import shared_task
from django.utils import timezone

from alerts.delivery import deliver
from alerts.evaluate import evaluate
from alerts.retention import prune_alerts


@shared_task
def evaluate_alerts() -> dict:
    """Evaluate every enabled alert rule, send the queued messages that are due, and forget what is kept no longer;
    returns how many of each."""
    now = timezone.now()
    events = evaluate(now)
    return {"events": len(events), "sent": deliver(now), "pruned": prune_alerts(now)}
