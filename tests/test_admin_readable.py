"""The admin reads as ops people write: numbers without trailing zeros, each quota's usage now."""

from decimal import Decimal

import pytest
from django.urls import reverse

from providers.models import Quota
from tests.calls import route
from tests.factories import LLMModelFactory, ProviderFactory, QuotaFactory, make_route

pytestmark = pytest.mark.django_db


@pytest.fixture
def quota():
    openai = ProviderFactory(slug="openai", kind="openai")
    gpt4o = LLMModelFactory(key="gpt-4o", provider=openai, input_cost_per_mtok=Decimal("2.5"), context_window=10_000_000)
    make_route("general", [gpt4o])
    return QuotaFactory(provider=openai, name="tokens-day", limit=Decimal("5000000"), soft_limit_ratio=Decimal("0.8"))


def test_the_quota_list_shows_numbers_as_people_write_them_and_the_usage_now(admin_client, api, quota):
    route(api, category="general", estimated_input_tokens=1_000_000, estimated_output_tokens=500_000)

    page = admin_client.get(reverse("admin:providers_quota_changelist")).content.decode()

    assert "5,000,000" in page and ">0.8<" in page and "5000000.000000" not in page
    assert "1,500,000 of 5,000,000 (30%; soft limit 4,000,000)" in page


def test_the_quota_form_shows_plain_numbers_and_says_when_a_quota_is_over_its_soft_limit(admin_client, api, quota):
    route(api, category="general", estimated_input_tokens=4_200_000)

    response = admin_client.get(reverse("admin:providers_quota_change", args=[quota.pk]))

    form = response.context["adminform"].form
    assert (form["limit"].value(), form["soft_limit_ratio"].value()) == ("5000000", "0.8")
    assert "4,200,000 of 5,000,000 (84%; soft limit 4,000,000) (over the soft limit)" in response.content.decode()


def test_the_model_list_shows_prices_as_people_write_them(admin_client, quota):
    page = admin_client.get(reverse("admin:providers_llmmodel_changelist")).content.decode()

    assert ">2.5<" in page and "2.500000" not in page


def test_a_saved_plain_number_is_stored_exactly(admin_client, quota):
    from tests.admin_forms import form_data

    url = reverse("admin:providers_quota_change", args=[quota.pk])
    data = form_data(admin_client, url)
    data["limit"] = "7500000"

    assert admin_client.post(url, data).status_code == 302
    assert Quota.objects.get().limit == Decimal("7500000")
