"""The OpenAI adapter (kinds openai and openai_compatible) against a local fake of the OpenAI API."""

import pytest

from providers.adapters import adapter_for, base
from providers.adapters.openai import OpenAIAdapter
from providers.models import LLMModel
from providers.refresh import refresh_provider
from tests.factories import LLMModelFactory, ProviderFactory
from tests.provider_servers import FakeOpenAI, closed_port_url

pytestmark = pytest.mark.django_db

KEY = "sk-proj-test-key-0123456789abcdef"


@pytest.fixture(autouse=True)
def no_retries(monkeypatch):
    monkeypatch.setattr(base, "SDK_MAX_RETRIES", 0)
    monkeypatch.setenv("TEST_OPENAI_API_KEY", KEY)


@pytest.fixture
def api():
    with FakeOpenAI(listed=["gpt-4o", "gpt-4o-mini"], api_key=KEY) as server:
        yield server


def make_provider(base_url: str, kind: str = "openai", **fields):
    return ProviderFactory(slug=kind.replace("_", "-"), kind=kind, base_url=base_url, credential_env="TEST_OPENAI_API_KEY", **fields)


def fresh(model: LLMModel) -> LLMModel:
    return LLMModel.objects.get(pk=model.pk)


def test_both_kinds_use_the_openai_adapter(api):
    assert isinstance(adapter_for(make_provider(f"{api.url}/v1")), OpenAIAdapter)
    assert isinstance(adapter_for(make_provider(f"{api.url}/v1", kind="openai_compatible")), OpenAIAdapter)


def test_listed_models_are_available_and_others_not(api):
    provider = make_provider(f"{api.url}/v1")
    mini = LLMModelFactory(key="gpt-4o-mini", provider=provider, model_id="gpt-4o-mini")
    turbo = LLMModelFactory(key="gpt-4-turbo", provider=provider, model_id="gpt-4-turbo-2024-04-09")

    check = refresh_provider(provider)

    assert check.ok and check.models_changed == 2
    assert (fresh(mini).availability, fresh(mini).invoke_id) == ("available", "gpt-4o-mini")
    assert fresh(turbo).availability == "unavailable"
    assert [(r.method, r.path) for r in api.requests] == [("GET", "/v1/models")]


def test_an_openai_compatible_base_url_is_used_as_is(api):
    provider = make_provider(f"{api.url}/v1", kind="openai_compatible")
    glm = LLMModelFactory(key="glm", provider=provider, model_id="gpt-4o")

    assert refresh_provider(provider).ok
    assert fresh(glm).availability == "available"


def test_it_probes_unlisted_models_with_one_token(api):
    api.usable = {"gpt-4o", "gpt-4o-mini", "o1-preview"}
    provider = make_provider(f"{api.url}/v1", probe_models=True)
    preview = LLMModelFactory(key="o1-preview", provider=provider, model_id="o1-preview")
    gpt5 = LLMModelFactory(key="gpt-5", provider=provider, model_id="gpt-5")

    check = refresh_provider(provider)

    assert check.ok
    assert (fresh(preview).availability, fresh(preview).availability_reason) == ("available", "answered a one-token probe")
    assert (fresh(gpt5).availability, fresh(gpt5).availability_reason) == ("unavailable", "not available to this key (404 on a one-token probe)")
    probes = [r.body for r in api.requests if r.path == "/v1/chat/completions"]
    assert sorted(p["model"] for p in probes) == ["gpt-5", "o1-preview"]
    assert {p["max_tokens"] for p in probes} == {1}


@pytest.mark.parametrize("status", [401, 404, 429, 500])
def test_an_api_error_never_makes_a_model_unavailable(api, status):
    provider = make_provider(f"{api.url}/v1")
    listed = LLMModelFactory(key="gpt-4o", provider=provider, model_id="gpt-4o")
    refresh_provider(provider)
    checked_at = fresh(listed).checked_at
    new = LLMModelFactory(key="gpt-new", provider=provider, model_id="gpt-new")
    api.fail_status = status

    check = refresh_provider(provider)

    assert not check.ok and f"HTTP {status}" in check.error
    assert (fresh(listed).availability, fresh(listed).checked_at) == ("available", checked_at)
    assert fresh(new).availability == "unknown"


def test_a_wrong_key_is_not_repeated_in_the_error(api, monkeypatch):
    wrong = "sk-proj-wrong-key-that-must-not-be-stored"
    monkeypatch.setenv("TEST_OPENAI_API_KEY", wrong)
    provider = make_provider(f"{api.url}/v1")
    LLMModelFactory(key="gpt-4o", provider=provider, model_id="gpt-4o")

    check = refresh_provider(provider)

    assert "HTTP 401: Incorrect API key provided: [redacted]." in check.error
    assert wrong not in check.error


def test_a_timeout_is_recorded(api):
    api.delay = 2.5
    provider = make_provider(f"{api.url}/v1", request_timeout_seconds=1)
    model = LLMModelFactory(key="gpt-4o", provider=provider, model_id="gpt-4o")

    check = refresh_provider(provider)

    assert not check.ok and "timed out after 1s" in check.error
    assert fresh(model).availability == "unknown"


def test_a_refused_connection_is_recorded():
    provider = make_provider(f"{closed_port_url()}/v1")
    model = LLMModelFactory(key="gpt-4o", provider=provider, model_id="gpt-4o")

    check = refresh_provider(provider)

    assert not check.ok and "could not connect" in check.error
    assert fresh(model).availability == "unknown"
