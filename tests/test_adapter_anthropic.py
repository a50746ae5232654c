"""The Anthropic adapter against a local fake of the Anthropic API, through the availability refresh."""

from datetime import timedelta

import pytest
from django.utils import timezone

from providers.adapters import base
from providers.adapters.anthropic import AnthropicAdapter
from providers.models import LLMModel
from providers.refresh import refresh_provider
from tests.factories import LLMModelFactory, ProviderFactory
from tests.provider_servers import FakeAnthropic, closed_port_url

pytestmark = pytest.mark.django_db

KEY = "sk-ant-api03-test-key-0123456789"
HAIKU = "claude-3-haiku-20240307"
SONNET = "claude-3-5-sonnet-20241022"
OPUS = "claude-opus-4-1-20250805"


@pytest.fixture(autouse=True)
def no_retries(monkeypatch):
    monkeypatch.setattr(base, "SDK_MAX_RETRIES", 0)
    monkeypatch.setenv("TEST_ANTHROPIC_API_KEY", KEY)


@pytest.fixture
def api():
    """A key that lists only Haiku (seed 001)."""
    with FakeAnthropic(listed=[HAIKU], api_key=KEY) as server:
        yield server


def make_provider(base_url: str, **fields):
    fields = {"credential_env": "TEST_ANTHROPIC_API_KEY", **fields}
    return ProviderFactory(slug="anthropic", kind="anthropic", base_url=base_url, **fields)


def make_models(provider) -> dict[str, LLMModel]:
    return {
        "haiku": LLMModelFactory(key="claude-3-haiku", provider=provider, model_id=HAIKU),
        "sonnet": LLMModelFactory(key="claude-3-5-sonnet", provider=provider, model_id=SONNET),
        "opus": LLMModelFactory(key="claude-opus-4-1", provider=provider, model_id=OPUS),
    }


def fresh(model: LLMModel) -> LLMModel:
    return LLMModel.objects.get(pk=model.pk)


def test_it_lists_every_page():
    listed = [f"claude-model-{n}" for n in range(5)]
    with FakeAnthropic(listed=listed, api_key=KEY, page_size=2) as server:
        assert AnthropicAdapter(make_provider(server.url)).list_model_ids() == set(listed)
    assert [r.query.get("after_id") for r in server.requests] == [None, ["claude-model-1"], ["claude-model-3"]]


def test_a_key_that_lists_only_haiku_makes_sonnet_unavailable(api):
    provider = make_provider(api.url)
    models = make_models(provider)

    check = refresh_provider(provider)

    assert check.ok and check.error == ""
    haiku, sonnet, opus = (fresh(models[k]) for k in ("haiku", "sonnet", "opus"))
    assert (haiku.availability, haiku.invoke_id) == ("available", HAIKU)
    assert sonnet.availability == opus.availability == "unavailable"
    assert "not listed" in sonnet.availability_reason
    assert haiku.checked_at is not None and sonnet.checked_at is not None
    assert check.models_changed == 3
    assert {c["model"]: (c["from"], c["to"]) for c in check.changes} == {
        "claude-3-haiku": ("unknown", "available"),
        "claude-3-5-sonnet": ("unknown", "unavailable"),
        "claude-opus-4-1": ("unknown", "unavailable"),
    }
    # Only listing: no tokens spent.
    assert all(r.path.startswith("/v1/models") for r in api.requests)


def test_it_probes_unlisted_enabled_models_with_one_token(api):
    api.usable = {HAIKU, SONNET}
    provider = make_provider(api.url, probe_models=True)
    models = make_models(provider)
    disabled = LLMModelFactory(key="claude-2", provider=provider, model_id="claude-2.1", enabled=False)

    check = refresh_provider(provider)

    assert check.ok
    assert fresh(models["haiku"]).availability == "available"
    sonnet = fresh(models["sonnet"])
    assert (sonnet.availability, sonnet.availability_reason, sonnet.invoke_id) == ("available", "answered a one-token probe", SONNET)
    opus = fresh(models["opus"])
    assert opus.availability == "unavailable"
    assert opus.availability_reason == "not available to this key (404 on a one-token probe)"
    assert fresh(disabled).availability == "unavailable"
    probes = [r.body for r in api.requests if r.path == "/v1/messages"]
    assert sorted(p["model"] for p in probes) == sorted([OPUS, SONNET])
    assert all(p["max_tokens"] == 1 for p in probes)


def test_an_alias_of_a_listed_model_is_available():
    with FakeAnthropic(listed=["claude-opus-4-5-20251101"], api_key=KEY, aliases={"claude-opus-4-5": "claude-opus-4-5-20251101"}) as server:
        provider = make_provider(server.url)
        opus = LLMModelFactory(key="claude-opus-4-5", provider=provider, model_id="claude-opus-4-5")
        refresh_provider(provider)
    opus = fresh(opus)
    assert (opus.availability, opus.invoke_id) == ("available", "claude-opus-4-5")
    assert "alias of claude-opus-4-5-20251101" in opus.availability_reason


@pytest.mark.parametrize("status", [401, 403, 404, 429, 500, 529])
def test_an_api_error_leaves_availability_as_it_was(api, status):
    provider = make_provider(api.url)
    models = make_models(provider)
    refresh_provider(provider)
    before = {k: fresh(m) for k, m in models.items()}
    never_checked = LLMModelFactory(key="claude-new", provider=provider, model_id="claude-new-1")
    api.fail_status = status

    check = refresh_provider(provider)

    assert not check.ok
    assert f"HTTP {status}" in check.error
    assert KEY not in check.error  # the fake echoes the key in its message
    assert check.models_changed == 0 and check.changes == []
    for key, old in before.items():
        now = fresh(models[key])
        assert (now.availability, now.availability_reason, now.checked_at) == (old.availability, old.availability_reason, old.checked_at)
    assert fresh(never_checked).availability == "unknown"


def test_a_timeout_leaves_models_unknown(api):
    api.delay = 2.5
    provider = make_provider(api.url, request_timeout_seconds=1)
    models = make_models(provider)

    check = refresh_provider(provider)

    assert not check.ok
    assert "timed out after 1s" in check.error
    assert {fresh(m).availability for m in models.values()} == {"unknown"}
    assert check.duration_ms < 2500


def test_a_refused_connection_is_recorded_not_raised():
    provider = make_provider(closed_port_url())
    models = make_models(provider)
    LLMModel.objects.filter(pk=models["haiku"].pk).update(availability="available", checked_at=timezone.now() - timedelta(hours=1))

    check = refresh_provider(provider)

    assert not check.ok
    assert "could not connect" in check.error
    assert fresh(models["haiku"]).availability == "available"
    assert fresh(models["sonnet"]).availability == "unknown"


def test_a_failed_probe_leaves_that_model_unchanged(api):
    class FlakyMessages(FakeAnthropic):
        def respond(self, request):
            if request.path == "/v1/messages" and request.body["model"] == OPUS:
                return self.error(500, request)
            return super().respond(request)

    with FlakyMessages(listed=[HAIKU], api_key=KEY, usable={HAIKU, SONNET}) as server:
        provider = make_provider(server.url, probe_models=True)
        models = make_models(provider)
        check = refresh_provider(provider)

    assert not check.ok
    assert check.error.startswith("claude-opus-4-1: one-token probe of claude-opus-4-1-20250805: HTTP 500")
    assert KEY not in check.error
    assert fresh(models["sonnet"]).availability == "available"
    opus = fresh(models["opus"])
    assert (opus.availability, opus.checked_at) == ("unknown", None)


def test_a_stored_secret_is_used_before_the_environment(api, monkeypatch):
    monkeypatch.setenv("TEST_ANTHROPIC_API_KEY", "sk-ant-wrong")
    provider = make_provider(api.url)
    provider.set_secret(KEY)
    provider.save()
    make_models(provider)

    assert refresh_provider(provider).ok


def test_no_credential_is_an_error_without_a_request(api):
    provider = make_provider(api.url, credential_env="")
    make_models(provider)

    check = refresh_provider(provider)

    assert not check.ok
    assert "no API key" in check.error
    assert api.requests == []
