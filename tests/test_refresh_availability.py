"""The availability refresh as a whole: what it writes, what it records, claims, isolation, and the command."""

import logging
import threading
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from providers import refresh
from providers.adapters import base
from providers.models import AvailabilityCheck, LLMModel, Provider
from providers.refresh import RefreshInProgress, UnknownProvider, refresh_all, refresh_provider
from router.models import Policy
from tests.factories import LLMModelFactory, ProviderFactory
from tests.provider_servers import FakeAnthropic, FakeOpenAI

ANTHROPIC_KEY = "sk-ant-api03-refresh-test-key"
OPENAI_KEY = "sk-proj-refresh-test-key"
HAIKU = "claude-3-haiku-20240307"
SONNET = "claude-3-5-sonnet-20241022"


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    monkeypatch.setattr(base, "SDK_MAX_RETRIES", 0)
    monkeypatch.setenv("TEST_ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    monkeypatch.setenv("TEST_OPENAI_API_KEY", OPENAI_KEY)


@pytest.fixture
def anthropic_api():
    with FakeAnthropic(listed=[HAIKU], api_key=ANTHROPIC_KEY) as server:
        yield server


@pytest.fixture
def openai_api():
    with FakeOpenAI(listed=["gpt-4o"], api_key=OPENAI_KEY) as server:
        yield server


@pytest.fixture
def anthropic(anthropic_api):
    provider = ProviderFactory(slug="anthropic", kind="anthropic", base_url=anthropic_api.url, credential_env="TEST_ANTHROPIC_API_KEY")
    LLMModelFactory(key="claude-3-haiku", provider=provider, model_id=HAIKU)
    LLMModelFactory(key="claude-3-5-sonnet", provider=provider, model_id=SONNET)
    return provider


@pytest.fixture
def openai(openai_api):
    provider = ProviderFactory(slug="openai", kind="openai", base_url=f"{openai_api.url}/v1", credential_env="TEST_OPENAI_API_KEY")
    LLMModelFactory(key="gpt-4o", provider=provider, model_id="gpt-4o")
    return provider


def availability() -> dict[str, str]:
    return dict(LLMModel.objects.values_list("key", "availability"))


@pytest.mark.django_db
def test_it_creates_no_edit_history_and_keeps_the_policy_version(anthropic):
    history = LLMModel.history.count()
    version = Policy.current().version

    check = refresh_provider(anthropic)

    assert check.models_changed == 2
    assert LLMModel.history.count() == history
    assert Policy.current().version == version


@pytest.mark.django_db
def test_every_run_is_stored_as_a_check(anthropic):
    first = refresh_provider(anthropic)
    first_checked = LLMModel.objects.get(key="claude-3-haiku").checked_at
    second = refresh_provider(anthropic)

    assert list(AvailabilityCheck.objects.filter(provider=anthropic)) == [second, first]
    assert first.kind == "availability" and first.ok and first.started_at <= second.started_at
    assert first.duration_ms >= 0
    assert first.changes == [
        {"model": "claude-3-5-sonnet", "from": "unknown", "to": "unavailable", "invoke_id": "",
         "reason": "not listed by the provider's models API for this key"},
        {"model": "claude-3-haiku", "from": "unknown", "to": "available", "invoke_id": HAIKU, "reason": "listed by the provider's models API"},
    ]
    assert (second.models_changed, second.changes) == (0, [])
    # Unchanged models are still stamped: the router notices a refresh through the newest checked_at.
    assert LLMModel.objects.get(key="claude-3-haiku").checked_at > first_checked


@pytest.mark.django_db
def test_one_failing_provider_does_not_stop_the_others(anthropic, openai, anthropic_api):
    anthropic_api.fail_status = 500

    checks = refresh_all()

    assert [(c.provider.slug, c.ok) for c in checks] == [("anthropic", False), ("openai", True)]
    assert availability() == {"claude-3-haiku": "unknown", "claude-3-5-sonnet": "unknown", "gpt-4o": "available"}


@pytest.mark.django_db
def test_disabled_providers_are_skipped(anthropic, openai, openai_api):
    Provider.objects.filter(pk=openai.pk).update(enabled=False)

    assert [c.provider.slug for c in refresh_all()] == ["anthropic"]
    assert refresh_all("openai") == []
    assert openai_api.requests == []


@pytest.mark.django_db
def test_a_slug_refreshes_only_that_provider(anthropic, openai, anthropic_api):
    assert [c.provider.slug for c in refresh_all("openai")] == ["openai"]
    assert anthropic_api.requests == []


@pytest.mark.django_db
def test_an_unknown_slug_names_the_valid_ones(anthropic, openai):
    with pytest.raises(UnknownProvider, match=r"No provider 'antropic'\. Valid: anthropic, openai\."):
        refresh_all("antropic")


@pytest.mark.django_db
def test_a_refresh_in_progress_is_not_started_again(anthropic, anthropic_api):
    Provider.objects.filter(pk=anthropic.pk).update(refreshing_since=timezone.now() - timedelta(minutes=3))

    with pytest.raises(RefreshInProgress):
        refresh_provider(anthropic)
    assert refresh_all() == []
    assert anthropic_api.requests == [] and not AvailabilityCheck.objects.exists()


@pytest.mark.django_db
def test_a_stale_claim_is_taken_over_and_released(anthropic):
    Provider.objects.filter(pk=anthropic.pk).update(refreshing_since=timezone.now() - timedelta(minutes=11))

    assert refresh_provider(anthropic).ok
    assert Provider.objects.get(pk=anthropic.pk).refreshing_since is None


@pytest.mark.django_db
def test_an_unexpected_error_is_recorded_and_the_claim_released(anthropic, monkeypatch):
    def broken(self, models):
        raise KeyError("modelSummaries")

    monkeypatch.setattr("providers.adapters.anthropic.AnthropicAdapter.check", broken)

    check = refresh_provider(anthropic)

    assert not check.ok and check.error == "unexpected error: KeyError: 'modelSummaries'"
    assert set(availability().values()) == {"unknown"}
    assert Provider.objects.get(pk=anthropic.pk).refreshing_since is None


@pytest.mark.django_db
def test_the_claim_is_released_when_writing_fails(anthropic, monkeypatch):
    def failing_apply(*args):
        raise RuntimeError("database went away")

    monkeypatch.setattr(refresh, "_apply", failing_apply)

    with pytest.raises(RuntimeError):
        refresh_provider(anthropic)
    assert Provider.objects.get(pk=anthropic.pk).refreshing_since is None


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_refreshes_of_one_provider_run_once(anthropic, anthropic_api):
    anthropic_api.delay = 0.5
    outcomes = []

    def run():
        try:
            outcomes.append(refresh_provider(Provider.objects.get(pk=anthropic.pk)).ok)
        except RefreshInProgress:
            outcomes.append("skipped")
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert sorted(outcomes, key=str) == [True, "skipped"]
    assert AvailabilityCheck.objects.count() == 1
    assert len([r for r in anthropic_api.requests if r.path == "/v1/models"]) == 1


@pytest.mark.django_db
def test_credentials_never_reach_the_log_or_the_check(anthropic, anthropic_api, caplog):
    anthropic_api.fail_status = 401  # the fake's error message repeats the key it was sent
    caplog.set_level(logging.DEBUG)

    check = refresh_provider(anthropic)

    assert "HTTP 401" in check.error
    assert ANTHROPIC_KEY not in check.error
    assert ANTHROPIC_KEY not in caplog.text
    assert "refresh of anthropic failed" in caplog.text


@pytest.mark.django_db
def test_the_command_prints_one_line_per_provider(anthropic, openai, capsys):
    Provider.objects.create(slug="zhipu", kind="openai_compatible", base_url="http://127.0.0.1:9/v1", enabled=False)

    call_command("refresh_availability")

    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "anthropic: ok, 2 changed: claude-3-5-sonnet unknown -> unavailable (not listed by the provider's models API for this key); "
        "claude-3-haiku unknown -> available (listed by the provider's models API)",
        "openai: ok, 1 changed: gpt-4o unknown -> available (listed by the provider's models API)",
    ]


@pytest.mark.django_db
def test_the_command_reports_a_disabled_provider_it_was_asked_for(anthropic, capsys):
    Provider.objects.filter(pk=anthropic.pk).update(enabled=False)

    call_command("refresh_availability", "anthropic")

    assert capsys.readouterr().out == "anthropic: skipped, provider is disabled\n"


@pytest.mark.django_db
def test_the_command_fails_when_a_provider_failed(anthropic, openai, anthropic_api, capsys):
    anthropic_api.fail_status = 429

    with pytest.raises(CommandError, match=r"^Failed: anthropic\.$"):
        call_command("refresh_availability")

    out = capsys.readouterr().out
    assert "anthropic: error: GET /v1/models: HTTP 429" in out
    assert "openai: ok, 1 changed" in out


@pytest.mark.django_db
def test_the_command_refuses_an_unknown_provider(anthropic, openai):
    with pytest.raises(CommandError, match=r"No provider 'nope'\. Valid: anthropic, openai\."):
        call_command("refresh_availability", "nope")
