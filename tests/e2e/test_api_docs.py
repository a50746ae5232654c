"""The interactive API docs and the OpenAPI schema the README points to; the docs page loads nothing
from a CDN, and every file it loads is served."""

import re

import yaml

from tests.e2e.processes import page_assets


def test_the_schema_is_openapi_3_and_describes_the_api(deployment):
    answer = deployment.http().get("/api/schema/")

    assert answer.status == 200, answer
    schema = yaml.safe_load(answer.text)
    assert schema["openapi"].startswith("3.")
    assert {"/api/v1/route", "/api/v1/usage", "/api/v1/policy"} <= set(schema["paths"])


def test_the_docs_page_loads_everything_from_the_deployment_itself(deployment):
    page = deployment.http().get("/api/docs/")

    assert page.status == 200, page
    assets = page_assets(page.text)
    assert any("swagger-ui" in url for url in assets), assets
    assert [url for url in assets if not url.startswith("/") or url.startswith("//")] == []
    assert not re.search(r"cdn|unpkg|jsdelivr|cdnjs", page.text, re.I)
    assert {url: deployment.http().get(url).status for url in assets} == dict.fromkeys(assets, 200)
