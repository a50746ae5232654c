"""The worker's alert evaluation (every 30 s): each enabled rule's condition read, alerts opened when a condition
starts, sent again at most every `repeat_minutes` while it holds, resolved when it ends, and every event of one
evaluation queued to each channel as one message (alerts.delivery sends it)."""

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from alerts.conditions import CONDITIONS, Finding, Moment
from alerts.models import Alert, AlertChannel, AlertEvent, AlertRule, Evaluation, Notification

logger = logging.getLogger(__name__)


def _findings(rules: list[AlertRule], now: datetime) -> tuple[dict[tuple[str, str], tuple[AlertRule, Finding]], set[str]]:
    """Every (rule, subject) whose condition holds at `now`, and the rules that could be read: a rule whose condition
    cannot be read now (Redis refusing, say) leaves its alerts as they are rather than resolving them."""
    findings, read = {}, set()
    moment = Moment(now.timestamp())
    for rule in rules:
        try:
            with transaction.atomic():
                for finding in CONDITIONS[rule.condition](rule, moment):
                    findings[(rule.slug, finding.subject)] = (rule, finding)
        except Exception:  # one unreadable condition must not silence the others
            logger.exception("Alert rule %s could not be evaluated; its alerts stay as they are", rule.slug)
            continue
        read.add(rule.slug)
    return findings, read


def evaluate(now: datetime | None = None) -> list[AlertEvent]:
    """Reads every enabled rule at `now`, stores what started, repeats and ended, and queues the messages;
    returns the events stored. Two workers never evaluate at once (the Evaluation row is locked)."""
    now = now or timezone.now()
    with transaction.atomic():
        evaluation = Evaluation.locked()
        rules = list(AlertRule.objects.filter(enabled=True))
        findings, read = _findings(rules, now)
        enabled = {rule.slug for rule in rules}
        events = []
        for alert in Alert.objects.filter(resolved_at=None):
            found = findings.pop((alert.rule_slug, alert.subject), None)
            if found:
                rule, finding = found
                alert.summary, alert.severity, alert.last_seen_at = finding.summary, rule.severity, now
                if rule.repeat_minutes and now - alert.last_sent_at >= timedelta(minutes=rule.repeat_minutes):
                    alert.last_sent_at = now
                    events.append(AlertEvent(alert=alert, kind=AlertEvent.Kind.REPEATED, at=now, summary=finding.summary))
                alert.save()
            elif alert.rule_slug in read or alert.rule_slug not in enabled:
                alert.resolved_at = now
                alert.save(update_fields=["resolved_at"])
                events.append(AlertEvent(alert=alert, kind=AlertEvent.Kind.RESOLVED, at=now, summary=alert.summary))
        for (slug, subject), (rule, finding) in findings.items():
            alert = Alert.objects.create(rule=rule, rule_slug=slug, severity=rule.severity, subject=subject, summary=finding.summary,
                                         started_at=now, last_seen_at=now, last_sent_at=now)
            events.append(AlertEvent(alert=alert, kind=AlertEvent.Kind.FIRING, at=now, summary=finding.summary))
        for event in events:
            event.save()
        _queue(events, now)
        evaluation.evaluated_at = now
        evaluation.save(update_fields=["evaluated_at"])
    return events


def _queue(events: list[AlertEvent], now: datetime) -> None:
    """One message per channel for all of this evaluation's events it takes: a flood of conditions is one message."""
    if not events:
        return
    for channel in AlertChannel.objects.filter(enabled=True):
        taken = [event for event in events if channel.takes(event.alert.severity)]
        if taken:
            notification = Notification.objects.create(channel=channel, created_at=now, next_attempt_at=now)
            notification.events.set(taken)
