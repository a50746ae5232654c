"""Every policy change, from any source, is a numbered version with who, when, from where, why and its diff;
any version can be read back and restored, chains included."""

import io

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from rest_framework.test import APIClient

from router.models import Policy, PolicyVersion, Route
from router.policy.apply import Author, apply_policy
from router.policy.export import export_policy
from tests.admin_forms import form_data
from tests.factories import LLMModelFactory, ProviderFactory, make_api_key, make_route

pytestmark = pytest.mark.django_db


def document(models: list[str]) -> dict:
    """A small policy: two OpenAI models and a route general/low over `models`."""
    return {
        "version": 1,
        "providers": [{"slug": "openai", "kind": "openai"}],
        "models": [{"key": key, "provider": "openai", "model_id": key, "context_window": 128000} for key in ("gpt-4o", "gpt-4o-mini")],
        "tiers": [],
        "categories": [{"slug": "general", "fallback": "allow"}],
        "routes": [{"category": "general", "complexity": "low", "models": models}],
    }


def newest() -> PolicyVersion:
    return PolicyVersion.objects.order_by("-number").first()


def lines(version: PolicyVersion) -> list[str]:
    from router.policy.versions import describe

    return [describe(change) for change in version.changes]


def test_an_import_is_a_version_with_its_author_source_and_diff():
    apply_policy(document(["gpt-4o", "gpt-4o-mini"]))

    version = newest()
    assert (version.number, version.author, version.source) == (Policy.current().version, "manage.py import_policy", "command")
    assert "+ route general/low" in lines(version)
    assert version.document == export_policy()


def test_a_chain_edit_is_recorded_with_the_chain_in_its_diff():
    apply_policy(document(["gpt-4o", "gpt-4o-mini"]))

    apply_policy(document(["gpt-4o-mini", "gpt-4o"]), Author("ops"), PolicyVersion.Source.API, "gpt-4o is slow today")

    version = newest()
    assert lines(version) == ["~ route general/low: models: ['gpt-4o', 'gpt-4o-mini'] -> ['gpt-4o-mini', 'gpt-4o']"]
    assert (version.author, version.source, version.comment) == ("ops", "api", "gpt-4o is slow today")


def test_an_import_that_changes_nothing_is_no_version():
    apply_policy(document(["gpt-4o"]))
    count = PolicyVersion.objects.count()

    apply_policy(document(["gpt-4o"]))

    assert PolicyVersion.objects.count() == count


def test_a_version_bump_that_changes_no_policy_is_no_version():
    apply_policy(document(["gpt-4o"]))
    count = PolicyVersion.objects.count()
    from providers.models import LLMModel

    LLMModel.objects.get(key="gpt-4o").save()  # as the availability refresh saves a model

    assert Policy.current().version > newest().number
    assert PolicyVersion.objects.count() == count


def test_an_installation_older_than_the_history_starts_it_with_a_baseline():
    openai = ProviderFactory(slug="openai", kind="openai")
    make_route("general", [LLMModelFactory(key="gpt-4o", provider=openai)], complexity="low")

    apply_policy({**export_policy(), "routes": []})

    baseline, change = PolicyVersion.objects.order_by("number")
    assert (baseline.source, baseline.author) == ("baseline", "Switchboard")
    assert "+ route general/low" in lines(baseline)
    assert lines(change) == ["- route general/low"]


def test_import_policy_version_restores_a_chain_as_a_new_version():
    apply_policy(document(["gpt-4o", "gpt-4o-mini"]))
    first = newest().number
    apply_policy(document(["gpt-4o-mini"]))
    out = io.StringIO()

    call_command("import_policy", "--version", str(first), stdout=out)

    assert Route.objects.get().model_keys() == ["gpt-4o", "gpt-4o-mini"]
    version = newest()
    assert (version.source, version.comment) == ("rollback", f"rollback to version {first}")
    assert lines(version) == ["~ route general/low: models: ['gpt-4o-mini'] -> ['gpt-4o', 'gpt-4o-mini']"]
    assert f"Policy rolled back to version {first}'s content: version {version.number}" in out.getvalue()


def test_import_policy_version_plan_changes_nothing():
    apply_policy(document(["gpt-4o", "gpt-4o-mini"]))
    first = newest().number
    apply_policy(document(["gpt-4o-mini"]))
    out = io.StringIO()

    call_command("import_policy", "--version", str(first), "--plan", stdout=out)

    assert "~ route general/low: models: ['gpt-4o-mini'] -> ['gpt-4o', 'gpt-4o-mini']" in out.getvalue()
    assert Route.objects.get().model_keys() == ["gpt-4o-mini"]


def test_export_policy_version_prints_a_stored_version():
    apply_policy(document(["gpt-4o", "gpt-4o-mini"]))
    first = newest().number
    apply_policy(document(["gpt-4o-mini"]))
    out = io.StringIO()

    call_command("export_policy", "--version", str(first), "--format", "json", stdout=out)

    assert '"gpt-4o",\n' in out.getvalue()


def test_an_unknown_version_is_a_clear_command_error():
    apply_policy(document(["gpt-4o"]))

    with pytest.raises(CommandError, match=r"No policy version 999 is stored; the newest is \d+"):
        call_command("export_policy", "--version", "999")
    with pytest.raises(CommandError, match="No policy version 999"):
        call_command("import_policy", "--version", "999")


def test_the_api_reads_and_restores_a_version(api):
    apply_policy(document(["gpt-4o", "gpt-4o-mini"]))
    first = newest().number
    apply_policy(document(["gpt-4o-mini"]))

    assert api.get(f"/api/v1/policy?version={first}").json()["routes"][0]["models"] == ["gpt-4o", "gpt-4o-mini"]
    plan = api.put(f"/api/v1/policy?version={first}&plan=true").json()
    assert plan["changes"][0]["fields"]["models"] == {"old": ["gpt-4o-mini"], "new": ["gpt-4o", "gpt-4o-mini"]}
    assert Route.objects.get().model_keys() == ["gpt-4o-mini"]

    answer = api.put(f"/api/v1/policy?version={first}&comment=undo%20the%20outage").json()

    assert answer["changed"] is True
    assert Route.objects.get().model_keys() == ["gpt-4o", "gpt-4o-mini"]
    assert (newest().source, newest().comment, newest().author) == ("rollback", "undo the outage", "API key 'test-service'")


def test_the_api_answers_an_unknown_or_malformed_version_in_json(api):
    apply_policy(document(["gpt-4o"]))

    unknown = api.get("/api/v1/policy?version=999")
    malformed = api.put("/api/v1/policy?version=abc")

    assert (unknown.status_code, unknown.json()["error"]) == (404, "unknown_version")
    assert (malformed.status_code, malformed.json()["error"]) == (400, "invalid_request")


def test_an_admin_chain_edit_is_a_version_in_the_objects_history(admin_client, admin_user):
    apply_policy(document(["gpt-4o", "gpt-4o-mini"]))
    url = reverse("admin:router_route_change", args=[Route.objects.get().pk])
    data = form_data(admin_client, url)
    data["entries-1-DELETE"] = "on"
    data["change_comment"] = "gpt-4o-mini is deprecated"

    assert admin_client.post(url, data).status_code == 302

    version = newest()
    assert (version.author, version.user, version.source, version.comment) == ("admin", admin_user, "admin", "gpt-4o-mini is deprecated")
    assert lines(version) == ["~ route general/low: models: ['gpt-4o', 'gpt-4o-mini'] -> ['gpt-4o']"]
    history = admin_client.get(reverse("admin:router_route_history", args=[Route.objects.get().pk])).content.decode()
    assert "models: [&#x27;gpt-4o&#x27;, &#x27;gpt-4o-mini&#x27;] -&gt; [&#x27;gpt-4o&#x27;]" in history
    assert "gpt-4o-mini is deprecated" in history and "None" not in history


def test_the_policy_pages_history_lists_every_version(admin_client):
    apply_policy(document(["gpt-4o", "gpt-4o-mini"]))
    apply_policy(document(["gpt-4o"]))

    page = admin_client.get(reverse("admin:router_policy_history", args=[1])).content.decode()

    assert "+ provider openai" in page and "~ route general/low: models:" in page


def test_the_admin_rolls_back_a_whole_version(admin_client):
    apply_policy(document(["gpt-4o", "gpt-4o-mini"]))
    first = newest()
    apply_policy(document(["gpt-4o-mini"]))
    url = reverse("admin:router_policyversion_rollback", args=[first.pk])

    plan = admin_client.get(url).content.decode()
    response = admin_client.post(url, {"comment": "back to two models"}, follow=True)

    assert "~ route general/low: models: [&#x27;gpt-4o-mini&#x27;] -&gt; [&#x27;gpt-4o&#x27;, &#x27;gpt-4o-mini&#x27;]" in plan
    assert f"The policy stands as it did at version {first.number}" in response.content.decode()
    assert Route.objects.get().model_keys() == ["gpt-4o", "gpt-4o-mini"]
    assert (newest().source, newest().comment) == ("rollback", "back to two models")


def test_a_single_objects_revert_is_not_offered(admin_client):
    apply_policy(document(["gpt-4o"]))
    route = Route.objects.get()
    record = route.history.first()

    response = admin_client.get(reverse("admin:router_route_simple_history", args=[route.pk, record.pk]), follow=True)

    assert "roll back a whole version from the Policy history" in response.content.decode()


def test_the_dashboard_lists_every_version_with_its_diff(admin_client):
    apply_policy(document(["gpt-4o", "gpt-4o-mini"]))
    apply_policy(document(["gpt-4o"]), Author("ops"), PolicyVersion.Source.API, "one model is enough")

    page = admin_client.get(reverse("dashboard:policy-history")).content.decode()

    assert page.index(f"Version {newest().number}") < page.index(f"Version {newest().number - 1}")
    assert "~ route general/low: models: [&#x27;gpt-4o&#x27;, &#x27;gpt-4o-mini&#x27;] -&gt; [&#x27;gpt-4o&#x27;]" in page
    assert "one model is enough" in page and "PUT /api/v1/policy" in page


def test_a_key_without_the_admin_scope_cannot_roll_back():
    apply_policy(document(["gpt-4o"]))
    reader = APIClient()
    reader.credentials(HTTP_AUTHORIZATION=f"Bearer {make_api_key('reader', scopes=('read',))}")

    response = reader.put(f"/api/v1/policy?version={newest().number}")

    assert (response.status_code, response.json()["error"]) == (403, "forbidden")


def test_policy_viewers_read_the_history_and_cannot_roll_back(client):
    from django.contrib.auth.models import Group, User

    apply_policy(document(["gpt-4o"]))
    viewer = User.objects.create_user("viewer", password="a-long-test-password-4711", is_staff=True)
    viewer.groups.add(Group.objects.get(name="policy viewers"))
    client.force_login(viewer)

    listing = client.get(reverse("admin:router_policyversion_changelist"))
    rollback = client.get(reverse("admin:router_policyversion_rollback", args=[newest().pk]))

    assert listing.status_code == 200 and f">{newest().number}<" in listing.content.decode()
    assert rollback.status_code == 403
