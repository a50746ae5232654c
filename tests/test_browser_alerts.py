"""The alerts page and the Now panel's alerts in a real browser, at 1400x1000 and on a 390 px phone: what fires, a
channel that fails, and the latest events, with nothing scrolling sideways."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.utils import timezone

from alerts.delivery import deliver
from alerts.evaluate import evaluate
from alerts.models import AlertChannel
from providers.models import LLMModel
from tests.browser import PASSWORD, log_in
from tests.test_browser_dashboard import load_example_policy
from tests.test_browser_incident import DESKTOP, PHONE, horizontal_overflow, open_page

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture(autouse=True)
def alert_settings(settings):
    settings.REDIS_URL = ""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def viewer() -> User:
    user = User.objects.create_user("on-call", password=PASSWORD, is_staff=True)
    group, _ = Group.objects.get_or_create(name="policy viewers")
    group.permissions.add(Permission.objects.get(content_type__app_label="router", codename="view_decision"))
    user.groups.add(group)
    return user


@pytest.fixture
def alerting():
    """The example policy's rules: a model out of routing, another back; a webhook nobody answers."""
    load_example_policy()
    LLMModel.objects.filter(key__in=["claude-opus-4-5", "gpt-4o"]).update(
        availability="unavailable", availability_reason="not_found_error: this API key cannot reach the model")
    channel = AlertChannel(name="oncall-slack", kind=AlertChannel.Kind.SLACK)
    channel.set_url("https://hooks.invalid/services/T0/B0/secret")
    channel.save()
    start = timezone.now() - timedelta(minutes=3)
    evaluate(start)
    LLMModel.objects.filter(key="gpt-4o").update(availability="available")
    evaluate(start + timedelta(minutes=1))
    deliver(start + timedelta(minutes=1))


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_alerts_page_and_the_now_panel_show_what_fires_and_the_failing_channel(browser, live_server, viewer, alerting, viewport):
    from playwright.sync_api import expect

    context, page = open_page(browser, live_server, viewport)
    log_in(page, viewer, "/")
    expect(page.locator('#now-alerts [data-alert="model-out"]')).to_contain_text("claude-opus-4-5")
    expect(page.locator('#now-alerts [data-channel="oncall-slack"]')).to_contain_text("has failed since")
    assert horizontal_overflow(page) <= 0

    page.locator("#now-alerts a", has_text="alerts").click()
    page.wait_for_url("**/alerts/")
    expect(page.locator('#firing [data-alert="model-out"]')).to_have_count(1)
    expect(page.locator('#channels [data-channel="oncall-slack"]')).to_contain_text("hooks.invalid could not be resolved")
    expect(page.locator('#events [data-event="resolved"]')).to_contain_text("gpt-4o")
    assert horizontal_overflow(page) <= 0
    context.close()
