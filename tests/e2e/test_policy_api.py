"""GET and PUT /api/v1/policy: with an admin-scoped key (`create_api_key … --scopes admin`) and as the
admin user logged in through /admin/login/ (a PUT with the session's CSRF token). A PUT that changes a
category's description shows in the next GET and in the category's history in the admin."""

import re
import uuid

import yaml

from tests.e2e.processes import Deployment, Http


def general_with_description(policy: dict, description: str) -> dict:
    categories = [dict(c, description=description) if c["slug"] == "general" else c for c in policy["categories"]]
    return dict(policy, categories=categories)


def description_of_general(policy: dict) -> str:
    return next(c for c in policy["categories"] if c["slug"] == "general").get("description", "")


def history_of_category(deployment: Deployment, slug: str) -> str:
    """The change-history table of a category's history page in the admin, as the logged-in admin sees it."""
    browser = deployment.logged_in()
    listing = browser.get("/admin/router/category/")
    assert listing.status == 200, listing
    found = re.search(rf'href="/admin/router/category/(\d+)/change/[^"]*">{slug}<', listing.text)
    assert found, f"no category {slug} in the admin's list"
    page = browser.get(f"/admin/router/category/{found.group(1)}/history/")
    assert page.status == 200, page
    return page.text[page.text.index('id="change-history"'):page.text.index("</table>", page.text.index('id="change-history"'))]


def test_an_admin_key_reads_the_policy_as_json_and_yaml(deployment):
    client = deployment.http(deployment.key("admin"))

    policy = client.get("/api/v1/policy")
    as_yaml = client.get("/api/v1/policy?format=yaml")

    assert policy.status == 200, policy
    assert {"providers", "models", "tiers", "categories", "routes"} <= set(policy.json())
    assert "general" in [category["slug"] for category in policy.json()["categories"]]
    assert as_yaml.status == 200 and as_yaml.headers["content-type"].startswith("application/yaml"), as_yaml
    assert yaml.safe_load(as_yaml.text) == policy.json()


def test_a_key_without_the_admin_scope_is_refused(deployment):
    assert deployment.http(deployment.key("route,usage,read")).get("/api/v1/policy").status == 403


def test_an_admin_key_changes_the_policy(deployment):
    client = deployment.http(deployment.key("admin"))
    description = f"changed with an API key {uuid.uuid4().hex[:8]}"

    answer = client.put("/api/v1/policy", json_body=general_with_description(client.get("/api/v1/policy").json(), description))

    assert answer.status == 200, answer
    assert answer.json()["changed"] is True
    assert description_of_general(client.get("/api/v1/policy").json()) == description
    assert description in history_of_category(deployment, "general")


def logged_in_api_client(deployment: Deployment) -> Http:
    client = deployment.logged_in()
    client.get("/")  # a page, as a browser shows one before it calls the API: the CSRF cookie is there
    return client


def test_the_logged_in_admin_reads_the_policy(deployment):
    answer = logged_in_api_client(deployment).get("/api/v1/policy")

    assert answer.status == 200, answer
    assert "general" in [category["slug"] for category in answer.json()["categories"]]


def test_the_logged_in_admin_changes_the_policy(deployment):
    client = logged_in_api_client(deployment)
    current = client.get("/api/v1/policy")
    assert current.status == 200, current
    description = f"changed by the admin {uuid.uuid4().hex[:8]}"

    answer = client.put("/api/v1/policy", json_body=general_with_description(current.json(), description),
                        headers={"X-CSRFToken": client.cookies["csrftoken"]})

    assert answer.status == 200, answer
    assert description_of_general(client.get("/api/v1/policy").json()) == description
    history = history_of_category(deployment, "general")
    assert description in history and deployment.admin_user in history
