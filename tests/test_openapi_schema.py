"""The OpenAPI 3 schema, the interactive docs (no CDN), and a property-based run against the schema."""

import re
from decimal import Decimal

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from rest_framework.test import APIClient

from router.models import Category, Policy
from switchboard.vocabulary import ProviderKind
from tests.factories import CategoryFactory, LLMModelFactory, ProviderFactory, QuotaFactory, make_api_key, make_route, make_tier

EXAMPLES_PER_OPERATION = 25


def config(key: str):
    """Every check (`--checks all`), the key with every scope as the schema's bearer authentication (so that a
    case generated without it is sent without it), and one allowance: a request the schema allows may still
    name what does not exist (a category, a model, a decision; a policy whose routes name unknown models),
    and is answered 400 naming it. JSON Schema cannot say which names exist."""
    return schemathesis.config.SchemathesisConfig.from_str(f"""
[auth.openapi.ApiKey]
bearer = "{key}"

[[operations]]
include-path-regex = "^/api/v1/(route|usage|policy)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"]
""")


@pytest.fixture
def static_files(settings):
    """The docs render without a collectstatic run: the manifest storage is for production."""
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}


def test_the_schema_is_an_openapi_3_document_of_the_v1_api(db):
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json")

    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert {"/api/v1/route", "/api/v1/usage", "/api/v1/quotas", "/api/v1/models", "/api/v1/decisions", "/api/v1/health"} <= set(
        document["paths"])
    assert set(document["paths"]["/api/v1/route"]["post"]["responses"]) >= {"200", "400", "429", "503"}


def test_the_schema_declares_bearer_authentication_and_a_session_only_for_the_policy(db):
    document = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json").json()

    schemes = document["components"]["securitySchemes"]
    [bearer] = [name for name, scheme in schemes.items() if (scheme["type"], scheme.get("scheme")) == ("http", "bearer")]
    [session] = [name for name, scheme in schemes.items() if scheme["type"] == "apiKey" and scheme["in"] == "cookie"]
    assert document["paths"]["/api/v1/route"]["post"]["security"] == [{bearer: []}]
    assert {session: []} in document["paths"]["/api/v1/policy"]["put"]["security"]


def test_the_docs_answer_and_load_nothing_from_a_cdn(db, static_files):
    response = APIClient().get("/api/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    assert not re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html)
    assert not re.findall(r"https?://(?!localhost|testserver)", html)
    assert re.search(r"""src=["']/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle\.js""", html)


@pytest.fixture
def policy(db):
    """A small policy, so that generated requests reach the routing code and not only its validation."""
    openai = ProviderFactory(slug="openai", kind=ProviderKind.OPENAI)
    gpt4o = LLMModelFactory(key="gpt-4o", provider=openai, context_window=128_000)
    mini = LLMModelFactory(key="gpt-4o-mini", provider=openai)
    QuotaFactory(provider=openai, name="requests", metric="requests", window="minute", limit=Decimal(5), soft_limit_ratio=Decimal(1))
    QuotaFactory(provider=openai, name="dollars", metric="cost_usd", window="day", limit=Decimal(1), models=[gpt4o])
    make_route(CategoryFactory(slug="general"), [gpt4o, mini])
    make_route(CategoryFactory(slug="security_auth_change", fallback=Category.Fallback.NEVER, may_use_headroom=True), [gpt4o],
               complexity="high")
    policy = Policy.current()
    policy.default_tier = make_tier("cheap", [mini, gpt4o])
    policy.save()


def is_a_refusal(operation, response) -> bool:
    """The routing API's documented 503: no candidate could be chosen, for no quota reason (e.g. every context window too small)."""
    return (operation.label == "POST /api/v1/route" and response.status_code == 503
            and response.json().get("error") in ("no_capacity", "primary_unavailable"))


def fuzz(operation, seen: dict[str, set[int]]):
    """A Hypothesis test of one operation: valid and invalid requests, none answered with a 5xx."""
    cases = operation.as_strategy() | operation.as_strategy(generation_mode=schemathesis.GenerationMode.NEGATIVE)

    @given(case=cases)
    @hypothesis_settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def run(case):
        response = case.call()
        seen.setdefault(operation.label, set()).add(response.status_code)
        if not is_a_refusal(operation, response):
            case.validate_response(response)  # every check
        if 400 <= response.status_code < 500:
            body = response.json()
            assert isinstance(body, dict) and body.get("error") and body.get("detail"), (
                f"{operation.label} answered {response.status_code} without error and detail: {response.text}")

    return run


# The WSGI app runs outside the test client, and closes or checks its database connection per
# request as in production: the rows it needs must be committed, hence a transactional test.
@pytest.mark.django_db(transaction=True)
def test_a_property_based_run_against_the_schema_finds_no_server_error(policy, static_files):
    from switchboard.wsgi import application

    schema = schemathesis.openapi.from_wsgi("/api/schema/", application, headers={"Accept": "application/json"},
                                            config=config(make_api_key()))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8
    seen: dict[str, set[int]] = {}

    for operation in operations:
        fuzz(operation, seen)()

    assert 200 in seen["POST /api/v1/route"], seen
