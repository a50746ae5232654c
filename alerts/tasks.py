"""Celery task of the alerts: evaluate the rules and send what is due, every 30 s (beat)."""

from celery import shared_task

from alerts.delivery import deliver
from alerts.evaluate import evaluate


@shared_task
def evaluate_alerts() -> dict:
    """Evaluate every enabled alert rule, then send the queued messages that are due; returns how many of each."""
    events = evaluate()
    return {"events": len(events), "sent": deliver()}
