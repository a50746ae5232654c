"""Plans: `import_policy FILE --plan` and `PUT /api/v1/policy?plan=true` say what an import would change,
validated as an import is, and change nothing (not even the version)."""

import copy
import io
import json
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from providers.models import LLMModel
from router.models import Policy
from router.policy.apply import apply_policy
from router.policy.document import parse_policy
from tests.factories import make_api_key

EXAMPLE = parse_policy((Path(settings.BASE_DIR) / "policy.example.yaml").read_text())


@pytest.fixture
def imported(db) -> dict:
    apply_policy(copy.deepcopy(EXAMPLE))
    return copy.deepcopy(EXAMPLE)


def edited(document: dict) -> dict:
    """The example with a model added, a category removed (with its route) and a quota's limit changed."""
    document["models"].append({"key": "gpt-4-1", "provider": "openai", "model_id": "gpt-4.1", "context_window": 1_000_000})
    document["categories"] = [c for c in document["categories"] if c["slug"] != "bedrock_agent"]
    document["routes"] = [r for r in document["routes"] if r["category"] != "bedrock_agent"]
    openai = next(p for p in document["providers"] if p["slug"] == "openai")
    openai["quotas"][0]["limit"] = openai["quotas"][0]["limit"] * 2
    return document


def plan(tmp_path, document: dict) -> str:
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(document))
    out = io.StringIO()
    call_command("import_policy", str(tmp_path / "policy.yaml"), "--plan", stdout=out)
    return out.getvalue()


def test_the_plan_lists_what_would_be_added_removed_and_changed_and_changes_nothing(imported, tmp_path):
    version = Policy.current().version
    limit = next(p for p in imported["providers"] if p["slug"] == "openai")["quotas"][0]["limit"]

    printed = plan(tmp_path, edited(imported))

    assert "+ model gpt-4-1" in printed
    assert "- category bedrock_agent" in printed and "- route bedrock_agent/any" in printed
    assert f"limit: {limit} -> {limit * 2}" in printed
    assert "changes to policy version" in printed and "nothing was changed" in printed
    assert Policy.current().version == version
    assert not LLMModel.objects.filter(key="gpt-4-1").exists()


def test_a_file_equal_to_the_policy_plans_no_changes(imported, tmp_path):
    assert plan(tmp_path, imported).strip() == f"No changes: policy is already at version {Policy.current().version}"


def test_an_invalid_file_is_refused_by_the_plan_as_by_an_import(imported, tmp_path):
    imported["routes"][0]["models"] = ["no-such-model"]

    with pytest.raises(CommandError, match="1 problem found; nothing was changed"):
        plan(tmp_path, imported)


def test_the_api_answers_the_plan_and_changes_nothing(imported):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {make_api_key('deploy-bot', scopes=('admin',))}")
    version = Policy.current().version

    response = api.put("/api/v1/policy?plan=true", json.dumps(edited(imported)), content_type="application/json")

    assert response.status_code == 200
    body = response.json()
    assert body["changed"] is True and body["policy_version"] == version
    assert {"change": "added", "kind": "model", "name": "gpt-4-1", "fields": {}} in body["changes"]
    assert Policy.current().version == version
