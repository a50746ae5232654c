"""The bodies of POST /api/v1/route and POST /api/v1/usage, validated in plain Python.

These two endpoints are the hot path: a DRF serializer copies its fields on every request, which
cost more CPU than the decision itself (docs/performance.md). The serializers in
router.serializers declare the same bodies for the OpenAPI schema; tests/test_payloads.py checks
that both accept and refuse the same bodies. Errors have the serializers' shape: a ValidationError
of {field: [messages]}, rendered by router.errors as `invalid_request`.
"""

import re
import uuid
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework.exceptions import ValidationError

from providers.models import MODEL_KEY
from router.engine import RouteRequest
from router.errors import ApiError
from router.serializers import (
    CACHE_READ_OVER_INPUT,
    HEADER_NAME,
    MAX_ATTEMPT,
    MAX_EXCLUDED,
    MAX_RATELIMIT_HEADERS,
    MAX_REQUEST_ID,
    MAX_TOKENS_PER_CALL,
    not_sent_problem,
)
from router.usage import UsageReport
from switchboard.validators import invisible_character
from switchboard.vocabulary import REQUEST_COMPLEXITIES, UsageStatus

ROUTE_FIELDS = ("category", "complexity", "tier", "estimated_input_tokens", "estimated_output_tokens", "estimated_cache_read_tokens",
                "exclude", "attempt", "dry_run", "request_id")
USAGE_FIELDS = ("model", "input_tokens", "output_tokens", "cache_read_input_tokens", "cache_write_input_tokens", "status",
                "decision_id", "idempotency_key", "retry_after", "ratelimit_headers")
USAGE_STATUSES = tuple(UsageStatus.values)  # read once: the enum builds the list anew on every access
REQUIRED = "This field is required."
NOT_NULL = "This field may not be null."
SURROGATE = re.compile("[\ud800-\udfff]")


class _Fields:
    """Reads the fields of one JSON object, collecting every error before raising them together."""

    def __init__(self, data: Any, known: tuple[str, ...]) -> None:
        if not isinstance(data, dict):
            raise ValidationError({"non_field_errors": ["Send a JSON object."]})
        unknown = sorted(set(data) - set(known))
        if unknown:
            names = ", ".join(sorted(known))
            raise ValidationError({name: [f"Unknown field. Known fields: {names}."] for name in unknown})
        self.data = data
        self.errors: dict[str, list[str]] = {}

    def value(self, name: str, required: bool = False) -> Any:
        if name not in self.data:
            if required:
                self.errors[name] = [REQUIRED]
            return None
        if self.data[name] is None:
            self.errors[name] = [NOT_NULL]
            return None
        return self.data[name]

    def text(self, name: str, max_length: int) -> str | None:
        value = self.value(name)
        return None if value is None else self.string(name, value, max_length)

    def string(self, name: str, value: Any, max_length: int) -> str | None:
        """A string as StrictCharField takes it: trimmed, not blank, no NUL, surrogate or other unprintable
        character, at most max_length long."""
        if not isinstance(value, str):
            self.errors[name] = ["Not a valid string."]
            return None
        value = value.strip()
        if not value:
            self.errors[name] = ["This field may not be blank."]
        elif len(value) > max_length:
            self.errors[name] = [f"Ensure this field has no more than {max_length} characters."]
        elif "\x00" in value:
            self.errors[name] = ["Null characters are not allowed."]
        elif surrogate := SURROGATE.search(value):
            self.errors[name] = [f"Surrogate characters are not allowed: U+{ord(surrogate[0]):X}."]
        elif problem := invisible_character(value):
            self.errors[name] = [problem[0].upper() + problem[1:] + "."]
        else:
            return value
        return None

    def integer(self, name: str, maximum: int, default: int | None = None, required: bool = False, minimum: int = 0) -> int | None:
        value = self.value(name, required=required and default is None)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or (isinstance(value, float) and not value.is_integer()):
            self.errors[name] = ["A valid integer is required."]
        elif value < minimum:
            self.errors[name] = [f"Ensure this value is greater than or equal to {minimum}."]
        elif value > maximum:
            self.errors[name] = [f"Ensure this value is less than or equal to {maximum}."]
        else:
            return int(value)
        return None

    def model_key(self, name: str, value: Any) -> str | None:
        """A model key as the serializers take it: a string (trimmed, at most 100 long) of the key's characters."""
        key = self.string(name, value, 100)
        if key is not None:
            try:
                MODEL_KEY(key)
            except DjangoValidationError as exc:
                self.errors[name] = list(exc.messages)
                return None
        return key

    def model_keys(self, name: str, maximum: int) -> frozenset[str]:
        """A list of model keys, as DRF's ListField of them takes it."""
        value = self.value(name)
        if value is None:
            return frozenset()
        if not isinstance(value, list):
            self.errors[name] = [f'Expected a list of items but got type "{type(value).__name__}".']
            return frozenset()
        if len(value) > maximum:
            self.errors[name] = [f"Ensure this field has no more than {maximum} elements."]
            return frozenset()
        keys = [self.model_key(f"{name}.{index}", item) for index, item in enumerate(value)]
        return frozenset(key for key in keys if key is not None)

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.value(name)
        if value is None:
            return default
        if not isinstance(value, str) or value not in choices:
            self.errors[name] = [f'"{value}" is not a valid choice.']
        return value

    def check(self) -> None:
        if self.errors:
            raise ValidationError(self.errors)


def route_request(data: Any) -> tuple[RouteRequest, bool]:
    """The routing request in a POST /route body, and whether it is a dry run."""
    fields = _Fields(data, ROUTE_FIELDS)
    category = fields.text("category", 64)
    tier = fields.text("tier", 64)
    complexity = fields.value("complexity")
    input_tokens = fields.integer("estimated_input_tokens", MAX_TOKENS_PER_CALL, default=0)
    output_tokens = fields.integer("estimated_output_tokens", MAX_TOKENS_PER_CALL, default=0)
    cache_read = fields.integer("estimated_cache_read_tokens", MAX_TOKENS_PER_CALL, default=0)
    exclude = fields.model_keys("exclude", MAX_EXCLUDED)
    attempt = fields.integer("attempt", MAX_ATTEMPT, default=1, minimum=1)
    dry_run = fields.value("dry_run")
    request_id = fields.text("request_id", MAX_REQUEST_ID) if "request_id" in data else None
    if dry_run is not None and not isinstance(dry_run, bool):
        fields.errors["dry_run"] = ["Must be a valid boolean."]
    fields.check()
    complexity = "medium" if complexity is None else complexity
    if complexity not in REQUEST_COMPLEXITIES:
        raise ApiError("unknown_complexity", f"Unknown complexity {complexity!r}. Valid: {', '.join(REQUEST_COMPLEXITIES)}.",
                       valid=list(REQUEST_COMPLEXITIES))
    if category and tier:
        raise ValidationError({"non_field_errors": ["Name either a category or a tier, not both."]})
    if cache_read > input_tokens:
        raise ValidationError({"estimated_cache_read_tokens": [CACHE_READ_OVER_INPUT]})
    request = RouteRequest(category=category, complexity=complexity, tier=tier, estimated_input_tokens=input_tokens,
                           estimated_output_tokens=output_tokens, estimated_cache_read_tokens=cache_read, exclude=exclude,
                           attempt=attempt, request_id=request_id)
    return request, bool(dry_run)


def usage_report(data: Any) -> UsageReport:
    """The usage report in a POST /usage body."""
    fields = _Fields(data, USAGE_FIELDS)
    model = fields.value("model")
    model = None if model is None else fields.model_key("model", model)
    status = fields.choice("status", USAGE_STATUSES, UsageStatus.OK)
    # A call that failed may have used nothing: its counts are needed only when it succeeded.
    input_tokens = fields.integer("input_tokens", MAX_TOKENS_PER_CALL, required=status == UsageStatus.OK, default=None)
    output_tokens = fields.integer("output_tokens", MAX_TOKENS_PER_CALL, required=status == UsageStatus.OK, default=None)
    cache_read = fields.integer("cache_read_input_tokens", MAX_TOKENS_PER_CALL, default=0)
    cache_write = fields.integer("cache_write_input_tokens", MAX_TOKENS_PER_CALL, default=0)
    decision_id = fields.value("decision_id")
    if decision_id is not None:
        try:
            decision_id = uuid.UUID(decision_id)
        except (TypeError, ValueError, AttributeError):
            fields.errors["decision_id"] = ["Must be a valid UUID."]
    idempotency_key = fields.text("idempotency_key", 200)
    retry_after = fields.integer("retry_after", 86_400)
    headers = _ratelimit_headers(fields)
    fields.check()
    if not model and not decision_id:
        raise ValidationError({"non_field_errors": ["Name the model, or the decision_id of the routing decision."]})
    if status == UsageStatus.NOT_SENT:
        not_sent_problem(decision_id, [input_tokens, output_tokens, cache_read, cache_write])
    return UsageReport(model=model, input_tokens=input_tokens or 0, output_tokens=output_tokens or 0, cache_read_input_tokens=cache_read,
                       cache_write_input_tokens=cache_write, status=status, decision_id=decision_id, idempotency_key=idempotency_key,
                       retry_after=retry_after, ratelimit_headers=headers)


def _ratelimit_headers(fields: _Fields) -> dict[str, str]:
    headers = fields.value("ratelimit_headers")
    if headers is None:
        return {}
    if not isinstance(headers, dict):
        fields.errors["ratelimit_headers"] = [f'Expected a dictionary of items but got type "{type(headers).__name__}".']
    elif len(headers) > MAX_RATELIMIT_HEADERS:
        fields.errors["ratelimit_headers"] = [f"At most {MAX_RATELIMIT_HEADERS} headers."]
    elif invalid := sorted(repr(name) for name in headers if not HEADER_NAME.fullmatch(name)):
        fields.errors["ratelimit_headers"] = [f"Not HTTP header names: {', '.join(invalid)}."]
    else:
        values = {name: fields.string(f"ratelimit_headers.{name}", value, 200) for name, value in headers.items()}
        if all(value is not None for value in values.values()):
            return values
    return {}
