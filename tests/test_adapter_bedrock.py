"""The Bedrock adapter against a local fake of Bedrock's control plane, reached through AWS_ENDPOINT_URL_BEDROCK."""

import pytest

from providers.adapters import base
from providers.models import LLMModel
from providers.refresh import refresh_provider
from tests.factories import LLMModelFactory, ProviderFactory
from tests.provider_servers import FakeBedrock, closed_port_url, foundation_model, inference_profile, use_fake_aws

pytestmark = pytest.mark.django_db

SONNET_4_5 = "anthropic.claude-sonnet-4-5-20250929-v1:0"
SONNET_3_5_V2 = "anthropic.claude-3-5-sonnet-20241022-v2:0"
HAIKU_3 = "anthropic.claude-3-haiku-20240307-v1:0"
HAIKU_4_5 = "anthropic.claude-haiku-4-5-20251001-v1:0"
NOVA_PRO = "amazon.nova-pro-v1:0"
US = ("us-east-1", "us-east-2", "us-west-2")
EU = ("eu-west-1", "eu-west-3", "eu-central-1")


def us_east_1() -> FakeBedrock:
    return FakeBedrock(
        models=[
            foundation_model(SONNET_4_5, inference_types=("INFERENCE_PROFILE",)),
            foundation_model(SONNET_3_5_V2, inference_types=("INFERENCE_PROFILE",)),
            foundation_model(HAIKU_3, inference_types=("ON_DEMAND",)),
            foundation_model(HAIKU_4_5, inference_types=("INFERENCE_PROFILE",)),
            foundation_model(NOVA_PRO, inference_types=("ON_DEMAND", "INFERENCE_PROFILE")),
        ],
        profiles=[
            inference_profile("global", SONNET_4_5, US),
            inference_profile("us", SONNET_4_5, US),
            inference_profile("us", SONNET_3_5_V2, US),
            inference_profile("us", NOVA_PRO, US),
            inference_profile("global", HAIKU_4_5, US),
        ],
        page_size=2,
    )


@pytest.fixture(autouse=True)
def no_retries(monkeypatch):
    monkeypatch.setattr(base, "SDK_MAX_RETRIES", 0)


@pytest.fixture
def bedrock(monkeypatch):
    with us_east_1() as server:
        use_fake_aws(monkeypatch, bedrock_url=server.url)
        yield server


def make_provider(region: str = "us-east-1", **fields):
    return ProviderFactory(slug=f"bedrock-{region}", kind="bedrock", region=region, **fields)


def add(provider, key: str, model_id: str) -> LLMModel:
    return LLMModelFactory(key=key, provider=provider, model_id=model_id)


def fresh(model: LLMModel) -> LLMModel:
    return LLMModel.objects.get(pk=model.pk)


def test_sonnet_4_5_without_on_demand_is_invoked_through_the_us_profile(bedrock):
    provider = make_provider()
    sonnet = add(provider, "bedrock-sonnet-4-5", SONNET_4_5)
    haiku = add(provider, "bedrock-haiku-3", HAIKU_3)

    check = refresh_provider(provider)

    assert check.ok
    sonnet, haiku = fresh(sonnet), fresh(haiku)
    assert (sonnet.availability, sonnet.invoke_id) == ("available", "us." + SONNET_4_5)
    assert "no on-demand throughput in us-east-1" in sonnet.availability_reason
    assert (haiku.availability, haiku.invoke_id, haiku.availability_reason) == ("available", HAIKU_3, "on demand in us-east-1")
    assert {c["model"]: c["invoke_id"] for c in check.changes} == {"bedrock-sonnet-4-5": "us." + SONNET_4_5, "bedrock-haiku-3": HAIKU_3}


def test_it_lists_every_model_and_every_page_of_profiles(bedrock):
    provider = make_provider()
    nova = add(provider, "nova-pro", NOVA_PRO)

    refresh_provider(provider)

    listing = [r for r in bedrock.requests if r.path == "/foundation-models"]
    assert len(listing) == 1 and listing[0].query == {}  # no byInferenceType filter
    pages = [r.query for r in bedrock.requests if r.path == "/inference-profiles"]
    assert [p.get("nextToken") for p in pages] == [None, ["2"], ["4"]]
    assert all(p["type"] == ["SYSTEM_DEFINED"] for p in pages)
    assert fresh(nova).invoke_id == NOVA_PRO  # on demand wins over a profile


def test_eu_west_1_gets_the_eu_profile(monkeypatch):
    fake = FakeBedrock(
        models=[foundation_model(SONNET_4_5, "eu-west-1", ("INFERENCE_PROFILE",))],
        profiles=[inference_profile("global", SONNET_4_5, EU), inference_profile("eu", SONNET_4_5, EU)],
    )
    with fake:
        use_fake_aws(monkeypatch, bedrock_url=fake.url)
        provider = make_provider("eu-west-1")
        sonnet = add(provider, "bedrock-sonnet-4-5", SONNET_4_5)
        refresh_provider(provider)
    assert fresh(sonnet).invoke_id == "eu." + SONNET_4_5


def test_another_regional_profile_is_used_when_the_geography_has_none(monkeypatch):
    tokyo = ("ap-northeast-1", "ap-northeast-3")
    fake = FakeBedrock(
        models=[foundation_model(SONNET_4_5, "ap-northeast-1", ("INFERENCE_PROFILE",))],
        profiles=[inference_profile("global", SONNET_4_5, tokyo), inference_profile("jp", SONNET_4_5, tokyo)],
    )
    with fake:
        use_fake_aws(monkeypatch, bedrock_url=fake.url)
        provider = make_provider("ap-northeast-1")
        sonnet = add(provider, "bedrock-sonnet-4-5", SONNET_4_5)
        refresh_provider(provider)
    assert fresh(sonnet).invoke_id == "jp." + SONNET_4_5


def test_a_global_only_model_is_unavailable_unless_the_provider_allows_global_profiles(bedrock):
    provider = make_provider()
    haiku = add(provider, "bedrock-haiku-4-5", HAIKU_4_5)

    refresh_provider(provider)
    haiku = fresh(haiku)
    assert haiku.availability == "unavailable"
    assert "only the global profile global." + HAIKU_4_5 in haiku.availability_reason
    assert "allow_global_profile" in haiku.availability_reason

    provider.allow_global_profile = True
    provider.save()
    check = refresh_provider(provider)
    haiku = fresh(haiku)
    assert (haiku.availability, haiku.invoke_id) == ("available", "global." + HAIKU_4_5)
    assert check.changes == [{
        "model": "bedrock-haiku-4-5", "from": "unavailable", "to": "available", "invoke_id": "global." + HAIKU_4_5,
        "reason": f"no regional inference profile in us-east-1: invoked through global profile global.{HAIKU_4_5}",
    }]


def test_a_model_id_that_is_a_profile_id_is_understood_as_such(bedrock):
    provider = make_provider()
    us_sonnet = add(provider, "sonnet-3-5-v2", "us." + SONNET_3_5_V2)
    global_haiku = add(provider, "haiku-4-5", "global." + HAIKU_4_5)
    eu_sonnet = add(provider, "eu-sonnet", "eu." + SONNET_4_5)

    refresh_provider(provider)

    assert (fresh(us_sonnet).availability, fresh(us_sonnet).invoke_id) == ("available", "us." + SONNET_3_5_V2)
    assert (fresh(global_haiku).availability, fresh(global_haiku).invoke_id) == ("available", "global." + HAIKU_4_5)
    eu_sonnet = fresh(eu_sonnet)
    assert eu_sonnet.availability == "unavailable"
    assert eu_sonnet.availability_reason == f"inference profile eu.{SONNET_4_5} is not offered in us-east-1"


def test_a_model_the_region_does_not_offer_is_unavailable(bedrock):
    provider = make_provider()
    llama = add(provider, "llama-405b", "meta.llama3-1-405b-instruct-v1:0")

    refresh_provider(provider)

    assert (fresh(llama).availability, fresh(llama).availability_reason) == ("unavailable", "not offered in us-east-1")


def test_a_provisioned_only_model_without_a_profile_is_unavailable(monkeypatch):
    fake = FakeBedrock(models=[foundation_model("cohere.command-r-v1:0", inference_types=("PROVISIONED",))], profiles=[])
    with fake:
        use_fake_aws(monkeypatch, bedrock_url=fake.url)
        provider = make_provider()
        command_r = add(provider, "command-r", "cohere.command-r-v1:0")
        refresh_provider(provider)
    assert fresh(command_r).availability_reason == "no on-demand throughput and no inference profile for us-east-1"


@pytest.mark.parametrize(("status", "error_type"), [(403, "AccessDeniedException"), (429, "ThrottlingException"), (500, "InternalServerException")])
def test_an_api_error_leaves_availability_as_it_was(bedrock, status, error_type):
    provider = make_provider()
    sonnet = add(provider, "bedrock-sonnet-4-5", SONNET_4_5)
    refresh_provider(provider)
    new = add(provider, "bedrock-haiku-3", HAIKU_3)
    bedrock.fail_status = status

    check = refresh_provider(provider)

    assert not check.ok
    assert error_type in check.error and "ListFoundationModels" in check.error
    assert "fake-secret-access-key" not in check.error
    assert (fresh(sonnet).availability, fresh(sonnet).invoke_id) == ("available", "us." + SONNET_4_5)
    assert fresh(new).availability == "unknown"


def test_a_timeout_is_recorded(bedrock):
    bedrock.delay = 2.5
    provider = make_provider(request_timeout_seconds=1)
    model = add(provider, "bedrock-sonnet-4-5", SONNET_4_5)

    check = refresh_provider(provider)

    assert not check.ok and "ReadTimeoutError" in check.error
    assert fresh(model).availability == "unknown"


def test_a_refused_connection_is_recorded(monkeypatch):
    use_fake_aws(monkeypatch, bedrock_url=closed_port_url())
    provider = make_provider()
    model = add(provider, "bedrock-sonnet-4-5", SONNET_4_5)

    check = refresh_provider(provider)

    assert not check.ok and "EndpointConnectionError" in check.error
    assert fresh(model).availability == "unknown"


def test_a_missing_aws_profile_is_recorded(bedrock):
    provider = make_provider(aws_profile="no-such-profile")
    add(provider, "bedrock-sonnet-4-5", SONNET_4_5)

    check = refresh_provider(provider)

    assert not check.ok and "no-such-profile" in check.error
    assert bedrock.requests == []


def test_a_failing_call_is_retried_once_by_default(bedrock, monkeypatch):
    monkeypatch.setattr(base, "SDK_MAX_RETRIES", 1)
    bedrock.fail_status = 500
    provider = make_provider()
    add(provider, "bedrock-sonnet-4-5", SONNET_4_5)

    check = refresh_provider(provider)

    assert not check.ok
    assert [r.path for r in bedrock.requests] == ["/foundation-models", "/foundation-models"]
