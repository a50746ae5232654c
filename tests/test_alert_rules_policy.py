"""Alert rules are part of the policy: read and applied with the rest of the document (import, export, plan,
PUT /api/v1/policy), every problem named with its place, each change a policy version with its diff, and the admin
as safe as the file."""

import copy
import json
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User

from alerts.models import AlertRule
from router.models import PolicyVersion
from router.policy.apply import COMMAND, apply_policy, apply_version
from router.policy.document import parse_policy
from router.policy.export import export_policy
from router.policy.plan import plan_policy
from tests.factories import make_api_key

pytestmark = pytest.mark.django_db

EXAMPLE = parse_policy((Path(settings.BASE_DIR) / "policy.example.yaml").read_text())


@pytest.fixture
def imported() -> dict:
    apply_policy(copy.deepcopy(EXAMPLE))
    return copy.deepcopy(EXAMPLE)


def put(api, document: dict, query: str = ""):
    return api.put(f"/api/v1/policy{query}", json.dumps(document), content_type="application/json")


def test_the_example_policy_ships_a_rule_for_every_condition(imported):
    conditions = set(AlertRule.objects.values_list("condition", flat=True))
    assert conditions == {"quota_soft_limit", "quota_forecast", "refusal_share", "model_out", "refresh_failing", "ledger_backlog",
                          "counting_on_database"}
    assert export_policy()["alerts"] == EXAMPLE["alerts"]


def test_importing_an_export_changes_nothing(imported):
    version = PolicyVersion.objects.count()
    assert apply_policy(export_policy()) is False
    assert PolicyVersion.objects.count() == version


def test_a_rule_changed_through_the_api_is_planned_applied_and_kept_as_a_version(imported, api):
    document = copy.deepcopy(imported)
    forecast = next(rule for rule in document["alerts"] if rule["condition"] == "quota_forecast")
    forecast["within_minutes"] = 45
    document["alerts"].append({"slug": "general-refusals", "condition": "refusal_share", "percent": 2.5, "category": "general"})

    plan = put(api, document, "?plan=true")
    assert plan.status_code == 200, plan.content
    assert AlertRule.objects.get(slug=forecast["slug"]).within_minutes == 30
    answer = put(api, document, "?comment=page+earlier")
    assert answer.status_code == 200, answer.content

    assert AlertRule.objects.get(slug=forecast["slug"]).within_minutes == 45
    assert AlertRule.objects.get(slug="general-refusals").percent == 2.5
    described = [str(change) for change in plan_policy(imported)]
    assert f"~ alert {forecast['slug']}: within_minutes: 45 -> 30" in described
    assert "- alert general-refusals" in described
    version = PolicyVersion.objects.order_by("-number").first()
    assert (version.comment, version.document["alerts"]) == ("page earlier", export_policy()["alerts"])
    assert {"change": "added", "kind": "alert", "name": "general-refusals", "fields": {}} in version.changes


@pytest.mark.parametrize(("rule", "problem"), [
    ({"slug": "soon", "condition": "quota_forecast"}, "alerts[7].within_minutes: is required by condition quota_forecast"),
    ({"slug": "soon", "condition": "quota_soft_limit", "seconds": 5},
     "alerts[7].seconds: is not read by condition quota_soft_limit"),
    ({"slug": "refusals", "condition": "refusal_share", "percent": 120}, "alerts[7].percent: Ensure this value is less than or equal to 100."),
    ({"slug": "refusals", "condition": "refusal_share", "percent": 5, "category": "genral"},
     "alerts[7].category: unknown category 'genral'"),
    ({"slug": "x", "condition": "quota_sof_limit"}, "alerts[7].condition: must be one of quota_soft_limit"),
    ({"slug": "x", "condition": "model_out", "channel": "slack"}, "alerts[7].channel: unknown key"),
    ({"condition": "model_out"}, "alerts[7].slug: is required"),
])
def test_a_bad_rule_is_refused_with_its_place_and_changes_nothing(imported, api, rule, problem):
    document = copy.deepcopy(imported)
    document["alerts"].append(rule)
    before = export_policy()
    answer = put(api, document)
    assert answer.status_code == 400
    assert any(line.startswith(problem) for line in answer.json()["problems"]), answer.json()
    assert export_policy() == before


def test_a_duplicate_slug_is_refused(imported, api):
    document = copy.deepcopy(imported)
    document["alerts"].append(dict(document["alerts"][0]))
    answer = put(api, document)
    assert answer.status_code == 400
    assert any("duplicate alert rule" in line for line in answer.json()["problems"])


def test_a_document_without_alerts_leaves_the_rules_and_an_empty_list_removes_them(imported):
    document = copy.deepcopy(imported)
    del document["alerts"]
    apply_policy(document)
    assert AlertRule.objects.count() == len(EXAMPLE["alerts"])
    apply_policy(document | {"alerts": []})
    assert AlertRule.objects.count() == 0
    assert "alerts" not in export_policy()


def test_rolling_back_restores_the_rules_of_that_version(imported):
    number = PolicyVersion.objects.order_by("-number").first().number
    apply_policy(copy.deepcopy(imported) | {"alerts": []})
    apply_version(number, author=COMMAND)
    assert AlertRule.objects.count() == len(EXAMPLE["alerts"])


def test_the_admin_refuses_a_rule_the_importer_would_refuse_and_keeps_a_good_one_as_a_version(imported, client):
    user = User.objects.create_user("editor", is_staff=True)
    user.groups.add(Group.objects.get(name="policy editors"))
    client.force_login(user)
    form = {"slug": "soon", "condition": "quota_forecast", "severity": "warning", "enabled": "on", "repeat_minutes": "60",
            "min_decisions": "20", "change_comment": "page earlier"}

    refused = client.post("/admin/alerts/alertrule/add/", form)
    assert refused.status_code == 200
    assert "alert soon: within_minutes: is required by condition quota_forecast" in refused.content.decode()
    assert not AlertRule.objects.filter(slug="soon").exists()

    kept = client.post("/admin/alerts/alertrule/add/", form | {"within_minutes": "20"})
    assert kept.status_code == 302, kept.content.decode()
    version = PolicyVersion.objects.order_by("-number").first()
    assert (version.author, version.comment) == ("editor", "page earlier")
    assert {"change": "added", "kind": "alert", "name": "soon", "fields": {}} in version.changes


def test_an_api_key_without_the_admin_scope_cannot_change_rules(imported, client):
    answer = client.put("/api/v1/policy", json.dumps(imported), content_type="application/json",
                        HTTP_AUTHORIZATION=f"Bearer {make_api_key('reader', scopes=('read',))}")
    assert answer.status_code == 403
