"""Rough input-token estimates from a request's text: about four characters a token, which is what routing needs
(a reservation the usage report then corrects), not a tokenizer."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

CHARS_PER_TOKEN = 4
# An image or document block counts as this many tokens (Anthropic: about width x height / 750, at most ~1,600).
MEDIA_TOKENS = 1600
MEDIA_KEYS = frozenset({"image", "document", "video", "image_url", "input_image", "input_audio", "file"})
SKIPPED_KEYS = frozenset({"type", "role", "cache_control", "cachePoint", "id", "tool_use_id", "toolUseId", "format", "media_type"})


def characters(value: Any) -> int:
    """Characters of text in a request fragment (messages, system, tools), media blocks counted as MEDIA_TOKENS."""
    if value is None or isinstance(value, bool):
        return 0
    if isinstance(value, str):
        return len(value)
    if isinstance(value, bytes | bytearray):
        return MEDIA_TOKENS * CHARS_PER_TOKEN
    if isinstance(value, int | float):
        return len(str(value))
    if isinstance(value, Mapping):
        kind = value.get("type")
        if kind in MEDIA_KEYS or (kind is None and MEDIA_KEYS & value.keys()):
            return MEDIA_TOKENS * CHARS_PER_TOKEN
        return sum(characters(item) for key, item in value.items() if key not in SKIPPED_KEYS)
    if isinstance(value, list | tuple):
        return sum(characters(item) for item in value)
    return len(str(value))


def estimate_tokens(*parts: Any) -> int:
    """Estimated input tokens of the request fragments given (e.g. system, messages, tools)."""
    return math.ceil(sum(characters(part) for part in parts) / CHARS_PER_TOKEN)


__all__ = ["CHARS_PER_TOKEN", "characters", "estimate_tokens"]
