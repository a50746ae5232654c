"""Reading what a provider said: usage, the answering model and rate-limit headers from the three SDKs' responses,
and the failure status (`rate_limited`, `error`, `not_found`) from their errors.

Token counts are normalised to Switchboard's usage report, which counts input the way Anthropic and Bedrock report
it: `input_tokens` is the *uncached* input (OpenAI's `prompt_tokens` minus `prompt_tokens_details.cached_tokens`),
`cache_read_input_tokens` the cached part, `cache_write_input_tokens` what was written to the cache (Anthropic's
`cache_creation_input_tokens`, Bedrock's `cacheWriteInputTokens`; OpenAI reports none).

No SDK is imported here: responses and errors are read by their shape, so this module works with any of the SDKs
installed, or none.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Literal

FailureStatus = Literal["rate_limited", "error", "not_found"]
RATELIMIT_PREFIXES = ("anthropic-ratelimit-", "x-ratelimit-")
MAX_HEADERS = 50
MAX_HEADER_VALUE = 200
MAX_RETRY_AFTER = 86_400
# Bedrock error codes that say the key cannot reach the model under this id (reported as not_found).
BEDROCK_NOT_FOUND_CODES = frozenset({"resourcenotfoundexception", "accessdeniedexception"})
BEDROCK_NOT_FOUND_MESSAGES = ("on-demand throughput isn", "model identifier is invalid", "does not support chat")
BEDROCK_RATE_LIMITED_CODES = frozenset({"throttlingexception", "servicequotaexceededexception"})
BEDROCK_ERROR_CODES = frozenset({"internalserverexception", "serviceunavailableexception", "modeltimeoutexception",
                                 "modelerrorexception", "modelnotreadyexception", "modelstreamerrorexception"})
# Errors of the SDKs' transports (anthropic/openai, botocore, httpx) that mean timeout or refused connection.
TRANSPORT_ERRORS = frozenset({"APIConnectionError", "APITimeoutError", "HTTPClientError", "ConnectionError", "TransportError", "TimeoutException"})


@dataclass(frozen=True)
class Usage:
    """What one call used, as Switchboard counts it (input_tokens: the uncached input)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_write_input_tokens: int = 0


@dataclass(frozen=True)
class Observation:
    """What a provider's answer says: the usage, the provider's id of the model that answered (None when it does not
    say) and its rate-limit headers."""

    usage: Usage
    answered_by: str | None = None
    ratelimit_headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Failure:
    """A provider failure to report: its status, the provider's retry-after (seconds) and rate-limit headers."""

    status: FailureStatus
    retry_after: int | None = None
    ratelimit_headers: dict[str, str] = field(default_factory=dict)


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 else 0


def _items(headers: Any) -> Iterable[tuple[str, Any]]:
    if headers is None:
        return ()
    items = getattr(headers, "items", None)
    return items() if callable(items) else ()


def ratelimit_headers(headers: Any) -> dict[str, str]:
    """The provider's `anthropic-ratelimit-*` and `x-ratelimit-*` headers, lower-cased, as Switchboard takes them."""
    found: dict[str, str] = {}
    for name, value in _items(headers):
        name = str(name).lower()
        if name.startswith(RATELIMIT_PREFIXES) and len(found) < MAX_HEADERS and len(name) <= 100:
            found[name] = str(value)[:MAX_HEADER_VALUE]
    return found


def retry_after(headers: Any) -> int | None:
    """Seconds the provider asks to wait (`retry-after-ms`, else `retry-after` in seconds or as an HTTP date)."""
    values = {str(name).lower(): str(value) for name, value in _items(headers)}
    seconds: float | None = None
    try:
        if "retry-after-ms" in values:
            seconds = float(values["retry-after-ms"]) / 1000
        elif "retry-after" in values:
            raw = values["retry-after"].strip()
            try:
                seconds = float(raw)
            except ValueError:
                seconds = (parsedate_to_datetime(raw) - datetime.now(timezone.utc)).total_seconds()  # noqa: UP017 - Python 3.10
    except (TypeError, ValueError, OverflowError):
        return None
    if seconds is None or math.isnan(seconds):
        return None
    return min(MAX_RETRY_AFTER, max(0, math.ceil(seconds)))


def usage_of(usage: Any) -> Usage:
    """A provider's usage object or dict (Anthropic, OpenAI chat or responses, Bedrock) as Switchboard counts it."""
    if usage is None:
        return Usage()
    if _get(usage, "inputTokens") is not None or _get(usage, "outputTokens") is not None:  # Bedrock Converse
        return Usage(_int(_get(usage, "inputTokens")), _int(_get(usage, "outputTokens")),
                     _int(_get(usage, "cacheReadInputTokens")), _int(_get(usage, "cacheWriteInputTokens")))
    if _get(usage, "prompt_tokens") is not None:  # OpenAI chat completions: prompt_tokens includes the cached part
        cached = _int(_get(_get(usage, "prompt_tokens_details"), "cached_tokens"))
        return Usage(max(0, _int(_get(usage, "prompt_tokens")) - cached), _int(_get(usage, "completion_tokens")), cached, 0)
    details = _get(usage, "input_tokens_details")
    if details is not None:  # OpenAI responses API: input_tokens includes the cached part
        cached = _int(_get(details, "cached_tokens"))
        return Usage(max(0, _int(_get(usage, "input_tokens")) - cached), _int(_get(usage, "output_tokens")), cached, 0)
    return Usage(_int(_get(usage, "input_tokens")), _int(_get(usage, "output_tokens")),  # Anthropic
                 _int(_get(usage, "cache_read_input_tokens")), _int(_get(usage, "cache_creation_input_tokens")))


def answering_model(response: Any) -> str | None:
    """The provider's id of the model that answered, as the response names it: Anthropic's server-side fallback
    (`usage.iterations`), Bedrock's prompt router (`trace.promptRouter.invokedModelId`), else the response's `model`."""
    invoked = _get(_get(_get(response, "trace"), "promptRouter"), "invokedModelId")
    if invoked:
        return str(invoked)
    for iteration in reversed(list(_get(_get(response, "usage"), "iterations") or [])):
        model = _get(iteration, "model")
        if model:
            return str(model)
    model = _get(response, "model")
    return str(model) if isinstance(model, str) and model else None


def observe(response: Any, headers: Any = None) -> Observation:
    """What a response says. Understands the SDKs' parsed responses (anthropic `Message`, openai `ChatCompletion` or
    `Response`), their raw responses (`.with_raw_response`: headers read, then parsed), boto3's Converse dict (its
    `ResponseMetadata.HTTPHeaders` too) and plain JSON dicts of the three APIs."""
    parse = getattr(response, "parse", None)
    if callable(parse) and hasattr(response, "headers") and not isinstance(response, Mapping):
        headers = response.headers if headers is None else headers
        response = parse()
    elif hasattr(response, "headers") and callable(getattr(response, "json", None)):  # an httpx response
        headers = response.headers if headers is None else headers
        response = response.json()
    if headers is None and isinstance(response, Mapping):
        headers = _get(_get(response, "ResponseMetadata"), "HTTPHeaders")
    return Observation(usage_of(_get(response, "usage")), answering_model(response), ratelimit_headers(headers))


def _class_names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def failure_for(exc: BaseException) -> Failure | None:
    """The failure status to report for a provider error, or None when it is the caller's error (a 400, bad
    credentials, anything that is not the provider failing): such a call is reported as having used nothing.

    429 -> `rate_limited`; 404 -> `not_found` (also Bedrock's AccessDenied and "invalid model id / on-demand throughput
    isn't supported", which say the same for an id); 5xx, 408, timeouts and refused connections -> `error`."""
    status = getattr(exc, "status_code", None)
    response = getattr(exc, "response", None)
    if isinstance(status, int) and response is not None and not isinstance(response, Mapping):  # anthropic / openai
        headers = getattr(response, "headers", None)
        return _by_status(status, headers)
    if isinstance(response, Mapping) and "Error" in response:  # botocore ClientError (and EventStreamError)
        error = response.get("Error") or {}
        code = str(error.get("Code") or "").lower()
        message = str(error.get("Message") or "").lower()
        meta = response.get("ResponseMetadata") or {}
        http_status = int(meta.get("HTTPStatusCode") or 0)
        headers = meta.get("HTTPHeaders")
        if code in BEDROCK_RATE_LIMITED_CODES or http_status == 429:
            return Failure("rate_limited", retry_after(headers), ratelimit_headers(headers))
        if code in BEDROCK_NOT_FOUND_CODES or http_status == 404 or any(text in message for text in BEDROCK_NOT_FOUND_MESSAGES):
            return Failure("not_found", None, ratelimit_headers(headers))
        if code in BEDROCK_ERROR_CODES or http_status >= 500 or http_status in (408, 424):
            return Failure("error", retry_after(headers), ratelimit_headers(headers))
        return None
    if _class_names(exc) & TRANSPORT_ERRORS or isinstance(exc, TimeoutError | ConnectionError):
        return Failure("error")
    return None


def describe_provider_error(exc: BaseException) -> str:
    """The provider's own answer in a few words: its HTTP status, its message and any retry-after
    (`HTTP 404 (Model claude-x not found)`, `HTTP 429 (...), retry-after 2 s`)."""
    status = getattr(exc, "status_code", None)
    response = getattr(exc, "response", None)
    message = getattr(exc, "message", None) or str(exc)
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):  # anthropic: {"error": {"type", "message"}}; openai: the error object itself
        error = body.get("error") if isinstance(body.get("error"), Mapping) else body
        if error.get("message"):
            message = f"{error.get('type') or error.get('code') or 'error'}: {error['message']}"
    headers = getattr(response, "headers", None)
    if isinstance(response, Mapping) and "Error" in response:
        meta = response.get("ResponseMetadata") or {}
        status = meta.get("HTTPStatusCode")
        headers = meta.get("HTTPHeaders")
        message = f"{(response.get('Error') or {}).get('Code')}: {(response.get('Error') or {}).get('Message')}"
    answer = f"HTTP {status} ({message[:300]})" if status else f"{type(exc).__name__} ({message[:300]})"
    seconds = retry_after(headers)
    return answer + (f", retry-after {seconds} s" if seconds is not None else "")


def _by_status(status: int, headers: Any) -> Failure | None:
    if status == 429:
        return Failure("rate_limited", retry_after(headers), ratelimit_headers(headers))
    if status == 404:
        return Failure("not_found", None, ratelimit_headers(headers))
    if status >= 500 or status == 408:
        return Failure("error", retry_after(headers), ratelimit_headers(headers))
    return None


__all__ = [
    "Failure", "FailureStatus", "Observation", "Usage", "answering_model", "describe_provider_error", "failure_for",
    "observe", "ratelimit_headers", "retry_after", "usage_of",
]
