"""The Anthropic stand-in, driven through the official anthropic SDK: usage, the documented counting (ITPM without cache
reads, OTPM charged max_tokens at admission and the actual output at the end), headers, 429s, streaming, the clock."""

import threading
from datetime import datetime

import anthropic
import pytest

from tests.standins import AnthropicModel, AnthropicStandIn, FakeClock, filler_text

SONNET = "claude-sonnet-4-6"
OPUS = "claude-opus-4-6"


def limited(**limits) -> dict:
    return {SONNET: AnthropicModel(**limits)}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def client_for(standin: AnthropicStandIn) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=standin.url, api_key="sk-ant-test", max_retries=0)


def ask(client: anthropic.Anthropic, text: str = "Hello", max_tokens: int = 1000, model: str = SONNET, **kwargs):
    return client.messages.with_raw_response.create(model=model, max_tokens=max_tokens, messages=[{"role": "user", "content": text}], **kwargs)


def test_a_call_reports_its_usage_and_every_rate_limit_header(clock):
    standin = AnthropicStandIn(limited(requests_per_minute=50, input_tokens_per_minute=30_000, output_tokens_per_minute=8_000),
                               clock=clock, round_token_headers=False)
    with standin:
        raw = ask(client_for(standin), "x" * 400 + "[[output_tokens=300]]", max_tokens=1000)
    message = raw.parse()
    assert message.model == SONNET
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == 100
    assert message.usage.output_tokens == 300
    assert message.usage.cache_read_input_tokens == 0
    assert message.usage.cache_creation_input_tokens == 0
    assert len(message.content[0].text) == 300 * 4

    headers = raw.headers
    assert headers["request-id"].startswith("req_")
    assert headers["anthropic-ratelimit-requests-limit"] == "50"
    assert headers["anthropic-ratelimit-requests-remaining"] == "49"
    assert headers["anthropic-ratelimit-input-tokens-limit"] == "30000"
    assert headers["anthropic-ratelimit-input-tokens-remaining"] == str(30_000 - 100)
    assert headers["anthropic-ratelimit-output-tokens-limit"] == "8000"
    assert headers["anthropic-ratelimit-output-tokens-remaining"] == str(8_000 - 300)
    # The tokens-* headers name the most restrictive token limit: output has the lower remaining share.
    assert headers["anthropic-ratelimit-tokens-limit"] == "8000"
    assert headers["anthropic-ratelimit-tokens-remaining"] == str(8_000 - 300)
    # Resets are RFC 3339 times at which the bucket is full again (300 output tokens refill in 2.25 s).
    reset = datetime.fromisoformat(headers["anthropic-ratelimit-output-tokens-reset"].replace("Z", "+00:00")).timestamp()
    assert reset == clock() + 3
    assert standin.calls[0].counted == {"requests": 1, "input_tokens": 100, "output_tokens_at_admission": 1000, "output_tokens": 300}


def test_remaining_tokens_in_headers_are_rounded_to_the_nearest_thousand(clock):
    with AnthropicStandIn(limited(output_tokens_per_minute=8_000), clock=clock) as standin:
        first = ask(client_for(standin), "[[output_tokens=300]]").headers
        second = ask(client_for(standin), "[[output_tokens=300]]").headers
    assert first["anthropic-ratelimit-output-tokens-remaining"] == "8000"  # 7,700
    assert second["anthropic-ratelimit-output-tokens-remaining"] == "7000"  # 7,400


def test_output_tokens_are_charged_max_tokens_at_admission_and_the_actual_output_at_the_end(clock):
    standin = AnthropicStandIn(limited(output_tokens_per_minute=8_000), clock=clock, output_tokens=100, round_token_headers=False)
    with standin:
        client = client_for(standin)
        with standin.paused():
            stream = client.messages.stream(model=SONNET, max_tokens=5_000, messages=[{"role": "user", "content": "Hi"}]).__enter__()
            assert standin.wait_in_flight(1)
            # The stream's headers were sent after admission: max_tokens is held while the call runs.
            assert stream.response.headers["anthropic-ratelimit-output-tokens-remaining"] == "3000"
            with pytest.raises(anthropic.RateLimitError) as throttled:
                ask(client, max_tokens=5_000)
            assert throttled.value.body["error"]["type"] == "rate_limit_error"
            assert "output tokens per minute" in throttled.value.body["error"]["message"]
        assert stream.get_final_message().usage.output_tokens == 100
        stream.close()
        # At the end the call holds only its 100 output tokens, so the same call now fits.
        raw = ask(client, max_tokens=5_000)
    assert raw.headers["anthropic-ratelimit-output-tokens-remaining"] == str(8_000 - 200)
    assert [call.throttled for call in standin.calls] == [True, False, False]
    assert standin.throttled()[0].limit == "output_tokens"


def test_a_non_streaming_call_holds_max_tokens_until_it_ends(clock):
    standin = AnthropicStandIn(limited(output_tokens_per_minute=8_000), clock=clock, output_tokens=100)
    with standin:
        client = client_for(standin)
        results = []
        with standin.paused():
            worker = threading.Thread(target=lambda: results.append(ask(client, max_tokens=6_000).parse()))
            worker.start()
            assert standin.wait_in_flight(1)
            with pytest.raises(anthropic.RateLimitError):
                ask(client, max_tokens=3_000)
        worker.join(5)
        ask(client, max_tokens=3_000)
    assert results[0].usage.output_tokens == 100


def test_max_tokens_above_the_output_limit_is_never_admitted(clock):
    with AnthropicStandIn(limited(output_tokens_per_minute=8_000), clock=clock) as standin:
        with pytest.raises(anthropic.RateLimitError) as throttled:
            ask(client_for(standin), max_tokens=9_000)
    assert throttled.value.response.headers["retry-after"] == "60"


def test_a_throttle_is_a_rate_limit_error_with_retry_after_and_the_clock_releases_it(clock):
    with AnthropicStandIn(limited(requests_per_minute=2), clock=clock) as standin:
        client = client_for(standin)
        ask(client)
        ask(client)
        with pytest.raises(anthropic.RateLimitError) as throttled:
            ask(client)
        error = throttled.value
        assert error.status_code == 429
        assert error.body["type"] == "error"
        assert error.body["error"]["type"] == "rate_limit_error"
        assert error.request_id and error.request_id.startswith("req_")
        assert error.response.headers["retry-after"] == "30"  # one request refills in 60 / 2 seconds
        assert error.response.headers["anthropic-ratelimit-requests-remaining"] == "0"
        clock.advance(29)
        with pytest.raises(anthropic.RateLimitError):
            ask(client)
        clock.advance(1)
        assert ask(client).parse().usage.output_tokens == 100
    assert [call.status for call in standin.calls] == [200, 200, 429, 429, 200]


def test_the_input_bucket_refills_continuously(clock):
    with AnthropicStandIn(limited(input_tokens_per_minute=6_000), clock=clock) as standin:
        client = client_for(standin)
        ask(client, filler_text(5_000))
        with pytest.raises(anthropic.RateLimitError) as throttled:
            ask(client, filler_text(3_000))
        assert throttled.value.response.headers["retry-after"] == "20"  # 2,000 more tokens at 100 a second
        clock.advance(20)
        ask(client, filler_text(3_000))


def system_prompt(tokens: int) -> list[dict]:
    return [{"type": "text", "text": filler_text(tokens), "cache_control": {"type": "ephemeral"}}]


def test_cache_reads_do_not_count_against_input_tokens_per_minute(clock):
    standin = AnthropicStandIn(limited(input_tokens_per_minute=6_000), clock=clock, round_token_headers=False)
    with standin:
        client = client_for(standin)
        first = ask(client, filler_text(50), system=system_prompt(4_000))
        second = ask(client, filler_text(50), system=system_prompt(4_000))
        clock.advance(301)  # the 5-minute cache has expired (and the bucket is full again)
        third = ask(client, filler_text(50), system=system_prompt(4_000))

    assert first.parse().usage.cache_creation_input_tokens == 4_000
    assert first.parse().usage.cache_read_input_tokens == 0
    assert first.parse().usage.input_tokens == 50
    assert first.headers["anthropic-ratelimit-input-tokens-remaining"] == str(6_000 - 4_050)
    # Without the cache the second call (4,050 tokens) would not fit in the 1,950 left; reads are not counted.
    usage = second.parse().usage
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens, usage.input_tokens) == (4_000, 0, 50)
    assert second.headers["anthropic-ratelimit-input-tokens-remaining"] == str(6_000 - 4_050 - 50)
    assert third.parse().usage.cache_creation_input_tokens == 4_000
    assert [call.counted["input_tokens"] for call in standin.calls] == [4_050, 50, 4_050]


def test_prefixes_shorter_than_the_minimum_are_not_cached_and_one_hour_writes_are_reported_apart(clock):
    with AnthropicStandIn(limited(), clock=clock) as standin:
        client = client_for(standin)
        short = ask(client, "Hi", system=system_prompt(500)).parse().usage
        long_system = [{"type": "text", "text": filler_text(2_000), "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
        long = ask(client, "Hi", system=long_system).parse().usage
        clock.advance(600)
        again = ask(client, "Hi", system=long_system).parse().usage
    assert (short.cache_creation_input_tokens, short.input_tokens) == (0, 501)
    assert long.cache_creation_input_tokens == 2_000
    assert long.cache_creation.ephemeral_1h_input_tokens == 2_000
    assert again.cache_read_input_tokens == 2_000


def test_streaming_through_the_sdk_sends_the_events_in_order_with_usage_split_between_start_and_delta(clock):
    with AnthropicStandIn(limited(output_tokens_per_minute=8_000), clock=clock) as standin:
        client = client_for(standin)
        events = list(client.messages.create(model=SONNET, max_tokens=200, stream=True,
                                             messages=[{"role": "user", "content": "x" * 40 + "[[output_tokens=50]]"}]))
        with client.messages.stream(model=SONNET, max_tokens=30, messages=[{"role": "user", "content": "x" * 40}]) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
    kinds = [event.type for event in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert "content_block_delta" in kinds
    assert events[0].message.usage.input_tokens == 10
    assert events[-2].usage.output_tokens == 50
    assert events[-2].delta.stop_reason == "end_turn"
    # max_tokens cuts the default 100 output tokens short.
    assert final.usage.output_tokens == 30
    assert final.stop_reason == "max_tokens"
    assert len(text) == 30 * 4
    assert all(call.stream for call in standin.calls)


def test_another_model_answering_is_named_and_counted_against_that_model(clock):
    models = {SONNET: AnthropicModel(output_tokens_per_minute=8_000, answered_by=OPUS), OPUS: AnthropicModel(output_tokens_per_minute=4_000)}
    with AnthropicStandIn(models, clock=clock, round_token_headers=False) as standin:
        client = client_for(standin)
        plain = ask(client, "[[output_tokens=700]]", max_tokens=1_000)
        fallback = client.beta.messages.create(model=SONNET, max_tokens=1_000, messages=[{"role": "user", "content": "[[output_tokens=700]]"}],
                                               betas=["server-side-fallback-2026-07-01"], fallbacks=[{"model": OPUS}])
        opus_remaining = ask(client, max_tokens=1_000, model=OPUS).headers["anthropic-ratelimit-output-tokens-remaining"]
    assert plain.parse().model == OPUS
    # The requested model was given its max_tokens back: the answering model holds the output.
    assert plain.headers["anthropic-ratelimit-output-tokens-remaining"] == "8000"
    assert fallback.model == OPUS
    assert [(entry.type, entry.model, entry.output_tokens) for entry in fallback.usage.iterations] == [("fallback_message", OPUS, 700)]
    assert opus_remaining == str(4_000 - 700 - 700 - 100)
    assert standin.calls[0].answered_by == OPUS


def test_a_model_the_key_cannot_reach_is_not_found(clock):
    models = {SONNET: AnthropicModel(), OPUS: AnthropicModel(reachable=False)}
    with AnthropicStandIn(models, clock=clock) as standin:
        client = client_for(standin)
        for model in (OPUS, "claude-unknown"):
            with pytest.raises(anthropic.NotFoundError) as missing:
                ask(client, model=model)
            assert missing.value.body["error"] == {"type": "not_found_error", "message": f"model: {model}"}
        assert [model.id for model in client.models.list()] == [SONNET]
    assert [call.status for call in standin.calls] == [404, 404]


@pytest.mark.parametrize(("status", "error_type"), [(500, "api_error"), (529, "overloaded_error")])
def test_a_forced_error_answers_that_status_and_counts_nothing(clock, status, error_type):
    with AnthropicStandIn(limited(requests_per_minute=1), clock=clock) as standin:
        standin.fail(SONNET, status)
        with pytest.raises(anthropic.InternalServerError) as failed:
            ask(client_for(standin))
        assert failed.value.status_code == status
        assert failed.value.body["error"]["type"] == error_type
        standin.fail(SONNET, None)
        ask(client_for(standin))


def test_concurrent_calls_never_take_more_than_the_limit(clock):
    with AnthropicStandIn(limited(requests_per_minute=5), clock=clock) as standin:
        client = client_for(standin)
        outcomes = []

        def call():
            try:
                ask(client)
                outcomes.append(200)
            except anthropic.RateLimitError:
                outcomes.append(429)

        threads = [threading.Thread(target=call) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert sorted(outcomes) == [200] * 5 + [429] * 15


def test_a_wrong_api_key_is_refused_when_the_stand_in_has_one(clock):
    with AnthropicStandIn(limited(), clock=clock, api_key="sk-ant-right") as standin:
        with pytest.raises(anthropic.AuthenticationError) as refused:
            ask(client_for(standin))
        assert refused.value.body["error"]["type"] == "authentication_error"
        right = anthropic.Anthropic(base_url=standin.url, api_key="sk-ant-right", max_retries=0)
        ask(right)
