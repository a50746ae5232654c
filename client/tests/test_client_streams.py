"""Streaming helpers report when the stream ends, is closed early, fails, or is dropped unread."""

from __future__ import annotations

import asyncio
import gc

import anthropic
import pytest
from conftest import NOVA, SONNET, recorded
from switchboard_client import AsyncReportingStream, AsyncSwitchboard, ReportingStream

LONG = [{"role": "user", "content": "Tell a story. [[output_tokens=400]]"}]
CONVERSE_LONG = [{"role": "user", "content": [{"text": "Tell a story. [[output_tokens=400]]"}]}]


def test_anthropic_stream_reports_usage_split_between_start_and_delta(sb, admin, standins):
    stream = sb.messages(category="streams", messages=LONG, max_tokens=500, stream=True)
    assert isinstance(stream, ReportingStream)
    types = [event.type for event in stream]
    assert types[0] == "message_start" and types[-1] == "message_stop"
    assert stream.done and stream.switchboard_report["status"] == "ok"
    call = standins["anthropic"].calls_for("claude-stream")[-1]
    row = recorded(admin, "streams", stream.switchboard_decision.id)
    assert (row["input_tokens"], row["output_tokens"]) == (call.input_tokens, 400)
    assert stream.switchboard_report["ratelimit_headers"]["anthropic-ratelimit-requests-limit"] == "100000"


def test_a_stream_closed_early_reports_what_it_saw(sb, admin):
    with sb.messages(category="streams", messages=LONG, max_tokens=500, stream=True) as stream:
        for event in stream:
            if event.type == "content_block_delta":
                break
    assert stream.done
    row = recorded(admin, "streams", stream.switchboard_decision.id)
    assert row["reported"] and 0 < row["output_tokens"] < 400  # estimated from the text received
    assert row["input_tokens"] > 0  # message_start's usage


def test_a_stream_dropped_unread_is_reported(sb, admin):
    stream = sb.messages(category="streams", messages=LONG, max_tokens=500, stream=True)
    next(iter(stream))
    decision = stream.switchboard_decision
    del stream
    gc.collect()
    assert recorded(admin, "streams", decision.id)["reported"]


def test_openai_stream_asks_for_usage(sb, admin, standins):
    stream = sb.chat_completions(category="chat_streams", messages=LONG, max_tokens=500, stream=True)
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    assert standins["openai"].requests[-1].body["stream_options"] == {"include_usage": True}
    row = recorded(admin, "chat_streams", stream.switchboard_decision.id)
    assert (row["input_tokens"], row["output_tokens"]) == (chunks[-1].usage.prompt_tokens, 400)
    assert stream.switchboard_report["ratelimit_headers"]["x-ratelimit-limit-requests"] == "100000"


def test_converse_stream_reports_the_metadata_event(sb, admin, standins):
    response = sb.converse(category="converse", messages=CONVERSE_LONG, inferenceConfig={"maxTokens": 500}, stream=True)
    assert isinstance(response["stream"], ReportingStream)
    events = list(response["stream"])
    assert "metadata" in events[-1]
    row = recorded(admin, "converse", response["switchboard_decision"].id)
    assert (row["input_tokens"], row["output_tokens"]) == (events[-1]["metadata"]["usage"]["inputTokens"], 400)
    assert standins["bedrock"].calls_for(NOVA)[-1].stream


def test_messages_stream_on_bedrock_yields_anthropic_events(sb, admin, standins):
    stream = sb.messages(category="bedrock_claude", messages=LONG, max_tokens=500, stream=True)
    events = list(stream)
    assert [e.type for e in events[:2]] == ["message_start", "content_block_start"]
    assert events[-2].type == "message_delta" and events[-2].usage.output_tokens == 400
    assert all(isinstance(e, anthropic.types.RawMessageStreamEvent.__args__) for e in events)  # type: ignore[attr-defined]
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert len(text) == 1600
    row = recorded(admin, "bedrock_claude", stream.switchboard_decision.id)
    assert (row["input_tokens"], row["output_tokens"]) == (standins["bedrock"].calls_for(SONNET)[-1].input_tokens, 400)


def test_a_stream_failing_midway_is_reported_as_the_failure(sb, admin, standins):
    stream = sb.messages(category="streams", messages=LONG, max_tokens=500, stream=True)
    next(stream)

    def broken():
        raise anthropic.APIConnectionError(request=stream.response.request)
        yield  # pragma: no cover

    stream._events = broken()  # the connection drops after the first event
    with pytest.raises(anthropic.APIConnectionError):
        list(stream)
    assert stream.switchboard_report["status"] == "error"
    assert recorded(admin, "streams", stream.switchboard_decision.id)["reported"]


def test_async_streams(switchboard, admin):
    async def scenario():
        async with AsyncSwitchboard(switchboard["url"], switchboard["key"]) as sb:
            anthropic_stream = await sb.messages(category="streams", messages=LONG, max_tokens=500, stream=True)
            assert isinstance(anthropic_stream, AsyncReportingStream)
            async for _ in anthropic_stream:
                pass
            openai_stream = await sb.chat_completions(category="chat_streams", messages=LONG, max_tokens=500, stream=True)
            chunks = [chunk async for chunk in openai_stream]
            assert chunks[-1].usage.completion_tokens == 400
            converse = await sb.converse(category="converse", messages=CONVERSE_LONG, inferenceConfig={"maxTokens": 500}, stream=True)
            events = [event async for event in converse["stream"]]
            assert "metadata" in events[-1]
            bedrock_messages = await sb.messages(category="bedrock_claude", messages=LONG, max_tokens=500, stream=True)
            assert (await bedrock_messages.__anext__()).type == "message_start"
            await bedrock_messages.close()  # closed early
            async with await sb.messages(category="streams", messages=LONG, max_tokens=500, stream=True) as closed:
                await closed.__anext__()
            dropped = await sb.messages(category="streams", messages=LONG, max_tokens=500, stream=True)
            await dropped.__anext__()
            dropped_id = dropped.switchboard_decision.id
            del dropped
            gc.collect()  # reported by a task that aclose() waits for
            return anthropic_stream, openai_stream, converse, bedrock_messages, closed, dropped_id

    anthropic_stream, openai_stream, converse, bedrock_messages, closed, dropped_id = asyncio.run(scenario())
    assert recorded(admin, "streams", anthropic_stream.switchboard_decision.id)["output_tokens"] == 400
    assert recorded(admin, "chat_streams", openai_stream.switchboard_decision.id)["output_tokens"] == 400
    assert recorded(admin, "converse", converse["switchboard_decision"].id)["output_tokens"] == 400
    assert recorded(admin, "bedrock_claude", bedrock_messages.switchboard_decision.id)["reported"]
    assert recorded(admin, "streams", closed.switchboard_decision.id)["reported"]
    assert recorded(admin, "streams", dropped_id)["reported"]


def test_streams_keep_the_sdks_conveniences(sb, admin, standins):
    ended = []
    stream = sb.messages(category="streams", messages=LONG, max_tokens=500, stream=True)
    stream.on_end(lambda finished, error: ended.append((finished.switchboard_report["status"], error)))
    text = "".join(stream.text_stream)
    message = stream.get_final_message()
    assert isinstance(message, anthropic.types.Message)
    assert message.content[0].text == text and len(text) == 1600 and message.usage.output_tokens == 400
    assert message.stop_reason == "end_turn" and ended == [("ok", None)]

    completion = sb.chat_completions(category="chat_streams", messages=LONG, max_tokens=500, stream=True).get_final_completion()
    assert len(completion.choices[0].message.content) == 1600 and completion.usage.completion_tokens == 400

    converse = sb.converse(category="converse", messages=CONVERSE_LONG, inferenceConfig={"maxTokens": 500}, stream=True)
    final = converse["stream"].get_final_message()
    assert len(final["output"]["message"]["content"][0]["text"]) == 1600 and final["usage"]["outputTokens"] == 400
    assert final["stopReason"] == "end_turn"

    bedrock_message = sb.messages(category="bedrock_claude", messages=LONG, max_tokens=500, stream=True).get_final_message()
    assert bedrock_message.model == SONNET and len(bedrock_message.content[0].text) == 1600


def test_on_end_hears_of_a_stream_that_failed(sb, admin):
    ended = []
    stream = sb.messages(category="streams", messages=LONG, max_tokens=500, stream=True)
    stream.on_end(lambda finished, error: ended.append(type(error)))
    next(stream)

    def broken():
        raise anthropic.APIConnectionError(request=stream.response.request)
        yield  # pragma: no cover

    stream._events = broken()
    with pytest.raises(anthropic.APIConnectionError):
        list(stream.text_stream)
    assert ended == [anthropic.APIConnectionError] and stream.switchboard_report["status"] == "error"


def test_async_streams_keep_the_sdks_conveniences(switchboard):
    async def scenario():
        async with AsyncSwitchboard(switchboard["url"], switchboard["key"]) as sb:
            stream = await sb.messages(category="streams", messages=LONG, max_tokens=500, stream=True)
            text = "".join([piece async for piece in stream.text_stream])
            message = await stream.get_final_message()
            chunks = await sb.chat_completions(category="chat_streams", messages=LONG, max_tokens=500, stream=True)
            completion = await chunks.get_final_completion()
            return text, message, completion

    text, message, completion = asyncio.run(scenario())
    assert message.content[0].text == text and message.usage.output_tokens == 400
    assert completion.usage.completion_tokens == 400
