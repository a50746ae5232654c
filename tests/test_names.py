"""Names and ids are what they look like: keys, slugs and ids match their pattern in full (no trailing
newline), and a character that shows differently from what it is (bidirectional control, zero-width,
control) is refused with an error naming it and its place; nothing is stored."""

import io
import json

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from providers.models import LLMModel
from router.models import ApiKey, UsageEvent
from tests.factories import LLMModelFactory, ProviderFactory, make_api_key, make_route

PROVIDER = {"slug": "openai", "kind": "openai"}


def policy(model: dict, slug: str = "general") -> str:
    model = {"key": "d1", "provider": "openai", "model_id": "gpt-4o", "context_window": 128000} | model
    return json.dumps({"providers": [PROVIDER], "models": [model], "tiers": [], "categories": [{"slug": slug}],
                       "routes": [{"category": slug, "complexity": "any", "models": [model["key"]]}]})


@pytest.fixture
def admin_api(db):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_api_key('ops', scopes=('admin',))}")
    return client


@pytest.mark.parametrize(("document", "place", "says"), [
    (policy({"key": "d1\n"}), "models[0].key", "Use letters, digits"),
    (policy({}, slug="general\n"), "categories[0].slug", "slug"),
    (policy({"model_id": "gpt-4o\u202e"}), "models[0].model_id", "character 7 is U+202E RIGHT-TO-LEFT OVERRIDE"),
    (policy({"model_id": "gpt\u200b-4o"}), "models[0].model_id", "character 4 is U+200B ZERO WIDTH SPACE"),
])
def test_a_policy_with_a_look_alike_name_is_refused_naming_the_place(admin_api, document, place, says):
    response = admin_api.put("/api/v1/policy", document, content_type="application/json")

    assert response.status_code == 400
    problem = next(problem for problem in response.json()["problems"] if problem.startswith(place))
    assert says in problem
    assert not LLMModel.objects.exists()


@pytest.mark.parametrize(("name", "says"), [
    ("billing\u202egnp.exe", "character 8 is U+202E RIGHT-TO-LEFT OVERRIDE"),
    ("billing\u200d", "character 8 is U+200D ZERO WIDTH JOINER"),
    ("bill\ning", "character 5 is U+000A"),
])
def test_an_api_key_name_that_shows_differently_is_refused(db, name, says):
    with pytest.raises(CommandError, match=says.replace("+", r"\+")):
        call_command("create_api_key", name, "--scopes", "route", stdout=io.StringIO(), stderr=io.StringIO())

    assert not ApiKey.objects.exists()


@pytest.fixture
def routed(api, settings):
    settings.REDIS_URL = ""
    make_route("general", [LLMModelFactory(key="gpt-4o", provider=ProviderFactory(slug="openai", kind="openai"))])
    return api


def test_a_route_request_naming_a_category_with_a_direction_override_is_refused_naming_it(routed):
    response = routed.post("/api/v1/route", {"category": "gen\u202eeral"}, format="json")

    assert response.status_code == 400
    assert "category: Character 4 is U+202E RIGHT-TO-LEFT OVERRIDE" in response.json()["detail"]


def test_a_usage_report_with_a_zero_width_idempotency_key_is_refused_and_not_stored(routed):
    response = routed.post("/api/v1/usage", {"model": "gpt-4o", "input_tokens": 1, "output_tokens": 1,
                                             "idempotency_key": "call-1\u200b"}, format="json")

    assert response.status_code == 400
    assert "idempotency_key: Character 7 is U+200B ZERO WIDTH SPACE" in response.json()["detail"]
    assert not UsageEvent.objects.exists()
