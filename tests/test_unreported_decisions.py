"""The overview lists, per caller, the decisions left unreported after ten minutes: each holds its reservation
until its window moves on, so a service that never reports blinds the router."""

from datetime import timedelta

from django.utils import timezone

from router.models import Decision


def decision(caller: str, minutes_ago: float, **fields) -> Decision:
    values = {"category": "general", "complexity": "medium", "outcome": "primary", "model_key": "gpt-4o", "primary_key": "gpt-4o",
              "policy_version": 1, "reported": False} | fields
    return Decision.objects.create(created_at=timezone.now() - timedelta(minutes=minutes_ago), caller=caller, **values)


def test_it_lists_per_caller_the_decisions_unreported_after_ten_minutes(client, viewer):
    for minutes_ago in (12, 30, 90):
        decision("batch-service", minutes_ago)
    decision("agents", 15)
    decision("agents", 5)  # a call may still be running
    decision("agents", 20, reported=True)
    decision("agents", 20, outcome="exhausted", model_key="")  # a refusal routed no call
    decision("agents", 60 * 25)  # older than a day

    page = client.get("/").content.decode()

    section = page[page.index('id="unreported"'):]
    assert section.index("batch-service") < section.index("agents")
    assert '<td data-label="Caller">batch-service</td><td data-label="Decisions">3</td>' in section
    assert '<td data-label="Caller">agents</td><td data-label="Decisions">1</td>' in section


def test_it_shows_nothing_when_every_decision_was_reported(client, viewer):
    decision("agents", 30, reported=True)

    assert 'id="unreported"' not in client.get("/").content.decode()
