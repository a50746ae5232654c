"""Editing the policy in the admin, in a real browser, as an ops person would: emptying a chain is refused on the
chain with the route still routing; a chain edit shows with its diff in the policy history; a rollback restores
the chain; a request the policy cannot serve shows on the overview."""

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from router.models import PolicyVersion, Route
from router.policy.apply import apply_policy
from tests.browser import PASSWORD, log_in
from tests.factories import make_api_key

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

POLICY = {
    "version": 1,
    "providers": [{"slug": "openai", "kind": "openai"}],
    "models": [{"key": key, "provider": "openai", "model_id": key, "context_window": 128000} for key in ("gpt-4o", "gpt-4o-mini")],
    "tiers": [],
    "categories": [{"slug": "general", "fallback": "allow"}],
    "routes": [{"category": "general", "complexity": "low", "models": ["gpt-4o", "gpt-4o-mini"]}],
}


@pytest.fixture(autouse=True)
def browser_settings(settings):
    """Database counters and a fast password hasher."""
    settings.REDIS_URL = ""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def ops() -> User:
    apply_policy(POLICY)
    return User.objects.create_superuser("ops", password=PASSWORD)


def routes(category: str = "general", complexity: str = "low") -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_api_key('checkout')}")
    return client.post("/api/v1/route", {"category": category, "complexity": complexity}, format="json").status_code


def open_route(page) -> None:
    route = Route.objects.get()
    log_in(page, User.objects.get(username="ops"), f"/admin/router/route/{route.pk}/change/")


def test_emptying_a_chain_shows_the_error_on_the_chain_and_the_route_still_routes(page, ops):
    from playwright.sync_api import expect

    open_route(page)
    for checkbox in page.locator("#entries-group input[name$='-DELETE']").all():
        checkbox.check()
    page.click("input[name=_save]")

    expect(page.locator("#entries-group .errorlist")).to_contain_text("route general/low: models: must list at least one model")
    expect(page.locator(".messagelist .success")).to_have_count(0)
    assert Route.objects.get().model_keys() == ["gpt-4o", "gpt-4o-mini"]
    assert routes() == 200


def test_a_chain_edit_shows_with_its_diff_in_the_policy_history_and_a_rollback_restores_it(page, ops):
    from playwright.sync_api import expect

    before = PolicyVersion.objects.order_by("-number").first()
    open_route(page)
    page.locator("#entries-group input[name='entries-1-DELETE']").check()
    page.fill("#id_change_comment", "gpt-4o-mini is deprecated")
    page.click("input[name=_save]")
    expect(page.locator(".messagelist .success")).to_contain_text("was changed successfully")
    assert Route.objects.get().model_keys() == ["gpt-4o"]

    page.goto("/policy/history/")
    newest = page.locator(".policy-version").first
    expect(newest).to_contain_text("~ route general/low: models: ['gpt-4o', 'gpt-4o-mini'] -> ['gpt-4o']")
    expect(newest).to_contain_text("gpt-4o-mini is deprecated")
    expect(newest).to_contain_text("ops")

    page.goto(f"/admin/router/policyversion/{before.pk}/rollback/")
    expect(page.locator("#rollback-plan")).to_contain_text("~ route general/low: models: ['gpt-4o'] -> ['gpt-4o', 'gpt-4o-mini']")
    page.fill("#id_comment", "mini is back")
    page.click("input[type=submit][value^='Restore']")
    expect(page.locator(".messagelist")).to_contain_text(f"The policy stands as it did at version {before.number}")
    assert Route.objects.get().model_keys() == ["gpt-4o", "gpt-4o-mini"]


def test_a_request_the_policy_cannot_serve_shows_on_the_overview(page, ops):
    from playwright.sync_api import expect

    assert routes(complexity="high") == 400
    log_in(page, ops, "/")

    panel = page.locator("#unroutable")
    expect(panel).to_contain_text("checkout")
    expect(panel).to_contain_text("category general")
    expect(panel).to_contain_text("no_route: Category 'general' has no route for complexity 'high'")
