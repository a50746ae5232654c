"""The dashboard's alerts page and the overview's Now panel: what is firing, the latest firings and resolutions,
and each channel's delivery."""

from datetime import timedelta

import pytest
from django.utils import timezone

from alerts.delivery import deliver
from alerts.evaluate import evaluate
from alerts.models import AlertChannel, AlertRule
from providers.models import LLMModel
from tests.factories import LLMModelFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def fired(settings):
    """A critical rule about models out of routing, fired for one model and resolved for another."""
    settings.REDIS_URL = ""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    AlertRule.objects.create(slug="models-out", condition="model_out", severity="critical")
    LLMModelFactory(key="sonnet", availability="unavailable", availability_reason="not_found_error: sonnet")
    LLMModelFactory(key="haiku", availability="unavailable")
    AlertChannel.objects.create(name="oncall-mail", kind=AlertChannel.Kind.EMAIL, recipients="oncall@example.com")
    start = timezone.now() - timedelta(minutes=5)
    evaluate(start)
    LLMModel.objects.filter(key="haiku").update(availability="available")
    evaluate(start + timedelta(minutes=1))
    deliver(start + timedelta(minutes=1))
    return start


def test_the_alerts_page_lists_what_fires_the_latest_events_and_the_channels(client, viewer, fired):
    page = client.get("/alerts/").content.decode()

    firing = page[page.index('id="firing"'):page.index('id="channels"')]
    assert 'data-alert="models-out" data-subject="model sonnet"' in firing
    assert "model haiku" not in firing
    events = page[page.index('id="events"'):]
    assert events.count('data-event="firing"') == 2 and events.count('data-event="resolved"') == 1
    channels = page[page.index('id="channels"'):page.index('id="events"')]
    assert 'data-channel="oncall-mail"' in channels and ">ok<" in channels
    assert "last at" in page


def test_the_now_panel_shows_the_alerts_firing(client, viewer, fired):
    page = client.get("/").content.decode()

    now = page[page.index('id="now-alerts"'):page.index('class="now-grid"')]
    assert 'data-alert="models-out"' in now
    assert "Model sonnet" in now and "Model haiku" not in now


def test_a_calm_installation_shows_no_alerts(client, viewer, settings):
    settings.REDIS_URL = ""
    assert 'id="now-alerts"' not in client.get("/").content.decode()
    page = client.get("/alerts/").content.decode()
    assert "Nothing is firing." in page and "No channel is set" in page and "not evaluated yet" in page
