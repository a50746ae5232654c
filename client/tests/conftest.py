"""The client's tests run against the real Switchboard server and the provider stand-ins of tests/standins.

One server per test session (sb_server.py): a temporary directory holds its SQLite database; `migrate`, `import_policy`
(the policy below, pointing at the stand-ins) and `create_api_key` run
in one process, then `manage.py runserver --noreload` serves it on a free port until the session ends. The stand-ins
(AnthropicStandIn, OpenAIStandIn, BedrockStandIn) run in this process; boto3 reaches the Bedrock one through
AWS_ENDPOINT_URL_BEDROCK_RUNTIME, the anthropic and openai SDKs through the policy's `base_url`s.

Tests share the server, so each test that changes what the server knows (failures that feed cooldowns, `not_found`
reports, quotas) uses categories and models of its own, declared in ROUTES and MODELS.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from sb_server import Server, prepare, server_env

from tests.standins import AnthropicStandIn, BedrockStandIn, OpenAIStandIn

BIG = {"requests_per_minute": 100_000}
ANTHROPIC_LIMITS = {**BIG, "input_tokens_per_minute": 100_000_000, "output_tokens_per_minute": 100_000_000}
OPENAI_LIMITS = {**BIG, "tokens_per_minute": 100_000_000}

# Stand-in model ids and their behaviour. A model id the stand-in does not list answers 404 (Bedrock: 400 invalid id).
ANTHROPIC_STANDIN = {name: dict(ANTHROPIC_LIMITS) for name in (
    "claude-a", "claude-b", "claude-c", "claude-d", "claude-429", "claude-429-async", "claude-500", "claude-400", "claude-other",
    "claude-exhaust-1", "claude-exhaust-2", "claude-handed", "claude-stream", "claude-cache", "claude-routed-fail",
    "claude-chat", "claude-mixed", "claude-threads", "claude-failopen",
)}
# Output tokens per minute that admit one call of 1,000 and make the next wait about 2 s (retry-after 3).
ANTHROPIC_STANDIN["claude-storm"] = {**ANTHROPIC_LIMITS, "output_tokens_per_minute": 1935}
ANTHROPIC_STANDIN["claude-storm-cap"] = {**ANTHROPIC_LIMITS, "output_tokens_per_minute": 1935}
ANTHROPIC_STANDIN["claude-storm-async"] = {**ANTHROPIC_LIMITS, "output_tokens_per_minute": 1935}
ANTHROPIC_STANDIN["claude-snap"] = {**ANTHROPIC_LIMITS, "answered_by": "claude-other"}
OPENAI_STANDIN = {name: dict(OPENAI_LIMITS) for name in ("gpt-a", "gpt-b", "gpt-500", "gpt-500-async", "glm-a", "gpt-cache", "gpt-stream",
                                                         "gpt-chat", "gpt-mixed", "gpt-threads")}
OPENAI_STANDIN["gpt-alias"] = {**OPENAI_LIMITS, "answered_by": "gpt-alias-2024-08-06"}
SONNET = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
HAIKU = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
ROUTER = "us.anthropic.claude-router-v1:0"
NOVA = "amazon.nova-pro-v1:0"
NOVA_LITE = "amazon.nova-lite-v1:0"
BEDROCK_STANDIN: dict[str, Any] = {SONNET: {}, HAIKU: {}, NOVA: {}, NOVA_LITE: {}, ROUTER: {"answered_by": HAIKU}}

# Switchboard models: key -> (provider slug, model id).
MODELS = {
    **{key: ("anthropic", key) for key in ANTHROPIC_STANDIN},
    "claude-nf": ("anthropic", "claude-missing-1"), "claude-nf-async": ("anthropic", "claude-missing-2"),
    "claude-off": ("anthropic", "claude-off"), "claude-quota": ("anthropic", "claude-quota"), "claude-quota-b": ("anthropic", "claude-quota-b"),
    "claude-quota-never": ("anthropic", "claude-quota-never"), "claude-rl": ("anthropic", "claude-rl"),
    **{key: ("openai", key) for key in OPENAI_STANDIN if key != "glm-a"},
    "glm-a": ("glm", "glm-a"), "gpt-routed-nf": ("openai", "gpt-routed-nf"), "gpt-release": ("openai", "gpt-release"),
    "bedrock-sonnet": ("bedrock", SONNET), "bedrock-haiku": ("bedrock", HAIKU), "bedrock-router": ("bedrock", ROUTER),
    "nova-pro": ("bedrock", NOVA), "bedrock-missing": ("bedrock", "us.anthropic.claude-missing-v1:0"),
    "nova-lite": ("bedrock", NOVA_LITE), "claude-nf-named": ("anthropic", "claude-missing-3"),
}
DISABLED = {"claude-off"}
# category -> route (primary first). Categories in NEVER do not fall back.
ROUTES = {
    "messages": ["claude-a", "claude-b"],
    "chat": ["gpt-a", "gpt-b"],
    "compat": ["glm-a"],
    "converse": ["nova-pro"],
    "bedrock_claude": ["bedrock-sonnet"],
    "mixed": ["gpt-a", "nova-pro", "claude-c"],
    "retry_429": ["claude-429", "claude-b"],
    "retry_429_async": ["claude-429-async", "claude-b"],
    "retry_404": ["claude-nf", "claude-b"],
    "retry_404_async": ["claude-nf-async", "claude-b"],
    "retry_404_bedrock": ["bedrock-missing", "nova-pro"],
    "retry_5xx": ["gpt-500", "gpt-b"],
    "retry_5xx_async": ["gpt-500-async", "gpt-b"],
    "exhaust": ["claude-exhaust-1", "claude-exhaust-2", "claude-d"],
    "bad_request": ["claude-400"],
    "handed": ["claude-handed"],
    "snapshot": ["claude-snap"],
    "alias": ["gpt-alias"],
    "prompt_router": ["bedrock-router"],
    "streams": ["claude-stream"],
    "chat_streams": ["gpt-stream"],
    "cache": ["claude-cache"],
    "chat_cache": ["gpt-cache"],
    "routed": ["claude-d"],
    "routed_fail": ["claude-routed-fail"],
    "routed_not_found": ["gpt-routed-nf"],
    "idempotent": ["claude-d"],
    "report_statuses": ["claude-rl"],
    "disabled_never": ["claude-off"],
    "disabled_allow": ["claude-off"],
    "quota_never": ["claude-quota-never"],
    "quota_allow": ["claude-quota", "claude-quota-b"],
    "attempts": ["claude-d", "claude-b"],
    "safe_retries": ["claude-d"],
    "release": ["gpt-release"],
    # sb.chat: mixed families, each provider first in one of them.
    "neutral_anthropic": ["claude-chat", "gpt-chat", "nova-lite"],
    "neutral_openai": ["gpt-chat", "nova-lite", "claude-chat"],
    "neutral_bedrock": ["nova-lite", "claude-chat", "gpt-chat"],
    "mixed_family": ["gpt-mixed", "claude-mixed"],
    "threads": ["gpt-threads", "claude-threads"],
    "storm": ["claude-storm", "claude-b"],
    "storm_cap": ["claude-storm-cap", "claude-b"],
    "storm_async": ["claude-storm-async", "claude-b"],
    "named_404": ["claude-nf-named"],
    "failopen": ["claude-failopen"],
}
NEVER = {"disabled_never", "quota_never", "storm", "storm_cap", "storm_async"}
# Routes that limit attempts (`max_attempts`): a route past it is refused with 429 attempts_exhausted.
MAX_ATTEMPTS = {"attempts": 2}


def policy(urls: dict[str, str]) -> dict[str, Any]:
    one_request = {"metric": "requests", "window": "minute", "limit": 1, "soft_limit_ratio": 1.0}
    return {
        "version": 1,
        "default_tier": "default",
        "providers": [
            {"slug": "anthropic", "kind": "anthropic", "base_url": urls["anthropic"], "credential_env": "ANTHROPIC_API_KEY", "quotas": [
                {"name": "failopen-requests", "metric": "requests", "window": "day", "limit": 1_000_000, "models": ["claude-failopen"]},
                {**one_request, "name": "quota-never", "models": ["claude-quota-never"]},
                {**one_request, "name": "quota-allow", "models": ["claude-quota"]},
                {**one_request, "name": "quota-allow-b", "models": ["claude-quota-b"]},
            ]},
            {"slug": "openai", "kind": "openai", "base_url": urls["openai"] + "/v1", "credential_env": "OPENAI_API_KEY", "quotas": [
                {"name": "release-tpm", "metric": "tokens", "window": "minute", "limit": 1_000_000, "soft_limit_ratio": 1.0,
                 "models": ["gpt-release"]},
                {"name": "gpt-mixed-tpm", "metric": "tokens", "window": "minute", "limit": 1_000_000, "soft_limit_ratio": 1.0,
                 "models": ["gpt-mixed"]},
            ]},
            {"slug": "glm", "kind": "openai_compatible", "base_url": urls["openai"] + "/v1", "credential_env": "GLM_API_KEY", "quotas": []},
            {"slug": "bedrock", "kind": "bedrock", "region": "us-east-1", "quotas": []},
        ],
        "models": [{"key": key, "provider": provider, "model_id": model_id, "context_window": 200_000, "input_cost_per_mtok": 1,
                    "output_cost_per_mtok": 5, **({"enabled": False} if key in DISABLED else {})}
                   for key, (provider, model_id) in MODELS.items()],
        "tiers": [{"slug": "default", "models": ["claude-a"]}],
        "categories": [{"slug": category, "fallback": "never" if category in NEVER else "allow"} for category in ROUTES],
        "routes": [{"category": category, "complexity": "any", "models": models,
                    **({"max_attempts": MAX_ATTEMPTS[category]} if category in MAX_ATTEMPTS else {})}
                   for category, models in ROUTES.items()],
    }


@pytest.fixture(scope="session")
def standins() -> Iterator[dict[str, Any]]:
    anthropic = AnthropicStandIn(ANTHROPIC_STANDIN, round_token_headers=False).start()
    openai = OpenAIStandIn(OPENAI_STANDIN).start()
    bedrock = BedrockStandIn(BEDROCK_STANDIN).start()
    try:
        yield {"anthropic": anthropic, "openai": openai, "bedrock": bedrock}
    finally:
        for standin in (anthropic, openai, bedrock):
            standin.stop()


@pytest.fixture(scope="session", autouse=True)
def provider_environment(standins: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """What a service's environment holds: the SDKs' keys and AWS credentials (pointing boto3 at the stand-in)."""
    empty = tmp_path_factory.mktemp("aws") / "none"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "ANTHROPIC_API_KEY": "sk-ant-test", "OPENAI_API_KEY": "sk-test", "GLM_API_KEY": "glm-test",
            "AWS_ACCESS_KEY_ID": "AKIDTEST", "AWS_SECRET_ACCESS_KEY": "test-secret", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": standins["bedrock"].url, "AWS_CONFIG_FILE": str(empty),
            "AWS_SHARED_CREDENTIALS_FILE": str(empty), "AWS_EC2_METADATA_DISABLED": "true",
        }.items():
            patch.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "ANTHROPIC_BASE_URL", "OPENAI_BASE_URL", "ANTHROPIC_AUTH_TOKEN"):
            patch.delenv(name, raising=False)
        yield


@pytest.fixture(scope="session")
def switchboard(standins: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The running server: {"url", "key" (route, usage, read, admin), "no_read_key", "var_dir", "env"}."""
    var_dir = tmp_path_factory.mktemp("switchboard")
    urls = {name: standin.url for name, standin in standins.items()}
    (var_dir / "policy.json").write_text(json.dumps(policy(urls)))
    env = server_env(var_dir)
    state = prepare(env, var_dir / "policy.json")
    server = Server(var_dir, env).start()
    try:
        yield {"url": server.url, "key": state["keys"]["client-tests"], "no_read_key": state["keys"]["no-read"],
               "var_dir": var_dir, "env": env}
    finally:
        server.stop()


@pytest.fixture
def sb(switchboard: dict[str, Any]) -> Iterator[Any]:
    from switchboard_client import Switchboard

    client = Switchboard(switchboard["url"], switchboard["key"], backoff=0.001)
    yield client
    client.close()


@pytest.fixture
def admin(switchboard: dict[str, Any]) -> Iterator[httpx2.Client]:
    """A plain HTTP client on the server's API with the test key, to check what the server recorded."""
    with httpx2.Client(base_url=switchboard["url"], headers={"Authorization": f"Bearer {switchboard['key']}"}) as client:
        yield client


def recorded(admin: httpx2.Client, category: str, decision_id: str) -> dict[str, Any]:
    """The decision as GET /api/v1/decisions shows it."""
    url: str | None = f"/api/v1/decisions?category={category}"
    while url:
        page = admin.get(url).raise_for_status().json()
        for row in page["results"]:
            if row["decision_id"] == decision_id:
                return row
        url = page["next"]
    raise AssertionError(f"decision {decision_id} not listed under {category}")


def decisions(admin: httpx2.Client, category: str) -> list[dict[str, Any]]:
    """Every decision of a category, oldest first."""
    rows: list[dict[str, Any]] = []
    url: str | None = f"/api/v1/decisions?category={category}"
    while url:
        page = admin.get(url).raise_for_status().json()
        rows.extend(page["results"])
        url = page["next"]
    return list(reversed(rows))
