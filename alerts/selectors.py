"""Reads of the alerts for the dashboard: what is firing, what happened lately, and how the channels fare."""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Q

from alerts.models import Alert, AlertChannel, AlertEvent, Evaluation, Notification

RECENT_EVENTS = 100


@dataclass(frozen=True)
class ChannelState:
    channel: AlertChannel
    pending: int
    given_up: int


def open_alerts() -> list[Alert]:
    """The alerts firing now, critical first, newest first."""
    return sorted(Alert.objects.filter(resolved_at=None), key=lambda alert: (alert.severity != "critical", -alert.started_at.timestamp()))


def recent_events(limit: int = RECENT_EVENTS) -> list[AlertEvent]:
    """The newest firings, repeats and resolutions, with their alerts."""
    return list(AlertEvent.objects.select_related("alert").order_by("-at", "-pk")[:limit])


def channel_states() -> list[ChannelState]:
    """Every channel with its messages waiting to be sent again and those given up."""
    channels = AlertChannel.objects.annotate(
        pending=Count("notifications", filter=Q(notifications__status=Notification.Status.PENDING)),
        given_up=Count("notifications", filter=Q(notifications__status=Notification.Status.FAILED)),
    ).order_by("name")
    return [ChannelState(channel, channel.pending, channel.given_up) for channel in channels]


def failing_channels() -> list[AlertChannel]:
    return list(AlertChannel.objects.filter(enabled=True, failing_since__isnull=False).order_by("name"))


def last_evaluated_at() -> datetime | None:
    return Evaluation.objects.filter(pk=1).values_list("evaluated_at", flat=True).first()
