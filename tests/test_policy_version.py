"""Every policy edit bumps the policy version (processes reload on it); an import bumps it once, a no-op not at all."""

from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from router.models import Category, Policy
from router.policy.apply import apply_policy
from router.policy.document import dump_policy, parse_policy
from router.policy.export import export_policy
from router.policy.fields import PolicyError
from tests.factories import CategoryFactory, LLMModelFactory

pytestmark = pytest.mark.django_db

EXAMPLE = Path(settings.BASE_DIR) / "policy.example.yaml"


def version() -> int:
    return Policy.current().version


def test_an_admin_save_bumps_the_version(admin_client):
    category = CategoryFactory(slug="general")
    before = version()

    response = admin_client.post(reverse("admin:router_category_change", args=[category.pk]),
                                 {"slug": "general", "fallback": "never", "description": ""})

    assert response.status_code == 302
    assert version() > before
    assert Category.objects.get(pk=category.pk).fallback == "never"


def test_an_admin_delete_bumps_the_version(admin_client):
    category = CategoryFactory(slug="general")
    before = version()

    response = admin_client.post(reverse("admin:router_category_delete", args=[category.pk]), {"post": "yes"})

    assert response.status_code == 302
    assert version() > before


def test_an_import_bumps_the_version_once():
    before = version()

    assert apply_policy(parse_policy(EXAMPLE.read_text())) is True

    assert version() == before + 1


def test_an_import_that_changes_nothing_keeps_the_version():
    apply_policy(parse_policy(EXAMPLE.read_text()))
    before = version()

    assert apply_policy(parse_policy(dump_policy(export_policy()))) is False
    assert apply_policy(parse_policy(EXAMPLE.read_text())) is False

    assert version() == before


def test_a_rejected_import_keeps_the_version():
    LLMModelFactory(key="gpt-4o")
    before = version()
    document = parse_policy(EXAMPLE.read_text())
    document["default_tier"] = "nonexistent"

    with pytest.raises(PolicyError):
        apply_policy(document)

    assert version() == before


def test_exporting_keeps_the_version():
    apply_policy(parse_policy(EXAMPLE.read_text()))
    before = version()

    export_policy()

    assert version() == before
