"""README "Integrate a service", in a new terminal: the Python client's lines (the service's environment
naming Switchboard, its key and the provider's credentials), and the shell's key, route and usage report,
as written."""

import json
import shlex
import sys

import pytest
import yaml

from tests.e2e.processes import KEY_LINE, REPO, Service, block_in, stop_services

STANDIN_OUTPUT_TOKENS = 5


@pytest.fixture(scope="module")
def anthropic_standin(e2e_dir):
    """Anthropic's Messages API as the repository's stand-in serves it (tests/standins), for the example
    policy's Anthropic models: there is no internet here, and no Anthropic key."""
    policy = yaml.safe_load((REPO / "policy.example.yaml").read_text())
    providers = {provider["slug"] for provider in policy["providers"] if provider["kind"] == "anthropic"}
    argv = [sys.executable, "-m", "tests.standins", "--anthropic-port", "0", "--output-tokens", str(STANDIN_OUTPUT_TOKENS)]
    for model in policy["models"]:
        if model["provider"] in providers:
            argv += ["--model", "anthropic", model["model_id"]]
    service = Service("anthropic stand-in", argv, REPO, e2e_dir / "anthropic-standin.log")
    try:
        yield json.loads(service.wait_for_log(r'^\{.*"anthropic".*\}$', 30).group(0))["anthropic"]
    finally:
        stop_services([service], [service])
        service.kill_leftovers()


def test_the_python_client_routes_calls_and_reports_as_written(deployment, readme_blocks, anthropic_standin):
    block = block_in(readme_blocks, "Integrate a service", language="python")
    service = deployment.home / "service.py"
    service.write_text(block.text)
    key = deployment.key("route,usage,read")

    # The block's section: the client reads SWITCHBOARD_URL and SWITCHBOARD_KEY, the SDK its credentials
    # ("credentials from the service's own environment"); ANTHROPIC_BASE_URL points the SDK at the stand-in.
    result = deployment.shell(f".venv/bin/python {shlex.quote(str(service))}", prelude=False, extra_env={
        "SWITCHBOARD_URL": deployment.base_url, "SWITCHBOARD_KEY": key,
        "ANTHROPIC_API_KEY": "sk-ant-e2e", "ANTHROPIC_BASE_URL": anthropic_standin,
    })

    assert result.returncode == 0, f"{block}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    assert result.stdout.strip() == "word" * STANDIN_OUTPUT_TOKENS, result.stdout
    newest = deployment.http(key).get("/api/v1/decisions?category=auxiliary_agents").json()["results"][0]
    assert newest["model"]["key"].startswith("claude") and newest["outcome"] == "primary", newest


def test_the_shell_commands_route_and_report_as_written(deployment, readme_blocks):
    run = deployment.run_block(block_in(readme_blocks, "Integrate a service"))

    assert run.result.returncode == 0, run
    assert [call.status for call in run.calls] == [200, 201], run
    answer_line, usage_line = run.stdout.strip().splitlines()
    answer, usage = json.loads(answer_line), json.loads(usage_line)
    assert answer["outcome"] in {"primary", "fallback"}, answer
    assert answer["decision_id"] and answer["model"]["invoke_id"] and answer["model"]["provider"], answer
    assert usage["decision_id"] == answer["decision_id"], usage
    assert usage["model"] == {"key": answer["model"]["key"], "provider": answer["model"]["provider"]}, usage
    assert (usage["input_tokens"], usage["output_tokens"], usage["status"]) == (1100, 640, "ok")
    assert usage["idempotency_key"] == f"call-{answer['decision_id']}"

    audit = deployment.http(deployment.key("route,usage,read")).get(f"/api/v1/decisions?model={answer['model']['key']}")
    assert answer["decision_id"] in [row["decision_id"] for row in audit.json()["results"]], audit


def test_create_api_key_prints_the_key_alone_on_its_last_line(deployment):
    result = deployment.manage("create_api_key", "e2e-last-line", "--scopes", "route,usage,read")

    assert result.returncode == 0, result.stderr
    key = result.stdout.strip().splitlines()[-1]
    assert KEY_LINE.match(key) and result.stdout.strip() == key, result.stdout
    assert "cannot be shown again" in result.stderr
    assert deployment.http(key).get("/api/v1/models").status == 200
    assert deployment.http(key + "x").get("/api/v1/models").status == 401
