"""The bodies of POST /api/v1/route and POST /api/v1/usage and of their answers, each declared once as a msgspec Struct.

These two calls are made around every LLM call. msgspec decodes and validates a body in one step,
in C, for a fraction of what a DRF serializer or validation written in Python costs (docs/performance.md);
answers are Structs it encodes. The OpenAPI schema is generated from the same Structs (router.schema),
so the schema and the server cannot disagree. A body that does not validate is a ValidationError of
{field: [message]}, answered 400 `invalid_request` (router.errors).
"""

import re
import uuid
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct
from rest_framework.exceptions import ValidationError

from router.engine import RouteRequest
from router.errors import ApiError
from router.shapes import ModelRef, Time, TraceEntry
from switchboard.validators import invisible_character
from switchboard.vocabulary import COUNTED_OUTCOMES, REQUEST_COMPLEXITIES, Outcome, ProviderKind, RefusalCode, UsageStatus

# A single LLM call above this many tokens is a mistake, not a request (the largest context windows are ~2M).
MAX_TOKENS_PER_CALL = 10_000_000
MAX_RATELIMIT_HEADERS = 50
# A route has a handful of models; a longer list to pass over is a mistake.
MAX_EXCLUDED = 50
# No task is tried a thousand times: a larger attempt is a mistake.
MAX_ATTEMPT = 1000
MAX_REQUEST_ID = 200

Tokens = Annotated[int, Meta(ge=0, le=MAX_TOKENS_PER_CALL)]
# Names and ids: trimmed, and refused when blank or holding an unprintable character (switchboard.validators).
# These checks, and a model key's pattern, are made by __post_init__: msgspec's own pattern check costs the hot path
# several times what the rest of the decoding does; the schema still states the pattern (extra_json_schema).
Name = Annotated[str, Meta(min_length=1, max_length=64)]
MODEL_KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
ModelKey = Annotated[str, Meta(min_length=1, max_length=100, extra_json_schema={"pattern": MODEL_KEY_PATTERN.pattern},
                               description="Letters, digits, '.', '_', ':' and '-', starting with a letter or digit.")]
# An HTTP header name (RFC 9110 token); also keeps NUL, which PostgreSQL's jsonb refuses, out of the stored headers.
HEADER_NAME_PATTERN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
HeaderName = Annotated[str, Meta(extra_json_schema={"pattern": HEADER_NAME_PATTERN.pattern})]
HeaderValue = Annotated[str, Meta(max_length=200)]

CACHE_READ_OVER_INPUT = "The cache reads are part of the input: at most estimated_input_tokens."


class RouteBody(Struct, forbid_unknown_fields=True):
    """The body of POST /route: what the call is for, how big it may be, and how often it has been tried."""

    category: Name | None = None
    complexity: Literal[tuple(c.value for c in REQUEST_COMPLEXITIES)] = "medium"
    tier: Annotated[Name | None, Meta(description="Instead of a category: route straight to this tier.")] = None
    estimated_input_tokens: Tokens = 0
    estimated_output_tokens: Annotated[Tokens, Meta(description="The most the call may produce: the max_tokens the service will send.")] = 0
    estimated_cache_read_tokens: Annotated[Tokens, Meta(
        description="The part of the input the service expects the provider's prompt cache to hold (Anthropic's input limit does not "
                    "count it).")] = 0
    exclude: Annotated[list[ModelKey], Meta(
        max_length=MAX_EXCLUDED, description="Model keys the service has just seen fail for this task: passed over with reason "
                                             "`excluded`.")] = []
    attempt: Annotated[int, Meta(ge=1, le=MAX_ATTEMPT, description=(
        "The how-manieth try of the same task: past the route's escalate_after it escalates, past its max_attempts it is "
        "refused with 429 attempts_exhausted."))] = 1
    dry_run: Annotated[bool, Meta(description="Decide without counting or storing anything.")] = False
    request_id: Annotated[Annotated[str, Meta(min_length=1, max_length=MAX_REQUEST_ID)] | None, Meta(description=(
        "Any printable text naming this request: a retry with the same request_id within an hour answers the same decision, "
        "counted once; another body under it answers 409 request_id_reused."))] = None
    apis: Annotated[Annotated[list[Literal[tuple(ProviderKind.values)]], Meta(min_length=1)] | None, Meta(description=(
        "The provider kinds the caller can call (e.g. [\"anthropic\", \"bedrock\"]): candidates of other kinds are passed over "
        "with cause `api`, never reserved; a route with none of them is 400 unroutable with cause `api`."))] = None

    def __post_init__(self) -> None:
        self.category = _printable("category", self.category)
        self.tier = _printable("tier", self.tier)
        self.request_id = _printable("request_id", self.request_id)
        for index, key in enumerate(self.exclude):
            _model_key(f"exclude[{index}]", key)
        if self.category and self.tier:
            raise ValidationError({"non_field_errors": ["Name either a category or a tier, not both."]})
        if self.estimated_cache_read_tokens > self.estimated_input_tokens:
            raise ValidationError({"estimated_cache_read_tokens": [CACHE_READ_OVER_INPUT]})


class UsageReport(Struct, forbid_unknown_fields=True):
    """The body of POST /usage: what a call used, as the provider counted it.

    `input_tokens` is the uncached input, as Anthropic and Bedrock report it; cache reads and writes
    are counted apart (an OpenAI prompt's cached tokens are reads, the rest of it is input).
    """

    model: Annotated[ModelKey | None, Meta(description="The model that answered; its decision's when left out.")] = None
    input_tokens: Annotated[Tokens | None, Meta(description="Uncached input tokens; required when status is ok.")] = None
    output_tokens: Annotated[Tokens | None, Meta(description="Required when status is ok.")] = None
    cache_read_input_tokens: Tokens = 0
    cache_write_input_tokens: Tokens = 0
    status: Annotated[Literal[tuple(UsageStatus.values)], Meta(
        description="not_sent: the call never reached the provider; the decision's whole reservation is given back on every "
                    "quota.")] = UsageStatus.OK.value
    decision_id: uuid.UUID | None = None
    idempotency_key: Annotated[str, Meta(min_length=1, max_length=200)] | None = None
    retry_after: Annotated[int, Meta(ge=0, le=86_400)] | None = None
    ratelimit_headers: Annotated[dict[HeaderName, HeaderValue], Meta(max_length=MAX_RATELIMIT_HEADERS)] = {}

    def __post_init__(self) -> None:
        _model_key("model", self.model)
        self.idempotency_key = _printable("idempotency_key", self.idempotency_key)
        if invalid := sorted(repr(name) for name in self.ratelimit_headers if not HEADER_NAME_PATTERN.fullmatch(name)):
            raise ValidationError({"ratelimit_headers": [f"Not HTTP header names: {', '.join(invalid)}."]})
        self.ratelimit_headers = {name: _printable(f"ratelimit_headers.{name}", value) for name, value in self.ratelimit_headers.items()}
        if self.status == UsageStatus.OK and (missing := [name for name in ("input_tokens", "output_tokens") if getattr(self, name) is None]):
            # A call that failed may have used nothing: its counts are needed only when it succeeded.
            raise ValidationError({name: ["This field is required."] for name in missing})
        self.input_tokens = self.input_tokens or 0
        self.output_tokens = self.output_tokens or 0
        if not self.model and not self.decision_id:
            raise ValidationError({"non_field_errors": ["Name the model, or the decision_id of the routing decision."]})
        if self.status == UsageStatus.NOT_SENT:
            if not self.decision_id:
                raise ValidationError({"decision_id": ["A not_sent report gives back a decision's reservation: name the decision."]})
            if self.input_tokens or self.output_tokens or self.cache_read_input_tokens or self.cache_write_input_tokens:
                raise ValidationError({"status": ["A call that was not sent used no tokens: send none, or another status."]})


def _printable(name: str, value: str | None) -> str | None:
    """`value` trimmed; refused when it is blank or holds an unprintable character."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        raise ValidationError({name: ["This field may not be blank."]})
    if problem := invisible_character(value):
        raise ValidationError({name: [problem[0].upper() + problem[1:] + "."]})
    return value


def _model_key(name: str, key: str | None) -> None:
    if key is not None and not MODEL_KEY_PATTERN.fullmatch(key):
        raise ValidationError({name: ["Use letters, digits, '.', '_', ':' and '-', starting with a letter or digit."]})


ROUTE_BODY = msgspec.json.Decoder(RouteBody)
USAGE_REPORT = msgspec.json.Decoder(UsageReport)


def route_request(body: bytes | Any) -> tuple[RouteRequest, bool]:
    """The routing request in a POST /route body (JSON bytes, or the value DRF parsed), and whether it is a dry run."""
    call = _decode(RouteBody, ROUTE_BODY, body)
    request = RouteRequest(category=call.category, complexity=call.complexity, tier=call.tier, estimated_input_tokens=call.estimated_input_tokens,
                           estimated_output_tokens=call.estimated_output_tokens, estimated_cache_read_tokens=call.estimated_cache_read_tokens,
                           exclude=frozenset(call.exclude), attempt=call.attempt, request_id=call.request_id,
                           apis=None if call.apis is None else frozenset(call.apis))
    return request, call.dry_run


def usage_report(body: bytes | Any) -> UsageReport:
    """The usage report in a POST /usage body (JSON bytes, or the value DRF parsed)."""
    return _decode(UsageReport, USAGE_REPORT, body)


def _decode(body_type: type[Struct], decoder: msgspec.json.Decoder, body: bytes | Any) -> Any:
    try:
        return decoder.decode(body) if isinstance(body, bytes) else msgspec.convert(body, body_type)
    except msgspec.ValidationError as exc:
        raise _refusal(body_type, str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ApiError("malformed_request", f"JSON parse error - {exc}") from None
    except UnicodeEncodeError:
        # JSON's "\ud800" escape, which Python's parser takes, is half a character: not text.
        raise ValidationError({"non_field_errors": ["A string holds a lone surrogate (an escape from \\ud800 to \\udfff): not text."]}) from None


# Where msgspec found the problem: "... - at `$.exclude[2]`", or in a key, "... - at `key` in `$.ratelimit_headers`".
LOCATION = re.compile(r" - at (?P<key>`key` in )?`\$\.?(?P<path>[^`]*)`$")


def _refusal(body_type: type[Struct], message: str) -> Exception:
    """msgspec's "Expected `int`, got `str` - at `$.attempt`" as {"attempt": ["Expected `int`, got `str`."]}."""
    location = LOCATION.search(message)
    problem = message[:location.start()] if location else message
    field = location["path"] if location and location["path"] else "non_field_errors"
    if location and location["key"]:
        problem = f"A name: {problem[0].lower()}{problem[1:]}"
    if problem.startswith("Object contains unknown field"):
        known = ", ".join(sorted(body_type.__struct_fields__))
        return ValidationError({problem.split("`")[1]: [f"Unknown field. Known fields: {known}."]})
    if problem.startswith("Expected `object`") and field == "non_field_errors":
        return ValidationError({field: ["Send a JSON object."]})
    if field == "complexity" and problem.startswith("Invalid enum value"):
        valid = list(REQUEST_COMPLEXITIES)
        return ApiError("unknown_complexity", f"Unknown complexity {problem.removeprefix('Invalid enum value ')}. Valid: {', '.join(valid)}.",
                        valid=valid)
    return ValidationError({field: [problem + "."]})


class RoutedModel(ModelRef):
    """The chosen model, and how to call it."""

    kind: Annotated[Literal[tuple(ProviderKind.values)], Meta(description="The API the provider speaks.")]
    base_url: Annotated[str | None, Meta(description="Where the provider's API is, when not the SDK's default.")]
    model_id: str
    invoke_id: Annotated[str, Meta(description="What to send as the model: for Bedrock, the inference profile.")]
    region: str | None


class RouteAnswer(Struct):
    """A counted decision (or a dry run's): the model to call."""

    decision_id: Annotated[uuid.UUID | None, Meta(description="Null for a dry run, which stores nothing.")]
    outcome: Literal[tuple(o.value for o in COUNTED_OUTCOMES)]
    reason: Annotated[str, Meta(description="Why the decision went as it did.")]
    model: RoutedModel
    primary: Annotated[ModelRef, Meta(description="The first model of the route or tier.")]
    trace: list[TraceEntry]
    policy_version: int
    dry_run: bool


class Refusal(Struct):
    """A refused routing request: why, and when to try again (Retry-After) where that is known."""

    error: Literal[tuple(RefusalCode.values)]
    detail: Annotated[str, Meta(description="The error, as a sentence.")]
    reason: Annotated[str, Meta(description="Why the decision went as it did: which candidates were passed over and why.")]
    decision_id: uuid.UUID | None
    outcome: Literal[tuple(o for o in Outcome.values if o not in COUNTED_OUTCOMES)]
    primary: ModelRef | None
    trace: list[TraceEntry]
    policy_version: int


class Counted(Struct):
    """What a call counts against the provider's own limits (docs/architecture.md, "How Switchboard counts")."""

    tokens: int
    input_tokens: int
    output_tokens: int


class UsageAnswer(Struct):
    """A stored usage report."""

    usage_id: uuid.UUID
    created_at: Time
    model: Annotated[ModelRef, Meta(description="The model the report counts against: the one that answered.")]
    decision_id: uuid.UUID | None
    answered_instead: Annotated[bool, Meta(description="Another model answered than the one the decision chose.")]
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int
    cache_write_input_tokens: int
    cost_usd: Annotated[str, Meta(pattern=r"^-?\d+\.\d{6}$", description="Dollars, as a decimal.")]
    counted: Counted
    status: Literal[tuple(UsageStatus.values)]
    idempotency_key: str | None
    retry_after: int | None
    ratelimit_headers: dict[str, str]
