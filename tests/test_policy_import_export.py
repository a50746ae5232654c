"""The policy file: import (validated whole, applied in one transaction), export, and the first-run bootstrap."""

import copy
import io
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from providers.models import LLMModel, Provider, Quota
from router.models import Category, Policy, Route, Tier
from router.policy.apply import apply_policy
from router.policy.document import dump_policy, parse_policy
from router.policy.export import export_policy
from router.policy.fields import PolicyError
from tests.factories import LLMModelFactory, ProviderFactory, QuotaFactory

pytestmark = pytest.mark.django_db

EXAMPLE = Path(settings.BASE_DIR) / "policy.example.yaml"


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def state() -> tuple[dict, int]:
    """What a user can observe of the policy: its export and its version."""
    return export_policy(), Policy.current().version


@pytest.fixture
def example() -> dict:
    return parse_policy(EXAMPLE.read_text())


@pytest.fixture
def imported(example) -> dict:
    apply_policy(copy.deepcopy(example))
    return example


def write(tmp_path: Path, document: dict | str, name: str = "policy.yaml") -> str:
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else dump_policy(document, "json" if name.endswith(".json") else "yaml"))
    return str(path)


def test_it_imports_the_example_file_into_an_empty_database(example):
    version = Policy.current().version

    assert apply_policy(example) is True

    assert sorted(Provider.objects.values_list("slug", flat=True)) == ["anthropic", "bedrock", "openai", "zhipu"]
    assert LLMModel.objects.count() == 12
    assert Quota.objects.count() == 9
    assert Category.objects.get(slug="security_auth_change").fallback == "never"
    assert Route.objects.get(category__slug="general", complexity="medium").model_keys() == [
        "gpt-4o", "claude-3-5-sonnet", "glm-4-5", "gpt-4o-mini"]
    assert Tier.objects.get(slug="quality").model_keys() == ["claude-sonnet-4-5", "claude-3-5-sonnet"]
    assert Provider.objects.get(slug="bedrock").region == "us-east-1"
    sonnet_pool = Quota.objects.get(provider__slug="anthropic", name="sonnet-pool")
    assert sorted(m.key for m in sonnet_pool.models.all()) == ["claude-3-5-sonnet", "claude-sonnet-4-5"]
    assert Quota.objects.get(provider__slug="openai", name="tokens-day").limit == Decimal("5000000")
    assert Quota.objects.filter(provider__slug="bedrock", name="requests-minute-bedrock-sonnet-4-5").exists()
    assert Policy.current().default_tier.slug == "medium"
    assert Policy.current().version == version + 1


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_importing_an_export_changes_nothing(imported, fmt):
    before = state()

    assert apply_policy(parse_policy(dump_policy(export_policy(), fmt), fmt)) is False

    assert state() == before


def test_importing_the_same_file_twice_changes_nothing_the_second_time(imported, example):
    before = state()

    assert apply_policy(example) is False

    assert state() == before


def test_the_commands_import_export_and_reimport_without_a_change(tmp_path):
    out, _ = run("import_policy", str(EXAMPLE))
    version = Policy.current().version
    assert out.strip() == f"Policy imported: version {version}"

    exported, _ = run("export_policy")
    out, _ = run("import_policy", write(tmp_path, exported))
    assert out.strip() == f"No changes: policy is already at version {version}"

    exported_json, _ = run("export_policy", "--format", "json")
    out, _ = run("import_policy", write(tmp_path, exported_json, "policy.json"))
    assert out.strip() == f"No changes: policy is already at version {version}"
    assert Policy.current().version == version


def test_it_reads_the_policy_from_standard_input(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(EXAMPLE.read_text()))

    out, _ = run("import_policy", "-")

    assert out.startswith("Policy imported: version ")
    assert LLMModel.objects.count() == 12


def test_the_export_is_sorted_plain_and_leaves_out_defaults(imported):
    exported = export_policy()
    text = dump_policy(exported)

    assert list(exported) == ["version", "default_tier", "providers", "models", "tiers", "categories", "routes", "alerts"]
    assert [p["slug"] for p in exported["providers"]] == ["anthropic", "bedrock", "openai", "zhipu"]
    assert [m["key"] for m in exported["models"]] == sorted(m["key"] for m in exported["models"])
    openai = next(p for p in exported["providers"] if p["slug"] == "openai")
    assert openai == {"slug": "openai", "kind": "openai", "credential_env": "OPENAI_API_KEY", "quotas": [
        {"metric": "tokens", "window": "day", "limit": 5000000, "soft_limit_ratio": 0.8},
        {"metric": "tokens", "window": "week", "limit": 25000000, "soft_limit_ratio": 0.8},
    ]}
    gpt4o = next(m for m in exported["models"] if m["key"] == "gpt-4o")
    assert gpt4o == {"key": "gpt-4o", "provider": "openai", "model_id": "gpt-4o", "input_cost_per_mtok": 2.5,
                     "output_cost_per_mtok": 10, "context_window": 128000}
    general = [r["complexity"] for r in exported["routes"] if r["category"] == "general"]
    assert general == ["low", "medium", "high"]
    sonnet_pool = next(q for q in exported["providers"][0]["quotas"] if q["name"] == "sonnet-pool")
    assert sonnet_pool["models"] == ["claude-3-5-sonnet", "claude-sonnet-4-5"]
    assert "5000000.000000" not in text and "0.800" not in text
    assert dump_policy(export_policy()) == text


def test_it_changes_only_what_differs(imported, example):
    gpt4o = LLMModel.objects.get(key="gpt-4o")
    other = LLMModel.objects.get(key="gpt-4o-mini")
    history = (gpt4o.history.count(), other.history.count())
    version = Policy.current().version
    next(m for m in example["models"] if m["key"] == "gpt-4o")["input_cost_per_mtok"] = 2

    assert apply_policy(example) is True

    gpt4o.refresh_from_db()
    assert gpt4o.input_cost_per_mtok == Decimal("2")
    assert (gpt4o.history.count(), other.history.count()) == (history[0] + 1, history[1])
    assert Policy.current().version == version + 1


def test_it_removes_what_the_file_no_longer_has(imported, example):
    example["routes"] = [r for r in example["routes"] if r["category"] != "bedrock_agent"]
    example["categories"] = [c for c in example["categories"] if c["slug"] != "bedrock_agent"]
    example["models"] = [m for m in example["models"] if m["key"] != "nova-pro"]
    example["tiers"] = [t for t in example["tiers"] if t["slug"] != "expensive"]
    for route in example["routes"]:
        route["models"] = [key for key in route["models"] if key != "claude-opus-4-5"]
    example["models"] = [m for m in example["models"] if m["key"] != "claude-opus-4-5"]
    anthropic = next(p for p in example["providers"] if p["slug"] == "anthropic")
    anthropic["quotas"] = [q for q in anthropic["quotas"] if q.get("name") != "opus-pool"]

    assert apply_policy(example) is True

    assert not LLMModel.objects.filter(key__in=["nova-pro", "claude-opus-4-5"]).exists()
    assert not Category.objects.filter(slug="bedrock_agent").exists()
    assert not Tier.objects.filter(slug="expensive").exists()
    assert not Quota.objects.filter(name="opus-pool").exists()
    assert Route.objects.get(category__slug="general", complexity="high").model_keys() == ["gpt-4-turbo", "claude-sonnet-4-5"]
    assert apply_policy(parse_policy(dump_policy(export_policy()))) is False


def test_it_rejects_removing_a_model_that_a_route_still_uses(imported, example):
    before = state()
    example["models"] = [m for m in example["models"] if m["key"] != "nova-pro"]

    with pytest.raises(PolicyError) as error:
        apply_policy(example)

    assert error.value.problems == ["routes[7].models[3]: unknown model 'nova-pro'"]
    assert state() == before


def test_it_reorders_a_route_and_replaces_the_default_tier(imported, example):
    route = next(r for r in example["routes"] if r["category"] == "auxiliary_agents")
    route["models"].reverse()
    example["default_tier"] = "cheap"

    assert apply_policy(example) is True

    assert Route.objects.get(category__slug="auxiliary_agents").model_keys() == [
        "gpt-4o-mini", "glm-4-5", "claude-3-5-haiku", "claude-3-5-sonnet"]
    assert Policy.current().default_tier.slug == "cheap"


def test_two_models_can_swap_their_model_ids(imported, example):
    models = {m["key"]: m for m in example["models"]}
    models["claude-sonnet-4-5"]["model_id"], models["claude-3-5-sonnet"]["model_id"] = (
        models["claude-3-5-sonnet"]["model_id"], models["claude-sonnet-4-5"]["model_id"])

    assert apply_policy(example) is True

    assert LLMModel.objects.get(key="claude-sonnet-4-5").model_id == "claude-3-5-sonnet-20241022"
    assert LLMModel.objects.get(key="claude-3-5-sonnet").model_id == "claude-sonnet-4-5-20250929"


def test_a_new_model_id_forgets_the_resolved_invoke_id(imported, example):
    LLMModel.objects.filter(key="bedrock-sonnet-4-5").update(
        invoke_id="us.anthropic.claude-sonnet-4-5-20250929-v1:0", availability="available")
    next(m for m in example["models"] if m["key"] == "bedrock-sonnet-4-5")["model_id"] = "anthropic.claude-sonnet-4-6-v1:0"

    apply_policy(example)

    model = LLMModel.objects.get(key="bedrock-sonnet-4-5")
    assert (model.model_id, model.invoke_id, model.availability) == ("anthropic.claude-sonnet-4-6-v1:0", "", "unknown")


def test_it_keeps_the_stored_secret_and_never_exports_it(imported, example):
    provider = Provider.objects.get(slug="openai")
    provider.set_secret("sk-plaintext-123")
    provider.save()

    apply_policy(example)

    provider.refresh_from_db()
    assert provider.api_key() == "sk-plaintext-123"
    text = dump_policy(export_policy()) + dump_policy(export_policy(), "json")
    assert "sk-plaintext-123" not in text and provider.encrypted_secret not in text and "secret" not in text


def test_it_rejects_a_secret_in_the_file(imported, example):
    before = state()
    example["providers"][0]["secret"] = "sk-plaintext-123"

    with pytest.raises(PolicyError) as error:
        apply_policy(example)

    assert error.value.problems == [
        "providers[0].secret: secrets are never read from the policy file: set the secret in the admin "
        "(the provider's page, 'New secret'), or name an environment variable in credential_env"]
    assert state() == before


def test_it_leaves_quotas_synced_from_aws_alone(imported, example):
    sonnet = LLMModel.objects.get(key="bedrock-sonnet-4-5")
    synced = QuotaFactory(provider=sonnet.provider, name="aws-rpm-sonnet", metric="requests", window="minute",
                          limit=Decimal("50"), source=Quota.Source.AWS, quota_code="L-12345", models=[sonnet])

    assert apply_policy(example) is False

    assert Quota.objects.get(pk=synced.pk).limit == Decimal("50")
    assert "aws-rpm-sonnet" not in dump_policy(export_policy())


def test_it_rejects_removing_a_model_or_provider_that_an_aws_quota_uses(imported, example):
    sonnet = LLMModel.objects.get(key="bedrock-sonnet-4-5")
    QuotaFactory(provider=sonnet.provider, name="aws-rpm-sonnet", source=Quota.Source.AWS, models=[sonnet])
    before = state()
    example["routes"] = [r for r in example["routes"] if r["category"] != "bedrock_agent"]
    example["models"] = [m for m in example["models"] if m["provider"] != "bedrock"]
    example["providers"] = [p for p in example["providers"] if p["slug"] != "bedrock"]

    with pytest.raises(PolicyError) as error:
        apply_policy(example)

    assert error.value.problems == [
        "providers: provider 'bedrock' is missing, but quota 'bedrock/aws-rpm-sonnet' synced from AWS Service Quotas belongs to it: "
        "keep the provider, or delete it in the admin"]
    assert state() == before


def bad(example: dict, change) -> dict:
    document = copy.deepcopy(example)
    change(document)
    return document


def set_in(path: list, value):
    def change(document):
        target = document
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value
    return change


BAD_FILES = {
    "unknown key": (set_in(["providers", 2, "regoin"], "eu-west-1"),
                    "providers[2].regoin: unknown key (did you mean 'region'?)"),
    "unknown provider": (set_in(["models", 3, "provider"], "opena"),
                         "models[3].provider: unknown provider 'opena' (known: anthropic, bedrock, openai, zhipu)"),
    "pool model of another provider": (set_in(["providers", 1, "quotas", 1, "models"], ["claude-opus-4-5", "gpt-4o"]),
                                       "providers[1].quotas[1].models[1]: model 'gpt-4o' belongs to provider 'openai', not 'anthropic'"),
    "ratio out of range": (set_in(["providers", 1, "quotas", 0, "soft_limit_ratio"], 1.5),
                           "providers[1].quotas[0].soft_limit_ratio: must be above 0 and at most 1, got 1.5"),
    "negative limit": (set_in(["providers", 0, "quotas", 0, "limit"], -5),
                       "providers[0].quotas[0].limit: must be above 0, got -5"),
    "duplicate model key": (lambda d: d["models"].append({**d["models"][0], "model_id": "gpt-4-turbo"}),
                            "models[12].key: duplicate model key 'gpt-4-turbo' (also models[0].key)"),
    "duplicate route": (set_in(["routes", 4, "complexity"], "low"),
                        "routes[4]: duplicate route for (general, low) (also routes[3])"),
    "unknown default tier": (set_in(["default_tier"], "mediun"),
                             "default_tier: unknown tier 'mediun' (known: cheap, expensive, medium, quality)"),
    "bedrock without region": (set_in(["providers", 2, "region"], ""), "providers[2].region: a Bedrock provider needs a region"),
    "unknown enum value": (set_in(["providers", 0, "quotas", 0, "window"], "month"),
                           "providers[0].quotas[0].window: must be one of minute, hour, day, week, got 'month'"),
    "model twice in a route": (set_in(["routes", 3, "models"], ["gpt-4o-mini", "gpt-4o-mini"]),
                               "routes[3].models[1]: model 'gpt-4o-mini' is listed twice"),
    "wrong type": (set_in(["models", 0, "context_window"], "big"), "models[0].context_window: must be a whole number, got 'big'"),
    "missing field": (lambda d: d["models"][0].pop("model_id"), "models[0].model_id: is required"),
    "burndown rate below 1": (set_in(["models", 0, "burndown_rate"], 0), "models[0].burndown_rate: must be from 1 to 100, got 0"),
    "burndown rate above 100": (set_in(["models", 0, "burndown_rate"], 101), "models[0].burndown_rate: must be from 1 to 100, got 101"),
    "negative cache price": (set_in(["models", 0, "cache_read_cost_per_mtok"], -1),
                             "models[0].cache_read_cost_per_mtok: must be 0 or more, got -1"),
}


@pytest.mark.parametrize("case", BAD_FILES, ids=list(BAD_FILES))
def test_it_rejects_a_bad_file_and_changes_nothing(imported, tmp_path, case):
    change, message = BAD_FILES[case]
    before = state()
    path = write(tmp_path, bad(imported, change))

    with pytest.raises(CommandError, match="1 problem found; nothing was changed"):
        run("import_policy", path)

    with pytest.raises(PolicyError) as error:
        apply_policy(parse_policy(Path(path).read_text()))
    assert error.value.problems == [message]
    assert state() == before


def test_it_reports_a_yaml_syntax_error_with_its_place(imported, tmp_path, capsys):
    before = state()
    text = EXAMPLE.read_text().replace("  - slug: anthropic\n", "  - slug: anthropic\n   kind: [oops\n", 1)

    with pytest.raises(PolicyError) as error:
        parse_policy(text)

    assert error.value.problems == ["line 17, column 4: YAML error: expected <block end>, but found '<block mapping start>'"]
    with pytest.raises(CommandError):
        run("import_policy", write(tmp_path, text))
    assert state() == before


def test_it_rejects_a_key_written_twice():
    with pytest.raises(PolicyError) as error:
        parse_policy("version: 1\nmodels: []\nmodels: []\n")

    assert error.value.problems == ["line 3, column 1: YAML error: duplicate key 'models'"]


def test_it_reports_a_json_syntax_error_with_its_place():
    with pytest.raises(PolicyError) as error:
        parse_policy('{"version": 1,\n "models": [}', "json")

    assert error.value.problems == ["line 2, column 13: JSON error: Expecting value"]


@pytest.mark.parametrize("text, message", [
    ("", "top level: the document is empty"),
    ("- a\n- b\n", "top level: must be a mapping with the keys version, default_tier, providers, models, tiers, categories, routes, got a list"),
])
def test_it_rejects_a_document_that_is_not_a_mapping(text, message):
    with pytest.raises(PolicyError) as error:
        parse_policy(text)

    assert error.value.problems == [message]


def test_a_file_with_several_problems_reports_all_of_them(imported, tmp_path):
    before = state()
    document = bad(imported, lambda d: [
        set_in(["models", 3, "provider"], "opena")(d),
        set_in(["providers", 1, "quotas", 0, "soft_limit_ratio"], 1.5)(d),
        set_in(["default_tier"], "mediun")(d),
        set_in(["routes", 0, "models"], ["gpt-4-turbbo"])(d),
        d.pop("tiers") and None,
        set_in(["colour"], "blue")(d),
    ])

    with pytest.raises(CommandError, match="6 problems found; nothing was changed"):
        run("import_policy", write(tmp_path, document))

    with pytest.raises(PolicyError) as error:
        apply_policy(document)
    assert error.value.problems == [
        "colour: unknown key (allowed: version, default_tier, providers, models, tiers, categories, routes, alerts)",
        "tiers: is required (write an empty list, [], for none)",
        "providers[1].quotas[0].soft_limit_ratio: must be above 0 and at most 1, got 1.5",
        "models[3].provider: unknown provider 'opena' (known: anthropic, bedrock, openai, zhipu)",
        "routes[0].models[0]: unknown model 'gpt-4-turbbo' (did you mean 'gpt-4-turbo'?)",
        "default_tier: unknown tier 'mediun' (known: none)",
    ]
    assert state() == before


def test_the_command_prints_every_problem_to_stderr(imported, tmp_path):
    document = bad(imported, lambda d: [set_in(["default_tier"], "mediun")(d), set_in(["version"], 2)(d)])
    path = write(tmp_path, document)
    err = io.StringIO()

    with pytest.raises(CommandError, match="2 problems found"):
        call_command("import_policy", path, stdout=io.StringIO(), stderr=err)

    assert err.getvalue().splitlines() == [
        f"{path}: version: must be 1, got 2",
        f"{path}: default_tier: unknown tier 'mediun' (known: cheap, expensive, medium, quality)",
    ]


def test_it_says_so_when_the_file_does_not_exist(tmp_path):
    with pytest.raises(CommandError, match="No such policy file: .*missing.yaml"):
        run("import_policy", str(tmp_path / "missing.yaml"))


def test_the_first_bootstrap_loads_the_policy_and_creates_an_admin(client):
    out, _ = run("bootstrap", "--policy", str(EXAMPLE))

    assert LLMModel.objects.count() == 12
    assert "Policy imported: version" in out
    password = next(line.split()[-1] for line in out.splitlines() if line.strip().startswith("password:"))
    assert "/admin/" in out and "user:     admin" in out and "manage.py changepassword admin" in out
    assert client.login(username="admin", password=password)
    assert get_user_model().objects.get(username="admin").is_superuser


def test_bootstrap_does_nothing_the_second_time():
    run("bootstrap", "--policy", str(EXAMPLE))
    version = Policy.current().version

    out, err = run("bootstrap", "--policy", str(EXAMPLE))

    assert (out, err) == ("", "")
    assert Policy.current().version == version
    assert get_user_model().objects.filter(is_superuser=True).count() == 1


def test_bootstrap_leaves_an_existing_policy_alone():
    LLMModelFactory(key="mine", provider=ProviderFactory(slug="own"))

    run("bootstrap", "--policy", str(EXAMPLE))

    assert list(LLMModel.objects.values_list("key", flat=True)) == ["mine"]


def test_export_writes_yaml_that_yaml_reads(imported):
    out, _ = run("export_policy")

    assert yaml.safe_load(out) == export_policy()


def test_a_burndown_rate_and_cache_prices_round_trip_and_defaults_stay_out_of_the_export(imported):
    document = copy.deepcopy(imported)
    sonnet = next(model for model in document["models"] if model["key"] == "bedrock-sonnet-4-5")
    sonnet |= {"burndown_rate": 3, "cache_read_cost_per_mtok": 0.3, "cache_write_cost_per_mtok": 3.75}

    assert apply_policy(copy.deepcopy(document)) is True

    exported = {model["key"]: model for model in export_policy()["models"]}
    assert {name: exported["bedrock-sonnet-4-5"][name] for name in ("burndown_rate", "cache_read_cost_per_mtok", "cache_write_cost_per_mtok")} == {
        "burndown_rate": 3, "cache_read_cost_per_mtok": 0.3, "cache_write_cost_per_mtok": 3.75}
    assert "burndown_rate" not in exported["bedrock-sonnet-3-7"]
    assert apply_policy(export_policy()) is False

