"""sb.chat(): one provider-neutral call over a route that mixes Anthropic, OpenAI and Bedrock models, answered by each,
with tools, tool results, images and streams, counted as each provider counts."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
from conftest import NOVA_LITE, recorded
from switchboard_client import AsyncChatStream, AsyncSwitchboard, ChatResponse, ChatStream

# category -> (stand-in, the model id it saw, Switchboard key, provider kind)
FIRST = {
    "neutral_anthropic": ("anthropic", "claude-chat", "claude-chat", "anthropic"),
    "neutral_openai": ("openai", "gpt-chat", "gpt-chat", "openai"),
    "neutral_bedrock": ("bedrock", NOVA_LITE, "nova-lite", "bedrock"),
}
LOOKUP = {"type": "function", "function": {"name": "lookup", "description": "Look an order up.",
                                           "parameters": {"type": "object", "properties": {"order": {"type": "string"}}}}}
ASK = [{"role": "user", "content": "Where is order 42? [[output_tokens=12]] [[tool_call=7]]"}]
PIXEL = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 24).decode()


def body_of(standins, standin):
    return standins[standin].requests[-1].body


@pytest.mark.parametrize("category", FIRST)
def test_each_provider_answers_one_chat_call_with_its_tool_call_counted_exactly(sb, admin, standins, category):
    standin, model_id, key, kind = FIRST[category]

    response = sb.chat(category=category, system="Be brief.", messages=ASK, tools=[LOOKUP], max_tokens=200, temperature=0.2,
                       stop=["END"])

    assert isinstance(response, ChatResponse)
    assert (response.model_key, response.kind, response.model) == (key, kind, model_id)
    assert response.switchboard_decision.outcome == "primary"
    assert response.text == "word" * 12 and response.stop_reason == "tool_calls"
    assert [(call.name, call.arguments) for call in response.tool_calls] == [("lookup", {"call": 7})]
    call = standins[standin].calls_for(model_id)[-1]
    assert (response.usage.input_tokens, response.usage.output_tokens) == (call.input_tokens, 12)
    row = recorded(admin, category, response.switchboard_decision.id)
    assert (row["input_tokens"], row["output_tokens"], row["outcome"]) == (call.input_tokens, 12, "primary")
    assert response.switchboard_report["status"] == "ok"


def test_the_request_reaches_each_api_in_its_own_words(sb, standins):
    for category in FIRST:
        sb.chat(category=category, system="Be brief.", messages=ASK, tools=[LOOKUP], tool_choice="required", max_tokens=200,
                temperature=0.2, stop="END")

    anthropic_body, openai_body, bedrock_body = (body_of(standins, name) for name in ("anthropic", "openai", "bedrock"))
    assert anthropic_body["system"] == "Be brief." and anthropic_body["stop_sequences"] == ["END"]
    assert anthropic_body["tools"] == [{"name": "lookup", "description": "Look an order up.", "input_schema": LOOKUP["function"]["parameters"]}]
    assert anthropic_body["tool_choice"] == {"type": "any"} and anthropic_body["max_tokens"] == 200
    assert openai_body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert openai_body["tools"] == [LOOKUP] and openai_body["tool_choice"] == "required" and openai_body["max_completion_tokens"] == 200
    assert bedrock_body["system"] == [{"text": "Be brief."}]
    assert bedrock_body["inferenceConfig"] == {"maxTokens": 200, "temperature": 0.2, "stopSequences": ["END"]}
    assert bedrock_body["toolConfig"]["tools"][0]["toolSpec"]["name"] == "lookup" and bedrock_body["toolConfig"]["toolChoice"] == {"any": {}}


@pytest.mark.parametrize("category", FIRST)
def test_a_tool_result_goes_back_in_each_apis_words(sb, standins, category):
    standin = FIRST[category][0]
    first = sb.chat(category=category, messages=ASK, tools=[LOOKUP], max_tokens=200)
    call_id = first.tool_calls[0].id
    conversation = [*ASK, first.message, {"role": "tool", "tool_call_id": call_id, "content": "shipped"}]

    second = sb.chat(category=category, messages=conversation, tools=[LOOKUP], max_tokens=200)

    assert second.stop_reason == "stop" and not second.tool_calls
    sent = body_of(standins, standin)["messages"]
    if standin == "anthropic":
        assert sent[1]["content"][-1] == {"type": "tool_use", "id": call_id, "name": "lookup", "input": {"call": 7}}
        assert sent[2] == {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id, "content": "shipped"}]}
    elif standin == "openai":
        assert json.loads(sent[1]["tool_calls"][0]["function"]["arguments"]) == {"call": 7}
        assert sent[2] == {"role": "tool", "tool_call_id": call_id, "content": "shipped"}
    else:
        assert sent[1]["content"][-1] == {"toolUse": {"toolUseId": call_id, "name": "lookup", "input": {"call": 7}}}
        assert sent[2] == {"role": "user", "content": [{"toolResult": {"toolUseId": call_id, "content": [{"text": "shipped"}]}}]}


def test_an_image_is_sent_to_each_api_as_it_takes_images(sb, standins):
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]}]
    for category in FIRST:
        sb.chat(category=category, messages=messages, max_tokens=50)

    assert body_of(standins, "anthropic")["messages"][0]["content"][1] == {
        "type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}}
    assert body_of(standins, "openai")["messages"][0]["content"][1] == image
    assert body_of(standins, "bedrock")["messages"][0]["content"][1] == {"image": {"format": "png", "source": {"bytes": PIXEL}}}


def test_bedrock_takes_no_image_link(sb):
    link = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]
    with pytest.raises(TypeError, match="base64 data URLs"):
        sb.chat(category="neutral_bedrock", messages=link, max_tokens=50)


@pytest.mark.parametrize("category", FIRST)
def test_a_chat_stream_from_each_provider_yields_text_then_the_final_response(sb, admin, standins, category):
    standin, model_id, key, _ = FIRST[category]

    stream = sb.chat(category=category, messages=ASK, tools=[LOOKUP], max_tokens=200, stream=True)

    assert isinstance(stream, ChatStream)
    text = "".join(chunk.text for chunk in stream)
    final = stream.get_final_response()
    assert text == final.text == "word" * 12
    assert [(call.name, call.arguments) for call in final.tool_calls] == [("lookup", {"call": 7})]
    assert final.stop_reason == "tool_calls" and final.model_key == key
    assert stream.done and stream.switchboard_report["status"] == "ok"
    call = standins[standin].calls_for(model_id)[-1]
    row = recorded(admin, category, stream.switchboard_decision.id)
    assert (row["input_tokens"], row["output_tokens"]) == (call.input_tokens, 12) == (final.usage.input_tokens, final.usage.output_tokens)


def test_async_chat_and_its_streams(switchboard, admin):
    async def scenario():
        async with AsyncSwitchboard(switchboard["url"], switchboard["key"]) as sb:
            answers = await asyncio.gather(*(sb.chat(category=category, messages=ASK, tools=[LOOKUP], max_tokens=200) for category in FIRST))
            streams = []
            for category in FIRST:
                stream = await sb.chat(category=category, messages=ASK, max_tokens=200, stream=True)
                assert isinstance(stream, AsyncChatStream)
                texts = [text async for text in stream.text_stream]
                streams.append(("".join(texts), await stream.get_final_response(), stream))
            return answers, streams

    answers, streams = asyncio.run(scenario())
    assert [answer.model_key for answer in answers] == ["claude-chat", "gpt-chat", "nova-lite"]
    assert all(answer.tool_calls[0].arguments == {"call": 7} for answer in answers)
    for (text, final, stream), category in zip(streams, FIRST, strict=True):
        assert text == final.text == "word" * 12
        assert recorded(admin, category, stream.switchboard_decision.id)["output_tokens"] == 12
