"""The fallback history: every fallback and refusal, its filters, its traces, pagination and the CSV export."""

import csv
import io
import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from dashboard import selectors
from router.counting import Usage
from router.decisions import what_if
from router.engine import RouteRequest
from router.models import Category, Decision
from switchboard.vocabulary import Metric, Window
from tests.factories import CategoryFactory, LLMModelFactory, ProviderFactory, QuotaFactory, make_route, make_tier

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def dashboard_settings(settings):
    """The database counters (deterministic)."""
    settings.REDIS_URL = ""


def store(request: RouteRequest, at: datetime, *, overrides: dict[int, float] | None = None,
          unavailable: frozenset[str] = frozenset(), caller: str = "billing-service") -> Decision:
    """A decision as the router stores it (its real walk and trace), made at `at` under the given assumptions."""
    decision = what_if(request, caller=caller, used_ratio_overrides=overrides, unavailable=unavailable)[0]
    stored = replace(decision, id=uuid.uuid4(), created_at=at, usage=Usage()).to_model()
    stored.save(force_insert=True)
    return stored


@pytest.fixture
def history():
    """Seven decisions over the last day and a bit: five fallbacks and refusals of the category 'general' and others."""
    openai = ProviderFactory(slug="openai", kind="openai")
    anthropic = ProviderFactory(slug="anthropic", kind="anthropic")
    gpt = LLMModelFactory(key="gpt-4o", provider=openai)
    mini = LLMModelFactory(key="gpt-4o-mini", provider=openai)
    sonnet = LLMModelFactory(key="claude-sonnet-4-5", provider=anthropic)
    gpt_pool = QuotaFactory(provider=openai, name="gpt-4o-pool", metric=Metric.TOKENS, window=Window.DAY,
                            limit=Decimal(1_000_000), models=[gpt])
    make_route("general", [gpt, sonnet, mini])
    make_route(CategoryFactory(slug="security_auth_change", fallback=Category.Fallback.NEVER), [gpt])
    make_tier("cheap", [mini])
    general = RouteRequest(category="general", complexity="medium", estimated_input_tokens=1000, estimated_output_tokens=500)
    now = timezone.now()
    return {
        "primary": store(general, now - timedelta(minutes=10)),
        "quota": store(general, now - timedelta(hours=1), overrides={gpt_pool.id: 0.9}),
        "unavailable": store(general, now - timedelta(hours=2), unavailable=frozenset({"gpt-4o"})),
        "failed_fast": store(RouteRequest(category="security_auth_change"), now - timedelta(hours=3), overrides={gpt_pool.id: 1.0}),
        "exhausted": store(general, now - timedelta(hours=5), unavailable=frozenset({"gpt-4o", "claude-sonnet-4-5", "gpt-4o-mini"})),
        "cheap_exhausted": store(RouteRequest(tier="cheap"), now - timedelta(hours=6), unavailable=frozenset({"gpt-4o-mini"})),
        "yesterday": store(general, now - timedelta(hours=26), unavailable=frozenset({"gpt-4o", "claude-sonnet-4-5"})),
        "now": now,
    }


def listed(response) -> list[str]:
    """The decision ids of the history table, in page order."""
    return [str(d.pk) for d in response.context["page"].object_list]


def ids(history: dict, *names: str) -> list[str]:
    return [str(history[name].pk) for name in names]


ALL = ["quota", "unavailable", "failed_fast", "exhausted", "cheap_exhausted", "yesterday"]


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M")


def test_it_lists_every_fallback_and_refusal_newest_first_and_no_primary(client, viewer, history):
    response = client.get("/fallbacks/")

    assert response.status_code == 200
    assert listed(response) == ids(history, *ALL)
    page = response.content.decode()
    assert "6 decisions" in page
    assert str(history["primary"].pk) not in page
    assert 'badge outcome-failed_fast">failed fast' in page
    assert f'href="/admin/router/decision/{history["quota"].pk}/change/"' in page


def test_each_row_shows_its_trace_on_demand(client, viewer, history):
    page = client.get("/fallbacks/").content.decode()

    assert page.count('<details class="trace-details">') == 6
    assert "Trace: 2 candidates, policy v" in page  # the quota fallback: gpt-4o passed over, claude chosen
    assert ("<strong>openai/gpt-4o-pool</strong></a> (tokens per day, rolling): used 900.0K tokens + this request 1.5K tokens of 1.0M tokens, "
            "soft limit 800.0K tokens") in page
    assert 'verdict-skipped">skipped</span>' in page and 'verdict-chosen">chosen</span>' in page
    assert "marked unavailable in this what-if" in page  # the detail the walk gave, as stored


@pytest.mark.parametrize(("params", "expected"), [
    ({"category": "security_auth_change"}, ["failed_fast"]),
    ({"outcome": "failed_fast"}, ["failed_fast"]),
    ({"outcome": "exhausted"}, ["exhausted", "cheap_exhausted"]),
    ({"outcome": "fallback"}, ["quota", "unavailable", "yesterday"]),
    ({"reason": "quota"}, ["quota", "failed_fast"]),
    ({"reason": "unavailable"}, ["unavailable", "exhausted", "cheap_exhausted", "yesterday"]),
    ({"reason": "cooldown"}, []),
    ({"provider": "anthropic"}, ["quota", "unavailable", "exhausted", "yesterday"]),
    ({"provider": "openai"}, ALL),
    ({"model": "gpt-4o-mini"}, ["exhausted", "cheap_exhausted", "yesterday"]),
    ({"model": "gpt-4o"}, ["quota", "unavailable", "failed_fast", "exhausted", "yesterday"]),  # not gpt-4o-mini's
    ({"reason": "unavailable", "outcome": "exhausted", "provider": "anthropic"}, ["exhausted"]),
])
def test_each_filter(client, viewer, history, params, expected):
    response = client.get("/fallbacks/", params)

    assert response.status_code == 200
    assert listed(response) == ids(history, *expected)


def test_the_time_range_filters(client, viewer, history):
    now = history["now"]

    since = client.get("/fallbacks/", {"since": stamp(now - timedelta(hours=4))})
    until = client.get("/fallbacks/", {"until": stamp(now - timedelta(hours=4))})
    both = client.get("/fallbacks/", {"since": stamp(now - timedelta(hours=5, minutes=30)), "until": stamp(now - timedelta(hours=2, minutes=30))})

    assert listed(since) == ids(history, "quota", "unavailable", "failed_fast")
    assert listed(until) == ids(history, "exhausted", "cheap_exhausted", "yesterday")
    assert listed(both) == ids(history, "failed_fast", "exhausted")


def test_the_quick_ranges_keep_the_other_filters(client, viewer, history):
    page = client.get("/fallbacks/", {"outcome": "exhausted"}).content.decode()

    assert "outcome=exhausted&amp;since=" in page
    assert "Last 24 h" in page


def test_the_selector_and_the_page_agree_on_postgresql_and_sqlite(history):
    # PostgreSQL matches the trace with JSONB containment, SQLite matches its text: same answer.
    assert [str(d.pk) for d in selectors.fallback_decisions(reason="quota", provider="openai")] == ids(history, "quota", "failed_fast")


@pytest.mark.parametrize(("params", "field", "message"), [
    ({"outcome": "primary"}, "outcome", "Select a valid choice"),
    ({"category": "no-such-category"}, "category", "Select a valid choice"),
    ({"reason": "bad luck"}, "reason", "Select a valid choice"),
    ({"since": "yesterday-ish"}, "since", "Enter a valid date/time"),
    ({"since": "2025-03-02T10:00", "until": "2025-03-01T10:00"}, "until", "Must be later than"),
])
def test_invalid_filters_are_form_errors_not_everything(client, viewer, history, params, field, message):
    response = client.get("/fallbacks/", params)

    assert response.status_code == 200
    assert message in response.context["form"].errors[field][0]
    assert listed(response) == []
    assert "Fix the filters above" in response.content.decode()


def test_csv_exports_exactly_what_the_filters_show(client, viewer, history):
    response = client.get("/fallbacks/", {"reason": "unavailable", "provider": "anthropic", "format": "csv", "page": "2"})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="fallbacks-')
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["decision_id"] for row in rows] == ids(history, "unavailable", "exhausted", "yesterday")
    assert rows[0]["outcome"] == "fallback" and rows[0]["model"] == "claude-sonnet-4-5" and rows[0]["primary"] == "gpt-4o"
    assert '"cause":"unavailable"' in rows[0]["trace"]


def test_csv_without_filters_exports_every_fallback_and_refusal(client, viewer, history):
    response = client.get("/fallbacks/?format=csv")

    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["decision_id"] for row in rows] == ids(history, *ALL)


def test_the_export_link_carries_the_filters(client, viewer, history):
    page = client.get("/fallbacks/", {"outcome": "exhausted", "reason": "unavailable"}).content.decode()

    assert 'href="?outcome=exhausted&amp;reason=unavailable&amp;format=csv"' in page


def test_csv_with_invalid_filters_is_a_400(client, viewer, history):
    response = client.get("/fallbacks/", {"outcome": "primary", "format": "csv"})

    assert response.status_code == 400
    assert "outcome" in response.content.decode()


def test_it_pages_fifty_at_a_time_and_keeps_the_filters(client, viewer, history):
    now = history["now"]
    template = history["quota"]
    Decision.objects.bulk_create([
        Decision(created_at=now - timedelta(days=2, minutes=n), category="general", complexity="medium", outcome="fallback",
                 model_key=template.model_key, provider_slug=template.provider_slug, primary_key="gpt-4o", reason=template.reason,
                 trace=template.trace, policy_version=1)
        for n in range(114)
    ])

    first = client.get("/fallbacks/", {"reason": "quota"})
    third = client.get("/fallbacks/", {"reason": "quota", "page": 3})
    beyond = client.get("/fallbacks/", {"reason": "quota", "page": 99})

    assert len(listed(first)) == 50
    assert listed(first)[:2] == ids(history, "quota", "failed_fast")
    assert len(listed(third)) == 116 - 100
    assert listed(beyond) == listed(third)  # past the end: the last page
    page = first.content.decode()
    assert "116 decisions, page 1 of 3" in page
    assert 'href="?reason=quota&amp;page=2"' in page


def test_a_long_history_is_counted_only_up_to_a_cap(client, viewer, history, monkeypatch):
    from dashboard import views

    monkeypatch.setattr(views, "HISTORY_COUNT_CAP", 4)

    response = client.get("/fallbacks/")

    assert "More than 4 decisions" in response.content.decode()
    assert response.context["page"].paginator.num_pages == 1
    assert listed(response) == ids(history, *ALL[:4])
    assert listed(client.get("/fallbacks/", {"outcome": "exhausted"})) == ids(history, "exhausted", "cheap_exhausted")


def test_an_empty_history(client, viewer):
    page = client.get("/fallbacks/").content.decode()

    assert "No fallbacks or refusals match these filters." in page
