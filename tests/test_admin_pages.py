"""The admin as the ops team's editor: every page renders, saving works, mistakes are form errors, secrets stay hidden."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.urls import reverse
from django.utils import timezone
from rest_framework_api_key.models import APIKey

from providers.models import AvailabilityCheck, LLMModel, Provider, Quota
from router.models import ApiKey, Category, Decision, Policy, Route, Tier, UsageEvent
from tests.admin_forms import add_inline_row, form_data
from tests.factories import CategoryFactory, LLMModelFactory, ProviderFactory, QuotaFactory, make_route, make_tier

pytestmark = pytest.mark.django_db

SECRET = "sk-live-do-not-show-4f1c2b"


def errors_of(response) -> str:
    return str(response.context["adminform"].form.errors) + str(response.context["errors"]) if response.context else ""


@pytest.fixture
def policy():
    """One of everything the admin shows."""
    openai = ProviderFactory(slug="openai", kind="openai", credential_env="OPENAI_API_KEY")
    openai.set_secret(SECRET)
    openai.save()
    gpt4o = LLMModelFactory(key="gpt-4o", provider=openai)
    mini = LLMModelFactory(key="gpt-4o-mini", provider=openai)
    anthropic = ProviderFactory(slug="anthropic", kind="anthropic")
    haiku = LLMModelFactory(key="claude-3-5-haiku", provider=anthropic)
    QuotaFactory(provider=openai, name="tokens-day", models=[gpt4o, mini])
    make_route("general", [gpt4o, mini], complexity="medium")
    cheap = make_tier("cheap", [mini, haiku])
    make_tier("quality", [gpt4o])
    policy = Policy.current()
    policy.default_tier = cheap
    policy.save()
    now = timezone.now()
    decision = Decision.objects.create(created_at=now, category="general", complexity="medium", outcome="fallback",
                                       model_key="gpt-4o-mini", primary_key="gpt-4o", policy_version=policy.version,
                                       trace=[{"model": "gpt-4o", "verdict": "skipped", "reason": "quota"}])
    UsageEvent.objects.create(created_at=now, model_key="gpt-4o-mini", provider_slug="openai", decision=decision,
                              input_tokens=10, output_tokens=5)
    ApiKey.objects.create_key(name="billing", scopes=["route", "usage"])
    AvailabilityCheck.objects.create(provider=openai, started_at=now - timedelta(minutes=5), duration_ms=120,
                                     changes=[{"model": "gpt-4o", "availability": "available"}])
    return openai


def registered() -> list[str]:
    return sorted(f"{model._meta.app_label}.{model._meta.model_name}" for model in admin.site._registry)


def admin_url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.mark.parametrize("label", registered())
def test_every_admin_page_renders_for_a_superuser(admin_client, policy, label):
    model = apps.get_model(label)
    model_admin = admin.site._registry[model]

    assert admin_client.get(admin_url(model, "changelist")).status_code == 200
    add = admin_client.get(admin_url(model, "add"))
    assert add.status_code == (200 if model_admin.has_add_permission(add.wsgi_request) else 403)
    obj = model._default_manager.first()
    if obj is not None:
        assert admin_client.get(admin_url(model, "change", obj.pk)).status_code == 200
        if hasattr(model_admin, "history_view"):
            assert admin_client.get(admin_url(model, "history", obj.pk)).status_code == 200


def test_every_policy_object_has_an_editor():
    for model in (Provider, LLMModel, Quota, AvailabilityCheck, Category, Route, Tier, Policy, Decision, UsageEvent, ApiKey):
        assert admin.site.is_registered(model), model
    assert not admin.site.is_registered(APIKey)


def test_it_adds_a_provider_with_a_quota_and_a_secret(admin_client):
    data = form_data(admin_client, reverse("admin:providers_provider_add"))
    data.update(slug="zhipu", kind="openai_compatible", base_url="https://glm.example.invalid/api/paas/v4", new_secret=SECRET)
    add_inline_row(data, "quotas", name="tokens-day", metric="tokens", window="day", reset="rolling", limit="10000000",
                   soft_limit_ratio="0.9")

    response = admin_client.post(reverse("admin:providers_provider_add"), data)

    assert response.status_code == 302, errors_of(response)
    provider = Provider.objects.get(slug="zhipu")
    assert provider.api_key() == SECRET
    assert SECRET not in provider.encrypted_secret
    quota = provider.quotas.get()
    assert (quota.name, quota.limit, quota.soft_limit_ratio, quota.source) == ("tokens-day", Decimal("10000000"), Decimal("0.9"), "manual")


def test_it_changes_a_provider_and_keeps_its_secret(admin_client, policy):
    url = reverse("admin:providers_provider_change", args=[policy.pk])
    data = form_data(admin_client, url)
    data.update(cooldown_seconds="120")

    response = admin_client.post(url, data)

    assert response.status_code == 302, errors_of(response)
    policy.refresh_from_db()
    assert policy.cooldown_seconds == 120
    assert policy.api_key() == SECRET


def test_it_clears_a_stored_secret(admin_client, policy):
    url = reverse("admin:providers_provider_change", args=[policy.pk])
    data = form_data(admin_client, url)
    data.update(clear_secret="on")

    assert admin_client.post(url, data).status_code == 302

    policy.refresh_from_db()
    assert not policy.has_secret


def test_the_secret_never_appears_in_an_admin_page(admin_client, policy):
    pages = [
        reverse("admin:providers_provider_changelist"),
        reverse("admin:providers_provider_change", args=[policy.pk]),
        reverse("admin:providers_provider_history", args=[policy.pk]),
    ]
    for url in pages:
        html = admin_client.get(url).content.decode()
        assert SECRET not in html and policy.encrypted_secret not in html, url
    assert "Secret stored" in admin_client.get(pages[1]).content.decode()

    data = form_data(admin_client, pages[1])
    data.update(new_secret="sk-new-typed-in-9a8b", kind="bedrock", region="")
    response = admin_client.post(pages[1], data)
    assert response.status_code == 200
    assert "sk-new-typed-in-9a8b" not in response.content.decode()


def test_it_shows_a_bedrock_provider_without_a_region_as_a_form_error(admin_client):
    data = form_data(admin_client, reverse("admin:providers_provider_add"))
    data.update(slug="bedrock", kind="bedrock", region="")

    response = admin_client.post(reverse("admin:providers_provider_add"), data)

    assert response.status_code == 200
    assert "A Bedrock provider needs a region." in response.content.decode()
    assert not Provider.objects.filter(slug="bedrock").exists()


def test_it_refuses_a_new_and_a_cleared_secret_together(admin_client, policy):
    url = reverse("admin:providers_provider_change", args=[policy.pk])
    data = form_data(admin_client, url)
    data.update(new_secret="sk-other", clear_secret="on")

    response = admin_client.post(url, data)

    assert response.status_code == 200
    assert "Either enter a new secret or clear the stored one, not both." in response.content.decode()
    policy.refresh_from_db()
    assert policy.api_key() == SECRET


def test_the_provider_page_offers_only_its_own_models_for_a_pool(admin_client, policy):
    html = admin_client.get(reverse("admin:providers_provider_change", args=[policy.pk])).content.decode()

    assert ">gpt-4o-mini</option>" in html
    assert ">claude-3-5-haiku</option>" not in html


def test_it_adds_a_model(admin_client, policy):
    data = form_data(admin_client, reverse("admin:providers_llmmodel_add"))
    data.update(key="gpt-4-turbo", provider=str(policy.pk), model_id="gpt-4-turbo-2024-04-09", context_window="128000",
                input_cost_per_mtok="10", output_cost_per_mtok="30")

    response = admin_client.post(reverse("admin:providers_llmmodel_add"), data)

    assert response.status_code == 302, errors_of(response)
    model = LLMModel.objects.get(key="gpt-4-turbo")
    assert (model.provider, model.output_cost_per_mtok, model.availability) == (policy, Decimal("30"), "unknown")


def test_a_new_model_id_forgets_the_resolved_invoke_id(admin_client, policy):
    model = LLMModel.objects.get(key="gpt-4o")
    LLMModel.objects.filter(pk=model.pk).update(invoke_id="gpt-4o-old", availability="available")
    url = reverse("admin:providers_llmmodel_change", args=[model.pk])
    data = form_data(admin_client, url)
    data.update(model_id="gpt-4o-2024-11-20")

    assert admin_client.post(url, data).status_code == 302

    model.refresh_from_db()
    assert (model.model_id, model.invoke_id, model.availability) == ("gpt-4o-2024-11-20", "", "unknown")


def test_it_refuses_moving_a_pooled_model_to_another_provider(admin_client, policy):
    model = LLMModel.objects.get(key="gpt-4o")
    url = reverse("admin:providers_llmmodel_change", args=[model.pk])
    data = form_data(admin_client, url)
    data.update(provider=str(Provider.objects.get(slug="anthropic").pk))

    response = admin_client.post(url, data)

    assert response.status_code == 200
    assert "This model is in quota pools of its provider (openai/tokens-day): take it out of them first." in response.content.decode()
    model.refresh_from_db()
    assert model.provider == policy


def test_it_shows_two_quotas_with_one_name_as_a_form_error(admin_client, policy):
    url = reverse("admin:providers_provider_change", args=[policy.pk])
    data = form_data(admin_client, url)
    add_inline_row(data, "quotas", name="tokens-day", metric="tokens", window="week", reset="rolling", limit="10", soft_limit_ratio="0.8")

    response = admin_client.post(url, data)

    assert response.status_code == 200
    assert "Please correct the duplicate data for name" in response.content.decode()
    assert policy.quotas.count() == 1


def test_it_shows_a_duplicate_model_key_as_a_form_error(admin_client, policy):
    data = form_data(admin_client, reverse("admin:providers_llmmodel_add"))
    data.update(key="gpt-4o", provider=str(policy.pk), model_id="other", context_window="1000")

    response = admin_client.post(reverse("admin:providers_llmmodel_add"), data)

    assert response.status_code == 200
    assert "Model with this Key already exists." in response.content.decode()


def test_it_adds_a_quota_pool(admin_client, policy):
    gpt4o = LLMModel.objects.get(key="gpt-4o")
    data = form_data(admin_client, reverse("admin:providers_quota_add"))
    data.update(provider=str(policy.pk), name="gpt-4o-rpm", metric="requests", window="minute", reset="rolling", limit="500",
                soft_limit_ratio="0.75", models=[str(gpt4o.pk)])

    response = admin_client.post(reverse("admin:providers_quota_add"), data)

    assert response.status_code == 302, errors_of(response)
    quota = Quota.objects.get(name="gpt-4o-rpm")
    assert list(quota.models.all()) == [gpt4o]


def test_it_rejects_a_quota_pool_with_a_foreign_model(admin_client, policy):
    haiku = LLMModel.objects.get(key="claude-3-5-haiku")
    data = form_data(admin_client, reverse("admin:providers_quota_add"))
    data.update(provider=str(policy.pk), name="mixed", metric="tokens", window="day", limit="100", models=[str(haiku.pk)])

    response = admin_client.post(reverse("admin:providers_quota_add"), data)

    assert response.status_code == 200
    assert "Not models of provider openai: claude-3-5-haiku." in response.content.decode()
    assert not Quota.objects.filter(name="mixed").exists()


@pytest.mark.parametrize("field, value, message", [
    ("soft_limit_ratio", "1.5", "Must be above 0 and at most 1"),
    ("limit", "-5", "Ensure this value is greater than or equal to 0.000001."),
])
def test_it_shows_an_out_of_range_quota_as_a_form_error(admin_client, policy, field, value, message):
    data = form_data(admin_client, reverse("admin:providers_quota_add"))
    data.update(provider=str(policy.pk), name="bad", metric="tokens", window="day", limit="100", soft_limit_ratio="0.8")
    data[field] = value

    response = admin_client.post(reverse("admin:providers_quota_add"), data)

    assert response.status_code == 200
    assert message in str(response.context["adminform"].form.errors[field])


def test_it_adds_a_category(admin_client):
    data = form_data(admin_client, reverse("admin:router_category_add"))
    data.update(slug="security_auth_change", fallback="never", may_use_headroom="on", description="Auth changes never downgrade.")

    response = admin_client.post(reverse("admin:router_category_add"), data)

    assert response.status_code == 302, errors_of(response)
    category = Category.objects.get(slug="security_auth_change")
    assert (category.fallback, category.may_use_headroom) == ("never", True)


def test_it_adds_a_route_with_its_models_in_order(admin_client, policy):
    category = CategoryFactory(slug="auxiliary_agents")
    mini, gpt4o = LLMModel.objects.get(key="gpt-4o-mini"), LLMModel.objects.get(key="gpt-4o")
    data = form_data(admin_client, reverse("admin:router_route_add"))
    data.update(category=str(category.pk), complexity="any")
    add_inline_row(data, "entries", model=str(mini.pk), position="1")
    add_inline_row(data, "entries", model=str(gpt4o.pk), position="2")

    response = admin_client.post(reverse("admin:router_route_add"), data)

    assert response.status_code == 302, errors_of(response)
    assert Route.objects.get(category=category).model_keys() == ["gpt-4o-mini", "gpt-4o"]


def test_it_reorders_a_route(admin_client, policy):
    route = Route.objects.get(category__slug="general")
    url = reverse("admin:router_route_change", args=[route.pk])
    assert "adminsortable2" in admin_client.get(url).content.decode()
    data = form_data(admin_client, url)
    # What the drag and drop does: it renumbers the hidden position fields.
    data["entries-0-position"], data["entries-1-position"] = ["2"], ["1"]

    response = admin_client.post(url, data)

    assert response.status_code == 302, errors_of(response)
    assert route.model_keys() == ["gpt-4o-mini", "gpt-4o"]


def test_it_shows_a_model_listed_twice_in_a_route_as_a_form_error(admin_client, policy):
    route = Route.objects.get(category__slug="general")
    url = reverse("admin:router_route_change", args=[route.pk])
    data = form_data(admin_client, url)
    add_inline_row(data, "entries", model=data["entries-0-model"], position="3")

    response = admin_client.post(url, data)

    assert response.status_code == 200
    assert "gpt-4o is listed twice: a model can appear only once in a list." in response.content.decode()
    assert route.model_keys() == ["gpt-4o", "gpt-4o-mini"]


def test_it_shows_a_duplicate_route_as_a_form_error(admin_client, policy):
    route = Route.objects.get(category__slug="general")
    data = form_data(admin_client, reverse("admin:router_route_add"))
    data.update(category=str(route.category_id), complexity="medium")

    response = admin_client.post(reverse("admin:router_route_add"), data)

    assert response.status_code == 200
    assert "Route with this Category and Complexity already exists." in response.content.decode()


def test_it_adds_a_tier_with_its_models(admin_client, policy):
    haiku = LLMModel.objects.get(key="claude-3-5-haiku")
    data = form_data(admin_client, reverse("admin:router_tier_add"))
    data.update(slug="expensive")
    add_inline_row(data, "entries", model=str(haiku.pk), position="1")

    response = admin_client.post(reverse("admin:router_tier_add"), data)

    assert response.status_code == 302, errors_of(response)
    assert Tier.objects.get(slug="expensive").model_keys() == ["claude-3-5-haiku"]


def test_it_changes_the_default_tier_without_writing_back_a_stale_version(admin_client, policy):
    quality = Tier.objects.get(slug="quality")
    url = reverse("admin:router_policy_change", args=[1])
    data = form_data(admin_client, url)
    data.update(default_tier=str(quality.pk))
    Category.objects.create(slug="edited-meanwhile")  # another edit bumps the version while the form is open
    version = Policy.current().version

    response = admin_client.post(url, data)

    assert response.status_code == 302, errors_of(response)
    policy = Policy.current()
    assert policy.default_tier == quality
    assert policy.version == version + 1


def test_the_policy_cannot_be_added_or_deleted(admin_client, policy):
    assert admin_client.get(reverse("admin:router_policy_add")).status_code == 403
    assert admin_client.get(reverse("admin:router_policy_delete", args=[1])).status_code == 403


@pytest.mark.parametrize("model_name", ["decision", "usageevent"])
def test_decisions_and_usage_are_read_only(admin_client, policy, model_name):
    model = Decision if model_name == "decision" else UsageEvent
    obj = model.objects.get()
    change_url = reverse(f"admin:router_{model_name}_change", args=[obj.pk])

    page = admin_client.get(change_url)
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert admin_client.post(change_url, {}).status_code == 403
    assert admin_client.get(reverse(f"admin:router_{model_name}_add")).status_code == 403
    assert admin_client.get(reverse(f"admin:router_{model_name}_delete", args=[obj.pk])).status_code == 403
    assert model.objects.filter(pk=obj.pk).exists()


def test_the_decision_page_shows_the_trace_as_a_table(admin_client, policy):
    decision = Decision.objects.get()

    html = admin_client.get(reverse("admin:router_decision_change", args=[decision.pk])).content.decode()

    assert '<div class="decision-trace">' in html and "<td>skipped</td>" in html
    assert "&quot;verdict&quot;" not in html  # not JSON


def test_availability_checks_are_read_only(admin_client, policy):
    check = AvailabilityCheck.objects.get()

    assert admin_client.get(reverse("admin:providers_availabilitycheck_add")).status_code == 403
    assert admin_client.post(reverse("admin:providers_availabilitycheck_change", args=[check.pk]), {}).status_code == 403
    provider_page = admin_client.get(reverse("admin:providers_provider_change", args=[policy.pk])).content.decode()
    assert "Latest availability checks" in provider_page


def test_it_creates_an_api_key_and_shows_it_once(admin_client):
    data = form_data(admin_client, reverse("admin:router_apikey_add"))
    data.update(name="billing-service", scopes=["route", "usage"])

    response = admin_client.post(reverse("admin:router_apikey_add"), data, follow=True)

    assert response.status_code == 200
    api_key = ApiKey.objects.get(name="billing-service")
    message = next(str(m) for m in response.context["messages"] if "API key" in str(m))
    raw_key = message.split("is: ")[1].split(". ")[0]
    assert ApiKey.objects.get_from_key(raw_key) == api_key
    assert api_key.scopes == ["route", "usage"]
    assert raw_key not in admin_client.get(reverse("admin:router_apikey_change", args=[api_key.pk])).content.decode()


def test_it_rejects_an_unknown_api_key_scope(admin_client):
    data = form_data(admin_client, reverse("admin:router_apikey_add"))
    data.update(name="billing-service", scopes=["route", "superuser"])

    response = admin_client.post(reverse("admin:router_apikey_add"), data)

    assert response.status_code == 200
    assert "Select a valid choice. superuser is not one of the available choices." in response.content.decode()
    assert not ApiKey.objects.filter(name="billing-service").exists()


def test_it_revokes_an_api_key(admin_client, policy):
    api_key = ApiKey.objects.get(name="billing")
    url = reverse("admin:router_apikey_change", args=[api_key.pk])
    data = form_data(admin_client, url)
    data.update(revoked="on")

    assert admin_client.post(url, data).status_code == 302

    api_key.refresh_from_db()
    assert api_key.revoked


@pytest.fixture
def viewer_client(client):
    user = User.objects.create_user("viewer", password="viewer-password-123", is_staff=True)
    user.groups.add(Group.objects.get(name="policy viewers"))
    client.force_login(user)
    return client


def test_a_viewer_can_view_but_not_change(viewer_client, policy):
    change_url = reverse("admin:providers_provider_change", args=[policy.pk])
    assert viewer_client.get(reverse("admin:providers_provider_changelist")).status_code == 200
    page = viewer_client.get(change_url)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="_save"' not in html and 'name="new_secret"' not in html and SECRET not in html

    assert viewer_client.post(change_url, {"slug": "renamed", "kind": "openai"}).status_code == 403
    assert viewer_client.get(reverse("admin:providers_provider_add")).status_code == 403
    route = Route.objects.get()
    assert viewer_client.get(reverse("admin:router_route_change", args=[route.pk])).status_code == 200
    assert viewer_client.post(reverse("admin:router_route_change", args=[route.pk]), {}).status_code == 403
    assert viewer_client.get(reverse("admin:router_policy_change", args=[1])).status_code == 200
    assert viewer_client.get(reverse("admin:router_decision_changelist")).status_code == 200
    policy.refresh_from_db()
    assert policy.slug == "openai"
