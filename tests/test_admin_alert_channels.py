"""Alert channels in the admin: a webhook's URL and token are stored encrypted and never shown again, a URL the
egress rules refuse is refused on its field, and "Send a test message" says whether the channel took it."""

import pytest
from django.contrib.auth.models import Group, User

from alerts.models import AlertChannel
from tests.webhook_receivers import WebhookReceiver

pytestmark = pytest.mark.django_db


@pytest.fixture
def editor(client):
    user = User.objects.create_user("editor", is_staff=True)
    user.groups.add(Group.objects.get(name="policy editors"))
    client.force_login(user)
    return user


def test_a_webhook_channel_keeps_its_url_and_token_encrypted_and_never_shows_them(client, editor, settings):
    settings.PROVIDER_ALLOW_PRIVATE_BASE_URLS = False
    url = "https://hooks.slack.com/services/T000/B000/very-secret-part"
    answer = client.post("/admin/alerts/alertchannel/add/", {
        "name": "oncall-slack", "kind": "slack", "enabled": "on", "min_severity": "warning", "recipients": "",
        "new_url": url, "new_token": "token-secret-part"})
    assert answer.status_code == 302, answer.content.decode()

    channel = AlertChannel.objects.get()
    assert (channel.url(), channel.token()) == (url, "token-secret-part")
    assert "very-secret-part" not in channel.encrypted_url
    page = client.get(f"/admin/alerts/alertchannel/{channel.pk}/change/").content.decode()
    assert "very-secret-part" not in page and "token-secret-part" not in page

    kept = client.post(f"/admin/alerts/alertchannel/{channel.pk}/change/", {
        "name": "oncall-slack", "kind": "slack", "enabled": "on", "min_severity": "critical", "recipients": "", "new_url": "",
        "new_token": ""})
    assert kept.status_code == 302
    channel.refresh_from_db()
    assert (channel.url(), channel.min_severity) == (url, "critical")


@pytest.mark.parametrize(("new_url", "problem"), [
    ("http://169.254.169.254/latest/meta-data/", "link-local or cloud metadata address"),
    ("http://127.0.0.1:9000/hook", "is not a public address"),
    ("", "A webhook channel needs a URL."),
])
def test_a_webhook_url_the_egress_rules_refuse_is_refused_on_its_field(client, editor, settings, new_url, problem):
    settings.PROVIDER_ALLOW_PRIVATE_BASE_URLS = False
    answer = client.post("/admin/alerts/alertchannel/add/", {
        "name": "hook", "kind": "webhook", "enabled": "on", "min_severity": "warning", "recipients": "", "new_url": new_url})
    assert answer.status_code == 200
    assert problem in answer.content.decode()
    assert not AlertChannel.objects.exists()


def test_an_email_channel_needs_valid_addresses(client, editor):
    answer = client.post("/admin/alerts/alertchannel/add/", {
        "name": "mail", "kind": "email", "enabled": "on", "min_severity": "warning", "recipients": "oncall@example.com, not-an-address"})
    assert answer.status_code == 200
    assert "Enter a valid email address." in answer.content.decode()


def test_send_a_test_message_says_whether_each_channel_took_it(client, editor, settings):
    settings.PROVIDER_ALLOW_PRIVATE_BASE_URLS = True
    with WebhookReceiver() as working, WebhookReceiver() as failing:
        failing.fail_status = 502
        channels = []
        for name, receiver in (("working", working), ("failing", failing)):
            channel = AlertChannel(name=name, kind=AlertChannel.Kind.WEBHOOK)
            channel.set_url(receiver.url)
            channel.save()
            channels.append(channel.pk)

        answer = client.post("/admin/alerts/alertchannel/", {"action": "send_test_message", "_selected_action": channels}, follow=True)

    page = answer.content.decode()
    assert "Channel working: the test message was sent." in page
    assert "Channel failing: the test message was not taken: the webhook answered HTTP 502" in page
    assert working.bodies[0]["title"] == "[Switchboard] test message"
    assert "sent from the admin by editor" in working.bodies[0]["text"]
