"""What an alert message says: a title and text for people (email, Slack, Teams), and a JSON body for machines."""

from dataclasses import dataclass

from django.conf import settings

from alerts.models import AlertEvent
from router.shapes import rfc3339

# A message lists at most this many events in its text; the rest are counted and on the alerts page.
TEXT_EVENTS = 20
# And at most this many in a JSON body.
JSON_EVENTS = 200
LABELS = {AlertEvent.Kind.FIRING: "FIRING", AlertEvent.Kind.REPEATED: "STILL FIRING", AlertEvent.Kind.RESOLVED: "RESOLVED"}


@dataclass(frozen=True)
class Message:
    title: str
    text: str
    body: dict


def _line(event: AlertEvent) -> str:
    alert = event.alert
    since = f" (since {alert.started_at:%Y-%m-%d %H:%M} UTC)" if event.kind == AlertEvent.Kind.REPEATED else ""
    if event.kind == AlertEvent.Kind.RESOLVED:
        since = f" (for {_duration((event.at - alert.started_at).total_seconds())})"
    advice = f" What to do: {_description(event)}" if _description(event) and event.kind != AlertEvent.Kind.RESOLVED else ""
    return f"{LABELS[event.kind]} [{alert.severity}] {alert.rule_slug}: {event.summary}{since}{advice}"


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def _description(event: AlertEvent) -> str:
    return event.alert.rule.description if event.alert.rule else ""


def compose(events: list[AlertEvent]) -> Message:
    """One message for a group of events, firing ones first."""
    order = {AlertEvent.Kind.FIRING: 0, AlertEvent.Kind.REPEATED: 1, AlertEvent.Kind.RESOLVED: 2}
    events = sorted(events, key=lambda event: (order[event.kind], event.alert.rule_slug, event.alert.subject))
    firing = sum(1 for event in events if event.kind != AlertEvent.Kind.RESOLVED)
    resolved = len(events) - firing
    title = "[Switchboard] " + ", ".join(part for part in (f"{firing} firing" if firing else "", f"{resolved} resolved" if resolved else "") if part)
    lines = [_line(event) for event in events[:TEXT_EVENTS]]
    if len(events) > TEXT_EVENTS:
        lines.append(f"… and {len(events) - TEXT_EVENTS} more.")
    page = f"{settings.ALERTS_DASHBOARD_URL}/alerts/" if settings.ALERTS_DASHBOARD_URL else ""
    if page:
        lines.append(f"Alerts: {page}")
    body = {
        "source": "switchboard", "title": title, "text": "\n".join(lines), "firing": firing, "resolved": resolved, "url": page or None,
        "events": [{
            "status": event.kind, "rule": event.alert.rule_slug, "severity": event.alert.severity, "subject": event.alert.subject,
            "summary": event.summary, "description": _description(event), "at": rfc3339(event.at), "started_at": rfc3339(event.alert.started_at),
            "resolved_at": rfc3339(event.alert.resolved_at) if event.alert.resolved_at else None,
        } for event in events[:JSON_EVENTS]],
        "events_left_out": max(len(events) - JSON_EVENTS, 0),
    }
    return Message(title=title, text="\n".join([title, *lines]), body=body)


def channel_test_message(sent_by: str) -> Message:
    """What the admin's "Send a test message" sends: no alert, the same shape."""
    title = "[Switchboard] test message"
    text = f"{title}\nA test of this alert channel, sent from the admin by {sent_by}."
    return Message(title=title, text=text, body={"source": "switchboard", "title": title, "text": text, "firing": 0, "resolved": 0,
                                                 "url": None, "events": [], "events_left_out": 0})
