"""An alert reaches a webhook once when its condition starts, again only after the rule's interval while it holds,
and as resolved when it ends; many conditions at once are one message. The clock is injected: no sleeps."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from alerts.delivery import deliver
from alerts.evaluate import evaluate
from alerts.models import Alert, AlertChannel, AlertEvent, AlertRule
from switchboard.vocabulary import Metric, Window
from tests.calls import route
from tests.factories import LLMModelFactory, ProviderFactory, QuotaFactory, make_route
from tests.webhook_receivers import WebhookReceiver

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver(settings):
    settings.PROVIDER_ALLOW_PRIVATE_BASE_URLS = True
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def hourly_quota():
    """anthropic's sonnet under 10 requests an hour, soft limit 0.8; the general route uses it."""
    anthropic = ProviderFactory(slug="anthropic", kind="anthropic")
    sonnet = LLMModelFactory(key="sonnet", provider=anthropic)
    make_route("general", [sonnet])
    return QuotaFactory(provider=anthropic, name="requests-hour", metric=Metric.REQUESTS, window=Window.HOUR, limit=Decimal(10),
                        soft_limit_ratio=Decimal("0.8"))


def tick(now):
    evaluate(now)
    deliver(now)


def test_a_quota_pushed_past_its_soft_limit_through_the_api_sends_once_repeats_after_the_interval_and_resolves(
        counters, api, hourly_quota, receiver):
    AlertRule.objects.create(slug="quota-soft-limit", condition="quota_soft_limit", repeat_minutes=15)
    channel = AlertChannel(name="oncall", kind=AlertChannel.Kind.WEBHOOK)
    channel.set_url(receiver.url)
    channel.set_token("hook-token")
    channel.save()
    for _ in range(7):
        route(api, category="general")
    start = timezone.now()
    tick(start)
    assert receiver.bodies == []

    route(api, category="general")  # 8 of 10: the soft limit
    tick(start + timedelta(seconds=30))
    assert len(receiver.bodies) == 1
    [event] = receiver.bodies[0]["events"]
    assert (event["status"], event["rule"], event["subject"]) == ("firing", "quota-soft-limit", "anthropic/requests-hour")
    assert "80%" in event["summary"]
    assert receiver.bodies[0]["title"] == "[Switchboard] 1 firing"
    assert receiver.headers[0]["Authorization"] == "Bearer hook-token"

    for minutes in (1, 5, 14):
        tick(start + timedelta(minutes=minutes, seconds=30))
    assert len(receiver.bodies) == 1

    tick(start + timedelta(minutes=15, seconds=30))
    assert len(receiver.bodies) == 2
    assert [event["status"] for event in receiver.bodies[1]["events"]] == ["repeated"]

    tick(start + timedelta(minutes=62))  # the hour's window has let the eight requests go
    assert len(receiver.bodies) == 3
    [event] = receiver.bodies[2]["events"]
    assert (event["status"], event["subject"]) == ("resolved", "anthropic/requests-hour")
    assert receiver.bodies[2]["title"] == "[Switchboard] 1 resolved"
    assert "RESOLVED [warning] quota-soft-limit: Quota anthropic/requests-hour is at 80%" in receiver.bodies[2]["text"]
    assert "(for 1 h 2 min)" in receiver.bodies[2]["text"]
    alert = Alert.objects.get()
    assert alert.resolved_at == start + timedelta(minutes=62)
    assert list(AlertEvent.objects.order_by("at").values_list("kind", flat=True)) == ["firing", "repeated", "resolved"]

    tick(start + timedelta(minutes=63))
    assert len(receiver.bodies) == 3


def test_a_slack_channel_gets_a_text_body(db, hourly_quota, receiver):
    AlertRule.objects.create(slug="counting", condition="model_out")
    channel = AlertChannel(name="slack", kind=AlertChannel.Kind.SLACK)
    channel.set_url(receiver.url)
    channel.save()
    hourly_quota.provider.models.update(availability="unavailable", availability_reason="not_found_error: sonnet")

    tick(timezone.now())

    assert list(receiver.bodies[0]) == ["text"]
    assert receiver.bodies[0]["text"].startswith("[Switchboard] 1 firing\nFIRING [warning] counting: Model sonnet (anthropic) is out")


def test_many_conditions_at_once_are_one_message(db, receiver):
    AlertRule.objects.create(slug="models-out", condition="model_out", severity="critical")
    provider = ProviderFactory(slug="openai", kind="openai")
    for i in range(30):
        LLMModelFactory(key=f"model-{i:02d}", provider=provider, availability="unavailable")
    channel = AlertChannel(name="oncall", kind=AlertChannel.Kind.WEBHOOK)
    channel.set_url(receiver.url)
    channel.save()

    tick(timezone.now())

    assert len(receiver.bodies) == 1
    body = receiver.bodies[0]
    assert body["firing"] == 30 and len(body["events"]) == 30
    assert body["text"].count("FIRING [critical]") == 20
    assert "… and 10 more." in body["text"]


def test_a_channel_below_the_rules_severity_gets_nothing(db, receiver):
    AlertRule.objects.create(slug="models-out", condition="model_out", severity="warning")
    LLMModelFactory(key="gone", availability="unavailable")
    channel = AlertChannel(name="pager", kind=AlertChannel.Kind.WEBHOOK, min_severity="critical")
    channel.set_url(receiver.url)
    channel.save()

    tick(timezone.now())

    assert receiver.bodies == []
    assert Alert.objects.filter(resolved_at=None).count() == 1
