"""One module per provider API: building the SDK's client for a decision's model (its own retries off), calling it
with the decision's `invoke_id`, and reading its answer and stream events. `anthropic_bedrock` translates Anthropic
Messages requests to Bedrock Converse and back, for Bedrock models of the Anthropic family."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any


def credential_env(provider_slug: str) -> str | None:
    """The API key in `<PROVIDER SLUG>_API_KEY` (e.g. ZHIPU_API_KEY for provider `zhipu`), if the service sets one;
    otherwise the SDK's own variable (ANTHROPIC_API_KEY, OPENAI_API_KEY) applies."""
    return os.environ.get(re.sub(r"[^A-Za-z0-9]", "_", provider_slug).upper() + "_API_KEY") or None


def handed_in(clients: Mapping[str, Any], provider: str, kind: str) -> Any:
    """The SDK client the caller handed in for this provider slug, else for its kind, else None."""
    return clients.get(provider) or clients.get(kind)
