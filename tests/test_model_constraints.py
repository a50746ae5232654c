"""The database and model validation refuse what would make the policy ambiguous or unusable."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from providers.models import LLMModel, Provider, Quota
from router.models import Route, RouteModel, TierModel
from tests.factories import CategoryFactory, LLMModelFactory, ProviderFactory, QuotaFactory, make_route, make_tier

pytestmark = pytest.mark.django_db


def refused_by_the_database(create) -> bool:
    try:
        with transaction.atomic():
            create()
    except IntegrityError:
        return True
    return False


def test_it_refuses_a_second_provider_with_the_same_slug():
    ProviderFactory(slug="openai")

    assert refused_by_the_database(lambda: Provider.objects.create(slug="openai", kind="openai"))


def test_it_refuses_a_second_model_with_the_same_key():
    LLMModelFactory(key="gpt-4o")

    assert refused_by_the_database(lambda: LLMModel.objects.create(key="gpt-4o", provider=ProviderFactory(), model_id="x", context_window=1))


def test_it_refuses_the_same_model_id_twice_at_one_provider():
    model = LLMModelFactory(model_id="gpt-4o")

    assert refused_by_the_database(lambda: LLMModelFactory(key="other", provider=model.provider, model_id="gpt-4o"))
    assert not refused_by_the_database(lambda: LLMModelFactory(key="elsewhere", provider=ProviderFactory(), model_id="gpt-4o"))


@pytest.mark.parametrize("ratio, refused", [("0", True), ("1.5", True), ("-0.1", True), ("1", False), ("0.001", False)])
def test_it_keeps_the_soft_limit_ratio_above_0_and_at_most_1(ratio, refused):
    provider = ProviderFactory()

    assert refused_by_the_database(lambda: QuotaFactory(provider=provider, soft_limit_ratio=Decimal(ratio))) is refused


def test_it_explains_an_out_of_range_ratio():
    quota = Quota(provider=ProviderFactory(), name="q", metric="tokens", window="day", limit=Decimal("10"), soft_limit_ratio=Decimal("1.5"))

    with pytest.raises(ValidationError, match="The soft limit ratio must be above 0 and at most 1."):
        quota.full_clean()


@pytest.mark.parametrize("limit", ["0", "-5"])
def test_it_refuses_a_limit_that_is_not_positive(limit):
    provider = ProviderFactory()

    assert refused_by_the_database(lambda: QuotaFactory(provider=provider, limit=Decimal(limit)))


def test_it_refuses_two_quotas_with_one_name_at_a_provider():
    quota = QuotaFactory(name="tokens-day")

    assert refused_by_the_database(lambda: QuotaFactory(provider=quota.provider, name="tokens-day"))
    assert not refused_by_the_database(lambda: QuotaFactory(provider=ProviderFactory(), name="tokens-day"))


def test_it_refuses_a_bedrock_provider_without_a_region():
    assert refused_by_the_database(lambda: Provider.objects.create(slug="bedrock", kind="bedrock"))

    with pytest.raises(ValidationError, match="A Bedrock provider needs a region."):
        Provider(slug="bedrock", kind="bedrock").full_clean()
    Provider(slug="bedrock", kind="bedrock", region="us-east-1").full_clean()


def test_it_refuses_an_openai_compatible_provider_without_a_base_url():
    with pytest.raises(ValidationError, match="An OpenAI-compatible provider needs a base URL."):
        Provider(slug="zhipu", kind="openai_compatible").full_clean()
    assert refused_by_the_database(lambda: Provider.objects.create(slug="zhipu", kind="openai_compatible"))


def test_it_refuses_a_model_with_an_empty_context_window_or_a_negative_price():
    provider = ProviderFactory()

    assert refused_by_the_database(lambda: LLMModelFactory(provider=provider, context_window=0))
    assert refused_by_the_database(lambda: LLMModelFactory(provider=provider, input_cost_per_mtok=Decimal("-1")))


def test_it_refuses_a_model_listed_twice_in_a_route():
    model = LLMModelFactory()
    route = make_route("general", [model])

    assert refused_by_the_database(lambda: RouteModel.objects.create(route=route, model=model, position=2))
    with pytest.raises(ValidationError, match="A model can appear only once in a route."):
        RouteModel(route=route, model=model, position=2).full_clean()


def test_it_refuses_a_model_listed_twice_in_a_tier():
    model = LLMModelFactory()
    tier = make_tier("cheap", [model])

    assert refused_by_the_database(lambda: TierModel.objects.create(tier=tier, model=model, position=2))


def test_it_refuses_two_routes_for_one_category_and_complexity():
    category = CategoryFactory(slug="general")
    Route.objects.create(category=category, complexity="low")

    assert refused_by_the_database(lambda: Route.objects.create(category=category, complexity="low"))
    assert not refused_by_the_database(lambda: Route.objects.create(category=category, complexity="any"))


def test_it_rejects_a_quota_pool_with_a_foreign_model():
    quota = QuotaFactory(provider=ProviderFactory(slug="anthropic"))
    foreign = LLMModelFactory(key="gpt-4o", provider=ProviderFactory(slug="openai"))
    own = LLMModelFactory(key="claude-3-5-haiku", provider=quota.provider)

    with pytest.raises(ValidationError, match="Not models of provider anthropic: gpt-4o."):
        quota.validate_pool([own, foreign])
    quota.validate_pool([own])


def test_a_model_in_a_route_cannot_be_deleted():
    from django.db.models import ProtectedError

    model = LLMModelFactory()
    make_route("general", [model])

    with pytest.raises(ProtectedError), transaction.atomic():
        model.delete()
