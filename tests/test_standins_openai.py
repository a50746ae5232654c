"""The OpenAI stand-in, driven through the official openai SDK: usage, the documented counting (the maximum of max_tokens
and the character estimate, charged at admission, never refunded, throttled requests included), headers, 429s,
prompt caching, streaming, the clock."""

import openai
import pytest

from tests.standins import FakeClock, OpenAIModel, OpenAIStandIn, filler_text
from tests.standins.openai_chat import go_duration

GPT = "gpt-4.1"


def limited(**limits) -> dict:
    return {GPT: OpenAIModel(**limits)}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def client_for(standin: OpenAIStandIn) -> openai.OpenAI:
    return openai.OpenAI(base_url=standin.url + "/v1", api_key="sk-proj-test", max_retries=0)


def chat(client: openai.OpenAI, text: str = "Hello", model: str = GPT, **kwargs):
    return client.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": text}], **kwargs)


def test_a_call_reports_its_usage_and_the_rate_limit_headers(clock):
    with OpenAIStandIn(limited(requests_per_minute=60, tokens_per_minute=60_000), clock=clock) as standin:
        raw = chat(client_for(standin), "x" * 400 + "[[output_tokens=30]]", max_tokens=500)
    completion = raw.parse()
    assert completion.model == GPT
    assert completion.object == "chat.completion"
    assert completion.choices[0].finish_reason == "stop"
    assert len(completion.choices[0].message.content) == 30 * 4
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (100, 30, 130)
    assert completion.usage.prompt_tokens_details.cached_tokens == 0
    headers = raw.headers
    assert headers["x-request-id"].startswith("req_")
    assert headers["x-ratelimit-limit-requests"] == "60"
    assert headers["x-ratelimit-remaining-requests"] == "59"
    assert headers["x-ratelimit-reset-requests"] == "1s"
    assert headers["x-ratelimit-limit-tokens"] == "60000"
    # Charged max(max_tokens=500, estimate=100), whatever the 30 tokens it produced.
    assert headers["x-ratelimit-remaining-tokens"] == str(60_000 - 500)
    assert headers["x-ratelimit-reset-tokens"] == "500ms"
    assert standin.calls[0].counted == {"requests": 1, "tokens": 500, "estimated_tokens": 100}


def test_max_tokens_is_charged_at_admission_and_unused_output_is_not_refunded(clock):
    with OpenAIStandIn(limited(tokens_per_minute=2_000), clock=clock, output_tokens=10) as standin:
        client = client_for(standin)
        first = chat(client, max_tokens=900)
        second = chat(client, max_tokens=900)
        with pytest.raises(openai.RateLimitError) as throttled:
            chat(client, max_tokens=900)
    assert first.parse().usage.completion_tokens == 10
    assert second.headers["x-ratelimit-remaining-tokens"] == "200"
    error = throttled.value
    assert error.status_code == 429
    assert error.body == {"message": error.body["message"], "type": "tokens", "param": None, "code": "rate_limit_exceeded"}
    assert error.code == "rate_limit_exceeded"
    assert "tokens per min (TPM): Limit 2000, Used 1800, Requested 900" in error.body["message"]
    assert error.response.headers["x-ratelimit-remaining-tokens"] == "0"
    assert standin.throttled()[0].limit == "tokens"


def test_the_character_estimate_is_charged_when_it_exceeds_max_tokens(clock):
    with OpenAIStandIn(limited(tokens_per_minute=10_000), clock=clock) as standin:
        # 4,000 characters estimate 1,000 tokens; the tokenizer reports 700 (the marker), the limiter still charges 1,000.
        raw = chat(client_for(standin), "y" * 4_000 + "[[input_tokens=700]]", max_tokens=100)
    assert raw.parse().usage.prompt_tokens == 700
    assert raw.headers["x-ratelimit-remaining-tokens"] == str(10_000 - 1_000)
    assert standin.calls[0].counted == {"requests": 1, "tokens": 1_000, "estimated_tokens": 1_000}


def test_max_completion_tokens_and_n_set_the_output_charge(clock):
    with OpenAIStandIn(limited(tokens_per_minute=10_000), clock=clock, output_tokens=20) as standin:
        raw = chat(client_for(standin), max_completion_tokens=300, n=3)
    completion = raw.parse()
    assert len(completion.choices) == 3
    assert completion.usage.completion_tokens == 60
    assert raw.headers["x-ratelimit-remaining-tokens"] == str(10_000 - 900)


def test_the_sum_rule_adds_the_estimate_to_max_tokens(clock):
    with OpenAIStandIn(limited(tokens_per_minute=10_000), clock=clock, charge_rule="sum") as standin:
        raw = chat(client_for(standin), "y" * 4_000, max_tokens=100)
    assert raw.headers["x-ratelimit-remaining-tokens"] == str(10_000 - 1_100)


def test_throttled_requests_count_too(clock):
    with OpenAIStandIn(limited(requests_per_minute=2), clock=clock) as standin:
        client = client_for(standin)
        chat(client)
        chat(client)
        with pytest.raises(openai.RateLimitError) as throttled:
            chat(client)
        assert throttled.value.body["type"] == "requests"
        assert "requests per min (RPM): Limit 2, Used 2, Requested 1. Please try again in 30s." in throttled.value.body["message"]
        clock.advance(30)
        # The throttled request took the request that refilled meanwhile.
        with pytest.raises(openai.RateLimitError):
            chat(client)
        clock.advance(60)
        chat(client)


def test_throttled_requests_can_be_left_uncounted(clock):
    with OpenAIStandIn(limited(requests_per_minute=2), clock=clock, count_throttled=False) as standin:
        client = client_for(standin)
        chat(client)
        chat(client)
        with pytest.raises(openai.RateLimitError):
            chat(client)
        clock.advance(30)
        chat(client)


def test_a_request_larger_than_the_whole_limit_is_too_large(clock):
    with OpenAIStandIn(limited(tokens_per_minute=1_000), clock=clock) as standin:
        with pytest.raises(openai.RateLimitError) as throttled:
            chat(client_for(standin), max_tokens=4_000)
    assert throttled.value.body["message"].startswith(f"Request too large for {GPT}")


def test_the_clock_releases_capacity_continuously(clock):
    with OpenAIStandIn(limited(tokens_per_minute=6_000), clock=clock) as standin:
        client = client_for(standin)
        chat(client, max_tokens=5_000)
        with pytest.raises(openai.RateLimitError) as throttled:
            chat(client, max_tokens=3_000)
        assert "Please try again in 20s." in throttled.value.body["message"]
        clock.advance(55)  # refilled at 100 a second; the throttled request's 3,000 were taken too
        assert chat(client, max_tokens=100).headers["x-ratelimit-remaining-tokens"] == str(1_000 - 3_000 + 5_500 - 100)


@pytest.mark.parametrize(("seconds", "text"), [(0.02, "20ms"), (1, "1s"), (8.64, "8.64s"), (360, "6m0s"), (79.872, "1m19.872s"), (0, "0s")])
def test_reset_durations_are_written_the_way_openai_writes_them(seconds, text):
    assert go_duration(seconds) == text


def test_prompts_of_1024_tokens_or_more_report_cached_prefix_tokens_in_128_token_steps(clock):
    with OpenAIStandIn(limited(), clock=clock) as standin:
        client = client_for(standin)
        long_prompt = filler_text(1_200)
        first = chat(client, long_prompt).parse().usage
        second = chat(client, long_prompt + " and a different ending").parse().usage
        short = [chat(client, filler_text(900)).parse().usage for _ in range(2)]
        clock.advance(301)
        expired = chat(client, long_prompt).parse().usage
    assert first.prompt_tokens_details.cached_tokens == 0
    assert second.prompt_tokens_details.cached_tokens == 1_152
    assert short[1].prompt_tokens_details.cached_tokens == 0
    assert expired.prompt_tokens_details.cached_tokens == 0


def test_streaming_sends_usage_in_a_last_chunk_only_when_asked(clock):
    with OpenAIStandIn(limited(tokens_per_minute=10_000), clock=clock) as standin:
        client = client_for(standin)
        with_usage = list(client.chat.completions.create(model=GPT, messages=[{"role": "user", "content": "x" * 40 + "[[output_tokens=50]]"}],
                                                         max_tokens=200, stream=True, stream_options={"include_usage": True}))
        without = list(client.chat.completions.create(model=GPT, messages=[{"role": "user", "content": "x" * 40}], max_tokens=20, stream=True))
    assert with_usage[0].choices[0].delta.role == "assistant"
    assert "".join(chunk.choices[0].delta.content or "" for chunk in with_usage if chunk.choices) == filler_text(50)
    assert with_usage[-1].choices == []
    assert (with_usage[-1].usage.prompt_tokens, with_usage[-1].usage.completion_tokens) == (10, 50)
    assert all(chunk.usage is None for chunk in with_usage[:-1])
    assert all(chunk.usage is None for chunk in without)
    assert without[-1].choices[0].finish_reason == "length"
    assert standin.calls[1].output_tokens == 20


def test_another_model_answering_is_named_and_the_requested_model_is_counted(clock):
    with OpenAIStandIn({GPT: OpenAIModel(tokens_per_minute=10_000, answered_by=f"{GPT}-2025-04-14")}, clock=clock) as standin:
        raw = chat(client_for(standin), max_tokens=1_000)
    assert raw.parse().model == f"{GPT}-2025-04-14"
    assert raw.headers["x-ratelimit-remaining-tokens"] == "9000"


def test_a_model_the_key_cannot_reach_is_model_not_found_and_is_not_listed(clock):
    with OpenAIStandIn({GPT: OpenAIModel(), "gpt-5": OpenAIModel(reachable=False)}, clock=clock) as standin:
        client = client_for(standin)
        for model in ("gpt-5", "gpt-unknown"):
            with pytest.raises(openai.NotFoundError) as missing:
                chat(client, model=model)
            assert missing.value.code == "model_not_found"
            assert missing.value.body["message"] == f"The model `{model}` does not exist or you do not have access to it."
        assert [model.id for model in client.models.list()] == [GPT]
    assert [call.error for call in standin.calls] == ["model_not_found", "model_not_found"]


@pytest.mark.parametrize("status", [500, 503])
def test_a_forced_server_error_answers_that_status(clock, status):
    with OpenAIStandIn(limited(), clock=clock) as standin:
        standin.fail(GPT, status)
        with pytest.raises(openai.InternalServerError) as failed:
            chat(client_for(standin))
    assert failed.value.status_code == status
    assert failed.value.body["type"] == "server_error"


def test_a_wrong_api_key_is_refused_when_the_stand_in_has_one(clock):
    with OpenAIStandIn(limited(), clock=clock, api_key="sk-proj-right") as standin:
        with pytest.raises(openai.AuthenticationError) as refused:
            chat(client_for(standin))
    assert refused.value.code == "invalid_api_key"


def test_the_admin_endpoints_configure_list_and_reset_a_running_stand_in(clock):
    import json
    import urllib.request

    def admin(standin: OpenAIStandIn, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(standin.url + path, data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Content-Type": "application/json"}, method="POST" if body is not None else "GET")
        with urllib.request.urlopen(request) as answer:
            return json.load(answer)

    with OpenAIStandIn({}, clock=clock) as standin:
        client = client_for(standin)
        assert admin(standin, "/_standin/models", {"model": GPT, "requests_per_minute": 1})["requests_per_minute"] == 1
        chat(client)
        with pytest.raises(openai.RateLimitError):
            chat(client)
        assert [call["status"] for call in admin(standin, "/_standin/calls")["calls"]] == [200, 429]
        assert admin(standin, "/_standin/models")["models"][GPT]["requests_per_minute"] == 1
        admin(standin, "/_standin/reset", {})
        chat(client)
        assert len(standin.calls) == 1
