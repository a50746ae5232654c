"""Policy documents written to hurt: aliases that expand to gigabytes, nesting deeper than the
stack, megabyte values. Each is refused with a small 400 (or a short command error), quickly,
without the process growing, and nothing changes."""

import io
import json
import time
import tracemalloc

import pytest
from django.core.management import CommandError, call_command

from router.models import Policy
from tests.factories import make_api_key

# 501 bytes: nine levels of nine aliases each, 9^9 strings when expanded.
ALIAS_BOMB = "providers: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{name}: &{name[0]} [{', '.join([f'*{previous}'] * 9)}]\n"
    for previous, name in zip("abcdefgh", ["b", "c", "d", "e", "f", "g", "h", "i"], strict=True)
).replace("b: &b", "models: &b").replace("*b", "*b")


@pytest.fixture
def admin_api(db):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_api_key('ops', scopes=('admin',))}")
    return client


def put(api, body: str, content_type: str):
    """The answer, how long it took, and the most memory the request held (measured apart: tracing slows it)."""
    started = time.monotonic()
    response = api.put("/api/v1/policy", body, content_type=content_type)
    seconds = time.monotonic() - started
    tracemalloc.start()
    api.put("/api/v1/policy", body, content_type=content_type)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return response, seconds, peak


@pytest.mark.parametrize(("body", "content_type", "says"), [
    (ALIAS_BOMB, "application/yaml", "aliases (*name) are not allowed"),
    ("a: " + "[" * 100_000 + "]" * 100_000, "application/yaml", "nested deeper than 32 levels"),
    ("[" * 100_000 + "]" * 100_000, "application/json", "nested deeper than 32 levels"),
    (json.dumps({"providers": [{"slug": "x" * 500_000}], "models": [], "tiers": [], "categories": [], "routes": []}),
     "application/json", "providers[0].slug"),
])
def test_a_hostile_document_gets_a_small_400_quickly_and_changes_nothing(admin_api, body, content_type, says):
    version = Policy.current().version

    response, seconds, peak = put(admin_api, body, content_type)

    assert response.status_code == 400, response.content[:500]
    assert response["Content-Type"] == "application/json"
    assert says in response.json()["detail"]
    assert len(response.content) < 2000
    assert seconds < 1
    assert peak < 8 * 1024 * 1024 + 2 * len(body)  # the body itself, decoded, and a few MB
    assert Policy.current().version == version


def test_the_command_refuses_an_alias_bomb_in_a_file(db, tmp_path):
    deeper = ALIAS_BOMB + "j: &j [" + ", ".join(["*i"] * 9) + "]\n"
    (tmp_path / "bomb.yaml").write_text(deeper)

    errors = io.StringIO()

    with pytest.raises(CommandError, match="1 problem found; nothing was changed"):
        call_command("import_policy", str(tmp_path / "bomb.yaml"), stderr=errors)

    assert "aliases (*name) are not allowed" in errors.getvalue()
    assert len(errors.getvalue()) < 500


def test_an_error_lists_a_bounded_number_of_problems(admin_api):
    models = [{"key": f"m{i}", "model_id": "x", "context_window": 1000, "provider": f"missing-{i}"} for i in range(500)]
    body = json.dumps({"providers": [], "models": models, "tiers": [], "categories": [], "routes": []})

    response, _, _ = put(admin_api, body, "application/json")

    assert response.status_code == 400
    problems = response.json()["problems"]
    assert len(problems) == 21 and problems[-1] == "and 480 more problems"
