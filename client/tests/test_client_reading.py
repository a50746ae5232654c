"""Reading the providers' answers and errors, estimating tokens and translating Messages to Converse: no server needed."""

from __future__ import annotations

import base64

import anthropic
import httpx2
import openai
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from switchboard_client.adapters.anthropic_bedrock import family_is_anthropic, to_converse, to_message
from switchboard_client.estimate import estimate_tokens
from switchboard_client.usage import Usage, failure_for, observe, ratelimit_headers, retry_after, usage_of

REQUEST = httpx2.Request("POST", "http://provider.test/v1/messages")


def status_error(sdk, status: int, headers: dict[str, str] | None = None) -> Exception:
    response = httpx2.Response(status, headers=headers or {}, request=REQUEST, json={"error": {"message": "x"}})
    return sdk.Anthropic(api_key="k")._make_status_error("x", body={}, response=response) if sdk is anthropic else \
        sdk.OpenAI(api_key="k")._make_status_error("x", body={}, response=response)


@pytest.mark.parametrize("sdk", [anthropic, openai])
def test_sdk_errors_map_to_report_statuses(sdk):
    limited = failure_for(status_error(sdk, 429, {"retry-after": "7", "x-ratelimit-remaining-requests": "0"}))
    assert (limited.status, limited.retry_after, limited.ratelimit_headers) == ("rate_limited", 7, {"x-ratelimit-remaining-requests": "0"})
    assert failure_for(status_error(sdk, 404)).status == "not_found"
    assert failure_for(status_error(sdk, 500)).status == "error"
    assert failure_for(status_error(sdk, 529)).status == "error"
    assert failure_for(sdk.APITimeoutError(request=REQUEST)).status == "error"
    assert failure_for(sdk.APIConnectionError(request=REQUEST)).status == "error"
    for callers_error in (400, 401, 403, 413, 422):
        assert failure_for(status_error(sdk, callers_error)) is None
    assert failure_for(ValueError("bug")) is None


def client_error(code: str, status: int, message: str = "m") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}}},
                       "Converse")


def test_bedrock_errors_map_to_report_statuses():
    assert failure_for(client_error("ThrottlingException", 429)).status == "rate_limited"
    assert failure_for(client_error("ResourceNotFoundException", 404)).status == "not_found"
    assert failure_for(client_error("AccessDeniedException", 403, "You don't have access to the model")).status == "not_found"
    on_demand = "Invocation of model ID x with on-demand throughput isn’t supported"
    assert failure_for(client_error("ValidationException", 400, on_demand)).status == "not_found"
    assert failure_for(client_error("ValidationException", 400, "The provided model identifier is invalid.")).status == "not_found"
    for code, status in (("ModelTimeoutException", 408), ("InternalServerException", 500), ("ServiceUnavailableException", 503),
                         ("ModelErrorException", 424)):
        assert failure_for(client_error(code, status)).status == "error"
    assert failure_for(client_error("ValidationException", 400, "messages: a conversation must start with a user message")) is None
    assert failure_for(ReadTimeoutError(endpoint_url="http://bedrock.test")).status == "error"
    assert failure_for(EndpointConnectionError(endpoint_url="http://bedrock.test")).status == "error"


def test_retry_after_forms():
    assert retry_after({"retry-after": "2.1"}) == 3
    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 2
    assert retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({}) is None


def test_ratelimit_headers_are_picked_and_lowercased():
    headers = httpx2.Headers({"Anthropic-RateLimit-Requests-Remaining": "3", "x-ratelimit-reset-tokens": "6m0s", "request-id": "r"})
    assert ratelimit_headers(headers) == {"anthropic-ratelimit-requests-remaining": "3", "x-ratelimit-reset-tokens": "6m0s"}


def test_usage_of_normalises_to_uncached_input():
    assert usage_of({"input_tokens": 10, "output_tokens": 3, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20}) == \
        Usage(10, 3, 100, 20)
    assert usage_of({"prompt_tokens": 1500, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 1024}}) == Usage(476, 7, 1024, 0)
    assert usage_of({"input_tokens": 1500, "output_tokens": 7, "input_tokens_details": {"cached_tokens": 1024}}) == Usage(476, 7, 1024, 0)
    assert usage_of({"inputTokens": 5, "outputTokens": 6, "cacheReadInputTokens": 7, "cacheWriteInputTokens": 8}) == Usage(5, 6, 7, 8)
    assert usage_of(None) == Usage()


def test_observe_reads_the_answering_model():
    fallback = {"model": "claude-opus", "usage": {"input_tokens": 1, "output_tokens": 1,
                                                   "iterations": [{"type": "fallback_message", "model": "claude-sonnet"}]}}
    assert observe(fallback).answered_by == "claude-sonnet"
    routed = {"usage": {"inputTokens": 1, "outputTokens": 2}, "trace": {"promptRouter": {"invokedModelId": "arn:aws:bedrock:x/m"}},
              "ResponseMetadata": {"HTTPHeaders": {"x-amzn-requestid": "r"}}}
    assert observe(routed).answered_by == "arn:aws:bedrock:x/m"
    assert observe({"model": "gpt-4o-2024-08-06", "usage": {"prompt_tokens": 1, "completion_tokens": 1}}).answered_by == "gpt-4o-2024-08-06"


def test_estimates_count_about_four_characters_a_token():
    assert estimate_tokens("x" * 400) == 100
    assert estimate_tokens([{"role": "user", "content": [{"type": "text", "text": "y" * 40, "cache_control": {"type": "ephemeral"}}]}]) == 10
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "A" * 100_000}}
    assert estimate_tokens([{"role": "user", "content": [image]}]) == 1600
    assert estimate_tokens(None, []) == 0


def test_messages_translate_to_converse_and_back():
    png = base64.b64encode(b"\x89PNG").decode()
    request = to_converse({
        "max_tokens": 100, "temperature": 0.5, "top_k": 5, "stop_sequences": ["END"], "extra_headers": {"x": "y"},
        "system": [{"type": "text", "text": "rules", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "look"},
                                         {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "get", "input": {"q": 1}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "42", "is_error": True}]},
        ],
        "tools": [{"name": "get", "description": "Get it", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "get"},
    })
    assert request["inferenceConfig"] == {"maxTokens": 100, "temperature": 0.5, "stopSequences": ["END"]}
    assert request["additionalModelRequestFields"] == {"top_k": 5}
    assert request["system"] == [{"text": "rules"}, {"cachePoint": {"type": "default"}}]
    assert request["messages"][0]["content"][1] == {"image": {"format": "png", "source": {"bytes": b"\x89PNG"}}}
    assert request["messages"][1]["content"] == [{"toolUse": {"toolUseId": "t1", "name": "get", "input": {"q": 1}}}]
    assert request["messages"][2]["content"] == [{"toolResult": {"toolUseId": "t1", "content": [{"text": "42"}], "status": "error"}}]
    assert request["toolConfig"] == {"tools": [{"toolSpec": {"name": "get", "inputSchema": {"json": {"type": "object"}}, "description": "Get it"}}],
                                     "toolChoice": {"tool": {"name": "get"}}}
    message = to_message({"output": {"message": {"role": "assistant", "content": [
        {"text": "Calling"}, {"toolUse": {"toolUseId": "t2", "name": "get", "input": {"q": 2}}}]}},
        "stopReason": "tool_use", "usage": {"inputTokens": 9, "outputTokens": 4, "cacheReadInputTokens": 2, "cacheWriteInputTokens": 1},
        "ResponseMetadata": {"RequestId": "abc"}}, "us.anthropic.claude-x")
    assert isinstance(message, anthropic.types.Message)
    assert (message.id, message.model, message.stop_reason) == ("msg_bedrock_abc", "us.anthropic.claude-x", "tool_use")
    assert [block.type for block in message.content] == ["text", "tool_use"]
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens, message.usage.cache_creation_input_tokens) == (9, 2, 1)


def test_only_anthropic_family_bedrock_models_speak_messages():
    assert family_is_anthropic("us.anthropic.claude-sonnet-4-5-20250929-v1:0")
    assert family_is_anthropic("anthropic.claude-3-5-haiku-20241022-v1:0")
    assert family_is_anthropic("arn:aws:bedrock:us-east-1:1:inference-profile/eu.anthropic.claude-x")
    assert not family_is_anthropic("amazon.nova-pro-v1:0", "meta.llama3-70b")
