"""The time range of the overview and the history: last hour, 6 h, 24 h, 7 days or custom; the chart's buckets
follow it (a bar a minute for an hour), and every page that shows counts says as of when."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from dashboard import selectors
from router.models import Decision
from switchboard.vocabulary import COUNTED_OUTCOMES, Outcome
from tests.factories import LLMModelFactory, make_tier

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def database_counters(settings):
    settings.REDIS_URL = ""


def decision(outcome: str, at: datetime, **fields) -> Decision:
    defaults = {"category": "general", "complexity": "medium", "primary_key": "gpt-4o", "policy_version": 1,
                "model_key": "gpt-4o-mini" if outcome in COUNTED_OUTCOMES else "", "reason": f"{outcome} for a test"}
    return Decision.objects.create(created_at=at, outcome=outcome, **(defaults | fields))


def bars(page: str) -> int:
    return page.count('<g class="bucket">')


def summary(page: str) -> list[str]:
    return re.findall(r'<span class="stat-value">([^<]+)</span><span class="stat-label">([^<]+)</span>', page)


def test_the_last_hour_is_drawn_a_bar_a_minute_and_counts_only_that_hour(client, viewer):
    now = timezone.now()
    decision(Outcome.PRIMARY, now - timedelta(minutes=30))
    decision(Outcome.FALLBACK, now - timedelta(minutes=31))
    decision(Outcome.PRIMARY, now - timedelta(hours=2))

    page = client.get("/", {"range": "1h"}).content.decode()

    assert bars(page) == 61
    assert "Decisions per minute <span class=\"muted\">(last hour, UTC)</span>" in page
    assert ("2", "decisions, last hour") in summary(page)
    assert '<a href="?range=1h" aria-current="true">Last hour</a>' in page


@pytest.mark.parametrize(("range_key", "label", "count", "unit"), [
    ("6h", "last 6 h", 37, "10 minutes"),
    ("24h", "last 24 h", 25, "hour"),
    ("7d", "last 7 days", 29, "6 hours"),
])
def test_each_preset_has_its_own_buckets(client, viewer, range_key, label, count, unit):
    page = client.get("/", {"range": range_key}).content.decode()

    assert bars(page) == count
    assert f"Decisions per {unit} <span class=\"muted\">({label}, UTC)</span>" in page


def test_seven_days_read_the_hourly_sums_in_one_query(django_assert_num_queries):
    now = datetime(2025, 3, 10, 14, 30, tzinfo=UTC)
    decision(Outcome.PRIMARY, now - timedelta(days=3))
    decision(Outcome.EXHAUSTED, now - timedelta(days=6, hours=20))
    decision(Outcome.PRIMARY, now - timedelta(days=8))  # before the range

    with django_assert_num_queries(1):
        volume = selectors.decision_volume(now, since=now - timedelta(days=7), bucket_seconds=6 * 3600)

    assert (volume.total, volume.refused) == (2, 1)
    assert len(volume.buckets) == 29 and {b.start.hour for b in volume.buckets} == {0, 6, 12, 18}


def test_a_custom_range_shows_only_its_decisions(client, viewer):
    now = timezone.now().replace(second=0, microsecond=0)
    since, until = now - timedelta(hours=5), now - timedelta(hours=2)
    decision(Outcome.FALLBACK, now - timedelta(hours=3))
    decision(Outcome.PRIMARY, now - timedelta(hours=1))  # after the range

    page = client.get("/", {"range": "custom", "since": f"{since:%Y-%m-%dT%H:%M}", "until": f"{until:%Y-%m-%dT%H:%M}"}).content.decode()

    assert bars(page) == 37  # three hours in five-minute bars
    assert ("1", "decisions, " + f"{since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} utc") in summary(page)
    assert 'data-refresh-url="/?fragment=1&amp;range=custom&amp;since=' in page


def test_a_custom_range_that_ends_before_it_starts_is_refused_and_the_last_24_h_shown(client, viewer):
    page = client.get("/", {"range": "custom", "since": "2025-03-10T12:00", "until": "2025-03-10T10:00"}).content.decode()

    assert "Must be later than &#x27;since&#x27;." in page
    assert bars(page) == 25


def test_the_unroutable_panel_follows_the_range(client, viewer):
    decision(Outcome.UNROUTABLE, timezone.now() - timedelta(hours=3), reason="no_route: nothing for high")

    assert 'id="unroutable"' in client.get("/").content.decode()
    assert 'id="unroutable"' not in client.get("/", {"range": "1h"}).content.decode()


def test_the_history_offers_the_same_ranges(client, viewer):
    page = client.get("/fallbacks/").content.decode()

    assert [label for label in ("Last hour", "Last 6 h", "Last 24 h", "Last 7 days") if f">{label}</a>" in page] == [
        "Last hour", "Last 6 h", "Last 24 h", "Last 7 days"]


@pytest.mark.parametrize("path", ["/", "/?fragment=1", "/fallbacks/", "/tuning/", "/what-if/?tier=cheap&complexity=medium"
                                  "&estimated_input_tokens=10&estimated_output_tokens=10"])
def test_every_page_with_counts_says_as_of_when(client, viewer, path):
    make_tier("cheap", [LLMModelFactory(key="gpt-4o-mini")])

    page = client.get(path).content.decode()

    assert re.search(r"As of <time datetime=\"[^\"]+\" data-generated>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</time>", page)
