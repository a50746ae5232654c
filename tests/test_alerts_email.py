"""An email channel sends through Django's email settings: one message per evaluation, to every recipient."""

import pytest
from django.core import mail
from django.utils import timezone

from alerts.delivery import deliver
from alerts.evaluate import evaluate
from alerts.models import AlertChannel, AlertRule
from tests.factories import LLMModelFactory

pytestmark = pytest.mark.django_db


def test_an_alert_is_emailed_to_the_channels_recipients(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.DEFAULT_FROM_EMAIL = "switchboard@example.com"
    settings.ALERTS_DASHBOARD_URL = "https://switchboard.example.com"
    AlertRule.objects.create(slug="models-out", condition="model_out", severity="critical",
                             description="Check the provider's status page.")
    LLMModelFactory(key="sonnet", availability="unavailable", availability_reason="not_found_error: sonnet")
    LLMModelFactory(key="haiku", availability="unavailable")
    AlertChannel.objects.create(name="oncall-mail", kind=AlertChannel.Kind.EMAIL, recipients="a@example.com, b@example.com")

    now = timezone.now()
    evaluate(now)
    deliver(now)

    [message] = mail.outbox
    assert message.subject == "[Switchboard] 2 firing"
    assert message.to == ["a@example.com", "b@example.com"]
    assert message.from_email == "switchboard@example.com"
    assert "FIRING [critical] models-out: Model haiku" in message.body
    assert "FIRING [critical] models-out: Model sonnet" in message.body
    assert "What to do: Check the provider's status page." in message.body
    assert "Alerts: https://switchboard.example.com/alerts/" in message.body
