"""The Bedrock quota sync against a local fake of AWS Service Quotas, reached through AWS_ENDPOINT_URL_SERVICE_QUOTAS."""

from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from providers.adapters import base
from providers.models import AvailabilityCheck, LLMModel, Quota
from providers.quota_sync import model_words, parse_quota_name, sync_all, sync_provider_quotas, words
from tests.factories import LLMModelFactory, ProviderFactory, QuotaFactory
from tests.provider_servers import FakeServiceQuotas, closed_port_url, service_quota, use_fake_aws

SONNET_3_7 = "anthropic.claude-3-7-sonnet-20250219-v1:0"
SONNET_4_5 = "anthropic.claude-sonnet-4-5-20250929-v1:0"
SONNET_3_5 = "anthropic.claude-3-5-sonnet-20240620-v1:0"
SONNET_3_5_V2 = "anthropic.claude-3-5-sonnet-20241022-v2:0"

REPORTED = [
    # The old name and the new one, side by side, as AWS reports them during a rename.
    service_quota("L-3701", "On-demand InvokeModel requests per minute for Anthropic Claude 3.7 Sonnet", 250),
    service_quota("L-3702", "On-demand model inference tokens per minute for Anthropic Claude 3.7 Sonnet", 1_000_000),
    service_quota("L-4501", "On-demand model inference requests per minute for Anthropic Claude Sonnet 4.5 V1", 50),
    service_quota("L-4502", "Cross-region model inference requests per minute for Anthropic Claude Sonnet 4.5 V1", 4),
    service_quota("L-4503", "Cross-region model inference tokens per minute for Anthropic Claude Sonnet 4.5 V1", 4000),
    service_quota("L-4504", "Global cross-region model inference requests per minute for Anthropic Claude Sonnet 4.5 V1", 8),
    service_quota("L-4505", "Model invocation max tokens per day for Anthropic Claude Sonnet 4.5 V1 (doubled for cross-region calls)", 144_000_000),
    service_quota("L-3501", "On-demand InvokeModel requests per minute for Anthropic Claude 3.5 Sonnet", 50),
    service_quota("L-3502", "On-demand InvokeModel requests per minute for Anthropic Claude 3.5 Sonnet V2", 100),
]

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_retries(monkeypatch):
    monkeypatch.setattr(base, "SDK_MAX_RETRIES", 0)


@pytest.fixture
def aws(monkeypatch):
    with FakeServiceQuotas(list(REPORTED), page_size=2) as server:
        use_fake_aws(monkeypatch, service_quotas_url=server.url)
        yield server


@pytest.fixture
def bedrock():
    provider = ProviderFactory(slug="bedrock", kind="bedrock", region="us-east-1")
    LLMModelFactory(key="bedrock-sonnet-3-7", provider=provider, model_id=SONNET_3_7, invoke_id=SONNET_3_7)
    LLMModelFactory(key="bedrock-sonnet-4-5", provider=provider, model_id=SONNET_4_5, invoke_id="us." + SONNET_4_5)
    return provider


def synced() -> dict[str, tuple]:
    return {
        q.name: (q.quota_code, q.metric, int(q.limit), [m.key for m in q.models.all()])
        for q in Quota.objects.filter(source="aws").prefetch_related("models")
    }


def test_quota_names_are_read_as_lowercase_words():
    assert words("Anthropic Claude 3.7 Sonnet") == model_words(SONNET_3_7) == ("anthropic", "claude", "3", "7", "sonnet")
    assert words("Anthropic Claude Sonnet 4.5 V1") == model_words(SONNET_4_5)
    assert words("Anthropic Claude 3.5 Sonnet") == model_words(SONNET_3_5)
    assert words("Anthropic Claude 3.5 Sonnet V2") == model_words(SONNET_3_5_V2)
    assert model_words(SONNET_3_5) != model_words(SONNET_3_5_V2)
    assert words("Meta Llama 3.1 70B Instruct") == model_words("meta.llama3-1-70b-instruct-v1:0")
    kind = parse_quota_name("On-demand InvokeModel tokens per minute for Anthropic Claude 3 Haiku")
    assert (kind.route, kind.metric, kind.model_words) == ("on-demand", "tokens", ("anthropic", "claude", "3", "haiku"))
    assert parse_quota_name("Model invocation max tokens per day for Anthropic Claude Sonnet 4.5 V1") is None


def test_it_creates_a_quota_per_model_and_metric_from_every_page(aws, bedrock):
    check = sync_provider_quotas(bedrock)

    assert check.ok and check.kind == "quota_sync"
    assert synced() == {
        "aws-requests-minute-bedrock-sonnet-3-7": ("L-3701", "requests", 250, ["bedrock-sonnet-3-7"]),
        "aws-tokens-minute-bedrock-sonnet-3-7": ("L-3702", "tokens", 1_000_000, ["bedrock-sonnet-3-7"]),
        # Invoked through the us. profile: the cross-region quotas, not the on-demand one (50).
        "aws-requests-minute-bedrock-sonnet-4-5": ("L-4502", "requests", 4, ["bedrock-sonnet-4-5"]),
        "aws-tokens-minute-bedrock-sonnet-4-5": ("L-4503", "tokens", 4000, ["bedrock-sonnet-4-5"]),
    }
    quota = Quota.objects.get(name="aws-requests-minute-bedrock-sonnet-3-7")
    assert (quota.window, quota.reset, quota.soft_limit_ratio) == ("minute", "rolling", Decimal("1"))
    assert check.models_changed == 4
    assert {"action": "created", "quota": "aws-requests-minute-bedrock-sonnet-4-5", "code": "L-4502", "from": None, "to": "4",
            "aws_name": REPORTED[3]["QuotaName"], "models": ["bedrock-sonnet-4-5"]} in check.changes
    tokens = [r.body.get("NextToken") for r in aws.requests]
    assert tokens == [None, "2", "4", "6", "8"]
    assert {r.body["ServiceCode"] for r in aws.requests} == {"bedrock"}


def test_claude_3_5_sonnet_and_its_v2_are_told_apart(aws, bedrock):
    LLMModelFactory(key="sonnet-3-5", provider=bedrock, model_id=SONNET_3_5)
    LLMModelFactory(key="sonnet-3-5-v2", provider=bedrock, model_id=SONNET_3_5_V2)

    check = sync_provider_quotas(bedrock)

    assert synced()["aws-requests-minute-sonnet-3-5"] == ("L-3501", "requests", 50, ["sonnet-3-5"])
    assert synced()["aws-requests-minute-sonnet-3-5-v2"] == ("L-3502", "requests", 100, ["sonnet-3-5-v2"])
    assert {"action": "unmatched", "model": "sonnet-3-5", "reason": "no on-demand tokens-per-minute quota reported"} in check.changes


def test_a_model_id_that_is_a_profile_gets_the_cross_region_quota(aws, bedrock):
    LLMModelFactory(key="us-sonnet-4-5", provider=bedrock, model_id="us." + SONNET_4_5)
    LLMModel.objects.filter(key="bedrock-sonnet-4-5").delete()

    sync_provider_quotas(bedrock)

    assert synced()["aws-requests-minute-us-sonnet-4-5"] == ("L-4502", "requests", 4, ["us-sonnet-4-5"])


def test_a_model_through_a_global_profile_gets_the_global_quota(aws, bedrock):
    LLMModel.objects.filter(key="bedrock-sonnet-4-5").update(invoke_id="global." + SONNET_4_5)

    sync_provider_quotas(bedrock)

    assert synced()["aws-requests-minute-bedrock-sonnet-4-5"] == ("L-4504", "requests", 8, ["bedrock-sonnet-4-5"])


def test_models_sharing_one_aws_quota_share_one_pool(aws, bedrock):
    LLMModelFactory(key="us-sonnet-4-5", provider=bedrock, model_id="us." + SONNET_4_5)

    sync_provider_quotas(bedrock)

    assert synced()["aws-requests-minute-bedrock-sonnet-4-5"] == ("L-4502", "requests", 4, ["bedrock-sonnet-4-5", "us-sonnet-4-5"])
    assert "aws-requests-minute-us-sonnet-4-5" not in synced()


def test_a_known_quota_code_is_matched_after_its_name_drifts(aws, bedrock):
    sync_provider_quotas(bedrock)
    aws.quotas[0] = service_quota("L-3701", "Requests per minute, on demand, Claude 3.7 Sonnet", 300)

    check = sync_provider_quotas(bedrock)

    assert synced()["aws-requests-minute-bedrock-sonnet-3-7"] == ("L-3701", "requests", 300, ["bedrock-sonnet-3-7"])
    assert check.models_changed == 1
    assert [c for c in check.changes if c["action"] == "updated"] == [{
        "action": "updated", "quota": "aws-requests-minute-bedrock-sonnet-3-7", "code": "L-3701",
        "aws_name": "Requests per minute, on demand, Claude 3.7 Sonnet", "from": "250", "to": "300", "models": ["bedrock-sonnet-3-7"],
    }]


def test_a_model_that_moves_to_a_profile_moves_to_the_cross_region_quota(aws, bedrock):
    LLMModel.objects.filter(key="bedrock-sonnet-4-5").update(invoke_id=SONNET_4_5)
    sync_provider_quotas(bedrock)
    assert synced()["aws-requests-minute-bedrock-sonnet-4-5"][:3] == ("L-4501", "requests", 50)

    LLMModel.objects.filter(key="bedrock-sonnet-4-5").update(invoke_id="us." + SONNET_4_5)
    sync_provider_quotas(bedrock)

    assert synced()["aws-requests-minute-bedrock-sonnet-4-5"][:3] == ("L-4502", "requests", 4)


def test_a_second_sync_changes_nothing(aws, bedrock):
    sync_provider_quotas(bedrock)
    history = Quota.history.count()

    check = sync_provider_quotas(bedrock)

    assert check.ok and check.models_changed == 0
    assert Quota.history.count() == history


def test_a_manual_quota_is_never_overwritten(aws, bedrock):
    sonnet = LLMModel.objects.get(key="bedrock-sonnet-3-7")
    manual = QuotaFactory(provider=bedrock, name="sonnet-3-7-rpm", metric="requests", window="minute", limit=Decimal("100"), models=[sonnet])

    check = sync_provider_quotas(bedrock)

    manual.refresh_from_db()
    assert (manual.source, manual.limit, manual.quota_code) == ("manual", Decimal("100"), "")
    assert "aws-requests-minute-bedrock-sonnet-3-7" not in synced()
    assert "aws-tokens-minute-bedrock-sonnet-3-7" in synced()
    assert {"action": "skipped", "quota": "sonnet-3-7-rpm", "model": "bedrock-sonnet-3-7", "code": "L-3701",
            "reason": "manual quota sonnet-3-7-rpm covers this model; AWS reports 250"} in check.changes


def test_a_manual_quota_holding_the_synced_name_is_left_alone(aws, bedrock):
    manual = QuotaFactory(provider=bedrock, name="aws-requests-minute-bedrock-sonnet-3-7", metric="requests", window="day")

    check = sync_provider_quotas(bedrock)

    manual.refresh_from_db()
    assert (manual.source, manual.window, manual.quota_code) == ("manual", "day", "")
    assert {"action": "skipped", "code": "L-3701", "models": ["bedrock-sonnet-3-7"],
            "reason": "another quota is named aws-requests-minute-bedrock-sonnet-3-7"} in check.changes


def test_a_quota_no_longer_reported_is_left_and_recorded(aws, bedrock):
    sync_provider_quotas(bedrock)
    del aws.quotas[1]

    check = sync_provider_quotas(bedrock)

    assert synced()["aws-tokens-minute-bedrock-sonnet-3-7"] == ("L-3702", "tokens", 1_000_000, ["bedrock-sonnet-3-7"])
    left = {"action": "left", "quota": "aws-tokens-minute-bedrock-sonnet-3-7", "code": "L-3702", "reason": "no longer reported by AWS"}
    assert left in check.changes


def test_a_quota_whose_models_are_gone_is_deleted(aws, bedrock):
    sync_provider_quotas(bedrock)
    LLMModel.objects.filter(key="bedrock-sonnet-3-7").delete()

    check = sync_provider_quotas(bedrock)

    # With an empty pool it would have limited every model of the provider.
    assert not Quota.objects.filter(name__endswith="bedrock-sonnet-3-7").exists()
    assert {c["quota"] for c in check.changes if c["action"] == "deleted"} == {
        "aws-requests-minute-bedrock-sonnet-3-7", "aws-tokens-minute-bedrock-sonnet-3-7",
    }


@pytest.mark.parametrize("status", [403, 429, 500])
def test_an_aws_error_changes_nothing(aws, bedrock, status):
    sync_provider_quotas(bedrock)
    before = synced()
    aws.fail_status = status

    check = sync_provider_quotas(bedrock)

    assert not check.ok and "ListServiceQuotas" in check.error
    assert (check.models_changed, check.changes) == (0, [])
    assert synced() == before


def test_an_unreachable_endpoint_is_recorded(monkeypatch, bedrock):
    use_fake_aws(monkeypatch, service_quotas_url=closed_port_url())

    check = sync_provider_quotas(bedrock)

    assert not check.ok and "EndpointConnectionError" in check.error
    assert not Quota.objects.exists()


def test_sync_all_covers_enabled_bedrock_providers_only(aws, bedrock):
    ProviderFactory(slug="anthropic", kind="anthropic")
    ProviderFactory(slug="bedrock-off", kind="bedrock", region="eu-west-1", enabled=False)

    assert [c.provider.slug for c in sync_all()] == ["bedrock"]
    assert AvailabilityCheck.objects.filter(kind="quota_sync").count() == 1


def test_the_command_prints_one_line_per_provider(aws, bedrock, capsys):
    call_command("sync_provider_quotas", "bedrock")

    out = capsys.readouterr().out
    assert out.startswith("bedrock: ok, 4 changed: created aws-requests-minute-bedrock-sonnet-3-7 (250)")


def test_the_command_refuses_a_provider_that_is_not_bedrock(bedrock):
    ProviderFactory(slug="anthropic", kind="anthropic")

    with pytest.raises(CommandError, match=r"No AWS Bedrock provider 'anthropic'\. Valid: bedrock\."):
        call_command("sync_provider_quotas", "anthropic")


def test_the_command_fails_when_the_sync_failed(aws, bedrock, capsys):
    aws.fail_status = 403

    with pytest.raises(CommandError, match="Failed: bedrock"):
        call_command("sync_provider_quotas")
    assert "bedrock: error: An error occurred (AccessDeniedException) when calling the ListServiceQuotas operation" in capsys.readouterr().out
