"""/metrics counts fallbacks as decisions that fell back (by why the primary was passed over), and every
candidate passed over, refusals included, in a metric of its own."""

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from router.models import Category
from tests.calls import route
from tests.factories import CategoryFactory, LLMModelFactory, ProviderFactory, QuotaFactory, make_route
from tests.test_health_and_metrics import samples


def metric(name: str, reason: str) -> tuple:
    return (name, (("reason", reason),))


FALLBACKS = metric("switchboard_fallbacks_total", "quota")
SKIPPED = metric("switchboard_skipped_candidates_total", "quota")


@pytest.fixture
def one_request_each(db):
    openai = ProviderFactory(slug="openai")
    gpt4o = LLMModelFactory(key="gpt-4o", provider=openai)
    mini = LLMModelFactory(key="gpt-4o-mini", provider=openai)
    for model in (gpt4o, mini):
        QuotaFactory(provider=openai, name=f"{model.key}-rpm", metric="requests", window="minute", limit=Decimal(1),
                     soft_limit_ratio=Decimal(1), models=[model])
    make_route(CategoryFactory(slug="general", fallback=Category.Fallback.ALLOW), [gpt4o, mini])


def test_a_fallback_counts_once_and_a_refusal_counts_only_its_skipped_candidates(api, counters, one_request_each):
    before = samples(APIClient().get("/metrics"))

    route(api, category="general")  # primary
    route(api, category="general")  # fallback: gpt-4o passed over for its quota
    route(api, expect=429, category="general")  # refusal: both passed over
    after = samples(APIClient().get("/metrics"))

    assert after[FALLBACKS] - before.get(FALLBACKS, 0) == 1
    assert after[SKIPPED] - before.get(SKIPPED, 0) == 3
