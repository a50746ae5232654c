"""The ops pages behind the admin's login: a visitor is sent to the login page; the admin user the
deployment printed logs in and sees each page, with every script, style sheet and image it loads
(production: the files `collectstatic` wrote, under their manifest names)."""

import re

import pytest

from tests.e2e.processes import Deployment, page_assets

PAGES = ["/", "/fallbacks/", "/what-if/"]


def assert_assets_load(deployment: Deployment, html: str) -> None:
    assets = [url for url in page_assets(html) if url.startswith("/")]
    failed = {url: deployment.http().get(url).status for url in assets}
    assert {url: status for url, status in failed.items() if status != 200} == {}


@pytest.mark.parametrize("path", PAGES)
def test_a_visitor_who_is_not_logged_in_is_sent_to_the_login_page(deployment, path):
    answer = deployment.http().get(path)

    assert answer.status == 302, answer
    assert answer.headers["location"] == f"/admin/login/?next={path}"


def test_the_login_page_loads_its_styles(deployment):
    page = deployment.http().get("/admin/login/")

    assert page.status == 200, page
    styles = [url for url in page_assets(page.text) if url.endswith(".css")]
    assert styles
    if deployment.manifest_static:
        assert all(re.search(r"\.[0-9a-f]{12}\.css$", url) for url in styles), styles
    assert_assets_load(deployment, page.text)


@pytest.mark.parametrize("path", PAGES)
def test_the_admin_user_it_printed_sees_the_page(deployment, path):
    page = deployment.logged_in().get(path)

    assert page.status == 200, page
    assert page.headers["content-type"].startswith("text/html")
    assert_assets_load(deployment, page.text)
