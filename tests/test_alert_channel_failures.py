"""A channel that does not take a message is tried again with backoff, and its failure shows in /api/v1/health and on
the alerts page until a message gets through; an unreachable or refused webhook fails the same way."""

from datetime import timedelta

import pytest
from django.utils import timezone

from alerts.delivery import MAX_ATTEMPTS, deliver
from alerts.evaluate import evaluate
from alerts.models import AlertChannel, AlertRule, Notification
from tests.factories import LLMModelFactory
from tests.webhook_receivers import WebhookReceiver

pytestmark = pytest.mark.django_db


@pytest.fixture
def firing(settings):
    """A model out of routing and a rule about it: one alert to send."""
    settings.PROVIDER_ALLOW_PRIVATE_BASE_URLS = True
    AlertRule.objects.create(slug="models-out", condition="model_out", repeat_minutes=0)
    LLMModelFactory(key="sonnet", availability="unavailable")


def webhook(url: str) -> AlertChannel:
    channel = AlertChannel(name="oncall", kind=AlertChannel.Kind.WEBHOOK)
    channel.set_url(url)
    channel.save()
    return channel


def test_a_failing_receiver_is_retried_with_backoff_and_its_failure_is_shown(firing, client, viewer):
    with WebhookReceiver() as receiver:
        receiver.fail_status = 500
        channel = webhook(receiver.url)
        start = timezone.now()
        evaluate(start)
        deliver(start)
        assert len(receiver.bodies) == 1

        notification = Notification.objects.get()
        assert (notification.status, notification.attempts) == ("pending", 1)
        assert notification.last_error == "the webhook answered HTTP 500"
        assert notification.next_attempt_at == start + timedelta(seconds=30)
        channel.refresh_from_db()
        assert channel.failing_since == start

        health = client.get("/api/v1/health").json()
        assert health["alerts"]["failing_channels"] == [
            {"name": "oncall", "failing_since": start.isoformat().replace("+00:00", "Z"), "error": "the webhook answered HTTP 500"}]
        assert any(warning.startswith("Alert channel oncall has failed since") for warning in health["warnings"])
        page = client.get("/alerts/").content.decode()
        assert "failing since" in page and "the webhook answered HTTP 500" in page
        assert "Alert channel oncall has failed since" in client.get("/").content.decode()

        deliver(start + timedelta(seconds=29))
        assert len(receiver.bodies) == 1
        deliver(start + timedelta(seconds=30))
        assert len(receiver.bodies) == 2
        assert Notification.objects.get().next_attempt_at == start + timedelta(seconds=30 + 60)

        receiver.fail_status = None
        deliver(start + timedelta(seconds=90))
        assert len(receiver.bodies) == 3
        assert receiver.bodies[2]["events"][0]["subject"] == "model sonnet"

    notification = Notification.objects.get()
    assert (notification.status, notification.attempts, notification.last_error) == ("sent", 3, "")
    channel.refresh_from_db()
    assert (channel.failing_since, channel.last_error) == (None, "")
    assert client.get("/api/v1/health").json()["alerts"]["failing_channels"] == []


def test_a_message_is_given_up_after_the_last_attempt(firing):
    with WebhookReceiver() as receiver:
        receiver.fail_status = 503
        webhook(receiver.url)
        moment = timezone.now()
        evaluate(moment)
        for _ in range(MAX_ATTEMPTS + 2):
            deliver(moment)
            moment = Notification.objects.get().next_attempt_at
    assert len(receiver.bodies) == MAX_ATTEMPTS
    assert Notification.objects.get().status == "failed"


def test_an_unreachable_or_refused_webhook_fails_with_its_reason(firing, settings):
    with WebhookReceiver() as receiver:
        url = receiver.url
    channel = webhook(url)  # the receiver is gone: nothing listens there
    now = timezone.now()
    evaluate(now)
    deliver(now)
    assert Notification.objects.get().last_error.startswith("the webhook could not be reached (ConnectionRefusedError")

    settings.PROVIDER_ALLOW_PRIVATE_BASE_URLS = False
    deliver(now + timedelta(seconds=30))
    channel.refresh_from_db()
    assert channel.last_error.startswith("webhook URL refused: ")
