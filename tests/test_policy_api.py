"""GET and PUT /api/v1/policy: the whole policy in the policy file format, read and applied in one transaction by an
API key with the admin scope or by a logged-in editor, each change recorded with its author in the edit history."""

import copy
import json
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.contrib.auth.models import Group, User
from rest_framework.test import APIClient

from providers.models import LLMModel, Provider, Quota
from router.models import Category, Policy, Route, RouteModel, Tier, TierModel
from router.policy.apply import apply_policy
from router.policy.document import parse_policy
from router.policy.export import export_policy
from tests.factories import make_api_key

EXAMPLE = parse_policy((Path(settings.BASE_DIR) / "policy.example.yaml").read_text())


@pytest.fixture
def imported(db) -> dict:
    apply_policy(copy.deepcopy(EXAMPLE))
    return copy.deepcopy(EXAMPLE)


@pytest.fixture
def admin_key(db) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_api_key('deploy-bot', scopes=('admin',))}")
    return client


def editor(name: str = "editor", group: str = "policy editors") -> APIClient:
    user = User.objects.create_user(name, is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def put(client: APIClient, document: dict | str, content_type: str = "application/json", **extra):
    body = document if isinstance(document, str) else json.dumps(document)
    return client.put("/api/v1/policy", body, content_type=content_type, **extra)


def changed(document: dict, section: str, match: dict, **fields) -> dict:
    for entry in document[section]:
        if all(entry.get(k) == v for k, v in match.items()):
            entry.update(fields)
    return document


CHANGES = {
    "category": (lambda d: changed(d, "categories", {"slug": "general"}, description="Everything else"),
                 lambda: Category.objects.get(slug="general").description == "Everything else",
                 lambda: Category.objects.get(slug="general")),
    "provider": (lambda d: changed(d, "providers", {"slug": "openai"}, request_timeout_seconds=20),
                 lambda: Provider.objects.get(slug="openai").request_timeout_seconds == 20,
                 lambda: Provider.objects.get(slug="openai")),
    "model": (lambda d: changed(d, "models", {"key": "gpt-4o"}, context_window=64_000),
              lambda: LLMModel.objects.get(key="gpt-4o").context_window == 64_000,
              lambda: LLMModel.objects.get(key="gpt-4o")),
    "quota": (lambda d: changed(d, "providers", {"slug": "openai"}, quotas=[{"metric": "tokens", "window": "day", "limit": 7_000_000}]),
              lambda: Quota.objects.filter(provider__slug="openai", limit=7_000_000).exists(),
              lambda: Quota.objects.get(provider__slug="openai", limit=7_000_000)),
    "tier": (lambda d: changed(d, "tiers", {"slug": "cheap"}, models=["claude-3-5-haiku"]),
             lambda: Tier.objects.get(slug="cheap").model_keys() == ["claude-3-5-haiku"],
             lambda: TierModel.objects.get(tier__slug="cheap")),
    "route": (lambda d: changed(d, "routes", {"category": "general", "complexity": "high"}, max_attempts=3),
              lambda: Route.objects.get(category__slug="general", complexity="high").max_attempts == 3,
              lambda: Route.objects.get(category__slug="general", complexity="high")),
}


@pytest.mark.parametrize("kind", CHANGES)
def test_an_admin_key_changes_each_kind_of_object_and_the_history_names_the_key(imported, admin_key, kind):
    change, applied, changed_object = CHANGES[kind]
    version = Policy.current().version

    response = put(admin_key, change(imported))

    assert response.status_code == 200, response.content
    assert response.json() == {"changed": True, "policy_version": version + 1}
    assert applied()
    record = changed_object().history.first()
    assert (record.history_user, record.history_change_reason) == (None, "policy import by API key 'deploy-bot'")


def test_an_admin_key_removes_a_category_with_its_route_and_the_history_names_the_key(imported, admin_key):
    imported["categories"] = [c for c in imported["categories"] if c["slug"] != "bedrock_agent"]
    imported["routes"] = [r for r in imported["routes"] if r["category"] != "bedrock_agent"]

    response = put(admin_key, imported)

    assert response.status_code == 200, response.content
    assert not Route.objects.filter(category__slug="bedrock_agent").exists()
    removed = RouteModel.history.filter(history_type="-")
    assert removed.exists()
    assert set(removed.values_list("history_change_reason", flat=True)) == {"policy import by API key 'deploy-bot'"}


def csrf_token(client: APIClient) -> str:
    """The token a page of the admin hands the browser, as the browser sends it back with a PUT."""
    client.get("/admin/")
    return client.cookies["csrftoken"].value


def test_a_logged_in_editor_changes_the_policy_and_the_history_names_them(imported):
    client = editor()

    response = put(client, changed(imported, "categories", {"slug": "general"}, description="Edited"), HTTP_X_CSRFTOKEN=csrf_token(client))

    assert response.status_code == 200, response.content
    record = Category.objects.get(slug="general").history.first()
    assert (record.history_user.username, record.history_change_reason) == ("editor", "policy import by editor")


def test_a_put_without_the_csrf_token_is_refused_and_changes_nothing(imported):
    response = put(editor(), changed(imported, "categories", {"slug": "general"}, description="Edited"))

    assert response.status_code == 403
    assert Category.objects.get(slug="general").description != "Edited"


def test_a_viewer_reads_the_policy_but_may_not_change_it(imported):
    client = editor("viewer", group="policy viewers")

    assert client.get("/api/v1/policy").json() == export_policy()
    response = put(client, imported, HTTP_X_CSRFTOKEN=csrf_token(client))
    assert (response.status_code, response.json()["error"]) == (403, "forbidden")


def test_nobody_else_gets_in(imported, api):
    anonymous = APIClient()
    reader = APIClient()
    reader.credentials(HTTP_AUTHORIZATION=f"Bearer {make_api_key('reader', scopes=('read',))}")

    assert anonymous.get("/api/v1/policy").status_code == 401
    assert reader.get("/api/v1/policy").status_code == 403


def test_a_yaml_put_and_get_round_trip(imported, admin_key):
    document = changed(imported, "categories", {"slug": "general"}, description="From YAML")

    assert put(admin_key, yaml.safe_dump(document), content_type="application/yaml").status_code == 200

    exported = yaml.safe_load(admin_key.get("/api/v1/policy", {"format": "yaml"}).content)
    assert next(c for c in exported["categories"] if c["slug"] == "general")["description"] == "From YAML"


def test_a_put_of_the_current_policy_changes_nothing(imported, admin_key):
    version = Policy.current().version

    response = put(admin_key, admin_key.get("/api/v1/policy").json())

    assert response.json() == {"changed": False, "policy_version": version}
