"""Sending queued alert messages: webhooks (JSON, or Slack/Teams `text`) and email through Django's email settings.
A message that fails is tried again with backoff, and its channel shows the failure until a message gets through."""

import json
import logging
import urllib.error
import urllib.request
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.utils import timezone

from alerts.messages import Message, compose
from alerts.models import AlertChannel, Notification
from providers.egress import EgressRefused, check_resolved

logger = logging.getLogger(__name__)

FIRST_RETRY_SECONDS = 30
LONGEST_RETRY_SECONDS = 30 * 60
# About two and a half hours of trying (30 s, 1, 2, 4, 8, 16, 30, 30, 30 min); then the message is given up.
MAX_ATTEMPTS = 10
# A message being sent is held this long from other workers.
CLAIM_SECONDS = 120


class DeliveryFailed(Exception):
    """A channel that did not take a message; the text says why, without the channel's secrets."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise DeliveryFailed(f"the webhook answered a redirect ({code}); give its final URL")


def retry_delay(attempts: int) -> timedelta:
    """How long after its `attempts`-th failure a message is tried again."""
    return timedelta(seconds=min(FIRST_RETRY_SECONDS * 2 ** (attempts - 1), LONGEST_RETRY_SECONDS))


def _post(channel: AlertChannel, body: dict) -> None:
    url = channel.url()
    if not url:
        raise DeliveryFailed("no webhook URL is stored")
    try:
        check_resolved(url)
    except EgressRefused as exc:
        raise DeliveryFailed(f"webhook URL refused: {exc}") from exc
    headers = {"Content-Type": "application/json", "User-Agent": "switchboard-alerts"}
    if token := channel.token():
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    opener = urllib.request.build_opener(_NoRedirects)
    try:
        with opener.open(request, timeout=settings.ALERTS_WEBHOOK_TIMEOUT_SECONDS) as answer:
            answer.read(65536)
    except urllib.error.HTTPError as exc:
        raise DeliveryFailed(f"the webhook answered HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryFailed(f"the webhook could not be reached ({reason.__class__.__name__}: {reason})") from exc


def send(channel: AlertChannel, message: Message) -> None:
    """Sends one message to one channel; raises DeliveryFailed."""
    if channel.kind == AlertChannel.Kind.EMAIL:
        recipients = channel.address_list()
        if not recipients:
            raise DeliveryFailed("no recipients are set")
        try:
            send_mail(message.title, message.text, settings.DEFAULT_FROM_EMAIL, recipients)
        except OSError as exc:  # smtplib's errors are OSErrors too
            raise DeliveryFailed(f"email could not be sent ({exc.__class__.__name__}: {exc})") from exc
    elif channel.kind == AlertChannel.Kind.SLACK:
        _post(channel, {"text": message.text})
    else:
        _post(channel, message.body)


def deliver(now: datetime | None = None) -> int:
    """Sends every queued message that is due at `now`; returns how many were sent."""
    now = now or timezone.now()
    sent = 0
    due = Notification.objects.filter(status=Notification.Status.PENDING, next_attempt_at__lte=now).select_related("channel")
    for notification in due.order_by("next_attempt_at", "pk")[:100]:
        claimed = Notification.objects.filter(pk=notification.pk, status=Notification.Status.PENDING,
                                              next_attempt_at=notification.next_attempt_at)
        if not claimed.update(next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS)):
            continue  # another worker has it
        sent += _attempt(notification, now)
    return sent


def _attempt(notification: Notification, now: datetime) -> int:
    channel = notification.channel
    events = list(notification.events.select_related("alert__rule"))
    notification.attempts += 1
    try:
        send(channel, compose(events))
    except DeliveryFailed as exc:
        gave_up = notification.attempts >= MAX_ATTEMPTS
        notification.status = Notification.Status.FAILED if gave_up else Notification.Status.PENDING
        notification.last_error = str(exc)[:1000]
        notification.next_attempt_at = now + retry_delay(notification.attempts)
        notification.save(update_fields=["status", "attempts", "last_error", "next_attempt_at"])
        AlertChannel.objects.filter(pk=channel.pk, failing_since=None).update(failing_since=now)
        AlertChannel.objects.filter(pk=channel.pk).update(last_error=notification.last_error)
        logger.warning("Alert channel %s did not take a message (attempt %d%s): %s", channel.name, notification.attempts,
                       ", given up" if gave_up else "", exc)
        return 0
    notification.status, notification.sent_at, notification.last_error = Notification.Status.SENT, now, ""
    notification.save(update_fields=["status", "attempts", "sent_at", "last_error", "next_attempt_at"])
    AlertChannel.objects.filter(pk=channel.pk).update(failing_since=None, last_error="", last_sent_at=now)
    return 1
