"""The Bedrock runtime stand-in, driven through boto3's bedrock-runtime client: usage, AWS's documented token counting
(input + max_tokens at the start; input + cache writes + output x burndown rate at the end, cache reads released),
ThrottlingException, profile-only models, streaming in the event-stream framing, the clock; and the command line."""

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.standins import BedrockModel, BedrockStandIn, FakeClock, default_burndown_rate, default_max_output, filler_text
from tests.standins.bedrock_runtime import event_message

SONNET_4_5 = "anthropic.claude-sonnet-4-5-20250929-v1:0"
US_SONNET_4_5 = f"us.{SONNET_4_5}"
NOVA_PRO = "amazon.nova-pro-v1:0"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def client_for(standin: BedrockStandIn):
    return boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=standin.url,
                        aws_access_key_id="AKIAFAKEFAKEFAKEFAKE", aws_secret_access_key="fake-secret-access-key",
                        config=Config(retries={"total_max_attempts": 1}))


def converse(client, model: str = US_SONNET_4_5, text: str = "Hello", max_tokens: int | None = 1_200, system=None, stream: bool = False):
    kwargs = {"modelId": model, "messages": [{"role": "user", "content": [{"text": text}]}]}
    if max_tokens is not None:
        kwargs["inferenceConfig"] = {"maxTokens": max_tokens}
    if system:
        kwargs["system"] = system
    return client.converse_stream(**kwargs) if stream else client.converse(**kwargs)


def error_code(error: ClientError) -> str:
    return error.response["Error"]["Code"]


def test_a_call_reports_its_usage(clock):
    with BedrockStandIn({US_SONNET_4_5: BedrockModel(tokens_per_minute=30_000)}, clock=clock) as standin:
        response = converse(client_for(standin), text="x" * 400 + "[[output_tokens=300]]")
    assert response["stopReason"] == "end_turn"
    assert response["output"]["message"]["content"][0]["text"] == filler_text(300)
    assert response["usage"] == {"inputTokens": 100, "outputTokens": 300, "totalTokens": 400, "cacheReadInputTokens": 0, "cacheWriteInputTokens": 0}
    assert response["ResponseMetadata"]["RequestId"]
    # The profile id arrives URL-encoded, as botocore sends it, and is counted under its own id.
    assert standin.requests[0].path == "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse"
    assert standin.calls[0].model == US_SONNET_4_5
    assert standin.calls[0].counted == {"requests": 1, "tokens_at_admission": 100 + 1_200, "tokens": 100 + 300 * 5}


def test_a_sonnet_4_5_quota_admits_calls_until_the_burned_down_charge_is_exhausted(clock):
    """30,000 tokens a minute; each call 1,500 input, maxTokens 1,200, 600 output: admitted while
    used + 1,500 + 1,200 <= 30,000, then charged 1,500 + 5 x 600 = 4,500."""
    with BedrockStandIn({US_SONNET_4_5: BedrockModel(tokens_per_minute=30_000)}, clock=clock) as standin:
        client = client_for(standin)
        admitted = 0
        with pytest.raises(ClientError) as throttled:
            for _ in range(20):
                converse(client, text="[[input_tokens=1500]] [[output_tokens=600]]", max_tokens=1_200)
                admitted += 1
    used_before_last_admission = 4_500 * (admitted - 1)
    assert used_before_last_admission + 2_700 <= 30_000 < 4_500 * admitted + 2_700
    assert admitted == 7
    error = throttled.value
    assert error_code(error) == "ThrottlingException"
    assert error.response["Error"]["Message"] == "Too many tokens, please wait before trying again."
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert [call.counted["tokens"] for call in standin.calls if not call.throttled] == [4_500] * 7
    assert standin.throttled()[0].limit == "tokens"


def test_other_models_burn_output_tokens_one_for_one(clock):
    with BedrockStandIn({NOVA_PRO: BedrockModel(tokens_per_minute=30_000)}, clock=clock) as standin:
        converse(client_for(standin), model=NOVA_PRO, text="[[input_tokens=1500]] [[output_tokens=600]]")
    assert standin.calls[0].counted == {"requests": 1, "tokens_at_admission": 2_700, "tokens": 2_100}


@pytest.mark.parametrize(("model", "rate"), [
    (SONNET_4_5, 5), (US_SONNET_4_5, 5), ("global.anthropic.claude-haiku-4-5-20251001-v1:0", 5),
    ("anthropic.claude-opus-4-20250514-v1:0", 5), ("anthropic.claude-opus-4-1-20250805-v1:0", 5), ("eu.anthropic.claude-sonnet-4-20250514-v1:0", 5),
    ("anthropic.claude-opus-4-6-v1", 5), ("anthropic.claude-3-7-sonnet-20250219-v1:0", 1), ("us.anthropic.claude-3-5-sonnet-20241022-v2:0", 1),
    (NOVA_PRO, 1), ("meta.llama3-70b-instruct-v1:0", 1),
])
def test_the_default_burndown_rate_is_5_for_claude_4_and_later(model, rate):
    assert default_burndown_rate(model) == rate


def test_the_burndown_rate_can_be_set_per_model(clock):
    with BedrockStandIn({NOVA_PRO: BedrockModel(burndown_rate=3)}, clock=clock) as standin:
        converse(client_for(standin), model=NOVA_PRO, text="[[input_tokens=100]] [[output_tokens=10]]")
    assert standin.calls[0].counted["tokens"] == 130


def test_a_call_without_max_tokens_is_charged_the_models_maximum_output(clock):
    assert default_max_output(US_SONNET_4_5) == 64_000
    assert default_max_output("anthropic.claude-opus-4-1-20250805-v1:0") == 32_000
    models = {US_SONNET_4_5: BedrockModel(tokens_per_minute=60_000), NOVA_PRO: BedrockModel(tokens_per_minute=60_000, default_max_tokens=5_000)}
    with BedrockStandIn(models, clock=clock) as standin:
        client = client_for(standin)
        with pytest.raises(ClientError) as throttled:
            converse(client, max_tokens=None)
        converse(client, model=NOVA_PRO, max_tokens=None)
    assert error_code(throttled.value) == "ThrottlingException"
    assert standin.calls[-1].counted["tokens_at_admission"] == 2 + 5_000  # "Hello": 2 tokens


def test_cache_reads_are_charged_at_the_start_and_released_at_the_end(clock):
    system = [{"text": filler_text(2_000)}, {"cachePoint": {"type": "default"}}]
    with BedrockStandIn({US_SONNET_4_5: BedrockModel(tokens_per_minute=100_000)}, clock=clock) as standin:
        client = client_for(standin)
        first = converse(client, text="x" * 40 + "[[output_tokens=100]]", system=system, max_tokens=1_000)["usage"]
        second = converse(client, text="x" * 40 + "[[output_tokens=100]]", system=system, max_tokens=1_000)["usage"]
        clock.advance(301)
        third = converse(client, text="x" * 40, system=system)["usage"]
    assert first == {"inputTokens": 10, "outputTokens": 100, "totalTokens": 2_110, "cacheReadInputTokens": 0, "cacheWriteInputTokens": 2_000}
    assert second == {"inputTokens": 10, "outputTokens": 100, "totalTokens": 2_110, "cacheReadInputTokens": 2_000, "cacheWriteInputTokens": 0}
    assert third["cacheWriteInputTokens"] == 2_000
    assert standin.calls[0].counted == {"requests": 1, "tokens_at_admission": 10 + 2_000 + 1_000, "tokens": 10 + 2_000 + 500}
    assert standin.calls[1].counted == {"requests": 1, "tokens_at_admission": 10 + 2_000 + 1_000, "tokens": 10 + 500}


def test_a_call_in_flight_holds_its_input_and_max_tokens(clock):
    with BedrockStandIn({US_SONNET_4_5: BedrockModel(tokens_per_minute=10_000)}, clock=clock) as standin:
        client = client_for(standin)
        with standin.paused():
            first = {"text": "[[input_tokens=1000]] [[output_tokens=100]]", "max_tokens": 5_000}
            worker = threading.Thread(target=converse, args=(client,), kwargs=first)
            worker.start()
            assert standin.wait_in_flight(1)
            with pytest.raises(ClientError) as throttled:
                converse(client, text="[[input_tokens=1000]]", max_tokens=5_000)
            assert error_code(throttled.value) == "ThrottlingException"
        worker.join(5)
        converse(client, text="[[input_tokens=1000]]", max_tokens=5_000)
    assert [call.throttled for call in standin.calls] == [True, False, False]


def test_requests_per_minute_count_one_per_call_and_the_window_rolls(clock):
    with BedrockStandIn({US_SONNET_4_5: BedrockModel(requests_per_minute=2)}, clock=clock) as standin:
        client = client_for(standin)
        converse(client)
        clock.advance(20)
        converse(client)
        with pytest.raises(ClientError) as throttled:
            converse(client)
        assert throttled.value.response["Error"]["Message"] == "Too many requests, please wait before trying again."
        clock.advance(40)  # the first call leaves the window
        converse(client)
        with pytest.raises(ClientError):
            converse(client)


def test_a_daily_quota_throttles_with_its_own_message(clock):
    with BedrockStandIn({US_SONNET_4_5: BedrockModel(tokens_per_day=5_000)}, clock=clock) as standin:
        client = client_for(standin)
        converse(client, text="[[output_tokens=100]]", max_tokens=1_000)
        clock.advance(3_600)
        converse(client, text="[[output_tokens=100]]", max_tokens=1_000)
        clock.advance(3_600)
        with pytest.raises(ClientError) as throttled:
            converse(client, max_tokens=4_500)
    assert throttled.value.response["Error"]["Message"] == "Too many tokens per day, please wait before trying again."


def test_streaming_sends_event_stream_messages_with_usage_in_the_metadata_event(clock):
    with BedrockStandIn({US_SONNET_4_5: BedrockModel(tokens_per_minute=30_000)}, clock=clock) as standin:
        client = client_for(standin)
        events = list(converse(client, text="x" * 40 + "[[output_tokens=50]]", stream=True)["stream"])
        capped = list(converse(client, text="x" * 40, max_tokens=30, stream=True)["stream"])
        standin.configure(US_SONNET_4_5, tokens_per_minute=100)
        with pytest.raises(ClientError) as throttled:
            converse(client, text="x" * 40, stream=True)
    kinds = [next(iter(event)) for event in events]
    assert kinds[0] == "messageStart" and events[0]["messageStart"] == {"role": "assistant"}
    assert kinds[-3:] == ["contentBlockStop", "messageStop", "metadata"]
    assert "".join(event["contentBlockDelta"]["delta"]["text"] for event in events if "contentBlockDelta" in event) == filler_text(50)
    assert events[-1]["metadata"]["usage"] == {"inputTokens": 10, "outputTokens": 50, "totalTokens": 60, "cacheReadInputTokens": 0,
                                               "cacheWriteInputTokens": 0}
    assert capped[-2]["messageStop"]["stopReason"] == "max_tokens"
    assert capped[-1]["metadata"]["usage"]["outputTokens"] == 30
    assert error_code(throttled.value) == "ThrottlingException"
    assert standin.calls[0].stream and standin.calls[0].counted["tokens"] == 10 + 250


def test_the_event_stream_framing_is_what_botocore_decodes():
    from botocore.eventstream import EventStreamBuffer

    buffer = EventStreamBuffer()
    buffer.add_data(event_message({":event-type": "messageStart", ":message-type": "event"}, b'{"role": "assistant"}'))
    message = next(iter(buffer))
    assert message.headers == {":event-type": "messageStart", ":message-type": "event"}
    assert json.loads(message.payload) == {"role": "assistant"}


def test_a_profile_only_model_invoked_directly_is_a_validation_error(clock):
    models = {SONNET_4_5: BedrockModel(profile_only=True), US_SONNET_4_5: BedrockModel()}
    with BedrockStandIn(models, clock=clock) as standin:
        client = client_for(standin)
        with pytest.raises(ClientError) as direct:
            converse(client, model=SONNET_4_5)
        converse(client, model=US_SONNET_4_5)
        arn = f"arn:aws:bedrock:us-east-1:123456789012:inference-profile/{US_SONNET_4_5}"
        converse(client, model=arn)
    assert error_code(direct.value) == "ValidationException"
    assert "with on-demand throughput isn’t supported" in direct.value.response["Error"]["Message"]
    assert [call.model for call in standin.calls] == [SONNET_4_5, US_SONNET_4_5, US_SONNET_4_5]


@pytest.mark.parametrize(("setup", "status", "code"), [
    ({"reachable": False}, 403, "AccessDeniedException"),
    ({"fail_status": 404}, 404, "ResourceNotFoundException"),
    ({"fail_status": 500}, 500, "InternalServerException"),
    ({"fail_status": 503}, 503, "ServiceUnavailableException"),
])
def test_unreachable_and_failing_models_answer_the_aws_error(clock, setup, status, code):
    with BedrockStandIn({US_SONNET_4_5: BedrockModel(tokens_per_minute=1_300, **setup)}, clock=clock) as standin:
        with pytest.raises(ClientError) as failed:
            converse(client_for(standin))
        assert error_code(failed.value) == code
        assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
        standin.configure(US_SONNET_4_5, reachable=True, fail_status=None)
        converse(client_for(standin))  # the failure counted nothing: the whole quota is left for this call


def test_an_unknown_model_id_is_invalid(clock):
    with BedrockStandIn({}, clock=clock) as standin:
        with pytest.raises(ClientError) as invalid:
            converse(client_for(standin), model="us.anthropic.claude-3-5-sonnet-v2:0")
    assert error_code(invalid.value) == "ValidationException"
    assert invalid.value.response["Error"]["Message"] == "The provided model identifier is invalid."


def test_another_model_answering_is_reported_in_the_trace_and_counted_against_it(clock):
    haiku = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
    models = {US_SONNET_4_5: BedrockModel(tokens_per_minute=10_000, answered_by=haiku), haiku: BedrockModel(tokens_per_minute=10_000)}
    with BedrockStandIn(models, clock=clock) as standin:
        client = client_for(standin)
        response = converse(client, text="[[input_tokens=1000]] [[output_tokens=100]]", max_tokens=2_000)
        streamed = list(converse(client, text="[[input_tokens=1000]] [[output_tokens=100]]", max_tokens=2_000, stream=True)["stream"])
        # Haiku holds the two calls' 1,500 each; 8,000 more would not fit.
        with pytest.raises(ClientError):
            converse(client, model=haiku, text="[[input_tokens=1000]]", max_tokens=7_000)
        # Sonnet's window was given its charges back.
        converse(client, text="[[input_tokens=1000]] [[output_tokens=100]]", max_tokens=9_000)
    assert response["trace"]["promptRouter"]["invokedModelId"] == haiku
    assert streamed[-1]["metadata"]["trace"]["promptRouter"]["invokedModelId"] == haiku
    assert standin.calls[0].answered_by == haiku


def test_the_command_line_serves_all_three_until_sigterm(tmp_path):
    config = tmp_path / "limits.json"
    config.write_text(json.dumps({"openai": {"models": {"gpt-4.1": {"tokens_per_minute": 1000}}}}))
    calls_log = tmp_path / "calls.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.standins", "--anthropic-port", "0", "--bedrock-port", "0", "--config", str(config),
         "--model", "anthropic", "claude-sonnet-4-6", "requests_per_minute=1",
         "--model", "bedrock", US_SONNET_4_5, "tokens_per_minute=30000", "--model", "bedrock", SONNET_4_5, "profile_only=true",
         "--calls-log", str(calls_log)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        urls = json.loads(process.stdout.readline())
        assert set(urls) == {"anthropic", "openai", "bedrock"}
        import anthropic
        import openai

        claude = anthropic.Anthropic(base_url=urls["anthropic"], api_key="x", max_retries=0)
        claude.messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=[{"role": "user", "content": "Hi"}])
        with pytest.raises(anthropic.RateLimitError):
            claude.messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=[{"role": "user", "content": "Hi"}])
        gpt = openai.OpenAI(base_url=urls["openai"] + "/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.RateLimitError):
            gpt.chat.completions.create(model="gpt-4.1", max_tokens=2_000, messages=[{"role": "user", "content": "Hi"}])
        bedrock = boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=urls["bedrock"], aws_access_key_id="AKIAFAKE",
                               aws_secret_access_key="fake", config=Config(retries={"total_max_attempts": 1}))
        converse(bedrock)
        with pytest.raises(ClientError):
            converse(bedrock, model=SONNET_4_5)
        with urllib.request.urlopen(urls["bedrock"] + "/_standin/calls") as answer:
            recorded = json.load(answer)["calls"]
        assert [call["status"] for call in recorded] == [200, 400]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    lines = [json.loads(line) for line in calls_log.read_text().splitlines()]
    assert [(line["provider"], line["status"]) for line in lines] == [("anthropic", 200), ("anthropic", 429), ("openai", 429),
                                                                      ("bedrock", 200), ("bedrock", 400)]
