"""Factories for the policy objects and ledger rows; tests build exactly what they need."""

from decimal import Decimal

import factory
from django.utils import timezone

from providers.models import LLMModel, Provider, Quota
from router.models import ApiKey, Category, Decision, Route, RouteModel, Tier, TierModel, UsageEvent
from switchboard.vocabulary import Metric, ProviderKind, Window


class ProviderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Provider
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"provider-{n}")
    kind = ProviderKind.OPENAI


class LLMModelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = LLMModel
        django_get_or_create = ("key",)

    key = factory.Sequence(lambda n: f"model-{n}")
    provider = factory.SubFactory(ProviderFactory)
    model_id = factory.LazyAttribute(lambda o: f"{o.key}-id")
    input_cost_per_mtok = Decimal("1")
    output_cost_per_mtok = Decimal("2")
    context_window = 200_000


class QuotaFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Quota
        skip_postgeneration_save = True

    provider = factory.SubFactory(ProviderFactory)
    name = factory.Sequence(lambda n: f"quota-{n}")
    metric = Metric.TOKENS
    window = Window.DAY
    limit = Decimal("1000000")
    soft_limit_ratio = Decimal("0.8")

    @factory.post_generation
    def models(self, create, extracted, **kwargs):
        if create and extracted:
            self.models.set(extracted)


class CategoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Category
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"category-{n}")


class TierFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tier
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"tier-{n}")


def make_route(category: Category | str, models: list[LLMModel], complexity: str = "any") -> Route:
    if isinstance(category, str):
        category = CategoryFactory(slug=category)
    route = Route.objects.create(category=category, complexity=complexity)
    for position, model in enumerate(models):
        RouteModel.objects.create(route=route, model=model, position=position)
    return route


def make_tier(slug: str, models: list[LLMModel]) -> Tier:
    tier = TierFactory(slug=slug)
    for position, model in enumerate(models):
        TierModel.objects.create(tier=tier, model=model, position=position)
    return tier


def make_api_key(name: str = "test-service", scopes: tuple[str, ...] = ("route", "usage", "read", "admin")) -> str:
    """Creates an API key and returns the raw key, as create_api_key prints it."""
    _, raw_key = ApiKey.objects.create_key(name=name, scopes=list(scopes))
    return raw_key


class DecisionFactory(factory.django.DjangoModelFactory):
    """A stored decision, as the ledger holds it (routing makes them through the API)."""

    class Meta:
        model = Decision

    created_at = factory.LazyFunction(timezone.now)
    caller = "test-service"
    category = "general"
    outcome = "primary"
    model_key = "gpt-4o"
    provider_slug = "openai"
    primary_key = "gpt-4o"
    policy_version = 1
    input_tokens = 100
    output_tokens = 50
    counted_tokens = 150
    counted_input_tokens = 100
    counted_output_tokens = 50


class UsageEventFactory(factory.django.DjangoModelFactory):
    """A stored usage report."""

    class Meta:
        model = UsageEvent

    created_at = factory.LazyFunction(timezone.now)
    caller = "test-service"
    model_key = "gpt-4o"
    provider_slug = "openai"
    input_tokens = 100
    output_tokens = 50
    counted_tokens = 150
    counted_input_tokens = 100
    counted_output_tokens = 50
