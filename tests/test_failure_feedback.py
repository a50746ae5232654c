"""Failure feedback: reported failures, retry-after and providers' rate-limit headers steer the router."""

import time
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from django.conf import settings

from providers.models import Provider
from router.counters import redis_counters
from router.models import UsageEvent
from switchboard.vocabulary import ProviderKind
from tests import calls
from tests.calls import epoch, route
from tests.factories import LLMModelFactory, ProviderFactory, make_route

report = partial(calls.report, model="claude-sonnet-4-5", input_tokens=0, output_tokens=0)


def failure_at(seconds_ago: float, model_key="claude-sonnet-4-5", status="error") -> None:
    """A failure already in the ledger, reported `seconds_ago`."""
    UsageEvent.objects.create(created_at=datetime.now(tz=UTC) - timedelta(seconds=seconds_ago), model_key=model_key,
                              provider_slug="anthropic", status=status)


def rebuild_counters() -> None:
    if settings.REDIS_URL:
        redis_counters().invalidate()


@pytest.fixture
def anthropic(db):
    return ProviderFactory(slug="anthropic", kind=ProviderKind.ANTHROPIC)


@pytest.fixture
def general(anthropic):
    sonnet = LLMModelFactory(key="claude-sonnet-4-5", provider=anthropic, model_id="claude-sonnet-4-5-20250929")
    zhipu = ProviderFactory(slug="zhipu", kind=ProviderKind.OPENAI_COMPATIBLE, base_url="https://glm.example.invalid/v4")
    glm = LLMModelFactory(key="glm-4-5", provider=zhipu, model_id="glm-4.5")
    make_route("general", [sonnet, glm])


def first_entry(body):
    entry = body["trace"][0]
    return entry["model"]["key"], entry["verdict"], entry["cause"] or entry["reason"]


# Cooldown after repeated failures


def test_three_failures_within_a_minute_put_the_model_in_cooldown(api, counters, general):
    report(api, status="error")
    report(api, status="rate_limited")
    report(api, status="error")

    body = route(api, category="general")

    assert first_entry(body) == ("claude-sonnet-4-5", "skipped", "cooldown")
    assert body["model"]["key"] == "glm-4-5"
    assert body["outcome"] == "fallback"
    assert epoch(body["trace"][0]["until"]) == pytest.approx(time.time() + 60, abs=5)


def test_two_failures_are_not_enough(api, counters, general):
    report(api, status="error")
    report(api, status="rate_limited")
    report(api, status="ok")

    assert route(api, category="general")["model"]["key"] == "claude-sonnet-4-5"


def test_the_number_of_failures_is_the_providers_setting(api, counters, anthropic, general):
    Provider.objects.filter(pk=anthropic.pk).update(cooldown_failures=1)

    report(api, status="rate_limited")

    assert first_entry(route(api, category="general")) == ("claude-sonnet-4-5", "skipped", "cooldown")


def test_a_provider_may_tolerate_more_failures(api, counters, anthropic, general):
    Provider.objects.filter(pk=anthropic.pk).update(cooldown_failures=5)

    for _ in range(4):
        report(api, status="error")

    assert route(api, category="general")["model"]["key"] == "claude-sonnet-4-5"


def test_failures_spread_wider_than_the_window_do_not_cool_a_model_down(api, counters, general):
    for seconds_ago in (130, 65, 1):
        failure_at(seconds_ago)
    rebuild_counters()

    assert route(api, category="general")["model"]["key"] == "claude-sonnet-4-5"


def test_the_cooldown_ends_after_the_providers_cooldown_seconds(api, counters, general):
    for seconds_ago in (75, 72, 70):
        failure_at(seconds_ago)
    rebuild_counters()

    assert route(api, category="general")["model"]["key"] == "claude-sonnet-4-5"


def test_the_cooldown_lasts_as_long_as_the_provider_says(api, counters, anthropic, general):
    Provider.objects.filter(pk=anthropic.pk).update(cooldown_seconds=300)
    for seconds_ago in (75, 72, 70):
        failure_at(seconds_ago)
    rebuild_counters()

    body = route(api, category="general")

    assert first_entry(body) == ("claude-sonnet-4-5", "skipped", "cooldown")
    assert epoch(body["trace"][0]["until"]) == pytest.approx(time.time() - 70 + 300, abs=5)


def test_failures_before_and_after_a_counter_rebuild_add_up(api, counters, general):
    failure_at(20)
    failure_at(10)
    rebuild_counters()
    assert route(api, category="general")["model"]["key"] == "claude-sonnet-4-5"

    report(api, status="error")

    assert first_entry(route(api, category="general")) == ("claude-sonnet-4-5", "skipped", "cooldown")


# A reported retry-after


def test_a_reported_retry_after_is_honoured(api, counters, general):
    report(api, status="rate_limited", retry_after=120)

    body = route(api, category="general")

    assert first_entry(body) == ("claude-sonnet-4-5", "skipped", "cooldown")
    assert epoch(body["trace"][0]["until"]) == pytest.approx(time.time() + 120, abs=5)
    assert "retry after 120" in body["trace"][0]["reason"]


def test_a_reported_retry_after_holds_a_model_back_an_hour_at_most(api, counters, general):
    report(api, status="rate_limited", retry_after=86_400)

    body = route(api, category="general")

    assert epoch(body["trace"][0]["until"]) == pytest.approx(time.time() + 3600, abs=5)
    assert "retry after 86400 s (capped at 3600 s)" in body["trace"][0]["reason"]


def test_the_cap_is_the_providers_setting(api, counters, anthropic, general):
    Provider.objects.filter(pk=anthropic.pk).update(max_retry_after_seconds=300)
    report(api, status="rate_limited", retry_after=86_400)

    assert epoch(route(api, category="general")["trace"][0]["until"]) == pytest.approx(time.time() + 300, abs=5)


def test_the_models_api_shows_a_cooldown_and_the_key_whose_report_started_it(api, counters, general):
    report(api, status="rate_limited", retry_after=600)

    models = {model["key"]: model for model in api.get("/api/v1/models").json()["results"]}

    cooldown = models["claude-sonnet-4-5"]["cooldown"]
    assert cooldown["reported_by"] == "test-service"
    assert datetime.fromisoformat(cooldown["until"]).timestamp() == pytest.approx(time.time() + 600, abs=5)
    assert cooldown["reason"] == "provider asked to retry after 600 s"
    assert models["glm-4-5"]["cooldown"] is None


def test_the_admin_shows_a_models_cooldown_and_who_reported_it(api, counters, general, client, admin_user):
    report(api, status="rate_limited", retry_after=600)
    client.force_login(admin_user)

    page = client.get("/admin/providers/llmmodel/").content.decode()

    assert "provider asked to retry after 600 s (reported by test-service)" in page


def test_a_retry_after_that_has_passed_no_longer_holds_the_model_back(api, counters, general):
    UsageEvent.objects.create(created_at=datetime.now(tz=UTC) - timedelta(seconds=40), model_key="claude-sonnet-4-5",
                              provider_slug="anthropic", status="rate_limited", retry_after=30)
    rebuild_counters()

    assert route(api, category="general")["model"]["key"] == "claude-sonnet-4-5"


# Providers' rate-limit headers


def in_seconds(seconds: int) -> str:
    return (datetime.now(tz=UTC) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def test_anthropic_headers_with_no_requests_remaining_stop_the_router_choosing_the_model(api, counters, general):
    report(api, status="ok", ratelimit_headers={
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": in_seconds(30),
    })

    body = route(api, category="general")

    assert first_entry(body) == ("claude-sonnet-4-5", "skipped", "rate_limit")
    assert body["model"]["key"] == "glm-4-5"


def test_anthropic_headers_whose_reset_has_passed_do_not_hold_the_model_back(api, counters, general):
    report(api, status="ok", ratelimit_headers={
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": in_seconds(-5),
    })

    assert route(api, category="general")["model"]["key"] == "claude-sonnet-4-5"


def test_openai_headers_with_fewer_tokens_remaining_than_the_estimate_stop_the_router(api, counters, general):
    report(api, status="ok", ratelimit_headers={
        "x-ratelimit-limit-tokens": "30000",
        "x-ratelimit-remaining-tokens": "500",
        "x-ratelimit-reset-tokens": "20s",
    })

    too_big = route(api, category="general", estimated_input_tokens=800, estimated_output_tokens=200)
    fits = route(api, category="general", estimated_input_tokens=300, estimated_output_tokens=100)

    assert first_entry(too_big) == ("claude-sonnet-4-5", "skipped", "rate_limit")
    assert epoch(too_big["trace"][0]["until"]) == pytest.approx(time.time() + 20, abs=5)
    assert fits["model"]["key"] == "claude-sonnet-4-5"


def test_the_latest_headers_win(api, counters, general):
    report(api, ratelimit_headers={"anthropic-ratelimit-requests-remaining": "0", "anthropic-ratelimit-requests-reset": in_seconds(30)})
    report(api, ratelimit_headers={"anthropic-ratelimit-requests-remaining": "40", "anthropic-ratelimit-requests-reset": in_seconds(30)})

    assert route(api, category="general")["model"]["key"] == "claude-sonnet-4-5"
