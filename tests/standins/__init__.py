"""Local stand-ins for the providers' inference APIs that enforce each provider's documented rate limits.

- `AnthropicStandIn` (Messages API), `OpenAIStandIn` (chat completions), `BedrockStandIn` (Converse/ConverseStream):
  threaded HTTP servers on 127.0.0.1 that the official SDKs talk to (``base_url=standin.url`` for anthropic,
  ``base_url=standin.url + "/v1"`` for openai, ``endpoint_url=standin.url`` for boto3's bedrock-runtime).
- Each module's docstring states the counting rule it implements and where the provider documents it.
- `python -m tests.standins --help` serves all three from the command line until SIGTERM/SIGINT.

No Django here: the client package's tests and the benchmark import these too.
"""

from tests.standins.anthropic_messages import AnthropicModel, AnthropicStandIn
from tests.standins.base import Call, FakeClock, StandIn, count_tokens, filler_text
from tests.standins.bedrock_runtime import BedrockModel, BedrockStandIn, default_burndown_rate, default_max_output, foundation_id
from tests.standins.openai_chat import OpenAIModel, OpenAIStandIn

__all__ = [
    "AnthropicModel", "AnthropicStandIn", "BedrockModel", "BedrockStandIn", "Call", "FakeClock", "OpenAIModel", "OpenAIStandIn",
    "StandIn", "count_tokens", "default_burndown_rate", "default_max_output", "filler_text", "foundation_id",
]
