"""Serve the provider stand-ins from the command line until SIGTERM or SIGINT.

    python -m tests.standins --anthropic-port 8101 --openai-port 8102 --bedrock-port 8103 \\
        --config limits.json \\
        --model anthropic claude-sonnet-4-5 requests_per_minute=50 input_tokens_per_minute=30000 output_tokens_per_minute=8000 \\
        --model bedrock us.anthropic.claude-sonnet-4-5-20250929-v1:0 tokens_per_minute=30000 requests_per_minute=20 \\
        --calls-log calls.jsonl

A provider is served when its port is given (0: any free port) or when the config file names it. Once listening, one
JSON line goes to stdout: ``{"anthropic": "http://127.0.0.1:8101", ...}``, so a parent process can read the URLs.

The JSON config file:

    {"anthropic": {"port": 8101, "output_tokens": 100, "round_token_headers": true,
                   "models": {"claude-sonnet-4-5": {"requests_per_minute": 50, "output_tokens_per_minute": 8000}}},
     "openai": {"charge_rule": "max", "count_throttled": true, "models": {"gpt-4o": {"tokens_per_minute": 30000}}},
     "bedrock": {"models": {"us.anthropic.claude-sonnet-4-5-20250929-v1:0": {"tokens_per_minute": 30000},
                            "anthropic.claude-sonnet-4-5-20250929-v1:0": {"profile_only": true}}}}

Model fields are those of AnthropicModel, OpenAIModel and BedrockModel; ``--model`` entries are applied after the
file (values: integers, true/false, null, or text). ``--calls-log`` writes every call record as JSON lines on exit;
while running, ``GET <url>/_standin/calls`` returns them.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import Any

from tests.standins.anthropic_messages import AnthropicStandIn
from tests.standins.base import StandIn
from tests.standins.bedrock_runtime import BedrockStandIn
from tests.standins.openai_chat import OpenAIStandIn

STANDINS: dict[str, type[StandIn]] = {"anthropic": AnthropicStandIn, "openai": OpenAIStandIn, "bedrock": BedrockStandIn}


def parse_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none"):
        return None
    try:
        return int(text)
    except ValueError:
        return text


def build(argv: list[str] | None = None) -> tuple[dict[str, StandIn], str | None]:
    """The stand-ins the command line asks for (not started) and the calls log path."""
    parser = argparse.ArgumentParser(prog="python -m tests.standins", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for provider in STANDINS:
        parser.add_argument(f"--{provider}-port", type=int, default=None, help=f"serve the {provider} stand-in on this port (0: any)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--config", help="JSON file of options and model limits per provider")
    parser.add_argument("--model", nargs="+", action="append", default=[], metavar="PROVIDER MODEL_ID [FIELD=VALUE ...]",
                        help="configure one model (repeatable)")
    parser.add_argument("--output-tokens", type=int, default=None, help="default output tokens per call, all providers")
    parser.add_argument("--calls-log", help="write every call record to this file (JSON lines) on exit")
    args = parser.parse_args(argv)

    config: dict[str, Any] = {}
    if args.config:
        with open(args.config) as file:
            config = json.load(file)
    unknown = set(config) - set(STANDINS)
    if unknown:
        parser.error(f"unknown provider(s) in config: {sorted(unknown)}")
    for entry in args.model:
        if len(entry) < 2 or entry[0] not in STANDINS:
            parser.error(f"--model takes PROVIDER MODEL_ID [FIELD=VALUE ...] with PROVIDER one of {sorted(STANDINS)}: {entry}")
        provider, model, *assignments = entry
        fields = config.setdefault(provider, {}).setdefault("models", {}).setdefault(model, {})
        for assignment in assignments:
            name, sep, value = assignment.partition("=")
            if not sep:
                parser.error(f"expected FIELD=VALUE, got {assignment!r}")
            fields[name] = parse_value(value)

    standins: dict[str, StandIn] = {}
    for provider, standin_class in STANDINS.items():
        port = getattr(args, f"{provider}_port")
        options = dict(config.get(provider) or {})
        if port is None and provider not in config:
            continue
        port = port if port is not None else int(options.pop("port", 0))
        options.pop("port", None)
        if args.output_tokens is not None:
            options.setdefault("output_tokens", args.output_tokens)
        models = options.pop("models", {})
        try:
            standins[provider] = standin_class(models, host=args.host, port=port, **options)
        except (TypeError, ValueError) as error:
            parser.error(f"{provider}: {error}")
    if not standins:
        parser.error("nothing to serve: give --anthropic-port, --openai-port or --bedrock-port, or a --config naming providers")
    return standins, args.calls_log


def main(argv: list[str] | None = None) -> int:
    standins, calls_log = build(argv)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    for standin in standins.values():
        standin.start()
    print(json.dumps({provider: standin.url for provider, standin in standins.items()}), flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for standin in standins.values():
            standin.stop()
        if calls_log:
            with open(calls_log, "w") as file:
                for standin in standins.values():
                    for call in standin.calls:
                        file.write(json.dumps(call.to_dict()) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
