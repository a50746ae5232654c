"""The worker's task, scheduled by beat every 30 s: it evaluates the rules, sends what is due and forgets what is kept no longer."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from alerts.models import Alert, AlertChannel, AlertEvent, AlertRule, Notification
from alerts.tasks import evaluate_alerts
from tests.factories import LLMModelFactory

pytestmark = pytest.mark.django_db


def test_beat_runs_the_task_every_30_seconds():
    task = PeriodicTask.objects.get(task="alerts.tasks.evaluate_alerts")
    assert (task.interval.every, task.interval.period, task.enabled) == (30, "seconds", True)


def test_the_task_evaluates_sends_and_prunes(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    AlertRule.objects.create(slug="models-out", condition="model_out")
    LLMModelFactory(key="sonnet", availability="unavailable")
    channel = AlertChannel.objects.create(name="mail", kind=AlertChannel.Kind.EMAIL, recipients="oncall@example.com")
    long_ago = timezone.now() - timedelta(days=settings.ROUTER_RETENTION_AUDIT_DAYS + 1)
    old = Alert.objects.create(rule_slug="models-out", severity="warning", subject="model haiku", summary="old", started_at=long_ago,
                               last_seen_at=long_ago, last_sent_at=long_ago, resolved_at=long_ago)
    AlertEvent.objects.create(alert=old, kind="resolved", at=long_ago, summary="old")
    Notification.objects.create(channel=channel, created_at=long_ago, next_attempt_at=long_ago, status="sent")

    assert evaluate_alerts.apply().get() == {"events": 1, "sent": 1, "pruned": {"alerts": 1, "messages": 1}}

    assert list(Alert.objects.values_list("subject", flat=True)) == ["model sonnet"]
    assert Notification.objects.get().status == "sent"
